"""Mesh backend: expressions made by driving the 478-point face mesh of real neutral faces.

Each source face is measured once by the vendored landmarker (byel.faces: MediaPipe Face
Landmarker v2, 478 landmarks and 52 blendshapes; cached per source set). A render:

1. AU intensities -> displacements of mesh vertex groups (brows, lids, cheeks, nose, lips, chin,
   jaw; MediaPipe's canonical indices), in an eye-aligned face frame scaled by the inter-ocular
   distance (IOD). Vertices outside the groups follow by Gaussian blending (the field of
   byel.synth.retouch, shared with warp), with a barrier at the mouth line so the upper and lower
   lips move apart; jaw drop and chin raise move the whole lower face. Lid closure is clamped
   and folded triangles are prevented by scaling back.
2. Piecewise-affine warp: the source mesh plus a ring of fixed border points is triangulated
   (Delaunay), each posed target triangle is mapped back to its source triangle, one remap.
3. Mouth interior, wrinkles and every nuisance (pose, flip, blur, noise, tone, JPEG, occluders)
   are warp's (byel.synth.retouch; warp's draw_pose and finish), drawn identically for every class.
4. Quality gate (label free): the landmarker measures the rendered face (before the photometric
   nuisances) and its blendshapes must not contradict the intended AUs (GATE_RULES); generate
   re-draws a rejected face up to GATE_TRIES times and records per-class acceptance.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import Delaunay

from byel.errors import DataError
from byel.synth.au import AUS
from byel.synth.landmarks import read_sources
from byel.synth.retouch import appearance_cues, blend_field, control_points, mouth_interior
from byel.synth.warp import DEFAULT_STRENGTH, JITTER, draw_pose, finish, shrink

N_MESH = 468  # face vertices warped; the 10 iris points (468-477) are left out: lids move over them

# --- MediaPipe canonical vertex indices (face_mesh_connections.py; "R" = subject's right = image left)
EYE_R_UPPER = [246, 161, 160, 159, 158, 157, 173]  # FACEMESH_RIGHT_EYE, outer -> inner
EYE_R_LOWER = [7, 163, 144, 145, 153, 154, 155]
EYE_L_UPPER = [466, 388, 387, 386, 385, 384, 398]  # FACEMESH_LEFT_EYE, outer -> inner
EYE_L_LOWER = [249, 390, 373, 374, 380, 381, 382]
EYE_R_CORNERS, EYE_L_CORNERS = [33, 133], [263, 362]  # outer, inner
EYE_R = EYE_R_CORNERS + EYE_R_UPPER + EYE_R_LOWER
EYE_L = EYE_L_CORNERS + EYE_L_UPPER + EYE_L_LOWER
BROW_R = [70, 63, 105, 66, 107, 46, 53, 52, 65, 55]  # FACEMESH_RIGHT_EYEBROW: upper, lower line
BROW_L = [300, 293, 334, 296, 336, 276, 283, 282, 295, 285]
LIP_UPPER_OUTER = [185, 40, 39, 37, 0, 267, 269, 270, 409]  # FACEMESH_LIPS, image left -> right
LIP_LOWER_OUTER = [146, 91, 181, 84, 17, 314, 405, 321, 375]
LIP_UPPER_INNER = [191, 80, 81, 82, 13, 312, 311, 310, 415]
LIP_LOWER_INNER = [95, 88, 178, 87, 14, 317, 402, 318, 324]
# The two rings of lip vertices between the outer and the inner contour (MediaPipe's face mesh
# annotations: lipsUpperSemiOuter/-SemiInner, lipsLowerSemiOuter/-SemiInner), corners left out.
LIP_UPPER_BODY = [184, 74, 73, 72, 11, 302, 303, 304, 408, 183, 42, 41, 38, 12, 268, 271, 272, 407]
LIP_LOWER_BODY = [77, 90, 180, 85, 16, 315, 404, 320, 307, 96, 89, 179, 86, 15, 316, 403, 319, 325]
LIP_CORNERS = [61, 76, 62, 78, 291, 306, 292, 308]  # each ring's ends, left then right
INNER_LIP = [78, *LIP_UPPER_INNER, 308, *LIP_LOWER_INNER[::-1]]  # closed polygon of the mouth opening
NOSE_WINGS = [98, 64, 48, 115, 220, 327, 294, 278, 344, 440]  # FACEMESH_NOSE alae
NOSE_BASE = [97, 2, 326, 94, 19]
NOSE_BRIDGE = [195, 5]
CHEEKS = [50, 205, 123, 36, 187, 280, 425, 352, 266, 411]  # cheek apples, below the lower-lid skin
# The iBUG 68-point scheme on the mesh, so the mouth interior and wrinkle shading of
# byel.synth.retouch (shared with warp) can be reused.
MESH68 = np.array([
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,  # jaw
    71, 63, 105, 66, 107, 336, 296, 334, 293, 301,  # brows
    168, 197, 5, 4, 75, 97, 2, 326, 305,  # nose
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,  # eyes
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips
    78, 82, 13, 312, 308, 317, 14, 87])  # inner lips

UPPER_SIDE = LIP_UPPER_OUTER + LIP_UPPER_BODY + LIP_UPPER_INNER  # controls that act above the mouth line only
LOWER_SIDE = LIP_LOWER_OUTER + LIP_LOWER_BODY + LIP_LOWER_INNER
# Control spread (IOD), as warp's SIGMA: wide for brows, cheeks and forehead, narrow for lids and
# lips so that neighbouring features can move apart.
SIGMA = {"brow": 0.30, "forehead": 0.35, "lid": 0.09, "cheek": 0.30, "nose": 0.16, "lip": 0.12}
FOREHEAD_UP = 0.45  # IOD above the brows: virtual forehead controls that follow the brows halfway
MIN_APERTURE = 0.15  # a closing lid keeps this fraction of the eye's opening: lids never cross
FOLD_AREA = 0.006  # IOD²: smaller folded slivers (the chin silhouette) are about a pixel at 48 px
SMOOTH_STEPS = 8  # fold repair: rounds of displacement smoothing over the mesh, then ...
FOLD_TRIES = 4  # ... rounds of scaling the expression by 0.75 (the last one is kept regardless)


@dataclass
class Controls:
    """Displacement controls of one face: positions (face frame, IOD), displacements, spreads and
    the barrier side each acts on (0 both, 1/2 above/below the mouth line, 3/4 above/below an eye)."""

    pos: np.ndarray
    disp: np.ndarray
    sigma: np.ndarray
    side: np.ndarray


def au_controls(aus: dict[int, float], uv: np.ndarray) -> Controls:
    """AU intensities -> displacements of mesh vertex groups (and virtual forehead points), face
    frame (uv: vertex positions in IOD; origin between the eyes, +u image right, +v down).
    Directions follow FACS, magnitudes warp's (tuned there by the real-face transfer probe), at
    intensity 1 before the strength factor."""
    a = {au: aus.get(au, 0.0) for au in AUS}
    d = np.zeros((N_MESH, 2), np.float32)
    u, v = d[:, 0], d[:, 1]
    side = np.sign(uv[:N_MESH, 0])  # -1 image left, +1 image right: u * side points outwards
    groups: list[tuple[list[int], str, int]] = []

    # Brows: 1 raises the inner heads, 2 the outer parts, 4 lowers and knits them, 9 drags down.
    for brow in (BROW_R, BROW_L):
        ub = np.abs(uv[brow, 0])
        inner = np.clip((ub.max() - ub) / max(ub.max() - ub.min(), 1e-3), 0, 1)
        outer = 1 - inner
        v[brow] += (-0.22 * a[1] * inner - 0.17 * a[2] * (0.3 + 0.7 * outer)
                    + 0.12 * a[4] * (0.5 + 0.5 * inner) + 0.05 * a[9] * inner)
        u[brow] += -side[brow] * (0.09 * a[4] * inner - 0.02 * a[1] * inner)
        groups.append((brow, "brow", 0))
    # Lids: 5 opens the upper lid, 6 and 7 raise the lower one (7 also lowers the upper), 4 presses.
    for upper, lower, corners in ((EYE_R_UPPER, EYE_R_LOWER, EYE_R_CORNERS),
                                  (EYE_L_UPPER, EYE_L_LOWER, EYE_L_CORNERS)):
        c = uv[corners, 0].mean()
        half = max(abs(uv[corners[0], 0] - uv[corners[1], 0]) / 2, 1e-3)
        for lid, amount in ((upper, -0.09 * a[5] + 0.035 * a[7] + 0.015 * a[6] + 0.02 * a[4]),
                            (lower, -0.06 * a[6] - 0.06 * a[7] - 0.03 * a[9] - 0.02 * a[12])):
            t = np.clip(np.abs(uv[lid, 0] - c) / half, 0, 1)
            v[lid] += amount * (1 - 0.7 * t ** 2)  # most at the middle of the lid
        v[corners[0]] += -0.02 * a[6]
        groups += [(upper, "lid", 3), (lower, "lid", 4), (corners, "lid", 0)]
    # Cheeks rise with 6 and 12 (and a little with 10), sink with the jaw.
    v[CHEEKS] += -0.12 * a[6] - 0.09 * a[12] - 0.03 * a[10] + 0.05 * a[26]
    # Nose: 9 wrinkles (wings and base up), 10 lifts the wings a little, 12 widens them.
    v[NOSE_WINGS] += -0.07 * a[9] - 0.03 * a[10]
    u[NOSE_WINGS] += side[NOSE_WINGS] * (0.02 * a[9] + 0.02 * a[12])
    v[NOSE_BASE] += -0.05 * a[9] - 0.02 * a[10]
    v[NOSE_BRIDGE] += -0.03 * a[9]
    groups += [(CHEEKS, "cheek", 0), (NOSE_WINGS + NOSE_BASE + NOSE_BRIDGE, "nose", 0)]

    # Lips. t: 0 at the mouth's middle, 1 at the corners; corner motions fade towards the middle.
    uc, half = _mouth_span(uv)
    lips = UPPER_SIDE + LOWER_SIDE + LIP_CORNERS
    cw = np.clip(np.abs(uv[lips, 0] - uc) / half, 0, 1) ** 1.5
    cu = 0.13 * a[12] + 0.14 * a[20] - 0.04 * a[23] - 0.015 * a[24] - 0.02 * a[26] - 0.05 * a[27]
    cv = -0.15 * a[12] + 0.12 * a[15] + 0.025 * a[20] + 0.08 * a[26] + 0.08 * a[27]
    u[lips] += side[lips] * cu * cw
    v[lips] += cv * cw
    mid = dict(zip(lips, 1 - cw))  # weight of the lips' middle motions
    up = np.array([mid[i] for i in UPPER_SIDE])
    v[UPPER_SIDE] += (-0.14 * a[10] - 0.05 * a[9]) * (0.6 + 0.4 * up)
    v[LIP_UPPER_INNER] += (-0.04 * a[25] - 0.02 * a[26]) * up[-len(LIP_UPPER_INNER):]
    v[LIP_UPPER_OUTER] += 0.03 * a[23] + 0.04 * a[24] + 0.01 * a[20]  # pressed lips thin
    lo = np.array([mid[i] for i in LOWER_SIDE])
    v[LOWER_SIDE] += (0.09 * a[16] + 0.07 * a[25]) * lo
    v[LIP_LOWER_OUTER] += -0.03 * a[23] - 0.04 * a[24] - 0.01 * a[20]
    groups += [(UPPER_SIDE, "lip", 1), (LOWER_SIDE, "lip", 2), (LIP_CORNERS, "lip", 0)]

    idx = np.concatenate([g for g, _, _ in groups])
    sig = np.concatenate([np.full(len(g), SIGMA[k]) for g, k, _ in groups])
    sd = np.concatenate([np.full(len(g), t) for g, _, t in groups])
    # Forehead skin follows the brows halfway (brow raises fold it: see warp's forehead lines).
    brows = BROW_R[:5] + BROW_L[:5]
    fore = uv[brows] - [0, FOREHEAD_UP]
    return Controls(np.concatenate([uv[idx], fore]).astype(np.float32),
                    np.concatenate([d[idx], 0.5 * d[brows]]).astype(np.float32),
                    np.concatenate([sig, np.full(len(brows), SIGMA["forehead"])]).astype(np.float32),
                    np.concatenate([sd, np.zeros(len(brows))]).astype(np.int8))


def _mouth_span(uv: np.ndarray) -> tuple[float, float]:
    """Centre u and half width of the mouth (outer corners), IOD."""
    l, r = uv[61, 0], uv[291, 0]
    return float((l + r) / 2), max(float(abs(r - l) / 2), 1e-3)


def _below(x: np.ndarray, upper: list[int], lower: list[int], corners: list[int], soft: float) -> np.ndarray:
    """(len(x),) in [0, 1]: how far each point lies on the lower side of the line between two
    contours (the middle of matching upper and lower points): a hard split between the corners,
    a smoothstep `soft` IOD wide beside them."""
    line = (x[[corners[0], *upper, corners[1]]] + x[[corners[0], *lower, corners[1]]]) / 2
    line = line[np.argsort(line[:, 0])]
    below = x[:, 1] - np.interp(x[:, 0], line[:, 0], line[:, 1])
    lo, hi = line[0, 0], line[-1, 0]
    s = np.clip((below + 0.1 * soft) / soft, 0, 1)
    return np.where((x[:, 0] >= lo) & (x[:, 0] <= hi), (below > 0).astype(np.float32), s * s * (3 - 2 * s))


def lower_face(uv: np.ndarray) -> np.ndarray:
    """(N_MESH,) in [0, 1]: how much each vertex belongs to the lower face (moves with the jaw):
    lip vertices by their index, the others by their side of the mouth line."""
    low = _below(uv[:N_MESH], LIP_UPPER_INNER, LIP_LOWER_INNER, [78, 308], 0.25)
    low[UPPER_SIDE + LIP_CORNERS] = 0
    low[LOWER_SIDE] = 1
    return low.astype(np.float32)


def _below_eyes(uv: np.ndarray) -> np.ndarray:
    """(N_MESH,) in [0, 1]: below the nearer eye's lid line (lids by their index)."""
    x = uv[:N_MESH]
    r = _below(x, EYE_R_UPPER, EYE_R_LOWER, EYE_R_CORNERS, 0.1)
    l_ = _below(x, EYE_L_UPPER, EYE_L_LOWER, EYE_L_CORNERS, 0.1)
    e = np.where(x[:, 0] < 0, r, l_)
    e[EYE_R_UPPER + EYE_L_UPPER] = 0
    e[EYE_R_LOWER + EYE_L_LOWER] = 1
    return e.astype(np.float32)


def mesh_displacements(aus: dict[int, float], uv: np.ndarray) -> np.ndarray:
    """(N_MESH, 2) displacement of every mesh vertex, face frame, IOD (before the strength).

    The group controls spread to every vertex as blended Gaussian bumps (retouch.blend_field:
    smooth, so the mesh does not tear), behind barriers: upper-lip controls reach only the upper
    face, lower-lip ones the lower face, and so for the lids, so lips and lids can part. Jaw drop (26, 27) and
    chin raise (17) then move the whole lower face: chin most, jaw angles least."""
    a = {au: aus.get(au, 0.0) for au in AUS}
    c = au_controls(aus, uv)
    x = uv[:N_MESH]
    low, eye = lower_face(uv), _below_eyes(uv)
    mask = np.ones((N_MESH, len(c.pos)), np.float32)
    for k, m in ((1, 1 - low), (2, low), (3, 1 - eye), (4, eye)):
        mask[:, c.side == k] = m[:, None]
    d = blend_field(x, c.pos, c.sigma, c.disp, mask)
    du = x[:, 0] - _mouth_span(uv)[0]
    taper = np.clip(1 - (du / 1.1) ** 4, 0, 1)  # the mandible moves as one; least at its angles
    d[:, 1] += (0.30 * a[26] + 0.25 * a[27]) * low * taper
    d[:, 1] += -0.05 * a[17] * low * np.exp(-0.5 * (du / 0.3) ** 2)
    return d


def _clamp_lids(target: np.ndarray, src: np.ndarray, ey: np.ndarray) -> None:
    """In place: each lower-lid vertex stays at least MIN_APERTURE x the eye's opening below the
    upper-lid vertex above it (upper and lower lids are listed in matching order)."""
    for upper, lower in ((EYE_R_UPPER, EYE_R_LOWER), (EYE_L_UPPER, EYE_L_LOWER)):
        gap0 = (src[lower] - src[upper]) @ ey
        gap = (target[lower] - target[upper]) @ ey
        short = np.maximum(MIN_APERTURE * np.maximum(gap0, 0) - gap, 0)
        target[upper] -= 0.5 * short[:, None] * ey
        target[lower] += 0.5 * short[:, None] * ey


def _clamp_lips(target: np.ndarray, src: np.ndarray, ey: np.ndarray) -> None:
    """In place: the lower lip never rises past the upper one (pressed lips, chin raise, jitter):
    where a column of the inner lips would close beyond its source opening (or beyond touching),
    the upper lip's column moves up and the lower one's down, half the shortfall each."""
    for k in range(len(LIP_UPPER_INNER)):
        up = [LIP_UPPER_OUTER[k], LIP_UPPER_BODY[k], LIP_UPPER_BODY[9 + k], LIP_UPPER_INNER[k]]
        lo = [LIP_LOWER_OUTER[k], LIP_LOWER_BODY[k], LIP_LOWER_BODY[9 + k], LIP_LOWER_INNER[k]]
        gap0 = float((src[lo[-1]] - src[up[-1]]) @ ey)
        short = min(gap0, 0.0) - float((target[lo[-1]] - target[up[-1]]) @ ey)
        if short > 0:
            target[up] -= 0.5 * short * ey
            target[lo] += 0.5 * short * ey


def _smoother(tris: np.ndarray, n: int):
    """Row-normalised adjacency (sparse, n x n) of the triangulation's vertices, with the edges
    across the mouth and eye openings cut: averaging over it smooths a displacement field
    without closing the lips or lids."""
    from scipy import sparse

    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    cut = np.zeros(n, np.int8)
    cut[UPPER_SIDE] = 1
    cut[LOWER_SIDE] = 2
    cut[EYE_R_UPPER + EYE_L_UPPER] = 3
    cut[EYE_R_LOWER + EYE_L_LOWER] = 4
    a, b = cut[e[:, 0]], cut[e[:, 1]]
    across = ((a == 1) & (b == 2)) | ((a == 2) & (b == 1)) | ((a == 3) & (b == 4)) | ((a == 4) & (b == 3))
    e = e[~across]
    m = sparse.csr_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    m.data[:] = 1.0
    deg = np.asarray(m.sum(1)).ravel()
    return sparse.diags(1 / np.maximum(deg, 1)) @ m


def _folded(tris: np.ndarray, src: np.ndarray, dst: np.ndarray, tiny: float) -> int:
    """Number of triangles whose orientation flips between source and target, but for those
    across the mouth opening (painted over; the lips may even cross in the source) and those
    smaller than `tiny` px²."""
    def area(p):
        a, b, c = p[tris[:, 0]], p[tris[:, 1]], p[tris[:, 2]]
        return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    s, t = area(src), area(dst)
    straddle = np.isin(tris, UPPER_SIDE).any(1) & np.isin(tris, LOWER_SIDE).any(1)
    return int(np.sum(~straddle & (np.abs(s) > tiny) & (np.sign(s) != np.sign(t))))


def piecewise_affine(img: np.ndarray, src: np.ndarray, dst: np.ndarray, tris: np.ndarray,
                     outside: np.ndarray) -> np.ndarray:
    """Backward piecewise-affine warp: every pixel of a target triangle (points dst) samples the
    same barycentric place of its source triangle (points src). Pixels no triangle covers use
    the 2x3 affine `outside` (target -> source). One remap; per-triangle work is vectorised except
    the rasterisation of triangle ids (one OpenCV fill per triangle)."""
    H, W = img.shape[:2]
    D = np.concatenate([dst[tris], np.ones((len(tris), 3, 1))], 2)  # (T, 3, 3)
    det = np.linalg.det(D)
    ok = np.abs(det) > 1e-6
    M = np.zeros((len(tris), 3, 2))
    M[ok] = np.linalg.solve(D[ok], src[tris][ok])  # [x y 1] @ M = source position
    ids = np.full((H, W), -1, np.int32)
    poly = np.round(dst[tris] * 16).astype(np.int32)
    for k in np.flatnonzero(ok):
        cv2.fillConvexPoly(ids, poly[k], int(k), cv2.LINE_8, 4)
    gy, gx = np.mgrid[0:H, 0:W].astype(np.float64)
    A = np.concatenate([M, outside.T[None]], 0)[ids]  # (H, W, 3, 2); -1 picks `outside`
    mx = gx * A[..., 0, 0] + gy * A[..., 1, 0] + A[..., 2, 0]
    my = gx * A[..., 0, 1] + gy * A[..., 1, 1] + A[..., 2, 1]
    return cv2.remap(img, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_CUBIC,
                     borderMode=cv2.BORDER_REPLICATE)


def _ring(W: int, n: int = 6) -> np.ndarray:
    """Fixed border points: a square ring well outside the image (pose and the mesh stay inside)."""
    lo, hi = -0.75 * W, 1.75 * W
    t = np.linspace(lo, hi, n + 1)
    edge = [np.stack([t, np.full_like(t, lo)], 1), np.stack([t, np.full_like(t, hi)], 1),
            np.stack([np.full_like(t, lo), t], 1)[1:-1], np.stack([np.full_like(t, hi), t], 1)[1:-1]]
    return np.concatenate(edge).astype(np.float32)


# --- sources ------------------------------------------------------------------------------------
@dataclass
class MeshSet:
    """Source faces with their mesh. Plain numpy data, so it pickles cheaply to workers."""

    names: list[str]
    images: list[np.ndarray]
    landmarks: np.ndarray  # (N, 478, 2) float32, pixels of each image
    blendshapes: np.ndarray  # (N, 52) float32: each source's own expression
    stats: dict = field(default_factory=dict)


def load_meshes(root: str | os.PathLike, progress: bool = True) -> MeshSet:
    """Read every image under root and measure its mesh (byel.faces, cached by pixels). Faces with
    no mesh, or an implausible one, are skipped and counted; none at all is a DataError."""
    from byel.faces.batch import measure_images  # late: loads the TFLite runtime

    root = Path(root)
    files, images, readable = read_sources(root)
    m = measure_images([images[i] for i in readable], mode="detect", workers=2, progress=progress,
                       key=f"mesh-sources:{root.resolve()}")
    keep, implausible = [], 0
    for j, i in enumerate(readable):
        if not m.found[j]:
            continue
        if _plausible(m.landmarks[j, :, :2], images[i].shape[0]):
            keep.append((i, j))
        else:
            implausible += 1
    n_no = int((~m.found).sum())
    if not keep:
        raise DataError(f"sources: no face mesh found on any of the {len(readable)} readable images "
                        f"under {root}")
    stats = {"n_files": len(files), "n_unreadable": len(files) - len(readable), "n_no_face": n_no,
             "no_face_policy": "skipped: no face mesh found", "n_implausible": implausible,
             "n_used": len(keep)}
    rows = [j for _, j in keep]
    return MeshSet([str(files[i].relative_to(root)) for i, _ in keep], [images[i] for i, _ in keep],
                   m.landmarks[rows, :, :2].astype(np.float32), m.blendshapes[rows].astype(np.float32), stats)


def _plausible(pts: np.ndarray, side: int) -> bool:
    """Eyes a sane distance apart, above the mouth, the inner face inside the image."""
    er, el = pts[EYE_R].mean(0), pts[EYE_L].mean(0)
    iod = float(np.linalg.norm(el - er))
    mouth = pts[INNER_LIP].mean(0)
    core = pts[EYE_R + EYE_L + INNER_LIP + NOSE_BASE]
    return (0.15 * side < iod < 0.8 * side and mouth[1] > max(er[1], el[1]) + 0.3 * iod
            and bool(((core > -0.05 * side) & (core < 1.05 * side)).all()))


# --- quality gate -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """When the intended AUs meet `when` (every AU at least its value; `absent`: every listed AU
    below 0.1), the blendshape group `score` (the mean of its names, left and right) must be
    >= `low` and <= `high`. `why`: the FACS <-> ARKit correspondence it rests on."""

    name: str
    score: tuple[str, ...]
    low: float = 0.0
    high: float = 1.0
    when: tuple[tuple[int, float], ...] = ()
    absent: tuple[int, ...] = ()
    why: str = ""


# Thresholds were set on rendered faces and their intended AUs only (never a real label): each
# keeps a face whose blendshapes read the intended movement, and drops the ones that read the
# opposite (the warp failed, or the source face carries an expression of its own).
GATE_RULES: tuple[Rule, ...] = (
    Rule("smile", ("mouthSmileLeft", "mouthSmileRight"), low=0.10, when=((12, 0.5),),
         why="AU12 lip corner puller is ARKit mouthSmile"),
    Rule("no smile", ("mouthSmileLeft", "mouthSmileRight"), high=0.35, absent=(12,),
         why="without AU12 the corners are not pulled up: a smile reading contradicts the face"),
    Rule("jaw open", ("jawOpen",), low=0.08, when=((26, 0.5),),
         why="AU26 jaw drop is ARKit jawOpen"),
    Rule("jaw closed", ("jawOpen",), high=0.30, absent=(25, 26, 27),
         why="no lips part / jaw drop: the mouth must not read open"),
    Rule("brows up", ("browInnerUp", "browOuterUpLeft", "browOuterUpRight"), low=0.15,
         when=((1, 0.5), (2, 0.5)), why="AU1 inner and AU2 outer brow raisers are browInnerUp / browOuterUp"),
)
GATE_TRIES = 5  # renders per image at most (generate); the last is kept, flagged, if none passes


def gate_check(aus: dict[int, float], blendshapes: np.ndarray | None) -> list[str]:
    """Names of the GATE_RULES a measured face breaks (["no mesh"] when none was found)."""
    from byel.faces.mesher import BLENDSHAPES

    if blendshapes is None or not np.isfinite(blendshapes).all():
        return ["no mesh"]
    idx = {n: i for i, n in enumerate(BLENDSHAPES)}
    broken = []
    for r in GATE_RULES:
        if any(aus.get(au, 0.0) < x for au, x in r.when) or any(aus.get(au, 0.0) >= 0.1 for au in r.absent):
            continue
        s = float(np.mean([blendshapes[idx[n]] for n in r.score]))
        if not r.low <= s <= r.high:
            broken.append(r.name)
    return broken


# --- the backend ----------------------------------------------------------------------------------
class MeshBackend:
    """Renders labelled expressions by driving the face mesh of real neutral faces (module doc)."""

    name = "mesh"

    def __init__(self, sources, size: int = 64, grey: bool = False, seed: int = 0,
                 progress: bool = True, strength: float = DEFAULT_STRENGTH, gate: bool = True):
        self.size, self.grey, self.seed = int(size), bool(grey), seed
        self.strength = float(strength)
        self.gate = bool(gate)
        self.gate_tries = GATE_TRIES
        faces = load_meshes(sources, progress=progress)
        self.names, self.images, self.landmarks = faces.names, faces.images, faces.landmarks
        self.source_blendshapes = faces.blendshapes
        self.stats = faces.stats
        self.work = max(self.size, min(4 * self.size, 256))  # as warp: the same resampling path
        self._mesher = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_mesher"] = None  # TFLite interpreters do not pickle: each process builds its own
        return state

    def measure(self, img: np.ndarray) -> np.ndarray | None:
        """Blendshapes of the face in a rendered image, or None when the landmarker finds none."""
        from byel.faces.batch import measure_crop  # late: loads the TFLite runtime
        from byel.faces.mesher import FaceMesher

        if self._mesher is None:
            self._mesher = FaceMesher("detect", max_faces=1)
        face = measure_crop(self._mesher, img)  # as measure_images measures each image
        return None if face is None else face.blendshapes

    def render(self, emotion: str, aus: dict[int, float],
               rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        W = self.work
        i = int(rng.integers(len(self.images)))
        src_img = self.images[i]
        if self.grey and src_img.ndim == 3:
            src_img = cv2.cvtColor(src_img, cv2.COLOR_RGB2GRAY)
        k = W / src_img.shape[0]
        src = ((self.landmarks[i] + 0.5) * k - 0.5)[:N_MESH]

        er, el = src[EYE_R].mean(0), src[EYE_L].mean(0)
        iod = float(np.linalg.norm(el - er))
        ex = (el - er) / iod
        ey = np.array([-ex[1], ex[0]], np.float32)
        uv = np.stack([(src - (er + el) / 2) @ ex, (src - (er + el) / 2) @ ey], 1) / iod

        disp = mesh_displacements(aus, uv) * self.strength
        # Warp noise, smooth over the face: jitter at the 68 feature points, blended to every vertex.
        c68 = src[MESH68]
        jit = rng.normal(0, JITTER, (len(MESH68), 2)).astype(np.float32) * iod
        jitter = blend_field(src, c68, np.full(len(MESH68), 0.2 * iod, np.float32), jit)
        roll, scale, shift, flip, fwd = draw_pose(rng, W)
        ring = _ring(W)
        all_src = np.concatenate([src, ring]).astype(np.float64)
        tris = Delaunay(all_src).simplices
        # Displacements that would fold triangles (features moving past each other) are smoothed
        # over the mesh (openings cut) until none folds; failing that the expression is scaled back.
        move = (disp[:, :1] * ex + disp[:, 1:] * ey) * iod + jitter
        smooth, smoothed, fold_scale = _smoother(tris, len(all_src)), 0, 1.0
        for step in range(SMOOTH_STEPS + FOLD_TRIES + 1):
            target = src + fold_scale * move
            _clamp_lids(target, src, ey)
            _clamp_lips(target, src, ey)
            if step == SMOOTH_STEPS + FOLD_TRIES or \
                    not _folded(tris, all_src, np.concatenate([target, ring]), FOLD_AREA * iod ** 2):
                break
            if step < SMOOTH_STEPS:
                full = np.concatenate([move, np.zeros_like(ring)])
                move = (0.5 * full + 0.5 * (smooth @ full))[:N_MESH].astype(np.float32)
                smoothed += 1
            else:
                fold_scale *= 0.75
        all_dst = np.concatenate([target, ring]).astype(np.float64) @ fwd[:, :2].T + fwd[:, 2]
        big = cv2.resize(src_img, (W, W), interpolation=cv2.INTER_CUBIC)
        img = piecewise_affine(big, all_src, all_dst, tris, cv2.invertAffineTransform(fwd)).astype(np.float32)
        if img.ndim == 2:
            img = img[..., None]

        # retouch's mouth interior and wrinkles, placed by the mesh's 68-point equivalents (posed).
        out = all_dst[:N_MESH].astype(np.float32)
        s_iod = iod * scale
        o_er, o_el = out[EYE_R].mean(0), out[EYE_L].mean(0)
        o_ex = (o_el - o_er) / max(float(np.linalg.norm(o_el - o_er)), 1e-3)
        pts = control_points(out[MESH68], s_iod, o_ex, np.array([-o_ex[1], o_ex[0]], np.float32))
        cue = float(rng.uniform(0.6, 1.2))
        img, mouth = mouth_interior(img, pts, s_iod, aus, rng, inner=out[INNER_LIP])
        img = appearance_cues(img, pts, s_iod, aus, cue, rng)

        img = shrink(img, self.size)
        gate = {}
        if self.gate:  # judged before the photometric nuisances: the expression, not the noise
            face = np.clip(img, 0, 255).astype(np.uint8)
            broken = gate_check(aus, self.measure(face[..., 0] if face.shape[2] == 1 else face))
            gate = {"gate_pass": int(not broken), "gate_broken": "+".join(broken)}
        img, params = finish(img, flip, rng)
        params = {"source": self.names[i], "roll": round(roll, 2), "scale": round(scale, 3),
                  "shift_x": round(float(shift[0] / W), 3), "shift_y": round(float(shift[1] / W), 3),
                  "flip": int(flip), "cue_strength": round(cue, 3), "smoothed": smoothed, "fold_scale": round(fold_scale, 3),
                  **mouth, **params, **gate}
        return img, params

    def __repr__(self) -> str:
        return f"MeshBackend({self.stats['n_used']} faces, size={self.size}, strength={self.strength}, gate={self.gate})"


__all__ = ["MeshBackend", "mesh_displacements", "gate_check", "GATE_RULES", "GATE_TRIES", "load_meshes"]
