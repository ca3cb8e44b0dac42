"""The one door to a trained model: load a checkpoint (or the model shipped with byel) and
rebuild it, predict class probabilities in batches, and fuse them with the geometry head.

    from byel import classifier
    model = classifier.load(path)                 # None: byel/assets/default_model; eval mode
    probs = classifier.predict_probs(model, crops)  # (N, C) for uint8 (N, H, W, 3)
    geo = classifier.measure(model, crops)        # None for a pixels-only model
    probs = probs if geo is None else geo.fuse(probs)
    probs = classifier.face_probs(model, crops, mirror=True)  # the same, averaged with the mirrored faces

Test-time mirroring (``mirror=True``; the default of ``byel predict``, ``byel.load`` and ``byel
serve``, off for evaluation and training): each face and its left-right mirror image go through
the predictor and their probabilities are averaged, so a face and its mirror image get the same
label. With a geometry head the mirrored crop's mesh is the face's mesh mirrored (byel.faces.mirror:
landmarks mirrored and renumbered left for right, blendshapes of those landmarks), not measured
again; a face without a mesh is classified by the pixel CNN, mirrored or not.

The pixel CNN and the geometry head as one predictor (``finetune.head``, byel.config.HEADS):

- ``pixels``: the CNN alone (tier A; the paper's setting);
- ``geometry``: the geometry head where a face mesh is found, the CNN elsewhere (weight 1);
- ``fused``: p = (1 - w) p_cnn + w p_geo where a mesh is found, p_cnn elsewhere, with w chosen
  on the grid 0, 0.1, …, 1 by macro-F1 on the *synthetic* held-out split (never real labels).

With ``finetune.no_mesh activations`` (opt-in; recorded in the checkpoint's config) a third view
scores the faces without a mesh: a head on the landmark model's own 4 x 4 x 128 activation map
(byel.faces.activations; every face has one), fitted as the geometry head is, stands in for the
geometry head there (p_geo is its probabilities, the same weight w). Its map is read only for the
faces without a mesh. A model without it (every older checkpoint) predicts exactly as before.

A class-prior correction (``byel adapt --method prior``, byel.adapt.prior; opt-in, tier C): a
checkpoint whose adaptations record a ``log_prior_ratio`` r (one number a class) has its final
probabilities re-weighted, p'(c|x) ∝ p(c|x)·exp(r_c), after fusion and mirror averaging: in
``face_probs``, in ``Geometry.fuse`` and, for a pixels-only model, in ``predict_probs`` (whose
output is then the final one; a geometry model's ``predict_probs`` stays the pixel CNN's own).
A checkpoint without one gives the very same numbers as before.

Face crops are measured as ``measure_images`` measures them (detect mode, framed), the same for
training, evaluation and prediction on crops; faces that ``byel predict`` finds in photos with
the landmarker keep the mesh measured on the photo (``measure(meshes=...)``). Scores made with
a geometry head are tier B. The geometry head itself (its features and its fit) lives in
byel.faces.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from byel.checkpoint import atomic_torch_save, backbone_state, load_checkpoint, read_checkpoint
from byel.config import from_dict
from byel.data.augment import EvalTransform
from byel.errors import ByelError
from byel.faces.activations import activation_features
from byel.faces.batch import Meshes, measure_images
from byel.faces.features import geometry_features
from byel.landmarker import LANDMARKER, SHA256
from byel.methods.classifier import Classifier, backbone_from_config
from byel.metrics import scores
from byel.models.backbones import folded_copy

DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "default_model"
WEIGHTS = tuple(i / 10 for i in range(11))  # the fusion weights tried


# --------------------------------------------------------------------------- loading


def default_checkpoint() -> Path:
    """The model shipped inside the package (byel/assets/default_model/*.ckpt)."""
    found = sorted(DEFAULT_MODEL_DIR.glob("*.ckpt")) if DEFAULT_MODEL_DIR.is_dir() else []
    if len(found) != 1:
        raise ByelError("no default model shipped yet; pass a checkpoint")
    return found[0]


def rebuild(ckpt: dict) -> Classifier:
    """The fine-tuned model a checkpoint (as ``load_checkpoint`` returns it) holds, its weights
    loaded, in train mode on the CPU; ``model.checkpoint_meta`` is its byel metadata. A plain
    torch module (byel.methods.Classifier, what the Lightning FineTune trains): no Lightning."""
    model = Classifier(ckpt["byel"]["config"])
    model.load_state_dict(ckpt["state_dict"])
    model.checkpoint_meta = ckpt["byel"]  # what it learned from (byel.provenance)
    return model


def load(checkpoint: str | Path | None = None, device: str | torch.device = "cpu") -> Classifier:
    """A fine-tuned byel model in eval mode, ready for `predict_probs`; `model.classes` are its
    classes (the checkpoint's: the six, or the six and neutral). ``checkpoint=None``: the model
    shipped with byel."""
    checkpoint = default_checkpoint() if checkpoint is None else checkpoint
    ckpt = load_checkpoint(checkpoint, kinds=("finetune",))
    return rebuild(ckpt).to(device).eval()


def load_backbone(checkpoint: str | Path, device: str = "cpu"):
    """(backbone in eval mode, preprocess transform, config) of a stage-1 or fine-tuned checkpoint."""
    ckpt = load_checkpoint(checkpoint, kinds=("pretrain", "finetune"))
    cfg = from_dict(ckpt["byel"]["config"])
    backbone = backbone_from_config(cfg)
    backbone.load_state_dict(backbone_state(ckpt))
    pre = EvalTransform(cfg.aug, cfg.data.image_size)
    return backbone.to(device).eval(), pre.to(device), cfg


# --------------------------------------------------------------------------- predicting


def _batches(n: int, batch_size: int, desc: str, progress: bool):
    starts = range(0, n, batch_size)
    return tqdm(starts, desc=desc, leave=False, disable=not progress) if progress else starts


def mirrored(images: np.ndarray) -> np.ndarray:
    """The images (N, H, W, 3) mirrored left-right."""
    return np.ascontiguousarray(np.asarray(images)[:, :, ::-1])


# --------------------------------------------------------------------------- class-prior correction


def prior_log_ratio(model) -> np.ndarray | None:
    """The class-prior correction a model's checkpoint carries: the sum of its adaptations'
    ``log_prior_ratio`` (log π'_c/π_c, one a class; byel.adapt.prior), float64 (C,); None when
    it has none (every checkpoint made before, or without, ``byel adapt --method prior``)."""
    meta = getattr(model, "checkpoint_meta", None) or {}
    ratios = [a["log_prior_ratio"] for a in meta.get("adaptations", []) if a.get("log_prior_ratio") is not None]
    if not ratios:
        return None
    r = np.sum(np.asarray(ratios, np.float64), axis=0)
    if r.shape != (len(model.classes),) or not np.isfinite(r).all():
        raise ByelError(f"the checkpoint's class-prior correction has {r.size} number(s) for {len(model.classes)} "
                        "classes; adapt this checkpoint again with byel adapt --method prior")
    return r


def apply_prior(probs: np.ndarray, log_ratio: np.ndarray | None) -> np.ndarray:
    """p'(c|x) = p(c|x)·exp(r_c) / Σ_k p(k|x)·exp(r_k), float32 (N, C); `probs` itself (the
    same array) when `log_ratio` is None."""
    if log_ratio is None:
        return probs
    p = np.asarray(probs, np.float64) * np.exp(np.asarray(log_ratio, np.float64))
    total = p.sum(1, keepdims=True)
    return (p / np.where(total > 0, total, 1.0)).astype(np.float32)


def predict_probs(model: Classifier, images: np.ndarray, batch_size: int = 256, progress: bool = False,
                  mirror: bool = False) -> np.ndarray:
    """Class probabilities (N, C) for uint8 images (N, H, W, 3), C = len(model.classes), under
    eval() and inference_mode. ``mirror``: the mean of the images' and their mirror images'
    probabilities. A pixels-only model's class-prior correction, if its checkpoint has one, is
    applied last (a geometry model's is applied after fusion: ``Geometry.fuse``)."""
    probs = _pixel_probs(model, images, batch_size, progress, mirror)
    return probs if uses_geometry(model) else apply_prior(probs, prior_log_ratio(model))


@torch.inference_mode()
def _pixel_probs(model: Classifier, images: np.ndarray, batch_size: int = 256, progress: bool = False,
                 mirror: bool = False) -> np.ndarray:
    """The pixel CNN's probabilities, no class-prior correction."""
    if mirror:
        return (_probs(model, images, batch_size, progress) + _probs(model, mirrored(images), batch_size, progress)) / 2
    return _probs(model, images, batch_size, progress)


def _probs(model: Classifier, images: np.ndarray, batch_size: int, progress: bool) -> np.ndarray:
    model.eval()
    net = _inference_net(model)
    out = [
        net.predict_images(torch.from_numpy(images[s : s + batch_size])).float().cpu()
        for s in _batches(len(images), batch_size, "predict", progress)
    ]
    return torch.cat(out).numpy() if out else np.zeros((0, len(model.classes)), np.float32)


def _inference_net(model: Classifier) -> Classifier:
    """The model as prediction runs it: its copy with the batch norms folded into the
    convolutions and channels-last weights (byel.models.backbones.folded_copy: the same
    probabilities up to float rounding, about a third less time for the small CNN on a CPU). Kept
    on the model and made again whenever one of its weights or buffers changed (training steps,
    batch-norm adaptation and loading weights change a tensor in place, ``to`` moves it)."""
    key = tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))
    held = vars(model).get("_inference")
    if held is None or held[0] != key:
        vars(model).pop("_inference", None)  # not copied into the new one
        with torch.inference_mode(False):
            held = (key, folded_copy(model))
        vars(model)["_inference"] = held
    return held[1]


# --------------------------------------------------------------------------- fusion


def uses_geometry(model) -> bool:
    """Whether a fine-tuned model (byel.methods.Classifier) has a geometry head."""
    return getattr(model, "geometry", None) is not None


def uses_activations(model) -> bool:
    """Whether a fine-tuned model classifies faces without a mesh with its activation head."""
    return getattr(model, "activation_head", None) is not None


BY_PIXELS = "classified by the pixel CNN"
BY_ACTIVATIONS = "classified by the activation head (the landmark model's 4x4x128 map)"


def no_mesh_view(model) -> str:
    """What classifies a model's faces without a mesh, in words (the reports' ``no_mesh``)."""
    return BY_ACTIVATIONS if uses_activations(model) else BY_PIXELS


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
    grid = {w: scores(fuse(pixel_probs, geometry_probs, w), labels)["macro_f1"] for w in WEIGHTS}
    best = max(grid.values())
    return next(w for w in WEIGHTS if grid[w] == best), grid


@dataclass
class Geometry:
    """A model's geometry head applied to some images."""

    head: str  # geometry | fused
    weight: float
    probs: np.ndarray  # (N, C); NaN rows where no mesh was found (unless activations scored them)
    found: np.ndarray  # bool (N,): a mesh
    activations: np.ndarray | None = None  # bool (N,): scored by the activation head (no mesh); None: not used
    log_prior_ratio: np.ndarray | None = None  # the model's class-prior correction (prior_log_ratio)

    def fuse(self, pixel_probs: np.ndarray) -> np.ndarray:
        """The model's prediction: fused, then its class-prior correction if it has one."""
        return apply_prior(fuse(pixel_probs, self.probs, self.weight), self.log_prior_ratio)

    def record(self) -> dict:
        """What reports say about it (the tier B block's ``face_geometry``)."""
        n = len(self.found)
        out = {"head": self.head, "model": LANDMARKER, "sha256": SHA256, "fusion_weight": self.weight,
               "n_images": n, "n_mesh": int(self.found.sum()),
               "detection_rate": round(float(self.found.mean()), 4) if n else 0.0,
               "no_mesh": BY_PIXELS}
        if self.activations is not None:
            out["no_mesh"] = BY_ACTIVATIONS
            out["n_activations"] = int(self.activations.sum())
        return out


def measure(model, images: np.ndarray, key: str | None = None, progress: bool = False,
            cache: bool = True, meshes: list | None = None) -> Geometry | None:
    """The model's geometry head on uint8 face crops; None for a pixels-only model. ``meshes``:
    per crop, its face already measured (a ``byel.faces.Face``, e.g. by ``FaceMesher.find`` on
    the photo it was cut from) or None; only the crops without one are measured."""
    if not uses_geometry(model):
        return None
    return _geometry(model, _meshes(images, key, progress, cache, meshes), images, key, progress, cache)


def _meshes(images: np.ndarray, key: str | None, progress: bool, cache: bool, meshes: list | None) -> Meshes:
    """The face of each crop: ``meshes``' where given, else measured (``measure_images``)."""
    if meshes is None:
        return measure_images(images, key=key, progress=progress, cache=cache)
    known = Meshes.from_faces(meshes)
    todo = [i for i, m in enumerate(meshes) if m is None]
    if todo:
        sub = measure_images(np.asarray(images)[todo], key=key, progress=progress, cache=cache).arrays()
        for name, a in known.arrays().items():
            a[todo] = sub[name]
    return known


def _geometry(model, meshes: Meshes, images: np.ndarray, key: str | None = None, progress: bool = False,
              cache: bool = False) -> Geometry:
    """The geometry head on the faces' meshes; with the third view (``uses_activations``) the
    faces without a mesh are scored on the landmark model's activations of their crop (``images``)."""
    feats, found = geometry_features(meshes)
    probs = model.geometry.cpu().probs(feats)
    weight = round(float(model.fusion_weight), 6)  # the float32 buffer
    prior = prior_log_ratio(model)
    if not uses_activations(model):
        return Geometry(model.head_kind, weight, probs, found, log_prior_ratio=prior)
    missing = np.flatnonzero(~found)  # the third view: only the faces without a mesh are read
    if len(missing):
        acts, _ = activation_features(np.asarray(images)[missing], key=key and f"{key}:no-mesh",
                                      progress=progress, cache=cache)
        probs[missing] = model.activation_head.cpu().probs(acts)
    return Geometry(model.head_kind, weight, probs, found, ~found, prior)


def face_probs(model, crops: np.ndarray, meshes: list | None = None, batch_size: int = 256,
               mirror: bool = False) -> np.ndarray:
    """The model's prediction (N, C) for uint8 face crops (N, H, W, 3): the pixel CNN's
    probabilities, fused with the geometry head's where the model has one (``meshes``: per crop
    its face measured, or None, as for ``measure``). ``mirror``: the mean of this and the same
    prediction for the mirrored crops; the pixel CNN sees the crops and their mirror images in
    one pass, and a mirrored face's mesh is its face's mesh mirrored (byel.faces.mirror: the
    landmarks mirrored and renumbered left for right, the blendshapes of those landmarks), not
    measured again. The model's class-prior correction, if its checkpoint has one, is applied
    last (prior_log_ratio)."""
    crops = np.asarray(crops)
    n = len(crops)
    if not n:
        return np.zeros((0, len(model.classes)), np.float32)
    flipped = mirrored(crops) if mirror else None
    pixels = _pixel_probs(model, np.concatenate([crops, flipped]) if mirror else crops, batch_size)
    if uses_geometry(model):
        known = _meshes(crops, None, False, False, meshes)
        geo = _geometry(model, known, crops)
        probs = fuse(pixels[:n], geo.probs, geo.weight)
        if mirror:
            geo = _geometry(model, _mirror_meshes(known), flipped)
            other = fuse(pixels[n:], geo.probs, geo.weight)
    else:
        probs, other = pixels[:n], pixels[n:] if mirror else None
    if mirror:
        probs = ((np.asarray(probs, np.float64) + other) / 2).astype(np.float32)
    return apply_prior(probs, prior_log_ratio(model))


_MIRROR: dict = {}  # the blendshape model for mirrored faces, made once
_MIRROR_LOCK = threading.Lock()


def _mirror_meshes(meshes: Meshes) -> Meshes:
    """``mirror_meshes`` with one blendshape model kept for the process."""
    from byel.faces.mesher import FaceMesher
    from byel.faces.mirror import mirror_meshes

    with _MIRROR_LOCK:
        if "mesher" not in _MIRROR:
            _MIRROR["mesher"] = FaceMesher("crop", max_faces=1)
        return mirror_meshes(meshes, _MIRROR["mesher"])


def store_weight(checkpoint, images: np.ndarray, labels: np.ndarray, key: str | None = None,
                 progress: bool = False) -> dict:
    """Choose the fusion weight of a fine-tuned checkpoint with a geometry head on labelled
    synthetic held-out images (``fused``; ``geometry`` keeps 1) and write it into the
    checkpoint: the ``fusion_weight`` buffer and a ``fusion`` record in its byel metadata."""
    model = load(checkpoint)
    pixels = predict_probs(model, images)
    geo = measure(model, images, key, progress)
    weight, grid = choose_weight(pixels, geo.probs, labels)
    if model.head_kind == "geometry":
        weight = 1.0
    record = {"weight": weight, "chosen_on": "synthetic held-out split", "macro_f1_by_weight": {f"{w:.1f}": round(f, 6) for w, f in grid.items()},
              "n_images": int(len(labels)), "n_mesh": int(geo.found.sum())}
    if geo.activations is not None:  # the faces without a mesh took part through the activation head
        record["n_activations"] = int(geo.activations.sum())
    ckpt = read_checkpoint(checkpoint)
    ckpt["state_dict"]["fusion_weight"] = torch.tensor(weight)
    ckpt["byel"]["fusion"] = record
    atomic_torch_save(ckpt, checkpoint)
    return record
