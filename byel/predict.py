"""Point a fine-tuned model at your own photos, folders and videos: find the faces, crop them
the way training saw faces, classify them, and write one CSV row per face.

CSV columns (one row per detected face, largest face of an image first)::

    file, frame, track, x, y, w, h, predicted, p_anger, p_disgust, p_fear, p_happiness, p_sadness, p_surprise

(one ``p_*`` column per class of the checkpoint, from its ``byel.classes`` metadata).

- ``file``: the input file (a name that is not valid UTF-8 as its own bytes); ``frame``: the
  0-based frame index for videos, empty for images.
- ``track``: the face's track id within its video, the same person across frames by box
  overlap (byel.track); empty for images. The columns are the same whatever the inputs.
- ``x, y, w, h``: the face box the detector found, in pixels of the original image (with
  ``detect=False``: the centred square that was classified). The crop given to the model is
  framed like the training faces: with the landmarker, rotated and scaled so the outer eye
  corners sit level where the face generator puts them (``SYNTH_EYES``); with the other
  detectors, a larger axis-aligned square around the box (forehead to chin, see byel.detect).
- ``predicted``: the most probable class; ``p_*``: the softmax probabilities. With
  ``uncertain=P``, a face whose top probability is below P is labelled ``uncertain``. With
  ``smooth`` (videos; ``ema:0.5`` unless told, ``none``: off), ``p_*`` and ``predicted`` are the
  probabilities smoothed along the track. In a video of 4 or more processed frames, a face whose
  track is seen on one frame only is left out (byel.track.lasting).
- ``p_*`` are the mean of the face's and its mirror image's probabilities unless ``mirror=False``.
- An image (or video frame) in which no face was found still gets ONE row: empty box, empty
  probabilities and ``predicted`` = ``no_face``.
- Files that are missing, unreadable or not images/videos get no row; they are counted and
  listed in the returned dict (``missing``, ``unreadable``, ``problems``).
- With ``face_details``, after the ``p_*`` columns: ``score`` (the face detector's confidence),
  ``yaw, pitch, roll`` (head pose in degrees, byel.faces.pose) and ``bs_<name>`` (MediaPipe's 52
  blendshapes, byel.faces.mesher.BLENDSHAPES); with ``landmarks``, then ``lm_<i>_x, lm_<i>_y``
  (the 478 mesh points in image pixels). The same values as the Python API's ``Face`` (to the
  6 decimals written; landmarks to 3); empty where the face has no mesh (the landmarker found
  none: other detectors, ``detect=False``) and on ``no_face`` rows.

Faces are found and cropped by byel.detect (``detector``: auto, landmarker, opencv-haar or
dlib-hog; ``detect=False``: pre-cropped faces), classified by byel.classifier, and written by a
``PredictionWriter``.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
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
from byel.detect import FaceFinder, FaceTracker, checked_min_face
from byel.errors import ByelError, DataError, InputTypeError, printable
from byel.files import naming
from byel.imageio import write_image
from byel.media import CodecUnavailable, video_frames, video_info, video_writer
from byel.track import DEFAULT_SMOOTH, lasting, parse_smooth, track_and_smooth

NO_FACE = "no_face"
UNCERTAIN = "uncertain"


def columns(classes=CLASSES, face_details: bool = False, landmarks: bool = False) -> list[str]:
    """CSV columns for a model's classes: the same for images and videos (``frame`` and ``track``
    empty for images); then, when asked, the face-details and landmark columns."""
    return ["file", "frame", "track", "x", "y", "w", "h", "predicted", *[f"p_{c}" for c in classes],
            *detail_columns(face_details, landmarks)]


def detail_columns(face_details: bool = False, landmarks: bool = False) -> list[str]:
    """``score, yaw, pitch, roll, bs_<blendshape>…`` (``face_details``), then ``lm_<i>_x, lm_<i>_y``
    for the 478 mesh points (``landmarks``)."""
    cols = []
    if face_details:
        from byel.faces.mesher import BLENDSHAPES

        cols += ["score", *POSE, *[f"bs_{b}" for b in BLENDSHAPES]]
    if landmarks:
        from byel.faces.mesher import N_LANDMARKS

        cols += [f"lm_{i}_{a}" for i in range(N_LANDMARKS) for a in "xy"]
    return cols


def detail_cells(face, face_details: bool = False, landmarks: bool = False) -> dict:
    """The face-details and landmark cells of one byel.detect.Face, measured as the Python API
    measures them (``Face.measured``); none (empty cells) where the face has no mesh."""
    cells = {}
    if face_details:
        score, shapes, pose = face.measured()
        if score is not None:
            cells["score"] = f"{score:.6f}"
        if pose is not None:
            cells.update({k: f"{v:.6f}" for k, v in zip(POSE, pose)})
        cells.update({f"bs_{b}": f"{v:.6f}" for b, v in (shapes or {}).items()})
    if landmarks and face.landmarks is not None:
        for i, (x, y) in enumerate(face.landmarks[:, :2].tolist()):
            cells[f"lm_{i}_x"], cells[f"lm_{i}_y"] = f"{x:.3f}", f"{y:.3f}"
    return cells


POSE = ("yaw", "pitch", "roll")  # byel.faces.pose.Pose's fields, in its order


COLUMNS = columns()
# annotated videos: the first codec OpenCV's writer can open here (.mp4 plays everywhere; every
# OpenCV build writes MJPG .avi)
ANNOTATED_VIDEO = (("mp4v", ".mp4"), ("MJPG", ".avi"))
ANNOTATE_MIN_SIDE = 256  # smaller images are enlarged for drawing
# per class (the six, then neutral), as the web page (byel/assets/web/index.html) draws them
CLASS_COLOURS = [(220, 20, 60), (128, 0, 128), (255, 140, 0), (34, 139, 34), (30, 144, 255), (255, 215, 0), (0, 128, 128)]


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
        colour = CLASS_COLOURS[classes.index(pred) % len(CLASS_COLOURS)][::-1] if pred in classes else (128, 128, 128)
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


def classify_stream(model, finder: FaceFinder, items, batch_size: int = 64, mirror: bool = True, video=None):
    """For each ``(meta, rgb, keep)`` of ``items``: ``(meta, rgb if keep else None, faces, probs)``,
    in order. Faces are found image by image and classified ``batch_size`` crops at a time across
    images (the one batching path of ``byel predict``, the Python API and ``byel serve``).
    ``mirror``: each face's probabilities averaged with its mirror image's (byel.classifier).
    ``video``: None, or a function of an item's meta naming its video (None for a photo): the
    faces of consecutive frames of one video are tracked (byel.detect.FaceTracker)."""
    from byel import classifier  # late: torch/Lightning import

    pending: list = []
    tracker, current = (FaceTracker(finder), None) if video is not None else (None, None)

    def flush():
        crops = [f.crop for _, _, faces in pending for f in faces]
        # a geometry | fused head: the landmarker's mesh of each face, else (other detectors, no
        # detection) the crop measured; a face without a mesh keeps the CNN's probabilities
        meshes = [f.mesh for _, _, faces in pending for f in faces]
        probs = (classifier.face_probs(model, np.stack(crops), meshes, batch_size, mirror=mirror) if crops
                 else np.zeros((0, 0), np.float32))
        k = 0
        for meta, rgb, faces in pending:
            yield meta, rgb, faces, probs[k:k + len(faces)]
            k += len(faces)
        pending.clear()

    n = 0
    for meta, rgb, keep in items:
        name = video(meta) if tracker is not None else None
        if name is not None and name != current:
            tracker.reset()
        current = name
        faces = tracker(rgb) if name is not None else finder(rgb)
        pending.append((meta, rgb if keep else None, faces))
        n += len(faces)
        if n >= batch_size or len(pending) >= batch_size:
            yield from flush()
            n = 0
    yield from flush()


def _face_rows(meta: dict, boxes: list, probs, classes, uncertain, tracks=None, details=None) -> list[dict]:
    """CSV rows of one image or frame; one ``no_face`` row when it has no face. ``details``: each
    face's extra cells (detail_cells), or None."""
    rows = []
    for i, (b, p) in enumerate(zip(boxes, probs)):
        rows.append({**meta, "track": "" if tracks is None else tracks[i],
                     "x": b[0], "y": b[1], "w": b[2], "h": b[3], "predicted": label_of(p, classes, uncertain),
                     **{f"p_{c}": f"{v:.6f}" for c, v in zip(classes, p)}, **(details[i] if details else {})})
    if not rows:
        rows.append({**meta, "track": "", "x": "", "y": "", "w": "", "h": "", "predicted": NO_FACE,
                     **{f"p_{c}": "" for c in classes}})
    return rows


# --------------------------------------------------------------------------- outputs


class PredictionWriter:
    """What ``predict`` writes: the CSV, one row per face (written under a temporary name while
    ``writing``, put in place by ``close``), and with ``annotate_dir`` each image drawn with its
    rows (same relative names; videos as ``<name>.annotated.mp4`` or ``.avi``). ``class_counts``:
    faces per predicted label; ``annotated``: images and video frames drawn. ``face_details``,
    ``landmarks``: the extra columns (``detail_columns``), filled from ``add``'s ``details``."""

    def __init__(self, out_csv: str | Path, classes, *, uncertain: float | None = None,
                 smooth: str = DEFAULT_SMOOTH, annotate_dir: str | Path | None = None, video_stride: int = 1,
                 face_details: bool = False, landmarks: bool = False):
        self.path = Path(out_csv)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.classes, self.uncertain, self.smooth = classes, uncertain, smooth
        self.ann_root = Path(annotate_dir) if annotate_dir else None
        self.video_stride = video_stride
        self.face_details, self.landmarks = face_details, landmarks
        self.class_counts = dict.fromkeys([*classes, *([UNCERTAIN] if uncertain is not None else [])], 0)
        self.annotated = 0
        self.dropped = 0  # video faces left out: their track is seen on one frame only
        self.faces = self.no_face = 0  # rows written: faces, images or frames without one
        self._rows: csv.DictWriter | None = None
        self._video: list = []  # (meta, boxes, probs, details) of the processed frames of the video being read

    @contextlib.contextmanager
    def writing(self):
        """Within: ``add`` writes to the temporary file; leaving without an error, the last
        video's rows are written too."""
        # surrogateescape: a file name that is not valid UTF-8 is written as its own bytes (lossless)
        # naming: a write of the CSV that fails (a full disk) names no file
        with naming(self.path, self.tmp), \
                open(self.tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as fh:
            # restval "": a face without a mesh (and a no_face row) leaves the detail cells empty
            self._rows = csv.DictWriter(fh, columns(self.classes, self.face_details, self.landmarks),
                                        restval="", extrasaction="ignore")
            self._rows.writeheader()
            yield self
            self._end_video()

    def add(self, meta: dict, boxes: list, probs, rgb: np.ndarray | None = None, details=None) -> None:
        """The faces (``boxes``, ``probs``) of one image or video frame; ``rgb``: the image, to
        draw them on; ``details``: each face's detail cells (detail_cells), or None. A video's rows wait for its last frame: tracks and smoothing need the whole
        video."""
        if self._video and self._video[0][0]["_ann"] != meta["_ann"]:
            self._end_video()
        if meta["_kind"] == "video":
            self._video.append((meta, boxes, probs, details))
            return
        rows = _face_rows(meta, boxes, probs, self.classes, self.uncertain, details=details)
        self._write(rows)
        if rgb is not None:
            _write_image(self.ann_root / meta["_ann"], annotate(rgb, rows, self.classes))
            self.annotated += 1

    def close(self) -> None:
        """Put the complete CSV in place."""
        self.tmp.replace(self.path)

    def discard(self) -> None:
        """Remove the temporary CSV (a failed or empty run leaves no file)."""
        self.tmp.unlink(missing_ok=True)

    def _write(self, rows: list[dict]) -> None:
        for r in rows:
            if r["predicted"] != NO_FACE:
                self.class_counts[r["predicted"]] += 1
                self.faces += 1
            else:
                self.no_face += 1
        self._rows.writerows(rows)

    def _end_video(self) -> None:
        """The rows of the video just read, with their tracks and smoothed probabilities."""
        video = self._video
        if not video:
            return
        ids, probs = track_and_smooth([b for _, b, _, _ in video], [p for _, _, p, _ in video], self.smooth)
        per_frame = []
        for (m, b, _, d), t, p, keep in zip(video, ids, probs, lasting(ids)):
            self.dropped += len(keep) - sum(keep)
            per_frame.append(_face_rows(m, [x for x, k in zip(b, keep) if k], [x for x, k in zip(p, keep) if k],
                                        self.classes, self.uncertain, [x for x, k in zip(t, keep) if k],
                                        d and [x for x, k in zip(d, keep) if k]))
        for rows in per_frame:
            self._write(rows)
        if self.ann_root:
            self._annotate_video(video[0][0], per_frame)
        video.clear()

    def _annotate_video(self, meta: dict, per_frame: list[list[dict]]) -> None:
        """Second pass over the video (frames are not kept in memory): draw the final rows, as
        ``<name>.annotated.mp4`` where OpenCV can write one, else ``<name>.annotated.avi``."""
        base = self.ann_root / (meta["_ann"] + ".annotated")
        base.parent.mkdir(parents=True, exist_ok=True)
        vw = None
        with contextlib.ExitStack() as stack:  # the video appears at path once it is complete
            frames = stack.enter_context(contextlib.closing(video_frames(meta["file"], self.video_stride)))
            for (_, rgb), rows in zip(frames, per_frame):
                drawn = annotate(rgb, rows, self.classes)
                if vw is None:
                    vw = stack.enter_context(_annotated_video_writer(base, meta["_fps"], drawn.shape))
                vw.write(drawn)
                self.annotated += 1


@contextlib.contextmanager
def _annotated_video_writer(base: Path, fps: float, shape: tuple):
    """A video writer for ``base`` + the first suffix of ANNOTATED_VIDEO whose codec opens."""
    size = (shape[1], shape[0])
    for i, (fourcc, suffix) in enumerate(ANNOTATED_VIDEO):
        try:
            writer = video_writer(base.with_name(base.name + suffix), fourcc, fps, size)
            vw = writer.__enter__()
        except CodecUnavailable:
            if i == len(ANNOTATED_VIDEO) - 1:
                raise
            continue
        with contextlib.ExitStack() as stack:
            stack.push(writer)
            yield vw
        return


def annotated_files(inputs: list[str], annotate_dir: str | Path) -> list[Path]:
    """The files ``predict`` may write into ``annotate_dir`` for these inputs (each video under
    both of its possible names), to check before any work."""
    root, paths = Path(annotate_dir).expanduser(), []
    for kind, _, name in collect_inputs(list(inputs)).items:
        if kind == "image":
            paths.append(root / name)
        else:
            paths.extend(root / (name + ".annotated" + suffix) for _, suffix in ANNOTATED_VIDEO)
    return paths


# --------------------------------------------------------------------------- predict


class _Frames:
    """The images and video frames of the inputs, in order, as ``classify_stream`` items; counts
    what it read (``images``, ``frames``) and lists the inputs of which nothing could be read
    (``unreadable``, and in ``src.problems``)."""

    def __init__(self, src: _Sources, video_stride: int, keep_images: bool, bar):
        self.src, self.video_stride, self.keep_images, self.bar = src, video_stride, keep_images, bar
        self.images = self.frames = 0
        self.unreadable: list[str] = []

    def __iter__(self):
        for kind, path, ann_name in self.src.items:
            why = ""
            if kind == "image":
                try:
                    image = imageio.read(path)
                except imageio.Unusable as e:  # listed below, like an unreadable video
                    image, why = None, f" ({e})"
                fps, it = 0.0, [("", image)]
            else:
                fps = (video_info(path)[1] or 25.0) / self.video_stride
                it = video_frames(path, self.video_stride)
            n_read = 0
            for frame, rgb in it:
                self.bar.update(1)
                if rgb is None:
                    continue
                n_read += 1
                if kind == "image":
                    self.images += 1
                else:
                    self.frames += 1
                meta = {"file": path, "frame": frame, "_kind": kind, "_ann": ann_name, "_fps": max(1.0, fps)}
                yield meta, rgb, self.keep_images and kind == "image"
            if not n_read:
                self.unreadable.append(path)
                self.src.problems.append((path, f"unreadable {kind}{why}"))


def _video_of(meta: dict):
    """The video a ``_Frames`` item is a frame of (None: a photo)."""
    return meta["file"] if meta["_kind"] == "video" else None


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
    smooth: str = DEFAULT_SMOOTH,
    mirror: bool = True,
    face_details: bool = False,
    landmarks: bool = False,
    track: bool = True,
) -> dict:
    """Classify the faces in image files, folders (recursive) and video files; write ``out_csv``.

    ``detect=False`` treats every image/frame as one pre-cropped face (its centred square).
    ``annotate_dir``: images are saved there with boxes and labels drawn (same relative names;
    videos as ``<name>.annotated.mp4``, or ``.avi`` where OpenCV cannot write .mp4). ``video_stride``
    K classifies frames 0, K, 2K ...
    ``detector``: auto | landmarker | opencv-haar | dlib-hog; ``min_face``: faces whose box is
    smaller than this on its shorter side (pixels of the input image) are not reported.
    ``uncertain`` P: faces whose top probability is below P are labelled ``uncertain``.
    ``smooth`` (videos): none | ema:A | window:K, per face track (see byel.track); ema:0.5 unless
    told. ``mirror``: average each face's probabilities with its mirror image's (False: off).
    ``face_details``: add the columns score, yaw, pitch, roll, bs_<blendshape>…; ``landmarks``: add
    lm_<i>_x, lm_<i>_y (956 columns); empty for faces without the landmarker's mesh.
    ``track``: a video's faces are followed from frame to frame by their landmarks, the full face
    search running on every 30th frame and when a face is lost (byel.detect.FaceTracker; False:
    every frame searched).
    Returns counts (images, frames, faces, no_face, missing, unreadable, ...) and the CSV path.
    Raises CheckpointError for a wrong checkpoint, DataError when no input is usable at all.
    """
    from byel import classifier  # late: torch/Lightning import

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
    out = PredictionWriter(out_csv, classes, uncertain=uncertain, smooth=smooth, annotate_dir=annotate_dir,
                           video_stride=video_stride, face_details=face_details, landmarks=landmarks)

    total = sum(1 if k == "image" else -(-video_info(p)[0] // video_stride) for k, p, _ in src.items)
    bar = tqdm(total=total, unit="img", desc="predict", disable=not progress, leave=False)
    frames = _Frames(src, video_stride, out.ann_root is not None, bar)
    try:
        with out.writing():
            for meta, rgb, faces, probs in classify_stream(model, finder, frames, batch_size, mirror=mirror,
                                                          video=_video_of if track else None):
                details = ([detail_cells(f, face_details, landmarks) for f in faces]
                           if face_details or landmarks else None)
                out.add(meta, [f.box for f in faces], probs, rgb, details)
    except BaseException:
        out.discard()
        raise
    finally:
        bar.close()
    if not frames.images and not frames.frames:
        out.discard()
        what = "; ".join(f"{w}: {r}" for w, r in src.problems[:3])
        raise DataError(f"no readable image or video frame among the inputs ({what})")
    out.close()
    return {
        "csv": str(out.path),
        "detector": finder.name,
        "images": frames.images,
        "frames": frames.frames,
        "faces": out.faces,
        "no_face": out.no_face,
        "annotated": out.annotated,
        "class_counts": out.class_counts,
        "missing": src.missing,
        "unreadable": frames.unreadable,
        "problems": src.problems,
        "annotate_dir": str(out.ann_root) if out.ann_root else None,
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



# --------------------------------------------------------------------------- what the CLI prints

TABLE_MAX = 20  # `byel predict` prints a row per face up to this many CSV rows


def read_predictions(path: str | Path, limit: int | None = None) -> list[dict]:
    """The rows of a predictions CSV (the first ``limit``), file names as written (any bytes)."""
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        return list(itertools.islice(csv.DictReader(fh), limit))


def _classes_of(row: dict) -> list[str]:
    return [k[2:] for k in row if k.startswith("p_")]


def format_table(rows: list[dict]) -> str:
    """A row per face, columns aligned: file, [frame, track,] face (1-based within its image or
    frame), box (x,y w×h in image pixels), label and its probability (the top one)."""
    video = any(r["frame"] != "" for r in rows)
    head = ["file", *(["frame", "track"] if video else []), "face", "box", "label", "p"]
    lines, face, prev = [head], 0, None
    for r in rows:
        key = (r["file"], r["frame"])
        face = face + 1 if key == prev else 1
        prev = key
        found = r["predicted"] != NO_FACE
        top = max(float(r[f"p_{c}"]) for c in _classes_of(r)) if found else None
        lines.append([printable(r["file"]), *([r["frame"] or "-", r["track"] or "-"] if video else []),
                      str(face) if found else "-", f"{r['x']},{r['y']} {r['w']}x{r['h']}" if found else "-",
                      r["predicted"], f"{top:.2f}" if found else "-"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    right = {"frame", "track", "face", "p"}
    return "\n".join("  ".join(c.rjust(w) if h in right else c.ljust(w) for c, w, h in zip(line, widths, head))
                     .rstrip() for line in lines)


def predictions_json(result: dict, rows: list[dict]) -> str:
    """The run as one JSON object: ``files`` (those with rows), ``faces`` (a row of the CSV each:
    file, frame and track (null for images), box [x, y, w, h] (null: no face), label and
    probabilities by class (null: no face); where the CSV has those columns, ``score``, ``pose``
    {yaw, pitch, roll}, ``blendshapes`` by name and ``landmarks`` [[x, y]…], null where empty) and
    ``summary`` (what ``predict`` returned)."""
    def num(v):
        return None if v == "" else int(v)

    def real(v):
        return None if v == "" else float(v)

    faces = []
    for r in rows:
        found = r["predicted"] != NO_FACE
        face = {"file": r["file"], "frame": num(r["frame"]), "track": num(r["track"]),
                "box": [int(r[k]) for k in "xywh"] if found else None, "label": r["predicted"],
                "probabilities": {c: float(r[f"p_{c}"]) for c in _classes_of(r)} if found else None}
        if "score" in r:
            shapes = [k for k in r if k.startswith("bs_")]
            face["score"] = real(r["score"])
            face["pose"] = {k: float(r[k]) for k in POSE} if r["yaw"] != "" else None
            face["blendshapes"] = {k[3:]: float(r[k]) for k in shapes} if shapes and r[shapes[0]] != "" else None
        if "lm_0_x" in r:
            xs = [k for k in r if k.startswith("lm_") and k.endswith("_x")]
            face["landmarks"] = [[float(r[k]), float(r[k[:-1] + "y"])] for k in xs] if r["lm_0_x"] != "" else None
        faces.append(face)
    files = list(dict.fromkeys(r["file"] for r in rows))
    return json.dumps({"files": files, "faces": faces, "summary": result}, indent=2)
