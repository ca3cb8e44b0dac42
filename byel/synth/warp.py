"""Warp backend: expressions synthesised from real neutral faces.

Each source face keeps its own identity, skin and photographic look; only the expression is
made. The AU intensities become displacements of the face's 68 landmarks (plus a few derived
cheek and forehead points), expressed in a face frame scaled by the inter-ocular distance (IOD),
so every deformation lands on the right feature whatever the face size or roll. Gaussian bumps
at the control points are blended as a weighted mean, so overlapping bumps interpolate the
displacements instead of adding up, and the image is resampled by backward mapping. Open
mouths get an interior (cavity, teeth, tongue); wrinkles and folds are drawn as soft shading.

Everything that is not expression — resampling, warp jitter, pose, flip, blur, noise, tone,
JPEG, occluders — is drawn identically for every class, so a classifier can only separate the
classes by the expression (see docs: generator notes).
"""

from __future__ import annotations

import cv2
import numpy as np

from byel.config import GenerateConfig
from byel.synth.au import AUS
from byel.synth.landmarks import FaceSet, load_faces
from byel.synth.retouch import appearance_cues, blend_field, control_points, mouth_interior

# --- landmark groups (iBUG 68-point scheme, 0-based; "left" = image left) -----------------
BROWS = np.arange(17, 27)
BROW_INNER = np.array([0, .25, .5, .75, 1, 1, .75, .5, .25, 0])  # 1 at the inner brow heads
UPPER_LID = [37, 38, 43, 44]
LOWER_LID = [40, 41, 46, 47]
EYE_OUTER = [36, 45]
NOSE_WING = [31, 35]
NOSE_BASE = [32, 33, 34]
CORNERS = [48, 54, 60, 64]
UPPER_LIP_OUT = [50, 51, 52]
UPPER_LIP_IN = [61, 62, 63]
LOWER_LIP_OUT = [56, 57, 58]
LOWER_LIP_IN = [65, 66, 67]
LIP_NEAR_CORNER = [49, 53, 55, 59]
CHEEK, FOREHEAD = [68, 69], np.arange(70, 80)  # derived control points, after the 68
N_CTRL = 80

# Side of the face midline of each control point: -1 image left, +1 image right, 0 midline.
SIDE = np.zeros(N_CTRL, np.float32)
SIDE[[*range(0, 8), *range(17, 22), 31, 32, *range(36, 42), 48, 49, 50, 58, 59, 60, 61, 67, 68,
      *range(70, 75)]] = -1
SIDE[[*range(9, 17), *range(22, 27), 34, 35, *range(42, 48), 52, 53, 54, 55, 56, 63, 64, 65, 69,
      *range(75, 80)]] = 1

# RBF width per control point, in IOD: wide for brows, cheeks and jaw, narrow for lids and lips
# so that neighbouring features (upper vs lower lid, upper vs lower lip) can move apart.
SIGMA = np.full(N_CTRL, 0.22, np.float32)
SIGMA[0:17] = 0.30
SIGMA[36:48] = 0.09
SIGMA[48:60] = 0.14
SIGMA[60:68] = 0.10
SIGMA[27:36] = 0.16
SIGMA[CHEEK] = 0.30
SIGMA[FOREHEAD] = 0.35
JITTER = 0.012  # IOD; warp noise on every control point, so no image leaves the warp untouched
DEFAULT_STRENGTH = GenerateConfig.warp_strength  # multiple of the FACS magnitudes (see there)


def au_displacements(aus: dict[int, float]) -> np.ndarray:
    """(N_CTRL, 2) control-point displacements in the face frame, IOD units: +u towards the
    image right, +v down. Directions follow the FACS descriptions; magnitudes at intensity 1 were
    tuned by the real-face transfer probe (larger smiles, brows and lip raises transferred better)."""
    a = {au: aus.get(au, 0.0) for au in AUS}
    d = np.zeros((N_CTRL, 2), np.float32)
    u, v = d[:, 0], d[:, 1]  # views
    out = SIDE  # multiply a u-displacement by this to point it away from the midline
    inner, outer = BROW_INNER, 1 - BROW_INNER

    # Brows: 1 raises the inner heads (oblique), 2 the outer parts, 4 lowers and knits them.
    v[BROWS] += -0.22 * a[1] * inner - 0.17 * a[2] * (0.3 + 0.7 * outer)
    v[BROWS] += 0.12 * a[4] * (0.5 + 0.5 * inner) + 0.05 * a[9] * inner
    u[BROWS] += -out[BROWS] * (0.09 * a[4] * inner - 0.02 * a[1] * inner)
    # Lids: 5 opens, 6 and 7 narrow from below (7 also lowers the upper lid), 4 presses down.
    v[UPPER_LID] += -0.09 * a[5] + 0.035 * a[7] + 0.015 * a[6] + 0.02 * a[4]
    v[LOWER_LID] += -0.06 * a[6] - 0.06 * a[7] - 0.03 * a[9] - 0.02 * a[12]
    v[EYE_OUTER] += -0.02 * a[6]
    v[CHEEK] += -0.12 * a[6] - 0.09 * a[12] - 0.03 * a[10] + 0.05 * a[26]
    # Nose: 9 wrinkles (wings and base up), 10 lifts the wings a little, 12 widens them.
    v[NOSE_WING] += -0.07 * a[9] - 0.03 * a[10]
    u[NOSE_WING] += out[NOSE_WING] * (0.02 * a[9] + 0.02 * a[12])
    v[NOSE_BASE] += -0.05 * a[9] - 0.02 * a[10]
    v[[29, 30]] += -0.03 * a[9]
    # Upper lip: 10 raises it (most at the centre), 9 drags it up, 25/26 open from above.
    v[UPPER_LIP_OUT + UPPER_LIP_IN] += -0.14 * a[10] - 0.05 * a[9]
    v[[49, 53]] += -0.09 * a[10] - 0.03 * a[9]
    v[UPPER_LIP_IN] += -0.04 * a[25] - 0.02 * a[26]
    v[UPPER_LIP_OUT] += 0.03 * a[23] + 0.04 * a[24] + 0.01 * a[20]
    # Lip corners: 12 up and out, 15 down, 20 sideways, 23 and 27 in, 26 down.
    u[CORNERS] += out[CORNERS] * (0.13 * a[12] + 0.14 * a[20] - 0.04 * a[23] - 0.015 * a[24]
                                  - 0.02 * a[26] - 0.05 * a[27])
    v[CORNERS] += -0.15 * a[12] + 0.12 * a[15] + 0.025 * a[20] + 0.08 * a[26] + 0.08 * a[27]
    u[LIP_NEAR_CORNER] += out[LIP_NEAR_CORNER] * (0.07 * a[12] + 0.08 * a[20])
    v[LIP_NEAR_CORNER] += -0.08 * a[12] + 0.07 * a[15]
    # Lower lip and jaw: 16 pulls the lower lip down, 17 pushes it and the chin up,
    # 25 parts the lips, 26/27 drop the jaw (the chin most, the jaw angle least).
    low = LOWER_LIP_OUT + LOWER_LIP_IN
    v[low] += (0.09 * a[16] - 0.045 * a[17] + 0.07 * a[25]
               + 0.30 * a[26] + 0.22 * a[27])
    v[LOWER_LIP_OUT] += -0.03 * a[23] - 0.04 * a[24] - 0.01 * a[20]
    v[[55, 59]] += 0.05 * a[16] + 0.22 * a[26] + 0.16 * a[27]
    jaw = 0.30 * a[26] + 0.25 * a[27]
    for idx, w in (([8], 1.0), ([7, 9], 0.92), ([6, 10], 0.72), ([5, 11], 0.45), ([4, 12], 0.2)):
        v[idx] += w * jaw
    v[[7, 8, 9]] += -0.05 * a[17]
    # Forehead skin follows the brows halfway (brow raises fold it: see forehead lines).
    d[FOREHEAD] += 0.5 * d[BROWS]
    return d


class WarpBackend:
    """Renders labelled expressions by warping real neutral faces (see module docstring)."""

    name = "warp"

    def __init__(self, sources, size: int = 64, grey: bool = False, seed: int = 0,
                 progress: bool = True, strength: float = DEFAULT_STRENGTH):
        self.size = int(size)
        # Multiplies every AU displacement (see DEFAULT_STRENGTH).
        self.strength = float(strength)
        self.grey = bool(grey)
        self.seed = seed  # rendering randomness comes from render()'s rng; kept for the manifest
        faces: FaceSet = load_faces(sources, progress=progress)
        self.names = faces.names
        self.images = faces.images
        self.landmarks = faces.landmarks
        self.stats = faces.stats
        # Warp at up to 4x the output size, then shrink: the same resampling path for all.
        self.work = max(self.size, min(4 * self.size, 256))

    # -- rendering -----------------------------------------------------------------------
    def render(self, emotion: str, aus: dict[int, float],
               rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        W = self.work
        i = int(rng.integers(len(self.images)))
        src = self.images[i]
        if self.grey and src.ndim == 3:
            src = cv2.cvtColor(src, cv2.COLOR_RGB2GRAY)
        k = W / src.shape[0]
        pts = (self.landmarks[i] + 0.5) * k - 0.5

        eye_r, eye_l = pts[36:42].mean(0), pts[42:48].mean(0)
        iod = float(np.linalg.norm(eye_l - eye_r))
        ex = (eye_l - eye_r) / iod
        ey = np.array([-ex[1], ex[0]], np.float32)
        ctrl = control_points(pts, iod, ex, ey)

        disp = au_displacements(aus) * self.strength
        disp += rng.normal(0, JITTER, disp.shape).astype(np.float32)
        disp_px = (disp[:, :1] * ex + disp[:, 1:] * ey) * iod
        target = ctrl + disp_px

        # Nuisance pose (roll, scale, shift, flip) is composed into the same backward map, so
        # the expression warp and the pose cost one resampling.
        roll, scale, shift, flip, fwd = draw_pose(rng, W)
        inv = cv2.invertAffineTransform(fwd)

        g = W // 4
        gy, gx = np.mgrid[0:g, 0:g].astype(np.float32)
        grid = np.stack([gx, gy], -1).reshape(-1, 2) * (W / g) + (W / g - 1) / 2
        x = grid @ inv[:, :2].T + inv[:, 2]
        srcpos = x + blend_field(x, target, SIGMA * iod, -disp_px)
        maps = cv2.resize(srcpos.reshape(g, g, 2).astype(np.float32), (W, W),
                          interpolation=cv2.INTER_LINEAR)
        big = cv2.resize(src, (W, W), interpolation=cv2.INTER_CUBIC)
        img = cv2.remap(big, maps[..., 0], maps[..., 1], cv2.INTER_CUBIC,
                        borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        if img.ndim == 2:
            img = img[..., None]

        out_pts = target @ fwd[:, :2].T + fwd[:, 2]
        s_iod = iod * scale
        cue = float(rng.uniform(0.6, 1.2))
        img, mouth = mouth_interior(img, out_pts, s_iod, aus, rng)
        img = appearance_cues(img, out_pts, s_iod, aus, cue, rng)

        img, params = finish(shrink(img, self.size), flip, rng)
        params = {"source": self.names[i], "roll": round(roll, 2), "scale": round(scale, 3),
                  "shift_x": round(float(shift[0] / W), 3),
                  "shift_y": round(float(shift[1] / W), 3),
                  "flip": int(flip), "cue_strength": round(cue, 3), **mouth, **params}
        return img, params

    def __repr__(self) -> str:
        return f"WarpBackend({self.stats['n_used']} faces, size={self.size}, strength={self.strength})"


def draw_pose(rng: np.random.Generator, W: int):
    """Nuisance pose of a W px work image, drawn the same way for every class (and backend):
    (roll deg, scale, shift px (2,), flip, forward 2x3 affine about the image centre)."""
    roll = float(np.clip(rng.normal(0, 6), -15, 15))
    scale = float(rng.uniform(0.95, 1.12))
    shift = rng.uniform(-0.04, 0.04, 2) * W
    flip = bool(rng.random() < 0.5)
    fwd = cv2.getRotationMatrix2D((W / 2 - 0.5, W / 2 - 0.5), roll, scale)
    fwd[:, 2] += shift
    return roll, scale, shift, flip, fwd


def shrink(img: np.ndarray, size: int) -> np.ndarray:
    """Work image -> output size (area average), always (H, W, C)."""
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img[..., None] if img.ndim == 2 else img


def finish(img: np.ndarray, flip: bool, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Flip and photometric nuisances (the same for every class), then uint8 RGB."""
    if flip:
        img = img[:, ::-1]
    img, params = _photometric(img, rng)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img), params


def _photometric(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Blur, tone, noise, occluder and JPEG, drawn the same way for every class."""
    S = img.shape[0]
    blur = float(rng.uniform(0.3, 1.1)) if rng.random() < 0.4 else 0.0
    if blur:
        img = cv2.GaussianBlur(img, (0, 0), blur * S / 48)
        if img.ndim == 2:
            img = img[..., None]
    occ = 0
    if rng.random() < 0.12:
        occ = 1
        m = np.zeros((S, S), np.float32)
        c = tuple(np.round(rng.uniform(0, S, 2) * 16).astype(int))
        axes = tuple(np.round(rng.uniform(0.1, 0.3, 2) * S * 16).astype(int))
        cv2.ellipse(m, c, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA, 4)
        m = cv2.GaussianBlur(m, (0, 0), 0.02 * S)[..., None]
        tone = rng.uniform(20, 235) + rng.normal(0, 6, (S, S, 1)).astype(np.float32)
        img = img * (1 - m) + tone * m
    gamma = float(np.exp(rng.uniform(-0.3, 0.3)))
    contrast = float(rng.uniform(0.75, 1.25))
    bright = float(rng.normal(0, 10))
    x = 255 * (np.clip(img, 0, 255) / 255) ** gamma
    img = (x - x.mean()) * contrast + x.mean() + bright
    noise = float(rng.uniform(0, 6)) if rng.random() < 0.5 else 0.0
    if noise:
        img = img + rng.normal(0, noise, img.shape[:2] + (1,)).astype(np.float32)
    quality = int(rng.integers(30, 96)) if rng.random() < 0.6 else 0
    if quality:
        u8 = np.clip(img, 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, quality])
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).astype(np.float32)
        if img.ndim == 2:
            img = img[..., None]
    return img, {"blur": round(blur, 3), "occluder": occ, "gamma": round(gamma, 3),
                 "contrast": round(contrast, 3), "brightness": round(bright, 2),
                 "noise": round(noise, 2), "jpeg": quality}


__all__ = ["WarpBackend", "au_displacements"]
