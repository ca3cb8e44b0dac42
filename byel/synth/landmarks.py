"""68-point facial landmarks for the warp backend: source loading, detection and an on-disk cache.

Landmarks come from dlib's frontal HOG detector and its 68-point shape predictor; the model
file ships inside the `face-recognition-models` wheel (no download at run time). That model was
trained on iBUG 300-W, whose terms exclude commercial use, hence the optional `byel[warp]` extra.

Sources are face crops (FER2013, Aff-Wild2 `cropped_aligned`, ...). On such small crops the
detector misses some faces; then the whole crop is given to the shape predictor as the face box,
which places plausible landmarks on roughly aligned crops. Those fallbacks are counted.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from byel import imageio
from byel.data.formats import IMAGE_EXTS
from byel.errors import ByelError, DataError

MAX_SIDE = 256  # larger crops are shrunk on load: the renderer never needs more
DETECT_SIDE = 192  # detection runs on crops upscaled to at least this (4x for 48 px FER faces)
CACHE_VERSION = "v1"


def predictor_path() -> Path:
    """Path of the 68-point model inside face-recognition-models, found without importing it
    (its __init__ needs pkg_resources, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ByelError("the warp backend needs face-recognition-models: pip install 'byel[warp]'")
    path = Path(spec.origin).parent / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise ByelError(f"landmark model missing from face-recognition-models: {path}")
    return path


def list_images(root: str | os.PathLike) -> list[Path]:
    """Image files under root, recursively, in a stable order."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"sources: no such directory: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not files:
        raise DataError(f"sources: no images ({'/'.join(sorted(e[1:] for e in IMAGE_EXTS))}) under {root}")
    return files


def read_face(path: Path) -> np.ndarray | None:
    """Grey (HxW) or RGB (HxWx3) uint8 square crop, or None when the file cannot be decoded.

    Non-square crops are centre-cropped to a square; colour images whose channels are equal are
    stored grey, which keeps the FER2013 sources small enough to pickle to worker processes."""
    try:  # Python reads the bytes (any file name); the rules of every image byel reads
        img = imageio.read(path)
    except imageio.Unusable:
        return None
    if np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2]):
        img = img[..., 0]
    h, w = img.shape[:2]
    s = min(h, w)
    if s < 16:
        return None
    y0, x0 = (h - s) // 2, (w - s) // 2
    img = img[y0:y0 + s, x0:x0 + s]
    if s > MAX_SIDE:
        img = cv2.resize(img, (MAX_SIDE, MAX_SIDE), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


@functools.lru_cache(maxsize=1)
def _dlib_models():
    """Loaded once per process: the 68-point model takes seconds to read."""
    try:
        import dlib
    except ImportError as e:
        raise ByelError("the warp backend needs dlib, a core dependency of byel: reinstall byel "
                        "(pip install dlib-bin)") from e
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor_path())), dlib


class LandmarkDetector:
    """dlib detector + 68-point predictor. Not picklable: build it where it is used."""

    def __init__(self) -> None:
        self._detector, self._predictor, dlib = _dlib_models()
        self._rect = dlib.rectangle

    def __call__(self, img: np.ndarray) -> tuple[np.ndarray, bool]:
        """(68, 2) float32 landmarks in img's pixel coordinates, and whether a face was detected
        (False: the whole crop served as the face box)."""
        grey = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        k = max(1.0, DETECT_SIDE / grey.shape[0])
        big = cv2.resize(grey, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC) if k > 1 else grey
        faces = self._detector(big, 0)
        found = len(faces) > 0
        if found:
            box = max(faces, key=lambda r: r.area())
        else:
            box = self._rect(0, 0, big.shape[1] - 1, big.shape[0] - 1)
        shape = self._predictor(big, box)
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        return (pts + 0.5) / k - 0.5, found


def plausible(pts: np.ndarray, side: int) -> bool:
    """Reject landmark sets that cannot be a face crop: eyes must sit above the mouth, a sane
    distance apart, and most points inside the image."""
    eye_r, eye_l = pts[36:42].mean(0), pts[42:48].mean(0)
    iod = float(np.linalg.norm(eye_l - eye_r))
    mouth = pts[48:68].mean(0)
    inside = np.mean((pts >= -0.05 * side).all(1) & (pts <= 1.05 * side).all(1))
    return (0.15 * side < iod < 0.8 * side and mouth[1] > max(eye_r[1], eye_l[1]) + 0.3 * iod
            and inside > 0.9)


def cache_dir() -> Path:
    env = os.environ.get("BYEL_CACHE_DIR")
    base = Path(env) if env else Path.home() / ".cache" / "byel"
    return base / "landmarks"


def _cache_key(root: Path, files: list[Path]) -> str:
    h = hashlib.sha1(CACHE_VERSION.encode())
    for f in files:
        st = f.stat()
        # surrogateescape: a name that is not UTF-8 is hashed as its bytes
        h.update(f"{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


@dataclass
class FaceSet:
    """Readable source faces with their landmarks. Plain numpy data, so it pickles cheaply."""

    names: list[str]  # paths relative to the sources root
    images: list[np.ndarray]
    landmarks: np.ndarray  # (N, 68, 2) float32, pixel coordinates of each image
    stats: dict = field(default_factory=dict)


def read_sources(root: Path) -> tuple[list[Path], list[np.ndarray | None], list[int]]:
    """(files, images — None where unreadable —, indices of the readable ones) of the source
    faces under root (the warp and mesh backends); none readable is a DataError."""
    files = list_images(root)
    images = [read_face(f) for f in files]
    readable = [i for i, im in enumerate(images) if im is not None]
    if not readable:
        raise DataError(f"sources: none of the {len(files)} image files under {root} can be read")
    return files, images, readable


def load_faces(root: str | os.PathLike, progress: bool = True) -> FaceSet:
    """Read every image under root, locate 68 landmarks (cached on disk) and keep the usable
    faces. Unreadable files and implausible landmark sets are skipped and counted."""
    root = Path(root)
    files, images, readable = read_sources(root)
    cache = cache_dir() / f"{_cache_key(root, files)}.npz"
    pts = found = None
    if cache.is_file():
        try:
            with np.load(cache) as z:
                pts, found = z["landmarks"], z["found"]
            if len(pts) != len(files):
                pts = found = None
        except (OSError, ValueError, KeyError):
            pts = found = None
    if pts is None:
        pts = np.zeros((len(files), 68, 2), np.float32)
        found = np.zeros(len(files), bool)
        detect = LandmarkDetector()
        it = readable
        if progress:
            from tqdm import tqdm
            it = tqdm(readable, desc="landmarks", unit="face")
        for i in it:
            pts[i], found[i] = detect(images[i])
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp.npz")
            np.savez(tmp, landmarks=pts, found=found)
            os.replace(tmp, cache)
        except OSError:
            pass  # a read-only home only costs the next run its detection time

    if not any(found[i] for i in readable):  # the crop fallback would turn noise or non-faces into "faces"
        raise DataError(f"sources: the face detector finds no face in any of the {len(readable)} readable images "
                        f"under {root}; the warp backend needs face images (one face per image)")
    keep = [i for i in readable if plausible(pts[i], images[i].shape[0])]
    if not keep:
        raise DataError(f"sources: no usable face among the {len(readable)} readable images "
                        f"under {root}")
    stats = {
        "n_files": len(files),
        "n_unreadable": len(files) - len(readable),
        "n_no_face": int(sum(not found[i] for i in readable)),
        "no_face_policy": "fallback: whole crop used as the face box",
        "n_implausible": len(readable) - len(keep),
        "n_used": len(keep),
    }
    return FaceSet(
        names=[str(files[i].relative_to(root)) for i in keep],
        images=[images[i] for i in keep],
        landmarks=pts[keep].astype(np.float32),
        stats=stats,
    )
