"""Retouching shared by the warp and mesh backends: where the control points lie, how their
displacements blend into a smooth field, and what a warp alone cannot make (an open mouth's
cavity, teeth and tongue; wrinkles and folds as soft shading).

Every function takes points in the iBUG 68-point scheme (0-based; "left" = image left): the warp
backend's own landmarks, or the mesh backend's 68-point equivalents of its 478 vertices.
"""

from __future__ import annotations

import cv2
import numpy as np

BACKGROUND = 0.1  # weight of "no displacement": sets how fast a bump fades to nothing


def control_points(pts: np.ndarray, iod: float, ex: np.ndarray, ey: np.ndarray) -> np.ndarray:
    """The 68 landmarks plus derived cheek and forehead points, (80, 2): the control points of
    the warp backend (its N_CTRL), placed for the mesh backend by its 68-point equivalents."""
    eye_r, eye_l = pts[36:42].mean(0), pts[42:48].mean(0)
    cheeks = [0.5 * (eye_r + pts[48]) - 0.12 * iod * ex, 0.5 * (eye_l + pts[54]) + 0.12 * iod * ex]
    forehead = pts[17:27] - 0.45 * iod * ey  # above the brows
    return np.concatenate([pts, np.array(cheeks), forehead]).astype(np.float32)


def blend_field(x: np.ndarray, centers: np.ndarray, sigma: np.ndarray,
                values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Displacement at points x: Gaussian bumps at the centres, blended as a weighted mean
    (a partition of unity with a constant background weight of zero displacement). `mask`
    (len(x), len(centers)) scales each bump's weight per point (the mesh backend's barriers).

    Overlapping bumps interpolate instead of adding up, so the field stays within the control
    displacements; an exact RBF interpolant was tried first and oscillated wildly between the
    closely spaced landmarks."""
    # Plain broadcasting, not BLAS: these skinny products are slower through a threaded BLAS
    # on a busy machine than done element-wise.
    x, c = x.astype(np.float32), centers.astype(np.float32)
    d2 = (x[:, :1] - c[None, :, 0]) ** 2 + (x[:, 1:] - c[None, :, 1]) ** 2
    g = np.exp(-d2 * (0.5 / sigma.astype(np.float32) ** 2)[None, :])
    if mask is not None:
        g = g * mask
    v = values.astype(np.float32)
    num = np.stack([(g * v[:, 0]).sum(1), (g * v[:, 1]).sum(1)], 1)
    return num / (BACKGROUND + g.sum(1, keepdims=True))


def _soft_poly(shape, polys, blur: float) -> np.ndarray:
    """Anti-aliased filled polygons as a float mask in [0, 1], feathered by a Gaussian."""
    m = np.zeros(shape, np.float32)
    cv2.fillPoly(m, [np.round(p * 16).astype(np.int32) for p in polys], 1.0, cv2.LINE_AA, 4)
    if blur > 0:
        m = cv2.GaussianBlur(m, (0, 0), blur)
    return m


def mouth_interior(img, pts, iod, aus, rng, inner=None):
    """Paint the cavity, teeth and tongue inside the parted inner lips: the polygon `inner`
    (default the 68-point inner lip, pts[60:68]; the mesh backend gives its finer contour)."""
    inner = pts[60:68] if inner is None else inner
    gap = float(np.linalg.norm(pts[66] - pts[62]))
    if gap < 0.04 * iod:  # below this the lips touch, whatever the landmark noise says
        return img, {"mouth_open": 0.0, "teeth_upper": 0.0}
    H, W = img.shape[:2]
    mask = _soft_poly((H, W), [inner], 0.012 * iod)
    lips = _soft_poly((H, W), [pts[48:60]], 0)
    ref = float(np.median(img[lips > 0.5])) if (lips > 0.5).any() else float(img.mean())
    ref = max(ref, 60.0)

    cavity = ref * rng.uniform(0.08, 0.22)
    # Upper teeth show more when the upper lip is lifted (10, 12), lower ones when the lower
    # lip is pulled down (16, 20, 27); tongue sits low in a wide-open mouth.
    up_h = min(gap * rng.uniform(0.25, 0.45) * (1 + aus.get(10, 0) + aus.get(12, 0)),
               0.14 * iod)
    lo_h = min(gap * 0.25 * (aus.get(16, 0) + aus.get(20, 0) + aus.get(27, 0)), 0.08 * iod)
    teeth = min(235.0, ref * rng.uniform(1.0, 1.35))
    down = (pts[66] - pts[62]) / max(gap, 1e-3)

    layer = np.full((H, W), cavity, np.float32)
    upper = np.concatenate([pts[60:65], pts[60:65][::-1] + up_h * down])
    t_mask = _soft_poly((H, W), [upper], 0.01 * iod)
    if lo_h > 0.3:
        lower = np.concatenate([pts[[64, 65, 66, 67, 60]], pts[[60, 67, 66, 65, 64]] - lo_h * down])
        t_mask = np.maximum(t_mask, 0.8 * _soft_poly((H, W), [lower], 0.01 * iod))
    # Teeth fade towards the corners (they recede into the cheeks' shadow).
    cx = 0.5 * (pts[60] + pts[64])
    half = max(float(np.linalg.norm(pts[64] - pts[60])) / 2, 1.0)
    xs = np.arange(W, dtype=np.float32)[None, :]
    fade = np.clip(1.2 - np.abs(xs - cx[0]) / half, 0.2, 1.0)
    layer += (teeth - cavity) * t_mask * fade
    if gap > 0.15 * iod:
        tongue_c = tuple(np.round((pts[66] - 0.22 * gap * down) * 16).astype(int))
        axes = (int(half * 0.55 * 16), int(gap * 0.22 * 16))
        tongue = np.zeros((H, W), np.float32)
        cv2.ellipse(tongue, tongue_c, axes, 0, 0, 360, 1.0, -1, cv2.LINE_AA, 4)
        tongue = cv2.GaussianBlur(tongue, (0, 0), 0.04 * iod)
        layer += (ref * 0.5 - layer) * tongue * (1 - t_mask)
    m = mask[..., None]
    img = img * (1 - m) + layer[..., None] * m
    return img, {"mouth_open": round(gap / iod, 3), "teeth_upper": round(up_h / iod, 3)}


def appearance_cues(img, pts, iod, aus, cue, rng):
    """Soft shading for wrinkles and folds that the warp alone cannot make."""
    H, W = img.shape[:2]
    dark = np.zeros((H, W), np.float32)
    th = max(1, int(round(0.035 * iod)))

    def line(points, strength):
        if strength <= 0.01:
            return
        layer = np.zeros((H, W), np.float32)
        pl = np.round(np.asarray(points, np.float32) * 16).astype(np.int32)
        cv2.polylines(layer, [pl], False, 1.0, th, cv2.LINE_AA, 4)
        np.maximum(dark, strength * layer, out=dark)

    a = lambda au: aus.get(au, 0.0)  # noqa: E731
    eye_r, eye_l = pts[36:42].mean(0), pts[42:48].mean(0)
    ex = (eye_l - eye_r) / max(np.linalg.norm(eye_l - eye_r), 1e-3)
    ey = np.array([-ex[1], ex[0]], np.float32)

    # Nasolabial folds: from beside the nose wing, bowing out, to beyond the lip corner.
    s = cue * 0.45 * max(a(12), 0.7 * a(6), 0.7 * a(10), 0.6 * a(9))
    for wing, corner, side in ((31, 48, -1), (35, 54, 1)):
        p0 = pts[wing] + side * 0.10 * iod * ex - 0.04 * iod * ey
        p2 = pts[corner] + side * 0.10 * iod * ex + 0.10 * iod * ey
        p1 = 0.5 * (p0 + p2) + side * 0.07 * iod * ex
        t = np.linspace(0, 1, 8)[:, None]
        line((1 - t) ** 2 * p0 + 2 * t * (1 - t) * p1 + t ** 2 * p2, s)
    # Brow furrows (4): short vertical creases between the inner brow heads.
    s = cue * 0.5 * a(4)
    mid = 0.5 * (pts[21] + pts[22])
    for off in (-0.06, 0.06):
        line([mid + off * iod * ex - 0.05 * iod * ey,
              mid + off * 0.8 * iod * ex + 0.16 * iod * ey], s)
    # Nose wrinkles (9): short arcs across the bridge.
    s = cue * 0.45 * a(9)
    for f in (0.25, 0.5):
        c = pts[27] + f * (pts[28] - pts[27]) + 0.02 * iod * ey
        line([c - 0.14 * iod * ex, c + 0.04 * iod * ey, c + 0.14 * iod * ex], s)
    # Crow's feet (6): rays fanning out of the outer eye corners.
    s = cue * 0.4 * a(6)
    for corner, side in ((36, -1), (45, 1)):
        o = pts[corner] + side * 0.06 * iod * ex
        for ang in (-0.5, 0.0, 0.5):
            dvec = side * np.cos(ang) * ex + np.sin(ang) * ey
            line([o, o + 0.13 * iod * dvec], s)
    # Forehead lines (1, 2): arcs above the brows, central for 1, full width for 2.
    # Their count, spacing and waviness vary: evenly ruled lines would be an artefact.
    s = cue * 0.25 * max(a(1), a(2))
    if s > 0.01:
        top = pts[17:27].mean(0)
        half = 0.5 * iod * (0.7 + 0.6 * a(2) / max(a(1) + a(2), 1e-3))
        h = 0.2
        for _ in range(int(rng.integers(1, 4))):
            h += rng.uniform(0.1, 0.18)
            c = top - h * iod * ey
            wob = rng.normal(0, 0.02, 3) * iod
            line([c - half * ex + (0.05 * iod + wob[0]) * ey, c + wob[1] * ey,
                  c + half * ex + (0.05 * iod + wob[2]) * ey], s * rng.uniform(0.6, 1.0))

    if dark.any():
        dark = cv2.GaussianBlur(dark, (0, 0), 0.02 * iod)
        img = img * (1 - np.minimum(dark, 0.8))[..., None]
    # Cheek raise (6, 12) catches light on the cheek apples.
    s = cue * 0.10 * max(a(6), a(12))
    if s > 0.01:
        hl = np.zeros((H, W), np.float32)
        for p in (pts[68], pts[69]):
            cv2.circle(hl, tuple(np.round(p * 16).astype(int)), int(0.16 * iod * 16), 1.0, -1,
                       cv2.LINE_AA, 4)
        hl = cv2.GaussianBlur(hl, (0, 0), 0.08 * iod)
        img = img * (1 + s * hl)[..., None]
    return img


__all__ = ["appearance_cues", "blend_field", "control_points", "mouth_interior"]
