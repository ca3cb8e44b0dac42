"""The pixel CNN and the geometry head as one predictor (``finetune.head``):

- ``pixels``: the CNN alone (tier A; the paper's setting);
- ``geometry``: the geometry head where a face mesh is found, the CNN elsewhere (weight 1);
- ``fused``: p = (1 - w) p_cnn + w p_geo where a mesh is found, p_cnn elsewhere, with w chosen
  on the grid 0, 0.1, …, 1 by macro-F1 on the *synthetic* held-out split (never real labels).

Face crops are measured as ``measure_images`` measures them (detect mode, framed), the same for
training, evaluation and prediction on crops; faces that ``byel predict`` finds in photos with
the landmarker keep the mesh measured on the photo (``measure(meshes=...)``). Scores made with
a geometry head are tier B.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from byel.config import HEADS  # noqa: F401  (pixels | geometry | fused)
from byel.errors import DataError
from byel.faces.batch import Meshes, measure_images
from byel.faces.features import geometry_features
from byel.faces.head import GeometryHead, fit_geometry_head
from byel.landmarker import SHA256

WEIGHTS = tuple(i / 10 for i in range(11))  # the fusion weights tried
LANDMARKER = "MediaPipe Face Landmarker v2 (face_landmarker.task)"


def uses_geometry(model) -> bool:
    """Whether a fine-tuned model (byel.methods.FineTune) has a geometry head."""
    return getattr(model, "geometry", None) is not None


def features(images: np.ndarray, key: str | None = None, progress: bool = False,
             cache: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """(geometry features (N, 1008), mesh found (N,), measuring info) of uint8 face crops."""
    meshes = measure_images(images, key=key, progress=progress, cache=cache)
    feats, found = geometry_features(meshes)
    return feats, found, meshes.meta


def fit(images: np.ndarray, labels: np.ndarray, key: str | None = None, progress: bool = False,
        n_classes: int = 6) -> GeometryHead:
    """A geometry head of n_classes outputs fitted on labelled synthetic faces (those with a mesh)."""
    feats, found, _ = features(images, key, progress)
    try:
        return fit_geometry_head(feats, labels, n_classes=n_classes)
    except ValueError as e:  # too few faces with a mesh
        raise DataError(f"cannot fit the face-geometry head: {e} (a mesh was found on {int(found.sum())} "
                        f"of {len(found)} synthetic faces; faces of 96 px or more help)") from None


def fuse(pixel_probs: np.ndarray, geometry_probs: np.ndarray, weight: float) -> np.ndarray:
    """(1 - w) p_cnn + w p_geo where the geometry row is finite (a mesh), p_cnn elsewhere."""
    p = np.asarray(pixel_probs, np.float64)
    g = np.asarray(geometry_probs, np.float64)
    found = np.isfinite(g).all(1)
    out = p.copy()
    out[found] = (1 - weight) * p[found] + weight * g[found]
    return out.astype(np.float32)


def choose_weight(pixel_probs: np.ndarray, geometry_probs: np.ndarray, labels: np.ndarray) -> tuple[float, dict]:
    """(w, {w: macro-F1}): the fusion weight of WEIGHTS with the best macro-F1 on labelled
    (synthetic) images; the smallest such w on a tie."""
    from byel.metrics import scores

    grid = {w: scores(fuse(pixel_probs, geometry_probs, w), labels)["macro_f1"] for w in WEIGHTS}
    best = max(grid.values())
    return next(w for w in WEIGHTS if grid[w] == best), grid


@dataclass
class Geometry:
    """A model's geometry head applied to some images."""

    head: str  # geometry | fused
    weight: float
    probs: np.ndarray  # (N, C); NaN rows where no mesh was found
    found: np.ndarray  # bool (N,)

    def fuse(self, pixel_probs: np.ndarray) -> np.ndarray:
        return fuse(pixel_probs, self.probs, self.weight)

    def record(self) -> dict:
        """What reports say about it (the tier B block's ``face_geometry``)."""
        n = len(self.found)
        return {"head": self.head, "model": LANDMARKER, "sha256": SHA256, "fusion_weight": self.weight,
                "n_images": n, "n_mesh": int(self.found.sum()),
                "detection_rate": round(float(self.found.mean()), 4) if n else 0.0,
                "no_mesh": "classified by the pixel CNN"}


def measure(model, images: np.ndarray, key: str | None = None, progress: bool = False,
            cache: bool = True, meshes: list | None = None) -> Geometry | None:
    """The model's geometry head on uint8 face crops; None for a pixels-only model. ``meshes``:
    per crop, its face already measured (a ``byel.faces.Face``, e.g. by ``FaceMesher.find`` on
    the photo it was cut from) or None; only the crops without one are measured."""
    if not uses_geometry(model):
        return None
    if meshes is None:
        feats, found, _ = features(images, key, progress, cache)
    else:
        known = Meshes.from_faces(meshes)
        todo = [i for i, m in enumerate(meshes) if m is None]
        if todo:
            sub = measure_images(np.asarray(images)[todo], key=key, progress=progress, cache=cache).arrays()
            for name, a in known.arrays().items():
                a[todo] = sub[name]
        feats, found = geometry_features(known)
    probs = model.geometry.cpu().probs(feats)
    return Geometry(model.head_kind, round(float(model.fusion_weight), 6), probs, found)  # the float32 buffer


def store_weight(checkpoint, images: np.ndarray, labels: np.ndarray, key: str | None = None,
                 progress: bool = False) -> dict:
    """Choose the fusion weight of a fine-tuned checkpoint with a geometry head on labelled
    synthetic held-out images (``fused``; ``geometry`` keeps 1) and write it into the
    checkpoint: the ``fusion_weight`` buffer and a ``fusion`` record in its byel metadata."""
    import torch

    from byel.checkpoint import atomic_torch_save, read_checkpoint
    from byel.evaluate import load_classifier, predict_probs

    model = load_classifier(checkpoint)
    pixels = predict_probs(model, images)
    geo = measure(model, images, key, progress)
    weight, grid = choose_weight(pixels, geo.probs, labels)
    if model.head_kind == "geometry":
        weight = 1.0
    record = {"weight": weight, "chosen_on": "synthetic held-out split", "macro_f1_by_weight": {f"{w:.1f}": round(f, 6) for w, f in grid.items()},
              "n_images": int(len(labels)), "n_mesh": int(geo.found.sum())}
    ckpt = read_checkpoint(checkpoint)
    ckpt["state_dict"]["fusion_weight"] = torch.tensor(weight)
    ckpt["byel"]["fusion"] = record
    atomic_torch_save(ckpt, checkpoint)
    return record
