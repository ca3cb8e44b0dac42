"""Measure many face crops at once: one face per image, a thread pool of meshers, a disk cache.

The TFLite models take one image per call; the runtime releases the GIL while it runs, so
threads (one ``FaceMesher`` each) share the work. Results are stored beside the decoded-image
cache (``$BYEL_CACHE_DIR``, default ``~/.cache/byel/data``) keyed by the pixels, the options and
the model, so the second pass over the same images measures nothing.
"""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np
from tqdm.auto import tqdm

from byel.data import cache as cache_store
from byel.faces.mesher import BLENDSHAPES, N_LANDMARKS, Face, FaceMesher
from byel.landmarker import SHA256
from byel.imageio import io_workers

# Ready-cut crops (FER2013's 48 px faces fill the frame) are too tight and too small for the
# detector: a replicated border of PAD x the side around them, then scaled to SIDE px (the issue's
# recipe), lets it find 86.3 % of FER2013 PublicTest-6 faces (crop mode, no detector: 89.4 %, but
# its features classify worse: benchmarks/results/geometry_transfer.md).
PAD, SIDE = 0.25, 288
_CHUNK = 64  # images per pool task


def frame_crop(img: np.ndarray, pad: float = PAD, side: int = SIDE) -> tuple[np.ndarray, float, int]:
    """A face crop with a replicated border of ``pad`` x its side, scaled (bilinear) to ``side``
    px. Returns (image, scale, border px) so results map back: orig = prepared / scale - border."""
    b = int(round(pad * max(img.shape[:2])))
    framed = cv2.copyMakeBorder(img, b, b, b, b, cv2.BORDER_REPLICATE) if b else img
    h, w = framed.shape[:2]
    scale = side / max(h, w)
    out = cv2.resize(framed, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
    return out, scale, b


@dataclass
class Meshes:
    """The most confident face of each of N images; NaN rows where none was found."""

    found: np.ndarray  # bool (N,)
    boxes: np.ndarray  # float32 (N, 4): x, y, w, h in pixels of the given image
    landmarks: np.ndarray  # float32 (N, 478, 3) in pixels of the given image
    blendshapes: np.ndarray  # float32 (N, 52), names in BLENDSHAPES
    presence: np.ndarray  # float32 (N,)
    meta: dict = field(default_factory=dict)  # options, seconds, faces_per_s, cached

    def __len__(self) -> int:
        return len(self.found)

    @property
    def rate(self) -> float:
        """Fraction of images with a face mesh."""
        return float(self.found.mean()) if len(self.found) else 0.0

    @classmethod
    def empty(cls, n: int) -> Meshes:
        """N images with no face found yet: found False, NaN everywhere else."""
        nan = np.float32(np.nan)
        return cls(np.zeros(n, bool), np.full((n, 4), nan), np.full((n, N_LANDMARKS, 3), nan),
                   np.full((n, len(BLENDSHAPES)), nan), np.zeros(n, np.float32))

    @classmethod
    def from_faces(cls, faces: list[Face | None]) -> Meshes:
        """Faces measured one by one (e.g. every face ``FaceMesher.measure`` found in a photo;
        None where there was none) as one batch, ready for ``geometry_features``."""
        out = cls.empty(len(faces))
        for i, f in enumerate(faces):
            if f is not None:
                out.found[i], out.boxes[i], out.landmarks[i] = True, f.box, f.landmarks
                out.blendshapes[i], out.presence[i] = f.blendshapes, f.presence
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {"found": self.found, "boxes": self.boxes, "landmarks": self.landmarks,
                "blendshapes": self.blendshapes, "presence": self.presence}


def measure_images(images: np.ndarray, *, mode: str = "detect", frame: bool | None = None, workers: int = 0,
                   cache: bool = True, key: str | None = None, progress: bool = False,
                   **mesher_options) -> Meshes:
    """Measure the most confident face of each uint8 image (N, H, W, 3) (or a list of images).

    ``mode``: "detect" (BlazeFace, then the mesh) or "crop" (the mesh model on the whole
    image, then once more on the rectangle its landmarks give). ``frame``: first give each image
    a border and scale it (``frame_crop``), which the detector needs on small tight crops;
    default: in detect mode. Results are mapped back to the given pixels either way.
    ``workers``: threads, 0 = one per core (at most 8). ``key``: a name for this image set
    (e.g. its data spec) so that a changed set replaces its stale cache entry.
    ``mesher_options`` go to ``FaceMesher`` (min_detection, min_presence, crop_scale, model)."""
    n = len(images)
    frame = mode == "detect" if frame is None else frame
    opts = {"mode": mode, "frame": [PAD, SIDE] if frame else None, "model": SHA256, **mesher_options}
    opts.pop("max_faces", None)
    family = "faces-" + cache_store.digest("faces", opts, key or "")
    content = content_hash(images, opts)
    if cache:
        hit = cache_store.read(family, content)
        if hit is not None and len(hit[0].get("found", ())) == n:
            a, meta = hit
            return Meshes(a["found"].astype(bool), a["boxes"], a["landmarks"], a["blendshapes"],
                          a["presence"], {**meta, "cached": True})
    out = Meshes.empty(n)
    t0 = time.perf_counter()
    workers = in_threads(n, lambda: FaceMesher(mode, max_faces=1, **mesher_options),
                         lambda mesher, i: _measure_one(mesher, np.asarray(images[i]), frame, out, i),
                         workers, "face meshes", progress)
    seconds = time.perf_counter() - t0
    out.meta = {"options": opts, "workers": workers, "seconds": round(seconds, 2),
                "faces_per_s": round(n / seconds, 1) if seconds > 0 else None, "cached": False}
    if cache and n:
        cache_store.write(family, content, out.arrays(), out.meta)
    return out


def in_threads(n: int, make, work, workers: int = 0, desc: str = "", progress: bool = False) -> int:
    """``work(tool, i)`` for i in 0..n-1 in a pool of ``workers`` threads (0: one per core, at most
    8), each with its own ``tool = make()`` (a TFLite model is not thread-safe), in chunks of
    _CHUNK images. Returns the number of workers used."""
    local = threading.local()

    def chunk(lo: int, hi: int) -> int:
        if not hasattr(local, "tool"):
            local.tool = make()
        for i in range(lo, hi):
            work(local.tool, i)
        return hi - lo

    workers = workers or io_workers()
    chunks = [(lo, min(lo + _CHUNK, n)) for lo in range(0, n, _CHUNK)]
    with tqdm(total=n, desc=desc, unit="img", disable=not progress) as bar:
        if workers == 1 or len(chunks) <= 1:
            for c in chunks:
                bar.update(chunk(*c))
        else:
            with ThreadPoolExecutor(workers) as pool:
                for done in pool.map(lambda c: chunk(*c), chunks):
                    bar.update(done)
    return workers


def content_hash(images, opts: dict) -> str:
    """A short hash of the images' pixels and shapes and of ``opts``: their cache key."""
    h = hashlib.sha1(repr(sorted(opts.items(), key=str)).encode())
    for img in images:
        a = np.ascontiguousarray(img)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def measure_crop(mesher: FaceMesher, img: np.ndarray, frame: bool = True) -> Face | None:
    """The most confident face of one crop (uint8 RGB or grey), as ``measure_images`` measures
    each image: with ``frame``, first a border and a scale (``frame_crop``); the face's box,
    landmarks and keypoints mapped back to the pixels of `img`. None when there is none."""
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    scale, border = 1.0, 0
    if frame:
        img, scale, border = frame_crop(img)
    faces = mesher.measure(img)
    if not faces:
        return None
    f = faces[0]
    landmarks = f.landmarks / scale
    landmarks[:, :2] -= border
    x, y, w, h = f.box
    keypoints = None if f.keypoints is None else f.keypoints / scale - border
    return Face((x / scale - border, y / scale - border, w / scale, h / scale), f.score, f.presence,
                landmarks, f.blendshapes, keypoints)


def _measure_one(mesher: FaceMesher, img: np.ndarray, frame: bool, out: Meshes, i: int) -> None:
    f = measure_crop(mesher, img, frame)
    if f is None:
        return
    out.found[i] = True
    out.landmarks[i] = f.landmarks
    out.boxes[i] = f.box
    out.blendshapes[i] = f.blendshapes
    out.presence[i] = f.presence
