"""Point a fine-tuned model at your own photos, folders and videos: find the faces, crop them
the way training saw faces, classify them, and write one CSV row per face.

CSV columns (one row per detected face, largest face of an image first)::

    file, frame, x, y, w, h, predicted, p_anger, p_disgust, p_fear, p_happiness, p_sadness, p_surprise

(one ``p_*`` column per class of the checkpoint, from its ``byel.classes`` metadata).

- ``file``: the input file (a name that is not valid UTF-8 as its own bytes); ``frame``: the
  0-based frame index for videos, empty for images.
- ``track`` (after ``frame``, only when an input is a video): the face's track id within its
  video, the same person across frames by box overlap (byel.track); empty for images.
- ``x, y, w, h``: the face box the detector found, in pixels of the original image (with
  ``detect=False``: the centred square that was classified). The crop given to the model is
  framed like the training faces: with the landmarker, rotated and scaled so the outer eye
  corners sit level where the face generator puts them (``SYNTH_EYES``); with the other
  detectors, a larger axis-aligned square around the box (forehead to chin, see ``MARGIN``).
- ``predicted``: the most probable class; ``p_*``: the softmax probabilities. With
  ``uncertain=P``, a face whose top probability is below P is labelled ``uncertain``. With
  ``smooth`` (videos), ``p_*`` and ``predicted`` are the probabilities smoothed along the track.
- An image (or video frame) in which no face was found still gets ONE row: empty box, empty
  probabilities and ``predicted`` = ``no_face``.
- Files that are missing, unreadable or not images/videos get no row; they are counted and
  listed in the returned dict (``missing``, ``unreadable``, ``problems``).

Face detection needs no download. ``detector="auto"`` (the default) is the MediaPipe Face
Landmarker shipped with byel (``landmarker``: BlazeFace on the photo and on tiles of it, then the
478-point mesh of each face, see ``FaceMesher.find``); where its runtime (ai-edge-litert) has no
wheel, OpenCV's bundled Haar cascade if the installed OpenCV ships it (opencv-python-headless 4.x),
otherwise dlib's built-in HOG frontal-face detector (dlib-bin, a core dependency). A missing or
damaged landmarker file is an error, not a silent fallback. Without any detector,
``detect=False`` (pre-cropped faces) still works.
"""

from __future__ import annotations

import contextlib
import csv
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from byel import imageio
from byel.classes import CLASSES
from byel.data.formats import IMAGE_EXTS, VIDEO_EXTS
from byel.errors import ByelError, DataError, InputTypeError
from byel.files import naming
from byel.imageio import write_image
from byel.media import video_frames, video_info, video_writer

NO_FACE = "no_face"
UNCERTAIN = "uncertain"


def columns(classes=CLASSES, video: bool = False) -> list[str]:
    """CSV columns for a model's classes; ``track`` only when an input is a video."""
    return ["file", "frame", *(["track"] if video else []), "x", "y", "w", "h", "predicted",
            *[f"p_{c}" for c in classes]]


COLUMNS = columns()
# Crop = square of side MARGIN * box side, centred SHIFT_UP * side above the box centre.
# Calibrated on the FER2013 sample (tests/fixtures/fer_sample, faces upscaled 4x, images with
# exactly one detection): the median FER crop is 1.28x dlib's box (89 of 140 detected) and centred
# 0.05 sides above it; 1.20x OpenCV 4.14's Haar box (73 of 140), centred on it.
MARGIN = {"dlib-hog": 1.28, "opencv-haar": 1.2}
SHIFT_UP = {"dlib-hog": 0.05, "opencv-haar": 0.0}
DLIB_WINDOW = 80  # dlib's HOG detector finds faces of >= ~80 px at the scale it runs on
MAX_DETECT_SIDE = 2048  # upsampling for small faces stops at this image side (speed)
ANNOTATE_MIN_SIDE = 256  # smaller images are enlarged for drawing
# per class (the six, then neutral), as the web page (byel/assets/web/index.html) draws them
_COLOURS = [(220, 20, 60), (128, 0, 128), (255, 140, 0), (34, 139, 34), (30, 144, 255), (255, 215, 0), (0, 128, 128)]


# --------------------------------------------------------------------------- detection


DETECTORS = ("auto", "landmarker", "opencv-haar", "dlib-hog")


MIN_FACE_FLOOR = 8  # a smaller min_face counts as this: detectors would upsample without limit for it


def checked_min_face(min_face) -> int:
    """The smallest reported face box side in pixels (shorter side, in the input image), from a
    user's ``min_face``: a whole number >= 1; values under MIN_FACE_FLOOR count as MIN_FACE_FLOOR."""
    if isinstance(min_face, bool) or not isinstance(min_face, numbers.Integral) or min_face < 1:
        raise ByelError(f"min_face must be a whole number of pixels >= 1, got {min_face!r}")
    return max(MIN_FACE_FLOOR, int(min_face))


@dataclass
class Face:
    box: tuple[int, int, int, int]  # x, y, w, h in original pixels
    crop: np.ndarray  # uint8 RGB (size, size, 3)
    mesh: object = None  # byel.faces.Face (landmarks, blendshapes in original pixels) from the landmarker

    @property
    def landmarks(self) -> np.ndarray | None:
        """(478, 3) float32 mesh points: x, y in original pixels, z (MediaPipe's) at the scale of x."""
        return None if self.mesh is None else self.mesh.landmarks


def _haar_xml() -> str | None:
    names = ["haarcascade_frontalface_default.xml"]
    dirs = []
    data = getattr(cv2, "data", None)
    if data is not None and getattr(data, "haarcascades", None):
        dirs.append(data.haarcascades)
    dirs.append(os.path.join(os.path.dirname(cv2.__file__), "data"))
    for d in dirs:
        for n in names:
            p = os.path.join(d, n)
            if os.path.isfile(p):
                return p
    return None


class FaceDetector:
    """Largest-first face boxes. ``backend``: "auto" (Haar if OpenCV ships it, else dlib),
    "opencv-haar" or "dlib-hog"."""

    def __init__(self, backend: str = "auto", min_face: int = 24):
        self.min_face = checked_min_face(min_face)
        if backend not in ("auto", "opencv-haar", "dlib-hog"):
            raise ByelError(f"unknown face detector {backend!r}; choose auto, opencv-haar or dlib-hog")
        tried = []
        if backend in ("auto", "opencv-haar"):
            missing = self._load_haar()
            if not missing:
                self.name = "opencv-haar"
                return
            tried.append(missing)
        dlib_missing = _dlib_missing()
        if backend == "opencv-haar":  # asked for by name: say what is missing and what does work
            other = ("the dlib-hog detector (installed) or auto" if not dlib_missing else
                     "--no-detect for images that are already face crops")
            raise ByelError(f"the opencv-haar detector is not available: {missing}; use {other}, or install an "
                            "OpenCV 4 wheel, which has both: pip install 'opencv-python-headless<5'")
        if not dlib_missing:
            import dlib

            self._dlib = dlib.get_frontal_face_detector()
            self.name = "dlib-hog"
            return
        tried.append(dlib_missing)
        raise ByelError("no face detector available (" + "; ".join(tried) + "): pip install dlib-bin "
                        "(a byel dependency) for dlib's detector, or pass --no-detect for images that are already face crops")

    def _load_haar(self) -> str | None:
        """Load OpenCV's frontal-face Haar cascade into self._haar; None, or what is missing."""
        # OpenCV 4: cv2.CascadeClassifier and the cascade files in cv2.data; OpenCV 5 wheels have
        # neither (the class moved to opencv-contrib's cv2.xobjdetect)
        ctor = (getattr(cv2, "CascadeClassifier", None)
                or getattr(getattr(cv2, "xobjdetect", None), "CascadeClassifier", None))
        xml = _haar_xml()
        if ctor is None or xml is None:
            lacks = " and ".join(w for w, gone in (("no CascadeClassifier", ctor is None),
                                                   ("no Haar cascade file", xml is None)) if gone)
            return f"this OpenCV {cv2.__version__} has {lacks}"
        self._haar = ctor(xml)
        return f"OpenCV {cv2.__version__} cannot load its cascade file {xml}" if self._haar.empty() else None

    def __call__(self, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        h, w = grey.shape
        if self.name == "opencv-haar":
            found = self._haar.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                                minSize=(self.min_face, self.min_face))
            boxes = [tuple(int(v) for v in b) for b in (found if len(found) else [])]
        else:
            # The HOG window is ~80 px: scale the image so a min_face face becomes one window,
            # within MAX_DETECT_SIDE (then the smallest face found is correspondingly larger).
            scale = min(DLIB_WINDOW / self.min_face, MAX_DETECT_SIDE / max(h, w))
            img = cv2.resize(grey, (round(w * scale), round(h * scale)),
                             interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA) if scale != 1 else grey
            rects = self._dlib(img, 0)
            boxes = []
            for r in rects:
                x0, y0 = max(0, round(r.left() / scale)), max(0, round(r.top() / scale))
                x1, y1 = min(w, round((r.right() + 1) / scale)), min(h, round((r.bottom() + 1) / scale))
                if x1 - x0 >= 2 and y1 - y0 >= 2:
                    boxes.append((x0, y0, x1 - x0, y1 - y0))
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


def crop_face(rgb: np.ndarray, box: tuple[int, int, int, int], size: int, margin: float = 1.28,
              shift_up: float = 0.05) -> np.ndarray:
    """Square crop of side ``margin * max(w, h)`` around the box (centre moved up by
    ``shift_up`` sides), border pixels replicated where it leaves the image, resized to size."""
    x, y, w, h = box
    side = max(2, int(round(margin * max(w, h))))
    cx, cy = x + w / 2, y + h / 2 - shift_up * max(w, h)
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    H, W = rgb.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - W, y0 + side - H)
    if pad:
        rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    crop = rgb[y0:y0 + side, x0:x0 + side]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR)


def centre_square(rgb: np.ndarray, size: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The whole image as a face (``detect=False``): its centred square, resized to size."""
    H, W = rgb.shape[:2]
    s = min(H, W)
    x0, y0 = (W - s) // 2, (H - s) // 2
    crop = rgb[y0:y0 + s, x0:x0 + s]
    if s != size:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if s >= size else cv2.INTER_LINEAR)
    return (x0, y0, s, s), crop


def _dlib_missing() -> str | None:
    """None if dlib imports, else why not (its error's first line)."""
    try:
        import dlib  # noqa: F401
    except ImportError as e:
        return f"dlib cannot be imported ({(str(e).splitlines() or ['not installed'])[0][:100]})"
    return None


def _litert_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("ai_edge_litert") is not None
    except (ImportError, ValueError):
        return False


def _image_box(box, shape) -> tuple[int, int, int, int]:
    """A float (x, y, w, h) box rounded and clipped to the image."""
    H, W = shape[:2]
    x0, y0 = min(max(0, round(box[0])), W - 1), min(max(0, round(box[1])), H - 1)
    x1, y1 = min(W, max(x0 + 1, round(box[0] + box[2]))), min(H, max(y0 + 1, round(box[1] + box[3])))
    return x0, y0, x1 - x0, y1 - y0


class FaceFinder:
    """The faces of an RGB image as model-sized crops: the detector and the crop geometry
    calibrated for it (``detect=False``: the image's centred square is its one face).
    ``detector``: auto (the landmarker where its runtime is installed, else OpenCV's Haar
    cascade, else dlib), landmarker, opencv-haar or dlib-hog."""

    def __init__(self, size: int, detect: bool = True, detector: str = "auto", min_face: int = 24):
        if detector not in DETECTORS:
            raise ByelError(f"unknown face detector {detector!r}; choose {', '.join(DETECTORS)}")
        self.size, self.min_face = size, checked_min_face(min_face)
        self.mesher = self.detector = None
        if detect and (detector == "landmarker" or (detector == "auto" and _litert_installed())):
            from byel.faces import FaceMesher

            self.mesher = FaceMesher("detect")  # a missing or damaged model file: one ByelError naming it
        elif detect:
            self.detector = FaceDetector(detector, min_face)
        key = "landmarker" if self.mesher else self.detector.name if self.detector else ""
        self.margin, self.shift = MARGIN.get(key, 1.28), SHIFT_UP.get(key, 0.05)
        self.name = key or "none (--no-detect)"

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        if self.mesher is not None:
            from byel.faces.features import SYNTH_EYES, aligned_crop

            if min(rgb.shape[:2]) < 2:  # a one-pixel line of an image: no face (the mesher refuses it)
                return []

            boxes = [(_image_box(f.box, rgb.shape), f) for f in self.mesher.find(rgb, self.min_face)]
            return [Face(b, aligned_crop(rgb, f.landmarks, self.size, SYNTH_EYES), f)
                    for b, f in boxes if self.big_enough(b)]
        if self.detector is None:
            return [Face(*centre_square(rgb, self.size))]
        return [Face(b, crop_face(rgb, b, self.size, self.margin, self.shift))
                for b in self.detector(rgb) if self.big_enough(b)]

    def big_enough(self, box) -> bool:
        """``min_face`` is a promise about the reported box: the detectors only aim at it (tiles,
        scales and minimum windows), and clipping to the image can shrink a box below it."""
        return min(box[2], box[3]) >= self.min_face


# --------------------------------------------------------------------------- inputs


@dataclass
class _Sources:
    items: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, path, annotate name)
    missing: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


def _unique(name: str, used: set[str]) -> str:
    stem, ext = os.path.splitext(name)
    cand, k = name, 1
    while cand in used:
        cand, k = f"{stem}_{k}{ext}", k + 1
    used.add(cand)
    return cand


def collect_inputs(inputs: list[str]) -> _Sources:
    """Image and video files of the inputs (folders recursively, sorted); missing paths and
    unsupported files are recorded, not raised."""
    src, used = _Sources(), set()
    for raw in inputs:
        p = Path(os.path.expanduser(str(raw)))
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            found = 0
            for f in files:
                ext = f.suffix.lower()
                kind = "image" if ext in IMAGE_EXTS else "video" if ext in VIDEO_EXTS else None
                if kind:
                    found += 1
                    src.items.append((kind, str(f), _unique(str(Path(p.name) / f.relative_to(p)), used)))
            if not found:
                src.problems.append((str(p), "no image or video files"))
        elif p.is_file():
            ext = p.suffix.lower()
            kind = "video" if ext in VIDEO_EXTS else "image"  # unknown suffixes: try to decode
            src.items.append((kind, str(p), _unique(p.name, used)))
        else:
            src.missing.append(str(raw))
            src.problems.append((str(raw), "not found"))
    return src


# --------------------------------------------------------------------------- annotation


def annotate(rgb: np.ndarray, rows: list[dict], classes=CLASSES) -> np.ndarray:
    """BGR copy of the image with each face box and its label + probability drawn (images under
    ANNOTATE_MIN_SIDE pixels are enlarged first so the labels stay legible); video faces also
    get their track id."""
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    up = max(1.0, ANNOTATE_MIN_SIDE / max(1, min(img.shape[:2])))
    if up > 1:
        img = cv2.resize(img, (round(img.shape[1] * up), round(img.shape[0] * up)), interpolation=cv2.INTER_LINEAR)
    scale = max(0.35, min(img.shape[:2]) / 600)
    thick = max(1, round(2 * scale))
    for r in rows:
        if r["predicted"] == NO_FACE:
            cv2.putText(img, "no face", (5, int(20 * scale) + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale,
                        (0, 0, 255), thick)
            continue
        x, y, w, h = (round(int(r[k]) * up) for k in "xywh")
        pred = r["predicted"]
        colour = _COLOURS[classes.index(pred) % len(_COLOURS)][::-1] if pred in classes else (128, 128, 128)
        cv2.rectangle(img, (x, y), (x + w, y + h), colour, thick)
        top = max(float(r[f"p_{c}"]) for c in classes)  # `uncertain`: the top class's probability
        label = f"{pred} {top:.2f}" + (f" #{r['track']}" if r.get("track", "") != "" else "")
        fs = max(0.35, 0.5 * scale * max(1.0, w / 120))
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, fs, thick)
        ty = y - 4 if y - th - base - 4 >= 0 else min(img.shape[0] - 1, y + h + th + 4)
        cv2.rectangle(img, (x, ty - th - base), (x + tw + 4, ty + base), colour, -1)
        cv2.putText(img, label, (x + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), thick, cv2.LINE_AA)
    return img


def _write_image(path: Path, bgr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, bgr)


# --------------------------------------------------------------------------- predict


def check_uncertain(uncertain: float | None) -> None:
    if uncertain is not None and (isinstance(uncertain, bool) or not isinstance(uncertain, numbers.Real)):
        raise InputTypeError(f"uncertain must be a number > 0 and <= 1 (or None), got {uncertain!r} "
                             f"({type(uncertain).__name__})")
    if uncertain is not None and not 0 < uncertain <= 1:
        raise ByelError(f"uncertain threshold must be > 0 and <= 1, got {uncertain}")


def label_of(p: np.ndarray, classes, uncertain: float | None = None) -> str:
    """The most probable class, or ``uncertain`` when its probability is below the threshold."""
    i = int(np.argmax(p))
    return UNCERTAIN if uncertain is not None and p[i] < uncertain else classes[i]


def classify_stream(model, finder: FaceFinder, items, batch_size: int = 64):
    """For each ``(meta, rgb, keep)`` of ``items``: ``(meta, rgb if keep else None, faces, probs)``,
    in order. Faces are found image by image and classified ``batch_size`` crops at a time across
    images (the one batching path of ``byel predict``, the Python API and ``byel serve``)."""
    from byel import classifier  # late: torch/Lightning import

    pending: list = []

    def flush():
        crops = [f.crop for _, _, faces in pending for f in faces]
        probs = classifier.predict_probs(model, np.stack(crops), batch_size) if crops else np.zeros((0, 0), np.float32)
        # a geometry | fused head: the landmarker's mesh of each face, else (other detectors, no
        # detection) the crop measured; a face without a mesh keeps the CNN's probabilities
        meshes = [f.mesh for _, _, faces in pending for f in faces]
        geo = classifier.measure(model, np.stack(crops), cache=False, meshes=meshes) if crops else None
        probs = probs if geo is None else geo.fuse(probs)
        k = 0
        for meta, rgb, faces in pending:
            yield meta, rgb, faces, probs[k:k + len(faces)]
            k += len(faces)
        pending.clear()

    n = 0
    for meta, rgb, keep in items:
        faces = finder(rgb)
        pending.append((meta, rgb if keep else None, faces))
        n += len(faces)
        if n >= batch_size or len(pending) >= batch_size:
            yield from flush()
            n = 0
    yield from flush()


def _face_rows(meta: dict, boxes: list, probs, classes, uncertain, tracks=None) -> list[dict]:
    """CSV rows of one image or frame; one ``no_face`` row when it has no face."""
    rows = []
    for i, (b, p) in enumerate(zip(boxes, probs)):
        rows.append({**meta, "track": "" if tracks is None else tracks[i],
                     "x": b[0], "y": b[1], "w": b[2], "h": b[3], "predicted": label_of(p, classes, uncertain),
                     **{f"p_{c}": f"{v:.6f}" for c, v in zip(classes, p)}})
    if not rows:
        rows.append({**meta, "track": "", "x": "", "y": "", "w": "", "h": "", "predicted": NO_FACE,
                     **{f"p_{c}": "" for c in classes}})
    return rows


def predict(
    checkpoint: str | Path | None,
    inputs: list[str],
    out_csv: str | Path,
    *,
    detect: bool = True,
    annotate_dir: str | Path | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
    video_stride: int = 1,
    detector: str = "auto",
    min_face: int = 24,
    uncertain: float | None = None,
    smooth: str = "none",
) -> dict:
    """Classify the faces in image files, folders (recursive) and video files; write ``out_csv``.

    ``detect=False`` treats every image/frame as one pre-cropped face (its centred square).
    ``annotate_dir``: images are saved there with boxes and labels drawn (same relative names;
    videos as ``<name>.annotated.avi``). ``video_stride`` K classifies frames 0, K, 2K ...
    ``detector``: auto | landmarker | opencv-haar | dlib-hog; ``min_face``: faces whose box is
    smaller than this on its shorter side (pixels of the input image) are not reported.
    ``uncertain`` P: faces whose top probability is below P are labelled ``uncertain``.
    ``smooth`` (videos): none | ema:A | window:K, per face track (see byel.track).
    Returns counts (images, frames, faces, no_face, missing, unreadable, ...) and the CSV path.
    Raises CheckpointError for a wrong checkpoint, DataError when no input is usable at all.
    """
    from byel import classifier  # late: torch/Lightning import
    from byel.track import parse_smooth, track_and_smooth

    if batch_size < 1:
        raise ByelError(f"batch size must be >= 1, got {batch_size}")
    if video_stride < 1:
        raise ByelError(f"video stride must be >= 1, got {video_stride}")
    check_uncertain(uncertain)
    parse_smooth(smooth)
    checked_min_face(min_face)
    model = classifier.load(checkpoint, device)
    classes = tuple(model.checkpoint_meta["classes"])
    src = collect_inputs(list(inputs))
    if not src.items:
        what = "; ".join(f"{w}: {r}" for w, r in src.problems[:3]) or "no inputs given"
        raise DataError(f"nothing to predict on ({what})")
    finder = FaceFinder(model.cfg.data.image_size, detect, detector, min_face)
    ann_root = Path(annotate_dir) if annotate_dir else None

    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_csv.with_name(out_csv.name + ".tmp")
    stats = {"images": 0, "frames": 0, "faces": 0, "no_face": 0, "annotated": 0}
    unreadable: list[str] = []
    class_counts = dict.fromkeys([*classes, *([UNCERTAIN] if uncertain is not None else [])], 0)

    total = sum(1 if k == "image" else -(-video_info(p)[0] // video_stride) for k, p, _ in src.items)
    bar = tqdm(total=total, unit="img", desc="predict", disable=not progress, leave=False)

    def frames():
        for kind, path, ann_name in src.items:
            why = ""
            if kind == "image":
                try:
                    image = imageio.read(path)
                except imageio.Unusable as e:  # listed below, like an unreadable video
                    image, why = None, f" ({e})"
                fps, it = 0.0, [("", image)]
            else:
                fps = (video_info(path)[1] or 25.0) / video_stride
                it = video_frames(path, video_stride)
            n_read = 0
            for frame, rgb in it:
                bar.update(1)
                if rgb is None:
                    continue
                n_read += 1
                stats["images" if kind == "image" else "frames"] += 1
                meta = {"file": path, "frame": frame, "_kind": kind, "_ann": ann_name, "_fps": max(1.0, fps)}
                yield meta, rgb, bool(ann_root) and kind == "image"
            if not n_read:
                unreadable.append(path)
                src.problems.append((path, f"unreadable {kind}{why}"))

    def write(writer, rows):
        for r in rows:
            if r["predicted"] != NO_FACE:
                class_counts[r["predicted"]] += 1
        writer.writerows(rows)

    video: list = []  # (meta, boxes, probs) of the processed frames of the video being read

    def end_video(writer):
        """Tracks and smoothing need the whole video: its rows are written when it ends."""
        if not video:
            return
        ids, probs = track_and_smooth([b for _, b, _ in video], [p for _, _, p in video], smooth)
        per_frame = [_face_rows(m, b, p, classes, uncertain, t) for (m, b, _), t, p in zip(video, ids, probs)]
        for rows in per_frame:
            write(writer, rows)
        if ann_root:
            _annotate_video(video[0][0], per_frame)
        video.clear()

    def _annotate_video(meta: dict, per_frame: list[list[dict]]) -> None:
        """Second pass over the video (frames are not kept in memory): draw the final rows."""
        path = ann_root / (meta["_ann"] + ".annotated.avi")
        path.parent.mkdir(parents=True, exist_ok=True)
        vw = None
        with contextlib.ExitStack() as stack:  # the video appears at path once it is complete
            frames = stack.enter_context(contextlib.closing(video_frames(meta["file"], video_stride)))
            for (_, rgb), rows in zip(frames, per_frame):
                drawn = annotate(rgb, rows, classes)
                if vw is None:
                    size = (drawn.shape[1], drawn.shape[0])
                    vw = stack.enter_context(video_writer(path, "MJPG", meta["_fps"], size))
                vw.write(drawn)
                stats["annotated"] += 1

    try:
        # surrogateescape: a file name that is not valid UTF-8 is written as its own bytes (lossless)
        # naming: a write of the CSV that fails (a full disk) names no file
        with naming(out_csv, tmp), open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as fh:
            has_video = any(k == "video" for k, _, _ in src.items)
            writer = csv.DictWriter(fh, columns(classes, has_video), extrasaction="ignore")
            writer.writeheader()
            for meta, rgb, faces, probs in classify_stream(model, finder, frames(), batch_size):
                stats["faces"] += len(faces)
                stats["no_face"] += not faces
                if video and video[0][0]["_ann"] != meta["_ann"]:
                    end_video(writer)
                boxes = [f.box for f in faces]
                if meta["_kind"] == "video":
                    video.append((meta, boxes, probs))
                    continue
                rows = _face_rows(meta, boxes, probs, classes, uncertain)
                write(writer, rows)
                if rgb is not None:
                    _write_image(ann_root / meta["_ann"], annotate(rgb, rows, classes))
                    stats["annotated"] += 1
            end_video(writer)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    if not stats["images"] and not stats["frames"]:
        tmp.unlink(missing_ok=True)
        what = "; ".join(f"{w}: {r}" for w, r in src.problems[:3])
        raise DataError(f"no readable image or video frame among the inputs ({what})")
    tmp.replace(out_csv)
    return {
        "csv": str(out_csv),
        "detector": finder.name,
        **stats,
        "class_counts": class_counts,
        "missing": src.missing,
        "unreadable": unreadable,
        "problems": src.problems,
        "annotate_dir": str(ann_root) if ann_root else None,
    }


def format_result(r: dict) -> str:
    """One or two human-readable lines for the CLI."""
    seen = f"{r['images']} images" + (f", {r['frames']} video frames" if r["frames"] else "")
    line = f"{seen}: {r['faces']} faces ({r['no_face']} without a face) [detector: {r['detector']}] -> {r['csv']}"
    bad = []
    if r["missing"]:
        bad.append(f"{len(r['missing'])} missing ({', '.join(r['missing'][:3])})")
    if r["unreadable"]:
        bad.append(f"{len(r['unreadable'])} unreadable ({', '.join(r['unreadable'][:3])})")
    return line + ("\nskipped: " + "; ".join(bad) if bad else "")
