"""Export a fine-tuned model as a standalone file that needs neither byel nor Lightning.

The exported model takes float32 images of shape (N, 3, S, S), RGB, values in [0, 1]
(S = the checkpoint's image size, e.g. 64) and returns the six class probabilities (N, 6)
in the order of ``classes``. Mean/std normalisation is baked in; resizing is NOT: resize
faces to S x S yourself (area/antialiased downscaling, as byel does). A JSON file beside the
model (``<out>.json``, e.g. ``model.pt.json``) records classes, input shape, channel order,
value range, mean/std, byel version and the source checkpoint.

Formats: ``torchscript`` (``torch.jit.load(path)``, always available) and ``onnx``
(needs the ``onnx`` package to export and ``onnxruntime`` to check it; dynamic batch axis).
Every export is checked against the PyTorch model on a random batch; the largest absolute
difference is returned (``parity_max_abs_diff``) and an export that disagrees is refused.

A model with a geometry or fused head (``finetune.head``) also gets its geometry head as a
second file, ``<out stem>.geometry<suffix>`` (e.g. ``model.geometry.onnx``): float32 features
(N, 1008) -> class probabilities (N, C), standardisation inside. The JSON's ``geometry`` block
says how to compute the features (MediaPipe Face Landmarker v2, the file's sha256, the feature
layout and the eye alignment) and how to fuse the two outputs. Computing them needs a face mesh
from that landmarker (MediaPipe's own or byel's ``byel.faces``): the exported files alone
cannot, and without it the pixel model alone is the ``pixels`` predictor.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from byel import __version__
from byel.checks import same_path
from byel.errors import ByelError
from byel.files import written_whole
from byel.outputs import EXPORT_FORMATS, export_files

FORMATS = EXPORT_FORMATS  # format -> the model file's suffix
PARITY_TOLERANCE = 1e-4
ONNX_OPSET = 17
NORMALISATION_FORMULAS = {
    "dataset": "(x - mean) / std per channel",
    "per-image": "(x - mean(x)) / (std(x) + 1e-3) over each image's pixels",
    "equalize": "histogram equalisation per image and channel: (mid-rank cdf(x) - 0.5) * sqrt(12)",
}


class StandaloneGeometryHead(nn.Module):
    """(N, 1008) float32 geometry features -> (N, C) softmax probabilities. Eval mode only."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head  # byel.faces.GeometryHead: (x - mean) / std, then linear

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features).softmax(-1)


class StandaloneClassifier(nn.Module):
    """(N, 3, S, S) float RGB in [0, 1] -> (N, 6) softmax probabilities. Eval mode only."""

    def __init__(self, backbone: nn.Module, head: nn.Module, normalize: nn.Module):
        super().__init__()
        # The model's own normalisation module (dataset mean/std or per-image), not a copy of it.
        self.backbone, self.head, self.normalize = backbone, head, normalize

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.normalize(images))).softmax(-1)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def onnx_available() -> str | None:
    """None when ONNX export and checking work here, else why not (one line)."""
    missing = []
    for mod in ("onnx", "onnxruntime"):
        try:
            __import__(mod)
        except Exception:  # ImportError, or a broken binary wheel
            missing.append(mod)
    return f"ONNX export needs {' and '.join(missing)}: pip install onnx onnxruntime" if missing else None


def _reference(model, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(model.preprocess(x)).softmax(-1)


def export(checkpoint: str | Path, out_path: str | Path, fmt: str = "torchscript") -> dict:
    """Write a standalone model of a fine-tuned checkpoint (see the module doc) and its JSON.

    ``out_path`` without a suffix gets ``.pt`` (torchscript) or ``.onnx``. Returns the paths,
    the input size and the parity check's ``parity_max_abs_diff``. Raises CheckpointError for a
    wrong checkpoint and ByelError for an unknown format or when ONNX is not installed."""
    from byel import classifier  # late: Lightning import

    if fmt not in FORMATS:
        raise ByelError(f"unknown export format {fmt!r}; choose {' or '.join(FORMATS)}")
    if fmt == "onnx" and (why := onnx_available()):
        raise ByelError(why)
    model = classifier.load(checkpoint, "cpu")
    cfg = model.cfg
    size = cfg.data.image_size
    files = export_files(out_path, fmt)  # the names `byel export` checked before any work
    out = files["model"]
    for written in files.values():
        if same_path(written, checkpoint):
            raise ByelError(f"the export would replace its own checkpoint {checkpoint}; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    standalone = StandaloneClassifier(model.backbone, model.head, model.preprocess.normalize).eval()
    gen = torch.Generator().manual_seed(0)
    example = torch.rand(2, 3, size, size, generator=gen)
    check = torch.rand(5, 3, size, size, generator=gen)  # another batch size: dynamic batch axis
    expected = _reference(model, check)
    diff = _write_checked(standalone, example, check, expected, fmt, out, "images")
    geo = None
    if getattr(model, "geometry", None) is not None:  # a geometry | fused head: its own file
        geo_out = files["geometry model"]
        head = StandaloneGeometryHead(model.geometry.cpu()).eval()
        feats = _feature_batch(model.geometry, 7, gen)
        try:
            geo_diff = _write_checked(head, feats[:2], feats, torch.from_numpy(model.geometry.probs(feats.numpy())),
                                      fmt, geo_out, "features")
        except BaseException:
            out.unlink(missing_ok=True)  # not half an export
            raise
        geo = (geo_out, geo_diff)
    ckpt = Path(checkpoint)
    meta = {
        "format": fmt,
        "file": out.name,
        "classes": list(model.classes),
        "input": {
            "name": "images", "shape": ["N", 3, size, size], "dtype": "float32", "layout": "NCHW",
            "channel_order": "RGB", "value_range": [0.0, 1.0],
            "resize": f"resize faces to {size}x{size} before calling (area / antialiased when shrinking)",
            "framing": _framing(),
        },
        "output": {"name": "probabilities", "shape": ["N", len(model.classes)],
                   "meaning": "softmax probabilities in the order of classes"},
        "normalisation": {"kind": cfg.aug.normalize, "mean": list(cfg.aug.mean), "std": list(cfg.aug.std),
                          "applied_inside": True,
                          "formula": NORMALISATION_FORMULAS[cfg.aug.normalize]},
        "image_size": size,
        "byel_version": __version__,
        "torch_version": torch.__version__,
        "method": cfg.method.name,
        "backbone": cfg.model.backbone,
        "config_digest": cfg.digest(),
        "source_checkpoint": str(ckpt.resolve()),
        "source_checkpoint_sha256": file_sha256(ckpt),
        "parity_max_abs_diff": diff,
    }
    if fmt == "onnx":
        meta["onnx_opset"] = ONNX_OPSET
    if geo:
        meta["geometry"] = geometry_record(model, geo[0].name, geo[1])
    ratio = classifier.prior_log_ratio(model)
    if ratio is not None:  # byel adapt --method prior: not inside the exported files
        meta["class_prior"] = {
            "log_prior_ratio": [round(float(v), 6) for v in ratio],
            "apply": "p'[c] = p[c] * exp(log_prior_ratio[c]) / sum_k p[k] * exp(log_prior_ratio[k]), on the final "
                     "probabilities (after the fusion with the geometry model, and after averaging a face with its "
                     "mirror image); the exported files output p, without it"}
    if geo is None:  # the geometry model of an earlier export replaced here is not this model's
        files["geometry model"].unlink(missing_ok=True)
    json_path = files["JSON"]
    with written_whole(json_path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return {"path": str(out), "json": str(json_path), "format": fmt, "image_size": size,
            "parity_max_abs_diff": diff, **({"geometry_path": str(geo[0]), "geometry_parity_max_abs_diff": geo[1]}
                                            if geo else {})}


def _write_checked(module: nn.Module, example: torch.Tensor, check: torch.Tensor, expected: torch.Tensor, fmt: str,
                   out: Path, input_name: str) -> float:
    """Write ``module`` as ``fmt`` to ``out`` (atomically) after checking it against ``expected``
    on ``check`` (another batch size than ``example``: the batch axis is dynamic); returns the
    largest absolute difference. An export that disagrees is refused."""
    with written_whole(out) as tmp:  # a full disk, a folder no file can be made in: names `out`
        if fmt == "torchscript":
            with torch.no_grad():
                traced = torch.jit.trace(module, example, check_trace=False)
            traced = torch.jit.freeze(traced.eval()) if hasattr(torch.jit, "freeze") else traced
            with open(tmp, "wb") as f:  # a Python write: a full disk is an OSError, not a C++ abort
                torch.jit.save(traced, f)
            got = torch.jit.load(str(tmp))(check)
        else:
            _export_onnx(module, example, tmp, input_name)
            got = torch.from_numpy(run_onnx(tmp, check.numpy()))
        diff = float((got.detach() - expected).abs().max())
        if not diff <= PARITY_TOLERANCE:  # also catches NaN
            raise ByelError(f"exported {fmt} model {out.name} disagrees with the PyTorch model "
                            f"(max abs diff {diff:.2e})")
    return diff


def _framing() -> str:
    from byel.faces.features import SYNTH_EYES

    (lx, ly), (rx, ry) = SYNTH_EYES
    return (f"frame faces as the training faces are: byel predict rotates and scales each face found in a photo so "
            f"its outer eye corners (face mesh points 33 and 263) are level at ({lx}, {ly}) and ({rx}, {ry}) of "
            f"the side (byel.faces.features.SYNTH_EYES)")


def _feature_batch(head, n: int, gen: torch.Generator) -> torch.Tensor:
    """n feature rows spread like the ones the head was fitted on: mean + std x N(0, 1)."""
    z = torch.randn(n, head.mean.numel(), generator=gen)
    return (head.mean.cpu() + head.std.cpu() * z).float()


def geometry_record(model, file: str, diff: float) -> dict:
    """The JSON's ``geometry`` block: the second file, the fusion, and how to compute its input."""
    from byel.faces.features import EYE_CORNERS, N_FEATURES
    from byel.faces.mesher import BLENDSHAPES, N_LANDMARKS
    from byel.faces.model import DEFAULT_MODEL
    from byel.landmarker import LANDMARKER, SHA256

    weight = round(float(model.fusion_weight), 6)
    return {
        "head": model.head_kind,
        "file": file,
        "input": {"name": "features", "shape": ["N", N_FEATURES], "dtype": "float32"},
        "output": {"name": "probabilities", "shape": ["N", len(model.classes)],
                   "meaning": "softmax probabilities in the order of classes"},
        "standardisation": {"applied_inside": True, "formula": "(x - mean) / std per feature, fitted on the "
                                                                 "synthetic training faces"},
        "fusion_weight": weight,
        "fusion": "p = (1 - w) * p_pixels + w * p_geometry for a face with a mesh; p = p_pixels for a face "
                  f"without one (w = fusion_weight = {weight})",
        **({"no_mesh": "this model's activation head (finetune.no_mesh activations: the landmark model's "
                       "4x4x128 map, byel.faces.activations) is not exported: here a face without a mesh gets "
                       "p_pixels"} if getattr(model, "activation_head", None) is not None else {}),
        "parity_max_abs_diff": diff,
        "needs": "a face mesh from MediaPipe's Face Landmarker v2 (the file below: MediaPipe's own FaceLandmarker "
                 "with blendshapes on, or byel's byel.faces.FaceMesher); the exported files cannot compute the "
                 "features themselves",
        "landmarker": {"model": LANDMARKER, "sha256": SHA256, "in_byel": f"byel/assets/{DEFAULT_MODEL.parent.name}/"
                       f"{DEFAULT_MODEL.name}", "options": "face detection and landmark presence thresholds 0.5; "
                       "output_face_blendshapes on"},
        "features": {
            "layout": f"[0:{len(BLENDSHAPES)}] the {len(BLENDSHAPES)} blendshape scores in the order of `blendshapes` "
                      f"(MediaPipe's category order); [{len(BLENDSHAPES)}:{N_FEATURES}] the {N_LANDMARKS} mesh "
                      "landmarks after alignment, interleaved: x0, y0, x1, y1, ... (z unused)",
            "alignment": f"landmark x, y in image pixels (MediaPipe's normalised x times the image width, y times "
                         f"its height), then the similarity (rotation, uniform scale, shift) that puts landmark "
                         f"{EYE_CORNERS[0]} at (-0.5, 0) and {EYE_CORNERS[1]} at (0.5, 0): with points as complex "
                         f"numbers z = x + iy, w = (z - (z{EYE_CORNERS[0]} + z{EYE_CORNERS[1]}) / 2) / "
                         f"(z{EYE_CORNERS[1]} - z{EYE_CORNERS[0]}); features (Re w, Im w)",
            "measured_on": "byel predict: the face in the whole photo (BlazeFace + mesh, "
                           "byel.faces.FaceMesher.find); ready-cut face crops (training, evaluation, --no-detect): "
                           "the crop with a replicated border of 0.25 x its side, scaled to 288 px "
                           "(byel.faces.frame_crop), then BlazeFace + mesh",
            "blendshapes": list(BLENDSHAPES),
            "code": "byel.faces.geometry_features(byel.faces.Meshes.from_faces(faces))",
        },
    }


def _export_onnx(module: nn.Module, example: torch.Tensor, path: Path, input_name: str = "images") -> None:
    import warnings

    kwargs = dict(input_names=[input_name], output_names=["probabilities"], opset_version=ONNX_OPSET,
                  dynamic_axes={input_name: {0: "N"}, "probabilities": {0: "N"}})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (example,), str(path), dynamo=False, **kwargs)
        except TypeError:  # torch without the dynamo switch
            torch.onnx.export(module, (example,), str(path), **kwargs)


def run_onnx(path: str | Path, images: np.ndarray) -> np.ndarray:
    """Probabilities from an exported ONNX model with onnxruntime (CPU)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: images.astype(np.float32)})[0]
