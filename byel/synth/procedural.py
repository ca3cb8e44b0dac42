"""Procedural backend: a parametric face renderer driven by FACS action units.

Needs nothing but numpy and OpenCV. A face is described in a *face frame*: x to the image
right, y down, the eye line at y = 0 and the face half-width at the cheekbones = 1 unit.
Identity parameters (proportions, skin, hair, glasses, beard, age) and AU intensities become
points in that frame; each point gets a depth from a head ellipsoid (plus the nose, lips and
chin bulging out), is rotated by yaw and pitch, projected orthographically, rolled, scaled
and placed. Everything is drawn at a supersampled resolution and reduced with INTER_AREA, so
edges look like a camera's, not like aliased line art.

Shading is multiplicative and soft: Lambertian light on the head ellipsoid, eye sockets, the
nose's side and cast shadow, nasolabial folds, and thin wrinkle layers (forehead, brow
furrows, crow's feet, nose wrinkles, chin) whose strength the AUs set.

Every nuisance factor (identity, pose, light, background, hair, occluders, watermarks, blur,
noise, tone, JPEG, flip) is drawn from one distribution shared by all classes, so only the
expression tells the classes apart (see docs: generator notes).
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from byel.synth.au import AUS

SHIFT = 4  # sub-pixel bits for OpenCV drawing
FIX = float(1 << SHIFT)
AA = cv2.LINE_AA
HEAD_C, HEAD_K = np.float32([0.0, 0.3]), np.float32([1 / 1.15, 1 / 1.8])  # head ellipsoid
HEAD_CK, DEPTH_W = HEAD_C * HEAD_K, np.float32([0.81, 0.81])
LUMA = np.float32([[0.299], [0.587], [0.114]])  # RGB -> grey, OpenCV's weights
# Curve parameters used for every face (np.linspace costs as much as drawing a small mask).
LIP_S = np.linspace(-1.0, 1.0, 15, dtype=np.float32)  # along a lip, corner to corner
BROW_T = np.linspace(0, 1, 7, dtype=np.float32)  # along a brow, inner to outer end
EYE_T = np.linspace(0, 1, 11, dtype=np.float32)  # along an eye, inner to outer corner
FOREHEAD_X = np.linspace(-0.55, 0.55, 9, dtype=np.float32)
CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 16, endpoint=False)),
                   np.sin(np.linspace(0, 2 * np.pi, 16, endpoint=False))], 1).astype(np.float32)

# Skin tones (linear RGB-ish, 0..1), light to dark; a face interpolates between neighbours.
SKIN = np.array([
    [0.96, 0.80, 0.70], [0.90, 0.72, 0.60], [0.84, 0.64, 0.50], [0.72, 0.52, 0.38],
    [0.58, 0.40, 0.28], [0.42, 0.28, 0.19], [0.30, 0.20, 0.14],
], np.float32)
HAIR = np.array([
    [0.06, 0.05, 0.05], [0.16, 0.11, 0.08], [0.30, 0.20, 0.12], [0.50, 0.36, 0.22],
    [0.78, 0.64, 0.42], [0.55, 0.27, 0.13], [0.62, 0.60, 0.58], [0.85, 0.84, 0.82],
], np.float32)
HAIR_P = np.array([0.30, 0.25, 0.17, 0.10, 0.06, 0.04, 0.05, 0.03])
HAIR_STYLES = ("bald", "short", "long", "bangs", "swept", "hat")
HAIR_STYLE_P = np.array([0.07, 0.33, 0.28, 0.14, 0.12, 0.06])
OCCLUDERS = ("none", "hand", "bar", "blob")
OCCLUDER_P = np.array([0.80, 0.08, 0.06, 0.06])


@functools.lru_cache(maxsize=64)
def _chaikin_matrix(n: int, iters: int, closed: bool) -> np.ndarray:
    """Chaikin corner cutting is linear in the control points: cache it as one matrix."""
    m = np.eye(n, dtype=np.float32)
    for _ in range(iters):
        k = len(m)
        nxt = np.roll(m, -1, axis=0) if closed else m[1:]
        cur = m if closed else m[:-1]
        mid = np.stack([0.75 * cur + 0.25 * nxt, 0.25 * cur + 0.75 * nxt], 1).reshape(-1, n)
        m = mid if closed else np.vstack([m[:1], mid, m[k - 1:]])
    return m


def _chaikin(pts, iters: int = 2, closed: bool = True) -> np.ndarray:
    """Corner-cutting smoothing: control points -> a smooth outline (or open curve)."""
    pts = np.asarray(pts, np.float32)
    return _chaikin_matrix(len(pts), iters, closed) @ pts


def _lip_curve(left: np.ndarray, right: np.ndarray, centre_y: float, power: float) -> np.ndarray:
    """A lip line from corner to corner through `centre_y` at the middle.

    power shapes it: ~1.2 a V, 2 a parabola, >3 a box (flat middle, steep near the corners).
    """
    s = LIP_S
    t = (s + 1) / 2
    base_y = left[1] + (right[1] - left[1]) * t
    x = left[0] + (right[0] - left[0]) * t
    mid = (left[1] + right[1]) / 2
    y = base_y + (centre_y - mid) * (1 - np.abs(s) ** power)
    return np.stack([x, y], 1)


def _clamp(v: float, limit: float) -> float:
    """v limited to [-limit, limit], as a Python float (np.clip costs ~20 us on a scalar)."""
    return min(max(float(v), -limit), limit)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with a kernel of +-2.5 sigma (OpenCV's default is wider and slower)."""
    k = 2 * int(math.ceil(2.5 * sigma)) + 1
    return cv2.GaussianBlur(img, (k, k), sigma)


class _Pose:
    """Face frame -> render pixels: head-ellipsoid depth, yaw/pitch, orthographic, roll, place.

    Rotation, orthographic projection, roll, scale and shift compose into one affine map of
    (x, y, z), so projecting is a single small matrix product.
    """

    def __init__(self, unit: float, cx: float, cy: float, roll: float, yaw: float, pitch: float):
        self.unit, self.cr, self.sr = unit, math.cos(roll), math.sin(roll)
        cyw, syw, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
        # Rotate about the head's centre (0, 0.3, 0), not the eye line.
        x1 = np.array([cyw, 0.0, syw])
        y1 = np.array([syw * sp, cp, -cyw * sp])
        u = unit * (self.cr * x1 - self.sr * y1)
        v = unit * (self.sr * x1 + self.cr * y1)
        self.a = np.stack([u, v], 1).astype(np.float32)  # (3, 2)
        self.b = np.array([cx - unit * self.sr * 0.3 - u[1] * 0.3,
                           cy + unit * self.cr * 0.3 - v[1] * 0.3], np.float32)

        self.a_fix, self.b_fix = self.a * FIX, self.b * FIX  # to OpenCV's fixed-point pixels

    @staticmethod
    def depth(xy: np.ndarray) -> np.ndarray:
        """0.9 * sqrt(1 - |q|^2) on the head ellipsoid, in few (in-place) numpy calls."""
        q = xy * HEAD_K - HEAD_CK
        q *= q
        z = 0.81 - q @ DEPTH_W
        return np.sqrt(np.maximum(z, 0.0, out=z), out=z)

    def _project(self, xy: np.ndarray, dz, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return xy @ a[:2] + (self.depth(xy) + dz)[:, None] * a[2] + b

    def __call__(self, xy, dz: float | np.ndarray = 0.0) -> np.ndarray:
        return self._project(np.asarray(xy, np.float32).reshape(-1, 2), dz, self.a, self.b)

    def fixed(self, xy: np.ndarray, dz: float | np.ndarray = 0.0) -> np.ndarray:
        """Like calling the pose, in OpenCV's sub-pixel integer coordinates (SHIFT bits)."""
        return self._project(xy, dz, self.a_fix, self.b_fix).round().astype(np.int32)


class _Mask:
    """A float mask in [0, 1] that lives in a rectangle of the canvas (cheap small features)."""

    __slots__ = ("a", "y0", "x0", "res")

    def __init__(self, a: np.ndarray, y0: int = 0, x0: int = 0, res: int | None = None):
        self.a, self.y0, self.x0, self.res = a, y0, x0, res or a.shape[0]

    def region(self, arr: np.ndarray) -> np.ndarray:
        """The same rectangle of a full-frame array."""
        h, w = self.a.shape
        return arr[self.y0:self.y0 + h, self.x0:self.x0 + w]

    def _overlap(self, other: "_Mask") -> "_Mask":
        """self * other: zero outside other's rectangle, the product inside."""
        out = np.zeros_like(self.a)
        h, w = self.a.shape
        oh, ow = other.a.shape
        y0, x0 = max(self.y0, other.y0), max(self.x0, other.x0)
        y1, x1 = min(self.y0 + h, other.y0 + oh), min(self.x0 + w, other.x0 + ow)
        if y1 > y0 and x1 > x0:
            mine = (slice(y0 - self.y0, y1 - self.y0), slice(x0 - self.x0, x1 - self.x0))
            out[mine] = self.a[mine] * other.a[y0 - other.y0:y1 - other.y0, x0 - other.x0:x1 - other.x0]
        return _Mask(out, self.y0, self.x0, self.res)

    def full(self) -> np.ndarray:
        out = np.zeros((self.res, self.res), np.float32)
        self.region(out)[:] = self.a
        return out

    def __mul__(self, other) -> "_Mask":
        if isinstance(other, _Mask):
            return self._overlap(other)
        if isinstance(other, np.ndarray):
            other = self.region(other)
        return _Mask(self.a * other, self.y0, self.x0, self.res)


class _Canvas:
    """The supersampled image plus soft multiplicative shade / highlight layers.

    Colours are given in RGB; a grey canvas keeps one channel (their luma) from the start, which
    is what converting the finished RGB image would give (blending and shading are linear) at a
    third of the arithmetic.
    """

    def __init__(self, res: int, pose: _Pose, grey: bool = False):
        self.res, self.pose, self.grey = res, pose, grey
        self.img = np.zeros((res, res, 1 if grey else 3), np.float32)
        self.broad = np.zeros((res, res), np.float32)  # blurred wide: sockets, folds
        self.fine = np.zeros((res, res), np.float32)  # blurred little: wrinkles, creases
        self.light = np.zeros((res, res), np.float32)  # highlights (cheeks, chin, nose tip)
        self._strokes: list = []

    def px(self, xy, dz=0.0) -> np.ndarray:
        return self.pose.fixed(np.asarray(xy, np.float32).reshape(-1, 2), dz)

    def thick(self, units: float) -> int:
        return max(1, int(round(units * self.pose.unit)))

    def masks(self, shapes) -> list[_Mask]:
        """Soft masks of several shapes over one shared rectangle, from one projection.

        Each shape is (polys, dz, width, blur): face-frame polygons, their depth offset, None
        for filled polygons or the line width of open polylines, and the blur, all in face
        units. Only the rectangle around all the shapes (plus margins) is rasterised, so a
        small feature costs little; sharing it makes the masks' products cheap too.
        """
        pts = [np.asarray(p, np.float32).reshape(-1, 2) for polys, *_ in shapes for p in polys]
        dz = [d for polys, d, *_ in shapes for _ in polys]
        dz = dz[0] if min(dz) == max(dz) else np.repeat(np.float32(dz), [len(p) for p in pts])
        allp = self.px(np.concatenate(pts) if len(pts) > 1 else pts[0], dz)
        unit = self.pose.unit
        pad = max((self.thick(w) / 2 if w else 0) + 3 * b * unit for _, _, w, b in shapes)
        pad = int(pad + 3)
        x, y, w, h = cv2.boundingRect(allp >> SHIFT)
        x0, y0 = max(x - pad, 0), max(y - pad, 0)
        x1, y1 = min(x + w + pad, self.res), min(y + h + pad, self.res)
        if x1 <= x0 or y1 <= y0:  # wholly outside the frame
            return [_Mask(np.zeros((0, 0), np.float32), 0, 0, self.res) for _ in shapes]
        allp -= np.int32([x0 << SHIFT, y0 << SHIFT])
        out, i = [], 0
        for polys, _, width, blur in shapes:
            q = []
            for p in polys:
                q.append(allp[i:i + len(p)])
                i += len(p)
            m = np.zeros((y1 - y0, x1 - x0), np.uint8)
            if width is None:
                cv2.fillPoly(m, q, 255, AA, SHIFT)
            else:
                cv2.polylines(m, q, False, 255, self.thick(width), AA, SHIFT)
            m = m.astype(np.float32) * (1 / 255)
            if blur * unit > 0.3:
                m = _blur(m, blur * unit)
            out.append(_Mask(m, y0, x0, self.res))
        return out

    def mask(self, polys, dz=0.0, blur: float = 0.0) -> _Mask:
        """Filled polygons (face-frame points) -> soft mask."""
        return self.masks([(polys, dz, None, blur)])[0]

    def line_mask(self, lines, width: float, dz=0.0, blur: float = 0.0) -> _Mask:
        """Open polylines of `width` (face units) -> soft mask."""
        return self.masks([(lines, dz, width, blur)])[0]

    def tone(self, rgb) -> np.ndarray:
        """RGB colour(s), shape (..., 3) -> the canvas's channels."""
        rgb = np.asarray(rgb, np.float32)
        return rgb @ LUMA if self.grey else rgb

    def paint(self, mask: _Mask, colour, alpha: float = 1.0) -> None:
        """Blend a colour (RGB triple, or a full-frame image in the canvas's channels) into the
        image through a mask."""
        r = mask.region(self.img)
        if r.size == 0:
            return
        c = mask.region(colour) if isinstance(colour, np.ndarray) and colour.ndim == 3 else self.tone(colour)
        d = c - r  # r += alpha * m * (c - r), with one temporary
        d *= mask.a[..., None] if alpha == 1.0 else mask.a[..., None] * np.float32(alpha)
        r += d

    # Shade strokes are queued and projected in one batch (many tiny strokes per face).
    def shade_line(self, layer: str, pts, strength: float, width: float, dz: float = 0.0) -> None:
        if strength > 0.01:
            self._strokes.append((layer, np.asarray(pts, np.float32).reshape(-1, 2), dz, strength, width))

    def shade_ellipse(self, layer: str, centre, axes, strength: float, dz: float = 0.0) -> None:
        if strength > 0.01:
            self._strokes.append((layer, np.float32([centre]), dz, strength, axes))

    def flush_strokes(self) -> None:
        """Draw the queued strokes into their layers (no anti-aliasing: layers get blurred)."""
        if not self._strokes:
            return
        pts = np.concatenate([s[1] for s in self._strokes])
        dz = np.repeat(np.float32([s[2] for s in self._strokes]), [len(s[1]) for s in self._strokes])
        allp = self.pose.fixed(pts, dz)
        angle = math.degrees(math.atan2(self.pose.sr, self.pose.cr))
        i = 0
        for layer, p, _, strength, size in self._strokes:
            q, i = allp[i:i + len(p)], i + len(p)
            if len(p) == 1:
                ax = (max(1, int(size[0] * self.pose.unit * FIX)), max(1, int(size[1] * self.pose.unit * FIX)))
                cv2.ellipse(getattr(self, layer), (int(q[0, 0]), int(q[0, 1])), ax, angle, 0, 360,
                            float(strength), -1, cv2.LINE_8, SHIFT)
            else:
                cv2.polylines(getattr(self, layer), [q], False, float(strength), self.thick(size),
                              cv2.LINE_8, SHIFT)
        self._strokes = []


class ProceduralBackend:
    """Renders one labelled face per call; stateless apart from its size, hence picklable."""

    name = "procedural"

    def __init__(self, size: int = 64, grey: bool = False):
        self.size, self.grey = int(size), bool(grey)
        # Supersample at least 2x and never below 128 px so 1-px strokes stay sub-pixel.
        self.res = max(96, round(1.5 * self.size))

    def __repr__(self) -> str:
        return f"ProceduralBackend(size={self.size}, grey={self.grey})"

    # ------------------------------------------------------------------------------------
    def render(self, emotion: str, aus: dict[int, float],
               rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        # The emotion name is deliberately unused: only the AU intensities shape the face.
        a = {k: float(aus.get(k, 0.0)) for k in AUS}
        # Separate streams: the draws that depend on the expression never shift identity,
        # pose or any other nuisance, so the same rng with other AUs gives the same person.
        scene, expr = rng.spawn(2)
        idn = _identity(scene)
        res = self.res
        yaw = _clamp(scene.normal(0, 0.22), 0.55)
        pitch = _clamp(scene.normal(0, 0.14), 0.35)
        roll = _clamp(scene.normal(0, 0.13), 0.4)
        scale = float(scene.uniform(0.42, 0.56))
        pose = _Pose(scale * res, res * (0.5 + scene.normal(0, 0.035)),
                     res * (0.37 + scene.normal(0, 0.035)), roll, yaw, pitch)
        cv = _Canvas(res, pose, self.grey)
        geo = _geometry(idn, a, scene)

        light = _light(scene)
        _background(cv, scene)
        _hair_back(cv, idn, geo, scene)
        _head(cv, idn, geo, scene)
        _shading(cv, idn, geo, a, light)
        _eyes(cv, idn, geo, a)
        _nose(cv, idn, geo)
        _mouth(cv, idn, geo, a, expr)
        _beard(cv, idn, geo, scene)
        _apply_layers(cv, idn, geo, light)
        _brows(cv, idn, geo)
        _hair_front(cv, idn, scene)
        _glasses(cv, idn, scene)
        occluder = _occluder(cv, idn, scene)
        watermark = _watermark(cv, scene)
        img, photo = _camera(cv.img, self.size, scene)

        params = {
            "yaw": round(yaw, 4), "pitch": round(pitch, 4), "roll": round(roll, 4),
            "scale": round(scale, 4), "light_x": round(light[0], 3), "light_y": round(light[1], 3),
            "ambient": round(light[3], 3), "skin": round(idn["skin_t"], 3), "age": round(idn["age"], 3),
            "hair": idn["hair_style"], "glasses": int(idn["glasses"]), "beard": idn["beard"],
            "occluder": occluder, "watermark": int(watermark), **photo,
        }
        return img, params


# --- identity and geometry ---------------------------------------------------------------------
# Face proportions and looks, each uniform in [low, high], in face units (see the module doc)
# or as fractions; drawn with one call per face.
PROPORTIONS = {
    "hair_line": (-0.95, -0.70), "bangs_y": (-0.55, -0.25),
    "fw": (0.88, 1.06), "jaw": (0.70, 0.92), "chin_w": (0.28, 0.45), "chin_y": (1.32, 1.52),
    "eye_x": (0.37, 0.45), "eye_w": (0.16, 0.21), "eye_h": (0.055, 0.09), "eye_hl": (0.035, 0.06),
    "tilt": (-0.03, 0.02), "iris": (0.07, 0.085), "iris_c": (0.05, 0.45),
    "socket": (0.12, 0.40), "sclera": (0.62, 0.85),
    "brow_y": (-0.33, -0.22), "brow_th": (0.035, 0.075), "brow_arch": (0.02, 0.08),
    "brow_in": (0.09, 0.16), "brow_out": (0.66, 0.80), "brow_a": (0.55, 0.95),
    "nose_y": (0.50, 0.62), "nose_w": (0.15, 0.22), "nose_shade": (0.10, 0.30),
    "mouth_y": (0.86, 0.98), "mouth_w": (0.27, 0.36), "lip_u": (0.035, 0.07), "lip_l": (0.055, 0.10),
    "lip_red": (0.0, 0.12), "bow": (0.005, 0.02), "teeth": (0.65, 0.95), "mouth_dark": (0.03, 0.18),
}
_PROP_LOW, _PROP_HIGH = (np.array(v) for v in zip(*PROPORTIONS.values()))
_HAIR_CDF, _HAIR_STYLE_CDF, _OCCLUDER_CDF = np.cumsum(HAIR_P), np.cumsum(HAIR_STYLE_P), np.cumsum(OCCLUDER_P)


def _pick(cdf: np.ndarray, rng: np.random.Generator) -> int:
    """An index drawn with the probabilities whose running sum is `cdf` (rng.choice is slower)."""
    return min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(cdf) - 1)


def _identity(rng: np.random.Generator) -> dict:
    idn = dict(zip(PROPORTIONS, rng.uniform(_PROP_LOW, _PROP_HIGH).tolist()))
    skin_t = float(rng.beta(1.3, 1.8) * (len(SKIN) - 1))
    k = int(skin_t)
    skin = SKIN[k] + (SKIN[min(k + 1, len(SKIN) - 1)] - SKIN[k]) * (skin_t - k)
    age = float(rng.beta(1.4, 2.8))
    hair_c = HAIR[_pick(_HAIR_CDF, rng)]
    if age > 0.65 and rng.random() < 0.6:
        hair_c = HAIR[6 + rng.integers(2)]
    looks = rng.uniform(0, 1, 8)  # skin tone jitter (3), hair shade, brow shade, asymmetry (2), glasses
    hair_c = np.clip(hair_c * (0.85 + 0.3 * looks[3]), 0, 1).astype(np.float32)
    beard_r = rng.random()
    idn["lip_u"] *= 1.1 - 0.4 * age  # lips thin with age
    idn["lip_l"] *= 1.1 - 0.4 * age
    idn.update({
        "skin_t": skin_t, "skin": np.clip(skin * (0.92 + 0.16 * looks[:3]), 0, 1).astype(np.float32),
        "age": age, "hair": hair_c,
        "hair_style": HAIR_STYLES[_pick(_HAIR_STYLE_CDF, rng)],
        "brow_c": np.clip(hair_c * (0.5 + 0.4 * looks[4]) + 0.02, 0, 1).astype(np.float32),
        "gaze": (rng.normal(0, 0.025), rng.normal(0, 0.012)),
        "glasses": looks[7] < 0.12,
        "beard": "none" if beard_r < 0.86 else "stubble" if beard_r < 0.93 else
                 "moustache" if beard_r < 0.96 else "full",
        "asym": 0.85 + 0.3 * looks[5:7],
    })
    return idn


def _geometry(idn: dict, a: dict, rng: np.random.Generator) -> dict:
    """All expression-dependent points, in the face frame (right side x > 0; left mirrored)."""
    g: dict = {}
    jaw_drop = 0.28 * a[26] + 0.26 * a[27]
    g["jaw_drop"] = jaw_drop

    # Brows: 7 points inner -> outer per side. AU1 lifts the inner, AU2 the outer end; AU4
    # lowers and pulls the inner heads together (with AU1 the inner head rises obliquely).
    t = BROW_T
    brows = []
    for side, asym in zip((-1, 1), idn["asym"]):
        x = idn["brow_in"] + (idn["brow_out"] - idn["brow_in"]) * t - 0.06 * a[4] * (1 - t)
        y = (idn["brow_y"] - idn["brow_arch"] * np.sin(np.pi * np.clip(t * 1.25, 0, 1))
             - asym * (0.22 * a[1] * (1 - t) ** 1.5 + 0.18 * a[2] * t ** 0.8)
             + asym * 0.14 * a[4] * (1 - 0.55 * t) + 0.04 * a[9] * (1 - t) + 0.02 * a[7])
        brows.append(np.stack([side * x, y], 1))
    g["brows"] = brows
    g["brow_th"] = idn["brow_th"] * (1.15 - 0.75 * t)

    # Eyes: lid apertures above/below the eye's centre line.
    h_up = idn["eye_h"] * (1 + 1.3 * a[5] - 0.40 * a[7] - 0.35 * a[6] - 0.25 * a[4] - 0.2 * a[9])
    h_lo = idn["eye_hl"] * (1 - 0.55 * a[6] - 0.55 * a[7] + 0.35 * a[5])
    if rng.random() < 0.06:  # a blink or a downward look, for every class alike
        h_up *= rng.uniform(0.1, 0.5)
    g["eye_up"], g["eye_lo"] = max(h_up, 0.008), max(h_lo, 0.008)
    g["eye_lo_flat"] = a[7]  # AU7 straightens the lower lid

    # Nose: AU9 lifts the wings and nostrils.
    g["nose_y"] = idn["nose_y"] - 0.045 * a[9] - 0.015 * a[10]
    g["nose_w"] = idn["nose_w"] * (1 + 0.15 * a[9] + 0.05 * a[10])

    # Mouth corners and the four lip lines (upper outer/inner, lower inner/outer).
    my = idn["mouth_y"]
    mw = idn["mouth_w"] * (1 + 0.3 * a[12] + 0.35 * a[20] - 0.15 * a[23] - 0.10 * a[24]
                           + 0.05 * a[15] - (0.10 * a[26] + 0.12 * a[27]) * (1 - a[20]))
    cy = my - 0.17 * a[12] + 0.14 * a[15] + 0.03 * a[20] + 0.025 * a[17] + 0.35 * jaw_drop
    # Asymmetry: one corner a little wider and, in a smile, a little higher than the other.
    corners = [np.array([s * mw * k ** 0.3, cy - 0.1 * (k - 1) * a[12]], np.float32)
               for s, k in zip((-1, 1), idn["asym"])]
    g["corners"] = corners
    lip_u = max(0.012, idn["lip_u"] * (1 - 0.45 * a[23] - 0.55 * a[24] - 0.25 * a[12] - 0.35 * a[20]))
    lip_l = max(0.015, idn["lip_l"] * (1 - 0.40 * a[23] - 0.55 * a[24] - 0.20 * a[12] - 0.30 * a[20]
                                        + 0.25 * a[17]))
    up_in = my - 0.005 - 0.07 * a[10] - 0.025 * a[9] - 0.012 * a[25]
    lo_in = (my + 0.005 + 0.05 * a[25] + 0.85 * jaw_drop + 0.07 * a[16] - 0.04 * a[17] * (1 - a[25])
             + 0.02 * a[12] * a[25])
    if a[25] < 0.12 and a[10] < 0.25 and a[16] < 0.3:  # lips together
        lo_in = up_in = my + 0.02 * a[16]
    g["open"] = lo_in - up_in
    g["up_in"] = _lip_curve(*corners, up_in, 2 + 1.5 * a[20] + 1.5 * a[10] + 0.8 * a[12])
    g["lo_in"] = _lip_curve(*corners, lo_in, max(1.2, 2 - 0.7 * a[12] + 2.2 * a[20] + 0.6 * a[16]))
    up_out = _lip_curve(*corners, up_in - lip_u, 1.6 + 0.8 * a[20])
    s = LIP_S
    up_out[:, 1] += idn["bow"] * (np.exp(-(s / 0.13) ** 2) - 0.6 * np.exp(-((np.abs(s) - 0.3) / 0.12) ** 2))
    g["up_out"] = up_out
    g["lo_out"] = _lip_curve(*corners, lo_in + lip_l, 1.7 + 0.8 * a[20])
    return g


# --- drawing -------------------------------------------------------------------------------------
def _light(rng: np.random.Generator) -> tuple[float, float, float, float]:
    az = rng.uniform(-np.pi, np.pi)
    el = rng.uniform(0.15, 0.75)  # horizontal light component strength
    lx, ly = el * math.cos(az), el * math.sin(az) * 0.7 - 0.15  # usually from above
    lz = math.sqrt(max(0.05, 1 - lx * lx - ly * ly))
    return lx, ly, lz, float(rng.uniform(0.25, 0.7))


def _background(cv: _Canvas, rng: np.random.Generator) -> None:
    r = cv.res
    # A smooth gradient: a 3x3 field around a base colour, upsampled (the whole frame in one op).
    base = rng.uniform(0.05, 0.95) * rng.uniform(0.75, 1.25, 3)
    field = np.clip(base + rng.uniform(-1, 1, (3, 3, 3)) * rng.uniform(0.05, 0.35), 0, 1)
    cv.img[:] = cv2.resize(cv.tone(field), (r, r), interpolation=cv2.INTER_LINEAR).reshape(cv.img.shape)
    pad = int(r * 0.05) + 1
    for _ in range(rng.poisson(1.0)):  # clutter: soft rectangles (door frames, shelves, shoulders of others)
        x0, y0 = rng.integers(0, r, 2)
        w, h = rng.integers(r // 8, r // 2, 2)
        x1, y1 = min(x0 + w, r), min(y0 + h, r)
        bx, by = max(x0 - pad, 0), max(y0 - pad, 0)  # only the rectangle and its blurred rim
        m = np.zeros((min(y1 + pad, r) - by, min(x1 + pad, r) - bx), np.float32)
        m[y0 - by:y1 - by + 1, x0 - bx:x1 - bx + 1] = 1.0
        cv.paint(_Mask(_blur(m, r * 0.02), int(by), int(bx), r), rng.uniform(0, 1, 3))


def _face_outline(idn: dict, jaw_drop: float) -> np.ndarray:
    fw, jaw, cw, chin = idn["fw"], idn["jaw"], idn["chin_w"], idn["chin_y"] + jaw_drop
    ctrl = np.array([
        [0, -1.75], [0.62, -1.62], [0.95, -1.15], [1.02, -0.45], [1.03, 0.15], [0.98, 0.55],
        [jaw, 0.95 + 0.4 * jaw_drop], [cw + 0.12, chin - 0.14], [cw * 0.45, chin - 0.01], [0, chin],
    ], np.float32)
    ctrl[:, 0] *= np.where(ctrl[:, 1] < 0.9, fw, 1.0)
    full = np.vstack([ctrl, ctrl[-2:0:-1] * [-1, 1]])
    return _chaikin(full, 3)


def _hair_back(cv: _Canvas, idn: dict, geo: dict, rng: np.random.Generator) -> None:
    # Neck and shoulders first (behind everything of the head).
    chin = idn["chin_y"] + geo["jaw_drop"]
    neck = np.array([[-0.55, 0.6], [0.55, 0.6], [0.62, chin + 0.5], [1.9, chin + 0.9], [2.2, 4],
                     [-2.2, 4], [-1.9, chin + 0.9], [-0.62, chin + 0.5]], np.float32)
    cloth = np.array([[-2.5, chin + 0.75], [-0.7, chin + 0.6], [0, chin + 0.95], [0.7, chin + 0.6],
                      [2.5, chin + 0.75], [2.5, 4], [-2.5, 4]], np.float32)
    dressed = rng.random() < 0.85
    neck_m, *cloth_m = cv.masks([([neck], -0.6, None, 0.01)] + ([([cloth], -0.6, None, 0.01)] if dressed else []))
    cv.paint(neck_m, idn["skin"] * 0.72)
    if dressed:
        cv.paint(cloth_m[0], rng.uniform(0.05, 0.9, 3))
    if idn["hair_style"] == "long":
        back = np.array([[-1.35, -1.4], [0, -1.95], [1.35, -1.4], [1.5, 0.4], [1.45, chin + 0.6],
                         [0.7, chin + 0.3], [-0.7, chin + 0.3], [-1.45, chin + 0.6], [-1.5, 0.4]],
                        np.float32)
        back[:, 0] *= rng.uniform(0.9, 1.15)
        cv.paint(cv.mask([_chaikin(back, 2)], dz=-0.7, blur=0.02), _hair_texture(cv, idn, rng))
    # Ears, at the side of the head behind the face outline.
    ear = _chaikin(np.array([[1.0, -0.05], [1.16, -0.1], [1.2, 0.2], [1.1, 0.52], [0.98, 0.5]], np.float32), 2)
    ears = [ear * [s * idn["fw"], 1] for s in (-1, 1)]
    cv.paint(cv.mask(ears, dz=-0.75, blur=0.01), idn["skin"] * 0.82)


def _hair_texture(cv: _Canvas, idn: dict, rng: np.random.Generator) -> np.ndarray:
    """Hair colour with strands: noise stretched along the (rolled) vertical."""
    r = cv.res
    streak = cv2.resize(rng.uniform(0.6, 1.3, (6, 48)).astype(np.float32), (r, r),
                        interpolation=cv2.INTER_LINEAR)
    glint = cv2.resize(rng.uniform(0.8, 1.2, (3, 3)).astype(np.float32), (r, r), interpolation=cv2.INTER_LINEAR)
    return np.clip(cv.tone(idn["hair"]) * (streak * glint)[..., None] + np.float32(0.015), 0, 1)


def _head(cv: _Canvas, idn: dict, geo: dict, rng: np.random.Generator) -> None:
    r = cv.res
    outline = _face_outline(idn, geo["jaw_drop"])
    geo["outline"] = outline
    m = cv.mask([outline], blur=0.012)
    geo["face_mask"] = m
    # Skin: tone x low-frequency blotches x fine pores.
    # Blotches vary mostly in brightness, a little in hue.
    skin = idn["skin"]
    # Built on a third-resolution grid and upsampled once.
    n = r // 3
    blotch = rng.normal(0, 1, (5, 5, 1)) + rng.normal(0, 0.3, (5, 5, 3))
    blotch = cv2.resize(cv.tone(skin * (1 + 0.06 * blotch)), (n, n), interpolation=cv2.INTER_LINEAR)
    pores = rng.normal(0, 1, (n, n, 1)).astype(np.float32) * ((0.01 + 0.025 * idn["age"]) * cv.tone(skin))
    tex = cv2.resize(blotch.reshape(n, n, -1) + pores, (r, r), interpolation=cv2.INTER_LINEAR)
    cv.paint(m, tex.reshape(cv.img.shape))


def _shading(cv: _Canvas, idn: dict, geo: dict, a: dict, light) -> None:
    """Expression and anatomy shading into the broad / fine / highlight layers."""
    age = idn["age"]
    ex, by = idn["eye_x"], geo["brows"]
    # Eye sockets: darker under the brow ridge and at the inner corners.
    for s in (-1, 1):
        cv.shade_ellipse("broad", (s * ex, -0.08), (0.27, 0.17), idn["socket"])
        cv.shade_ellipse("broad", (s * (ex - 0.2), 0.02), (0.08, 0.1), idn["socket"] * 0.8)
    # Nose: side shadow away from the light, cast shadow under the tip.
    ny, nw = geo["nose_y"], geo["nose_w"]
    side = -1 if light[0] > 0 else 1
    cv.shade_line("broad", np.array([[side * 0.11, -0.05], [side * 0.14, 0.25], [side * (nw + 0.02), ny - 0.05]]),
                  idn["nose_shade"] * (0.5 + abs(light[0])), 0.07, dz=0.15)
    cv.shade_line("broad", np.array([[-side * 0.1, 0.0], [-side * 0.13, 0.25], [-side * (nw + 0.02), ny - 0.05]]),
                  idn["nose_shade"] * 0.4, 0.05, dz=0.15)
    cv.shade_ellipse("broad", (0, ny + 0.06), (nw * 0.9, 0.045), 0.35)
    cv.shade_line("light", np.array([[0, -0.05], [0, ny - 0.15]]), 0.25, 0.06, dz=0.3)  # bridge
    cv.shade_ellipse("light", (0, ny - 0.08), (0.07, 0.06), 0.35, dz=0.35)  # tip
    # Nasolabial folds: deepen with AU6/9/10/12, bow outward with AU12.
    depth = 0.10 + 0.3 * age + 0.45 * a[12] + 0.2 * a[6] + 0.35 * a[10] + 0.3 * a[9] + 0.12 * a[20]
    for s, c in zip((-1, 1), geo["corners"]):
        top = [s * (nw + 0.04), ny - 0.06 - 0.03 * a[9]]
        mid = [s * (abs(c[0]) + 0.10 + 0.08 * a[12]), (ny + c[1]) / 2 - 0.02 * a[12]]
        bot = [s * (abs(c[0]) + 0.07), c[1] + 0.13]
        fold = _chaikin(np.array([top, mid, bot], np.float32), 2, closed=False)
        cv.shade_line("broad", fold, min(depth, 0.7) * 0.8, 0.05)
        cv.shade_line("fine", fold, min(depth, 0.7) * 0.3, 0.012)
        # Cheek apple: lifted and brightened by AU6 and AU12.
        lift = 0.6 * a[6] + 0.4 * a[12]
        cv.shade_ellipse("light", (s * 0.55, 0.38 - 0.08 * lift), (0.2, 0.13), 0.08 + 0.25 * lift)
        cv.shade_line("broad", np.array([[s * 0.3, 0.16 - 0.03 * lift], [s * 0.45, 0.2 - 0.05 * lift],
                                         [s * 0.62, 0.17 - 0.04 * lift]]), 0.3 * a[6] + 0.08 * age, 0.04)
        # Crow's feet (AU6) and the lower-lid bulge (AU6/7).
        ox = s * (ex + idn["eye_w"] + 0.03)
        for k, ang in enumerate((-0.5, 0.0, 0.5)):
            d = np.array([[ox, 0.02 * k - 0.02], [ox + s * 0.12 * math.cos(ang), 0.12 * math.sin(ang)]])
            cv.shade_line("fine", d, 0.55 * a[6] + 0.15 * age, 0.012)
        under = np.array([[s * (ex - 0.15), 0.09], [s * ex, 0.12], [s * (ex + 0.15), 0.08]])
        cv.shade_line("fine", under - [0, 0.03 * a[6]], 0.3 * a[6] + 0.3 * a[7] + 0.15 * age, 0.015)
        # Marionette lines (AU15), corner dimples / stretch (AU12, AU20), lip press bulges (AU24).
        cv.shade_line("fine", np.array([c + [s * 0.02, 0.02], c + [s * 0.06, 0.16]]),
                      0.5 * a[15] + 0.15 * age, 0.015)
        cv.shade_line("fine", np.array([c + [s * 0.03, -0.03], c + [s * 0.07, 0.03]]),
                      0.4 * a[12] + 0.4 * a[20], 0.012)
    # Forehead: AU1 wrinkles in the middle, AU2 at the sides, both curved like the brows.
    for k in range(3):
        yy = min(geo["brows"][0][0, 1], geo["brows"][1][0, 1]) - 0.13 - 0.09 * k
        xs = FOREHEAD_X
        for part, wgt in ((np.abs(xs) < 0.32, a[1]), (np.abs(xs) > 0.2, a[2])):
            pts = np.stack([xs, yy - 0.03 * np.cos(xs * 2.5) - 0.015 * k], 1)[part]
            cv.shade_line("fine", pts, 0.55 * wgt + 0.12 * age, 0.014)
    # Brow furrows (AU4): vertical lines between the brows; horizontal at the nose root with AU9.
    bi = [b[0] for b in by]
    for s, p in zip((-1, 1), bi):
        cv.shade_line("fine", np.array([[p[0] * 0.55 + s * 0.01, p[1] - 0.08], [s * 0.04, p[1] + 0.1]]),
                      0.65 * a[4] + 0.05 * age, 0.016)
    cv.shade_ellipse("broad", (0, (bi[0][1] + bi[1][1]) / 2 + 0.02), (0.08, 0.05), 0.25 * a[4])
    for k in range(3):
        cv.shade_line("fine", np.array([[-0.1, -0.02 + 0.05 * k], [0, -0.03 + 0.05 * k], [0.1, -0.02 + 0.05 * k]]),
                      0.55 * a[9], 0.013, dz=0.15)
    # Below the mouth: mentolabial sulcus (deeper with AU17) and the chin boss (AU17).
    lo = geo["lo_out"]
    chin = idn["chin_y"] + geo["jaw_drop"]
    sulcus = np.array([[lo[3, 0] * 0.7, lo[7, 1] + 0.07], [0, lo[7, 1] + 0.09], [lo[-4, 0] * 0.7, lo[7, 1] + 0.07]])
    cv.shade_line("broad", sulcus, 0.25 + 0.35 * a[17], 0.04)
    cv.shade_ellipse("light", (0, chin - 0.17 - 0.04 * a[17]), (0.16, 0.08), 0.1 + 0.25 * a[17])


def _eyes(cv: _Canvas, idn: dict, geo: dict, a: dict) -> None:
    # Both eyes, all their parts: one projection and one shared rectangle for the masks.
    ex, ew, up, lo = idn["eye_x"], idn["eye_w"], geo["eye_up"], geo["eye_lo"]
    t = EYE_T
    iris_col = np.array([0.08, 0.06, 0.05], np.float32) + idn["iris_c"] * np.array([0.3, 0.22, 0.15], np.float32)
    base = idn["tilt"] * t - 0.01 * a[6]
    upper_y = base - up * np.sin(np.pi * t ** 0.85)
    lower_y = base + lo * np.clip(np.sin(np.pi * t ** 1.1), 0, 1) ** (1 + 2 * geo["eye_lo_flat"])
    uppers, lowers, eyes, centres = [], [], [], []
    for s in (-1, 1):
        x = s * (ex - ew + 2 * ew * t)  # inner corner -> outer corner
        uppers.append(np.stack([x, upper_y], 1))
        lowers.append(np.stack([x, lower_y], 1))
        eyes.append(np.vstack([uppers[-1], lowers[-1][::-1]]))
        centres.append(np.array([s * ex + idn["gaze"][0], idn["gaze"][1] + 0.005], np.float32))
    catch = [c + [-0.025, -0.025] + CIRCLE * 0.018 for c in centres]
    sclera, iris, pupil, lid_shadow, lash, lower_lid, catch_light = cv.masks([
        (eyes, -0.05, None, 0.0), ([c + CIRCLE * idn["iris"] for c in centres], -0.05, None, 0.0),
        ([c + CIRCLE * idn["iris"] * 0.45 for c in centres], -0.05, None, 0.0),
        (uppers, -0.05, 0.05, 0.012), (uppers, -0.04, 0.028, 0.004), (lowers, -0.04, 0.012, 0.004),
        (catch, -0.05, None, 0.0)])
    cv.paint(sclera, np.clip(idn["skin"] * 0.3 + idn["sclera"], 0, 1))
    cv.paint(sclera * iris, iris_col)
    cv.paint(sclera * pupil, (0.02, 0.02, 0.02))
    # The lid's shadow on the eyeball, the lash line, the lower lid, the crease, a catch-light.
    cv.paint(lid_shadow * sclera, iris_col * 0.4, 0.6)
    cv.paint(lash, idn["brow_c"] * 0.4)
    cv.paint(lower_lid, idn["skin"] * 0.5, 0.45)
    for upper in uppers:
        crease = upper[2:-2] - [0, 0.05 + 0.02 * a[5] - 0.02 * a[7]]
        cv.shade_line("fine", crease, 0.25 * (1 - 0.7 * a[5]), 0.015)
    cv.paint(catch_light, (0.9, 0.9, 0.9), 0.8)


def _brows(cv: _Canvas, idn: dict, geo: dict) -> None:
    th = geo["brow_th"][:, None]
    polys = []
    for b in geo["brows"]:
        polys.append(np.vstack([b - [0, 1] * th * 0.5, (b + [0, 1] * th * 0.5)[::-1]]))
    m = cv.mask(polys, dz=0.02, blur=0.012)
    cv.paint(m, idn["brow_c"], idn["brow_a"])


def _nose(cv: _Canvas, idn: dict, geo: dict) -> None:
    ny, nw = geo["nose_y"], geo["nose_w"]
    nostril = _chaikin(np.array([[nw * 0.25, 0], [nw * 0.55, -0.035], [nw * 0.8, -0.005], [nw * 0.55, 0.02]],
                                np.float32), 2)
    cv.paint(cv.mask([nostril * [s, 1] + [0, ny] for s in (-1, 1)], dz=0.2, blur=0.008), idn["skin"] * 0.25, 0.8)
    for s in (-1, 1):
        wing = np.array([[s * nw * 0.75, ny - 0.13], [s * nw * 1.05, ny - 0.06], [s * nw * 0.95, ny + 0.01]])
        cv.shade_line("fine", wing, 0.35, 0.02, dz=0.12)


def _mouth(cv: _Canvas, idn: dict, geo: dict, a: dict, rng: np.random.Generator) -> None:
    skin = idn["skin"]
    lip_col = np.clip(skin * np.array([0.88, 0.68, 0.66]) + [idn["lip_red"], 0, 0], 0, 1)
    lips = np.vstack([geo["up_out"], geo["lo_out"][::-1]])
    # The lower lip's bottom edge is a soft shadow, its top a faint highlight.
    cv.shade_line("broad", geo["lo_out"][3:-3] + [0, 0.025], 0.35, 0.03, dz=0.1)
    cv.shade_line("light", geo["lo_out"][4:-4] - [0, 0.03], 0.2, 0.025, dz=0.12)
    # Lip-press bulges: skin above and below the lips bunches up.
    if a[24] + a[23] > 0.2:
        cv.shade_line("fine", geo["up_out"][3:-3] - [0, 0.04], 0.25 * (a[23] + a[24]), 0.015)
    if geo["open"] <= 0.012:
        # Closed lips: a dark line between them, darker when pressed (AU24).
        lip_m, line = cv.masks([([lips], 0.12, None, 0.008),
                                ([geo["up_in"]], 0.12, 0.012 + 0.008 * a[24], 0.004)])
        cv.paint(lip_m, lip_col)
        cv.paint(line * (0.6 + 0.3 * a[24]), lip_col * 0.3)
        return
    up_in, lo_in = geo["up_in"], geo["lo_in"]
    teeth_h = 0.075
    shapes = [([lips], 0.12, None, 0.008), ([np.vstack([up_in, lo_in[::-1]])], 0.1, None, 0.0),
              ([np.vstack([up_in, (up_in + [0, teeth_h])[::-1]])], 0.1, None, 0.004),
              ([np.vstack([lo_in, (lo_in - [0, 0.05])[::-1]])], 0.1, None, 0.004)]
    if geo["open"] > 0.12:  # tongue, low in a wide-open mouth
        tongue = np.array([[lo_in[3, 0], lo_in[3, 1] - 0.02], [0, lo_in[7, 1] - 0.09],
                           [lo_in[-4, 0], lo_in[-4, 1] - 0.02], [0, lo_in[7, 1] + 0.02]], np.float32)
        shapes.append(([_chaikin(tongue, 2)], 0.1, None, 0.01))
    lip_m, inner, upper_t, lower_t, *tongue_m = cv.masks(shapes)
    cv.paint(lip_m, lip_col)
    cv.paint(inner, np.array([0.35, 0.08, 0.08]) * idn["mouth_dark"] + idn["mouth_dark"] * 0.5)
    # Teeth darken toward the corners (the buccal corridor).
    (cx0, _), (cx1, _) = cv.pose(np.array([geo["corners"][0], geo["corners"][1]]), 0.1)
    u = (np.arange(cv.res, dtype=np.float32) - (cx0 + cx1) / 2) / max(abs(cx1 - cx0) / 2, 1)
    corridor = np.broadcast_to(np.clip(1 - 0.8 * u ** 2, 0, 1)[None, :], (cv.res, cv.res))
    cv.paint(upper_t * inner * corridor, np.full(3, idn["teeth"]) * [1, 0.97, 0.9])
    lower_vis = min(1.0, a[16] + 0.7 * a[20] + 0.4 * a[10] + rng.uniform(0, 0.4))
    cv.paint(lower_t * inner * corridor * lower_vis, np.full(3, idn["teeth"] * 0.85) * [1, 0.97, 0.9])
    if tongue_m:
        cv.paint(tongue_m[0] * inner, np.array([0.55, 0.25, 0.25]) * skin.mean() + 0.05, 0.8)


def _beard(cv: _Canvas, idn: dict, geo: dict, rng: np.random.Generator) -> None:
    kind = idn["beard"]
    if kind == "none":
        return
    r = cv.res
    noise = cv2.resize(rng.uniform(0.6, 1.0, (r // 6, r // 6)).astype(np.float32), (r, r))
    lips = np.vstack([geo["up_out"], geo["lo_out"][::-1]])
    lips_m = cv.mask([lips], dz=0.12, blur=0.01).full()
    ny = geo["nose_y"]
    c0, c1 = geo["corners"]
    moustache = np.array([[c0[0] - 0.05, c0[1] + 0.02], [c0[0], ny + 0.06], [c1[0], ny + 0.06],
                          [c1[0] + 0.05, c1[1] + 0.02], *geo["up_out"][::-1]], np.float32)
    if kind == "moustache":
        m, alpha = cv.mask([moustache], dz=0.1, blur=0.015), 0.8
    else:
        o = geo["outline"]
        lower = o[o[:, 1] > 0.35]
        lower = lower[np.argsort(np.arctan2(lower[:, 1] - 0.4, lower[:, 0]))]
        jaw = np.vstack([lower, [[lower[-1, 0] * 0.7, ny + 0.03], [lower[0, 0] * 0.7, ny + 0.03]]])
        m = cv.mask([jaw], blur=0.03) * geo["face_mask"]
        alpha = rng.uniform(0.25, 0.5) if kind == "stubble" else rng.uniform(0.7, 0.95)
    cv.paint(m * (1 - lips_m) * noise * alpha, idn["hair"] * 0.8)


def _apply_layers(cv: _Canvas, idn: dict, geo: dict, light) -> None:
    """Blur and apply the shade/highlight layers and Lambertian light on the head ellipsoid."""
    cv.flush_strokes()
    unit, r, p = cv.pose.unit, cv.res, cv.pose
    broad = _blur(cv.broad, 0.035 * unit)
    fine = _blur(cv.fine, 0.007 * unit)
    hl = _blur(cv.light, 0.04 * unit)
    # Head normals on a coarse grid (light varies slowly): undo placement and roll around the
    # projected centre of the head ellipsoid.
    c = p(np.float32([[0.0, 0.3]]), -0.9)[0]
    n = r // 4
    g = (np.arange(n, dtype=np.float32) + 0.5) * (r / n)
    du, dv = (g[None, :] - c[0]) / unit, (g[:, None] - c[1]) / unit
    nx = (du * p.cr + dv * p.sr) / (1.15 * idn["fw"])
    ny = (-du * p.sr + dv * p.cr) / 1.8
    nz = np.sqrt(np.clip(1 - nx * nx - ny * ny, 0.0, 1.0))
    lx, ly, lz, amb = light
    lx, ly = lx * p.cr + ly * p.sr, -lx * p.sr + ly * p.cr
    lam = amb + (1 - amb) * np.clip(nx * lx + ny * ly + nz * lz, 0, 1)
    lam = cv2.resize(lam, (r, r), interpolation=cv2.INTER_LINEAR)
    face = geo["face_mask"].full()
    shade = (1 - np.minimum(broad, 0.85)) * (1 - np.minimum(fine, 0.85))
    # Light falls on the whole person (hair, ears, neck) too, and partly on the background;
    # shading and highlights only on the face. out = img * gain + h, h the highlight's share.
    lit = 0.55 + 0.45 * lam
    gain = (lit + face * (lam - lit)) * (1 + face * (shade - 1))
    h = 0.6 * hl * face * lam
    cv.img = cv.img * (gain * (1 - h))[..., None] + h[..., None]


def _hair_front(cv: _Canvas, idn: dict, rng: np.random.Generator) -> None:
    style = idn["hair_style"]
    if style == "bald":
        return
    fw, hl = idn["fw"], idn["hair_line"]
    if style == "hat":
        top = np.array([[-1.6, -3], [1.6, -3], [1.5, hl + 0.1], [0, hl + 0.2], [-1.5, hl + 0.1]], np.float32)
        cv.paint(cv.mask([_chaikin(top, 2)], blur=0.01), rng.uniform(0.05, 0.9, 3))
        return
    if style == "bangs":
        by = idn["bangs_y"]
        line = [[-1.0 * fw, -0.3], [-0.5, by], [0, by + rng.uniform(-0.05, 0.05)], [0.5, by], [1.0 * fw, -0.3]]
    elif style == "swept":
        s = 1 if rng.random() < 0.5 else -1
        line = [[-1.0 * fw, -0.35], [-0.6 * s, hl + 0.35], [0.1 * s, hl + 0.05], [0.6 * s, hl - 0.1],
                [1.0 * fw, -0.4]]
        if s < 0:
            line = line[::-1]
    else:
        line = [[-1.0 * fw, -0.35], [-0.85 * fw, hl + 0.05], [0, hl], [0.85 * fw, hl + 0.05], [1.0 * fw, -0.35]]
    sides = 0.55 if style == "long" else -0.15
    poly = np.array([[-1.25 * fw, sides], *line, [1.25 * fw, sides], [1.3, -2.4], [-1.3, -2.4]], np.float32)
    m = cv.mask([_chaikin(poly, 3)], blur=0.015)
    cv.paint(m, _hair_texture(cv, idn, rng))


def _glasses(cv: _Canvas, idn: dict, rng: np.random.Generator) -> None:
    if not idn["glasses"]:
        return
    ex, ew = idn["eye_x"], idn["eye_w"]
    w, h = ew * rng.uniform(1.2, 1.5), rng.uniform(0.1, 0.16)
    rims = []
    for s in (-1, 1):
        box = np.array([[s * ex - w, -h], [s * ex + w, -h * 1.1], [s * ex + w, h * 0.9], [s * ex - w, h]], np.float32)
        rims.append(_chaikin(box, 3))
    frame = rng.uniform(0.0, 0.35, 3) if rng.random() < 0.8 else rng.uniform(0.5, 1.0, 3)
    cv.paint(cv.mask(rims, dz=0.15), (1, 1, 1), rng.uniform(0.0, 0.12))  # reflections on the lenses
    bars = [np.vstack([r, r[:1]]) for r in rims]
    bars += [np.array([[-ex + w, -h * 0.5], [0, -h * 0.8], [ex - w, -h * 0.5]]),
             np.array([[-ex - w, -h * 0.8], [-1.05 * idn["fw"], -0.08]]),
             np.array([[ex + w, -h * 0.8], [1.05 * idn["fw"], -0.08]])]
    cv.paint(cv.line_mask(bars, rng.uniform(0.015, 0.045), dz=0.15, blur=0.005), frame)


def _occluder(cv: _Canvas, idn: dict, rng: np.random.Generator) -> str:
    kind = OCCLUDERS[_pick(_OCCLUDER_CDF, rng)]
    r = cv.res
    if kind == "hand":
        # A palm with fingers, entering from the bottom or a side of the frame, skin-coloured.
        cx, cy = rng.uniform(0.15, 0.85) * r, rng.uniform(0.55, 1.0) * r
        ang = rng.uniform(-0.8, 0.8) - np.pi / 2
        m = np.zeros((r, r), np.float32)
        pw = r * rng.uniform(0.12, 0.2)
        cv2.ellipse(m, (int(cx), int(cy)), (int(pw), int(pw * 1.3)), math.degrees(ang) + 90, 0, 360, 1.0, -1)
        for k in range(4):
            fa = ang + (k - 1.5) * 0.22
            tip = (int(cx + math.cos(fa) * pw * 2.2), int(cy + math.sin(fa) * pw * 2.2))
            cv2.line(m, (int(cx), int(cy)), tip, 1.0, max(2, int(pw * 0.38)))
        cv.paint(_Mask(_blur(m, r * 0.01)), idn["skin"] * rng.uniform(0.75, 1.05))
    elif kind == "bar":
        m = np.zeros((r, r), np.float32)
        x0, y0 = rng.integers(0, r, 2)
        cv2.rectangle(m, (int(x0), int(y0)), (int(x0 + rng.integers(r // 10, r // 2)),
                                              int(y0 + rng.integers(r // 10, r // 2))), 1.0, -1)
        cv.paint(_Mask(_blur(m, r * 0.005)), rng.uniform(0, 1, 3))
    elif kind == "blob":
        m = np.zeros((r, r), np.float32)
        c = rng.integers(0, r, 2)
        cv2.ellipse(m, (int(c[0]), int(c[1])), (int(rng.integers(r // 12, r // 4)), int(rng.integers(r // 12, r // 4))),
                    float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        cv.paint(_Mask(_blur(m, r * 0.02)), rng.uniform(0, 1, 3))
    return kind


def _watermark(cv: _Canvas, rng: np.random.Generator) -> bool:
    """Stock-photo style text stamped across the image (common in web-crawled face sets)."""
    if rng.random() >= 0.12:
        return False
    r = cv.res
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    text = "".join(letters[i] for i in rng.integers(0, len(letters), rng.integers(4, 10)))
    m = np.zeros((r, r), np.uint8)
    org = (int(rng.uniform(-0.2, 0.5) * r), int(rng.uniform(0.2, 0.95) * r))
    cv2.putText(m, text, org, cv2.FONT_HERSHEY_SIMPLEX, r / 110 * rng.uniform(0.6, 1.2), 255,
                max(1, r // 60), cv2.LINE_AA)
    cv.paint(_Mask(m.astype(np.float32) * (rng.uniform(0.3, 0.8) / 255)), np.full(3, 1.0 if rng.random() < 0.7 else 0.0))
    return True


def _camera(img: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Optics and sensor: blur, downsample, tone, noise, JPEG, mirror. A grey canvas (one
    channel) gives a grey photo, returned as three equal channels."""
    res, grey = img.shape[0], img.shape[2] == 1
    blur = float(rng.uniform(0.25, 1.3))  # in output pixels
    img = _blur(img, blur * res / size)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)  # (size, size) if grey
    if not grey:
        # Saturation, then per-channel gains (colour balance): one 3x3 linear map.
        sat = rng.uniform(0.6, 1.2)
        mix = sat * np.eye(3) + (1 - sat) / 3
        img = cv2.transform(img, (rng.uniform(0.9, 1.1, 3)[:, None] * mix).astype(np.float32))
    # Web photos are mostly exposed to use the whole range: stretch the 1..99 % levels to a
    # random range (partly), then tone: gamma, contrast, brightness. The levels come from every
    # other pixel and row (np.percentile on the whole image costs as much as a face's eyes).
    v = np.sort(img[::2, ::2], axis=None)
    lo, hi = float(v[round(0.01 * (len(v) - 1))]), float(v[round(0.99 * (len(v) - 1))])
    k = float(rng.uniform(0.4, 1.0))
    target = rng.uniform(0.0, 0.15), rng.uniform(0.8, 1.0)
    scale = k * (target[1] - target[0]) / max(hi - lo, 1e-3)
    img = img * (1 - k + scale) + (k * target[0] - lo * scale)  # img + k * (stretched - img)
    gamma = math.exp(_clamp(rng.normal(0, 0.2), 0.4))
    contrast = float(rng.uniform(0.75, 1.3))
    bright = float(rng.normal(0, 0.05))
    img = cv2.pow(np.clip(img, 0, 1, out=img), gamma)
    mean = float(img.mean())
    img = img * contrast + (mean * (1 - contrast) + bright)
    noise = float(rng.uniform(0, 0.025) ** 1.5 / 0.025 ** 0.5)  # mostly clean
    # Uniform noise of that standard deviation: under JPEG indistinguishable from Gaussian at
    # these levels, and a quarter of the cost to draw.
    img += (rng.random(img.shape, dtype=np.float32) - 0.5) * np.float32(noise * 12 ** 0.5)
    out = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    quality = int(rng.integers(25, 96)) if rng.random() < 0.7 else 100
    if quality < 100:
        ok, buf = cv2.imencode(".jpg", out if grey else out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if grey else cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    flip = bool(rng.random() < 0.5)
    if flip:
        out = out[:, ::-1]
    out = np.repeat(out[..., None], 3, axis=2) if grey else np.ascontiguousarray(out)
    params = {"blur": round(blur, 3), "gamma": round(gamma, 3), "contrast": round(contrast, 3),
              "brightness": round(bright, 3), "noise": round(noise, 4), "jpeg": quality, "flip": int(flip)}
    return out, params
