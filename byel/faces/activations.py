"""The face-landmark network's own activations: a third view of a face, beside its pixels and
its mesh, and one that exists for every face crop.

MediaPipe's landmark model (face_landmarks_detector.tflite) reduces its 256 x 256 input to a
4 x 4 x 128 map (ACTIVATION_TENSOR), then to 2 x 2 and to the 478 landmarks and the face-presence
score. That map is read here for every crop, also those whose presence score is below 0.5 (no
mesh): a head on it (byel.faces.head.fit_activation_head, the geometry head's fit) can classify
the faces the mesh misses. Results that use it are tier B, as every face-geometry result.

Each crop is shown to the landmark model as its ROI would show it: framed with a replicated
border of ACTIVATION_PAD x its side on every side (1.5x the face, MediaPipe's ROI scale), squared
and scaled to 256 px; one pass, no detector, no refinement. Reading an intermediate tensor needs
an interpreter that preserves them all (about 1.4x the time of the plain one, and more memory),
so it is made only here: meshing faces is as fast as without this module.

Choices, measured on FER2013 PublicTest-6 with a linear head fitted on 2,400 procedural faces
(benchmarks/third_view.py, tier B): the map flattened (2,048 features: macro-F1 0.309 ± 0.001 over
3 seeds) beats it average-pooled to 2 x 2 (512: 0.303 ± 0.006) and to 1 x 1 (128: 0.289 ± 0.003);
the border of 0.25 beats none (seed 0: 0.310 against 0.281, benchmarks/results/third_view_pad0.md).
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from byel.data import cache as cache_store
from byel.errors import ByelError
from byel.faces.batch import content_hash, in_threads
from byel.faces.mesher import MESH_SIZE
from byel.faces.model import interpreter, read_models
from byel.landmarker import SHA256

# The last 4 x 4 x 128 map of the landmark model, before its landmark regressor (the PReLU that
# ends its 4 x 4 stage; its 2 x 2 stage and the regressors read it). Found by name and shape.
ACTIVATION_TENSOR = "model_5/model_4/model_3/p_re_lu_184/"
ACTIVATION_SHAPE = (4, 4, 128)
ACTIVATION_PAD = 0.25  # border x the crop's side on every side: the face at 1.5x, as in an ROI
N_ACTIVATIONS = int(np.prod(ACTIVATION_SHAPE))  # 2048: the map flattened, not pooled


def activation_tensor(it) -> int:
    """The index of ACTIVATION_TENSOR in a landmark-model interpreter. Raises ByelError (one line)
    when the model has no such tensor of ACTIVATION_SHAPE (not MediaPipe's landmark model v2)."""
    for d in it.get_tensor_details():
        if d["name"].startswith(ACTIVATION_TENSOR) and tuple(int(x) for x in d["shape"]) == (1, *ACTIVATION_SHAPE):
            return int(d["index"])
    raise ByelError(f"the face landmark model has no {'x'.join(map(str, ACTIVATION_SHAPE))} activation map "
                    f"{ACTIVATION_TENSOR}… (not MediaPipe's face_landmarker.task v2); reinstall byel")


def landmark_input(img: np.ndarray, pad: float = ACTIVATION_PAD) -> np.ndarray:
    """A face crop (uint8, grey or RGB) as the landmark model's input: (1, 256, 256, 3) float32 in
    [0, 1], the crop centred in a square of (1 + 2 pad) x its longer side (replicated border)."""
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or min(img.shape[:2]) < 2 or img.dtype != np.uint8:
        raise ByelError(f"face activations need uint8 RGB face crops (H, W, 3), got {img.dtype} {img.shape}")
    img = img[..., :3]
    h, w = img.shape[:2]
    side = int(round(max(h, w) * (1 + 2 * pad)))
    top, left = (side - h) // 2, (side - w) // 2
    framed = cv2.copyMakeBorder(img, top, side - h - top, left, side - w - left, cv2.BORDER_REPLICATE)
    out = cv2.resize(framed, (MESH_SIZE, MESH_SIZE), interpolation=cv2.INTER_LINEAR)
    return out[None].astype(np.float32) / 255.0


class ActivationReader:
    """The landmark model with its intermediate tensors kept: ``read(crop)`` -> the crop's
    ACTIVATION_SHAPE map, flattened (N_ACTIVATIONS float32). Not thread-safe: one per thread.
    ``model``: a face_landmarker.task (default: the one shipped with byel)."""

    def __init__(self, model: str | None = None, threads: int = 1, pad: float = ACTIVATION_PAD):
        self.pad = pad
        self._it = interpreter(read_models(model)["face_landmarks_detector.tflite"], threads, preserve_all_tensors=True)
        self._tensor = activation_tensor(self._it)
        self._input = self._it.get_input_details()[0]["index"]

    def read(self, img: np.ndarray) -> np.ndarray:
        self._it.set_tensor(self._input, landmark_input(img, self.pad))
        self._it.invoke()
        return self._it.get_tensor(self._tensor).reshape(-1).astype(np.float32)


def activation_features(images, *, workers: int = 0, cache: bool = True, key: str | None = None,
                        progress: bool = False, model: str | None = None,
                        pad: float = ACTIVATION_PAD) -> tuple[np.ndarray, dict]:
    """(features float32 (N, N_ACTIVATIONS), info) of N uint8 face crops (N, H, W, 3) or a list
    of crops: every crop gets a row, mesh or not. Cached beside the face meshes (keyed by the
    pixels, the options and the model; ``key`` names the image set) unless ``cache`` is False.
    ``workers``: threads, 0 = one per core (at most 8). ``pad``: see ``landmark_input``."""
    n = len(images)
    opts = {"view": "activations", "tensor": ACTIVATION_TENSOR, "pad": pad, "model": SHA256}
    family = "activations-" + cache_store.digest("activations", opts, key or "")
    content = content_hash(images, opts)
    if cache:
        hit = cache_store.read(family, content)
        if hit is not None and hit[0].get("features", np.zeros((0, 0))).shape == (n, N_ACTIVATIONS):
            return hit[0]["features"], {**hit[1], "cached": True}
    out = np.zeros((n, N_ACTIVATIONS), np.float32)
    t0 = time.perf_counter()

    def work(reader: ActivationReader, i: int) -> None:
        out[i] = reader.read(images[i])

    used = in_threads(n, lambda: ActivationReader(model, pad=pad), work, workers, "face activations", progress)
    seconds = time.perf_counter() - t0
    meta = {"options": opts, "workers": used, "seconds": round(seconds, 2),
            "faces_per_s": round(n / seconds, 1) if seconds > 0 else None, "cached": False}
    if cache and n:
        cache_store.write(family, content, {"features": out}, meta)
    return out, meta
