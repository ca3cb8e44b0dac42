"""Head pose (yaw, pitch, roll in degrees) of a face from its 478-point mesh.

As MediaPipe's facial transformation matrix, simplified: the canonical face model of the
vendored face_landmarker.task (``geometry_pipeline_metadata_landmarks.binarypb``: 468 vertices
and the 33 weighted landmarks MediaPipe fits with) is fitted to the measured mesh by a weighted
similarity (Procrustes: rotation, scale, shift), with the mesh read orthographically (x, y in
pixels, z at the scale of x), not through MediaPipe's perspective camera. Its rotation gives the
angles, as seen in the picture:

- ``yaw`` > 0: the face turns towards the image's right (its nose points right);
- ``pitch`` > 0: the face tilts up (its nose points up);
- ``roll`` > 0: the head tilts clockwise (the eye on the image's right is the lower one).

A frontal, upright face reads (0, 0, 0); mirroring the image left-right flips the signs of yaw
and roll and keeps pitch.
"""

from __future__ import annotations

import zipfile
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from byel.faces.model import model_path, read_models

METADATA = "geometry_pipeline_metadata_landmarks.binarypb"


class Pose(NamedTuple):
    """Head pose in degrees (signs: see byel.faces.pose)."""

    yaw: float
    pitch: float
    roll: float


def _varint(b: bytes, i: int) -> tuple[int, int]:
    r = s = 0
    while True:
        c = b[i]
        i, r, s = i + 1, r | (c & 0x7F) << s, s + 7
        if c < 0x80:
            return r, i


def _fields(b: bytes):
    """(field number, value) of a protobuf message: varints as int, fixed32 as bytes, length-delimited as bytes."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        kind = key & 7
        if kind == 0:
            v, i = _varint(b, i)
        elif kind == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif kind == 5:
            v, i = b[i:i + 4], i + 4
        elif kind == 1:
            v, i = b[i:i + 8], i + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {kind}")
        yield key >> 3, v


@lru_cache(maxsize=1)
def _metadata() -> tuple[np.ndarray, list[tuple[int, float]]]:
    """(canonical mesh vertices (468, 3), procrustes basis [(landmark id, weight)]) parsed from the
    bundle's GeometryPipelineMetadata (canonical_mesh = 1: Mesh3d with vertex_buffer = 3, 5 floats
    a vertex, x y z u v; procrustes_landmark_basis = 2: landmark_id = 1, weight = 2)."""
    read_models()  # a missing or damaged bundle: one ByelError naming it
    with zipfile.ZipFile(model_path()) as z:
        meta = z.read(METADATA)
    floats, basis = [], []
    for f, v in _fields(meta):
        if f == 1:
            floats += [np.frombuffer(x, "<f4")[0] for g, x in _fields(v) if g == 3]
        elif f == 2:
            d = dict(_fields(v))
            basis.append((d.get(1, 0), float(np.frombuffer(d[2], "<f4")[0])))
    return np.array(floats, np.float64).reshape(-1, 5)[:, :3], basis


def canonical_mesh() -> np.ndarray:
    """The canonical face's 468 vertices (x right, y up, z towards the viewer, in cm; symmetric
    about x = 0): the mesh's points without the 10 iris points."""
    return _metadata()[0].copy()


@lru_cache(maxsize=1)
def canonical_face() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(landmark ids (33,), weights (33,), their canonical points (33, 3): x right, y up, z towards
    the viewer, in cm): the points MediaPipe fits the canonical face with."""
    vertices, basis = _metadata()
    ids = np.array([i for i, _ in basis])
    return ids, np.array([w for _, w in basis]), vertices[ids]


def rotation(landmarks: np.ndarray) -> np.ndarray:
    """The 3×3 rotation of the canonical face fitted to one (478, 3) mesh, in the canonical frame
    (x right, y up, z towards the viewer): its columns are the face's right, up and forward axes."""
    ids, w, model = canonical_face()
    p = np.asarray(landmarks, np.float64)[ids, :3] * [1, -1, -1]  # image (y down, z away) to y up, z towards
    w = w / w.sum()
    a = model - w @ model
    b = p - w @ p
    u, _, vt = np.linalg.svd((b * w[:, None]).T @ a)  # Kabsch: R maximising sum w · b·(R a)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1, 1, d]) @ vt


def head_pose(landmarks: np.ndarray) -> Pose:
    """(yaw, pitch, roll) in degrees of one (478, 3) mesh (x, y px; z at the scale of x)."""
    r = rotation(landmarks)
    right, forward = r[:, 0], r[:, 2]
    yaw = np.degrees(np.arctan2(forward[0], forward[2]))
    pitch = np.degrees(np.arctan2(forward[1], np.hypot(forward[0], forward[2])))
    roll = np.degrees(np.arctan2(-right[1], right[0]))
    return Pose(float(yaw), float(pitch), float(roll))
