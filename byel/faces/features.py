"""Geometry features of measured faces, and crops aligned on the eyes.

A face's features: its 52 blendshape scores, then its 478 landmarks (x, y) after a similarity
transform that puts the outer eye corners (mesh 33 and 263) at (-0.5, 0) and (0.5, 0): position,
in-plane rotation and size are removed, the shape stays.
"""

from __future__ import annotations

import cv2
import numpy as np

from byel.faces.batch import Meshes, measure_images
from byel.faces.mesher import BLENDSHAPES, EYE_CORNERS, N_LANDMARKS

N_FEATURES = len(BLENDSHAPES) + 2 * N_LANDMARKS  # 52 + 956
# Where aligned crops put the outer eye corners, as fractions of the crop side: the median over
# 661 FER2013 PublicTest crops with a mesh (x 0.233 and 0.758, y 0.385; made symmetric), so that
# aligned crops of photos frame faces as the FER2013-like training crops do.
EYE_LEFT, EYE_RIGHT = (0.2375, 0.385), (0.7625, 0.385)
# Where the procedural generator (byel.synth.procedural) puts them, i.e. how the training faces
# of the pixel CNN are framed: its pose centres the eye line at (0.5, 0.37) of the side (jitter
# ± 0.035) and the mesh measured the outer corners 0.545 sides apart (median of 266 rendered faces,
# 96 px). ``byel predict`` crops photos so.
SYNTH_EYES = ((0.2275, 0.37), (0.7725, 0.37))


def align_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(..., 478, 2+) landmarks -> (..., 478, 2): eye corners at (-0.5, 0) and (0.5, 0).
    Rows without a mesh (NaN) stay NaN."""
    xy = np.asarray(landmarks, np.float64)[..., :2]
    z = xy[..., 0] + 1j * xy[..., 1]  # points as complex numbers: a similarity is z -> a z + b
    a, b = z[..., EYE_CORNERS[0]:EYE_CORNERS[0] + 1], z[..., EYE_CORNERS[1]:EYE_CORNERS[1] + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = (z - (a + b) / 2) / (b - a)
    return np.stack([w.real, w.imag], -1).astype(np.float32)


def geometry_features(meshes: Meshes) -> tuple[np.ndarray, np.ndarray]:
    """(features float32 (N, 1008), found bool (N,)): blendshapes + eye-aligned landmarks; the
    rows of faces without a mesh are NaN and ``found`` is False there."""
    n = len(meshes)
    aligned = align_landmarks(meshes.landmarks).reshape(n, -1)
    feats = np.concatenate([meshes.blendshapes.astype(np.float32), aligned], 1)
    found = meshes.found & np.isfinite(feats).all(1)
    feats[~found] = np.nan
    return feats, found


def features(images: np.ndarray, key: str | None = None, progress: bool = False,
             cache: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """(geometry features (N, 1008), mesh found (N,), measuring info) of uint8 face crops."""
    meshes = measure_images(images, key=key, progress=progress, cache=cache)
    feats, found = geometry_features(meshes)
    return feats, found, meshes.meta


def aligned_crop(rgb: np.ndarray, landmarks: np.ndarray, size: int,
                 eyes: tuple[tuple[float, float], tuple[float, float]] = (EYE_LEFT, EYE_RIGHT)) -> np.ndarray:
    """A size x size crop of ``rgb`` rotated and scaled so the outer eye corners land on
    ``eyes`` (fractions of the side); replicated border outside the image."""
    src = np.asarray(landmarks, np.float64)[list(EYE_CORNERS), :2]
    zs = src[:, 0] + 1j * src[:, 1]
    shrink = abs(zs[1] - zs[0]) / (abs(complex(*eyes[1]) - complex(*eyes[0])) * size)
    side = max(size, int(round(size * shrink)))  # warp at full resolution, then area-average down
    zd = np.array([complex(*e) for e in eyes]) * side
    a = (zd[1] - zd[0]) / (zs[1] - zs[0])  # z -> a z + b: rotation and scale, then shift
    b = zd[0] - a * zs[0]
    m = np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])
    out = cv2.warpAffine(rgb, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out if side == size else cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
