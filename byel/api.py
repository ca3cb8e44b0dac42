"""byel from Python: load a fine-tuned model once, then read the expressions of the faces in
images and videos.

    import byel

    model = byel.load("runs/ft/checkpoints/best.ckpt")  # byel.load(): the model shipped with byel
    faces = model.predict("photo.jpg")                  # [Face(box=(x, y, w, h), label='happiness', ...), ...]
    many = model.predict(["a.jpg", pil_image, rgb_array])  # one list of faces per image
    clip = model.predict_video("clip.mp4", stride=2)  # one list per frame, with track ids, smoothed (ema:0.5)
    table = clip.to_frame()                             # pandas DataFrame, the columns of `byel predict`'s CSV
    faces.annotate()                                    # a PIL image: boxes, labels, probability bars

Faces are found, cropped and classified by the same code as ``byel predict`` (byel.detect,
byel.predict);
class names come from the checkpoint (``byel.classes`` in its metadata). Every problem with an
input (missing file, unreadable image, unsupported type) raises one ByelError line; an argument of
the wrong type raises InputTypeError, a ByelError that is also a TypeError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from byel.errors import ByelError, InputTypeError
from byel.faces.pose import Pose
from byel.predict import CLASS_COLOURS, NO_FACE, columns
from byel.track import DEFAULT_SMOOTH

INPUT_HELP = "an image path, a PIL image, a uint8 numpy array (H×W, H×W×3 RGB or H×W×4), encoded image bytes, or a list of them"


@dataclass(frozen=True)
class Face:
    """One face: its box (x, y, w, h) in pixels of the image, the predicted label (a class, or
    ``uncertain`` under the threshold), every class's probability, and in videos its track id.
    ``landmarks``: MediaPipe's 478-point face mesh, float32 (478, 3): x, y in pixels of the
    image, z its relative depth at the scale of x (mesh indices as MediaPipe's, e.g. 33 and 263
    the outer eye corners).

    What the face finder measured, all None unless the faces were found by the landmarker (the
    default; dlib, the Haar cascade and ``detect=False`` give none of them): ``landmarks``;
    ``score``: the face detector's (BlazeFace's) confidence, in (0, 1]; ``blendshapes``:
    MediaPipe's 52 blendshape scores, name → value in [0, 1] (``_neutral``, ``browDownLeft``, …,
    ``jawOpen``, ``mouthSmileLeft``, …); ``pose``: the head pose in degrees, ``pose.yaw`` (> 0:
    the face turns to the image's right), ``pose.pitch`` (> 0: it looks up) and ``pose.roll``
    (> 0: it tilts clockwise), from the canonical face fitted to the mesh (byel.faces.pose)."""

    box: tuple[int, int, int, int]
    label: str
    probabilities: dict[str, float]
    landmarks: np.ndarray | None = field(default=None, compare=False, repr=False)
    track: int | None = None
    score: float | None = None
    blendshapes: dict[str, float] | None = field(default=None, compare=False, repr=False)
    pose: Pose | None = None

    def to_dict(self) -> dict:
        """JSON-ready: box, label, probabilities, and where there is one, track, score, pose
        (yaw, pitch, roll) and blendshapes (not the landmarks: 478 points)."""
        d = {"box": list(self.box), "label": self.label, "probabilities": dict(self.probabilities)}
        if self.track is not None:
            d["track"] = self.track
        if self.score is not None:
            d["score"] = self.score
        if self.pose is not None:
            d["pose"] = self.pose._asdict()
        if self.blendshapes is not None:
            d["blendshapes"] = dict(self.blendshapes)
        return d

    def __repr__(self) -> str:
        probs = ", ".join(f"{c!r}: {p:.3f}" for c, p in self.probabilities.items())
        extra = "" if self.track is None else f", track={self.track}"
        if self.score is not None:
            extra += f", score={self.score:.3f}"
        if self.pose is not None:
            extra += ", pose=(yaw={:.1f}, pitch={:.1f}, roll={:.1f})".format(*self.pose)
        return f"Face(box={self.box}, label={self.label!r}, probabilities={{{probs}}}{extra})"


class Faces(list):
    """The faces of one image or video frame, numbered left to right (by the box's x, then y; an
    empty list: no face found); ``largest()`` is the face with the largest box.
    ``source``: the file, or ``<image i>`` for an in-memory image; ``frame``: the video frame
    index; ``size``: the image's (width, height); ``classes``: the model's class names.
    ``annotate()`` draws them on the image; in Jupyter, a ``Faces`` shows as that picture."""

    def __init__(self, faces=(), *, source: str = "", frame: int | None = None,
                 size: tuple[int, int] | None = None, classes: tuple[str, ...] = (), image: np.ndarray | None = None):
        super().__init__(faces)
        self.source, self.frame, self.size, self.classes = source, frame, size, tuple(classes)
        self._image = image  # the input's RGB pixels (in-memory inputs; a file is read again when drawn)

    def largest(self) -> Face | None:
        """The face with the largest box (None: no face)."""
        return max(self, key=lambda f: f.box[2] * f.box[3], default=None)

    def to_frame(self, face_details: bool = False, landmarks: bool = False):
        """A pandas DataFrame: one row per face (one ``no_face`` row if there is none)."""
        return to_frame(self, face_details, landmarks)

    def image(self) -> np.ndarray | None:
        """The image's uint8 RGB pixels (H, W, 3): the input held, or its file read again; None
        for a video frame (pass the frame to ``annotate``)."""
        if self._image is not None:
            return self._image
        if self.frame is None and self.source and not self.source.startswith("<image"):
            return _image_rgb(self.source, self.source)
        return None

    def annotate(self, image=None):
        """A PIL image, the input's pixels and size, with each face's box, its number (left to
        right), label and top probability, and a small bar per class. ``image``: draw on this
        instead (any input ``predict`` takes; needed for video frames)."""
        rgb = self.image() if image is None else _image_rgb(image, "annotate(image)")
        if rgb is None:
            raise ByelError("annotate: this is a video frame; pass its image: annotate(frame_rgb)")
        if self.size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(self.size):
            raise ByelError(f"annotate: the image is {rgb.shape[1]}×{rgb.shape[0]}, these faces were found in "
                            f"a {self.size[0]}×{self.size[1]} one")
        return draw_faces(rgb, self, self.classes)

    def _repr_png_(self) -> bytes | None:
        """PNG bytes of ``annotate()`` (how Jupyter shows a ``Faces``); None where there is no image."""
        import io

        try:
            img = self.annotate()
        except ByelError:
            return None
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()


class Results(list):
    """One ``Faces`` per image (``predict`` on many images) or per processed video frame
    (``results[i].annotate()`` draws one)."""

    def to_frame(self, face_details: bool = False, landmarks: bool = False):
        """A pandas DataFrame: one row per face, ``no_face`` rows for images without one."""
        return to_frame(self, face_details, landmarks)


def to_frame(results, face_details: bool = False, landmarks: bool = False):
    """A pandas DataFrame of ``Faces`` or ``Results``, with the columns of ``byel predict``'s CSV:
    file, frame, track, x, y, w, h, predicted, p_<class>… (frame and track empty for photos);
    ``face_details``: then score, yaw, pitch, roll, bs_<blendshape>…; ``landmarks``: then
    lm_<i>_x, lm_<i>_y (as ``byel predict --face-details --landmarks``; missing: no mesh)."""
    try:
        import pandas as pd
    except ImportError:
        raise ByelError("to_frame needs pandas: pip install pandas") from None
    groups = [results] if isinstance(results, Faces) else list(results)
    if not all(isinstance(g, Faces) for g in groups):
        raise ByelError("to_frame takes what model.predict or model.predict_video returned")
    classes = next((g.classes for g in groups if g.classes), ())
    rows = []
    for g in groups:
        head = {"file": g.source, "frame": g.frame}
        for f in g:
            rows.append({**head, "track": f.track, "x": f.box[0], "y": f.box[1], "w": f.box[2], "h": f.box[3],
                         "predicted": f.label, **{f"p_{c}": p for c, p in f.probabilities.items()},
                         **_detail_values(f, face_details, landmarks)})
        if not g:
            rows.append({**head, "track": None, "x": None, "y": None, "w": None, "h": None, "predicted": NO_FACE})
    cols = columns(classes, face_details, landmarks)
    frame = pd.DataFrame(rows, columns=cols)
    for c in ("frame", "track", "x", "y", "w", "h"):  # whole numbers, missing where there is none
        frame[c] = frame[c].astype("Int64")
    return frame


def _detail_values(f: Face, face_details: bool, landmarks: bool) -> dict:
    """The face-details and landmark columns of one Face (byel.predict.detail_columns); none
    where it has no measurement."""
    d = {}
    if face_details:
        if f.score is not None:
            d["score"] = f.score
        if f.pose is not None:
            d.update(f.pose._asdict())
        d.update({f"bs_{b}": v for b, v in (f.blendshapes or {}).items()})
    if landmarks and f.landmarks is not None:
        for i, (x, y) in enumerate(f.landmarks[:, :2].tolist()):
            d[f"lm_{i}_x"], d[f"lm_{i}_y"] = x, y
    return d


def _image_rgb(x, name: str) -> np.ndarray:
    """uint8 RGB (H, W, 3) of one image input, or one ByelError line saying why not."""
    from PIL import Image

    from byel import imageio
    from byel.data.formats import VIDEO_EXTS

    if isinstance(x, (str, Path)):
        p = Path(x).expanduser()
        if not p.exists():
            raise ByelError(f"{x}: not found")
        if p.is_dir():
            raise ByelError(f"{x} is a folder: pass its image files (or run `byel predict {x}`)")
        if p.suffix.lower() in VIDEO_EXTS:
            raise ByelError(f"{x} is a video: use model.predict_video")
        try:
            return imageio.read(p)
        except imageio.Unusable as e:
            raise ByelError(_unusable(x, e, "not a readable image (corrupt, empty or not an image)")) from e
    if isinstance(x, (bytes, bytearray, memoryview)):
        try:
            return imageio.decode(x)
        except imageio.Unusable as e:
            raise ByelError(_unusable(name, e, "the bytes are not a readable image")) from e
    if isinstance(x, Image.Image):
        try:
            return imageio.from_pil(x)
        except imageio.Unusable as e:
            raise ByelError(f"{name}: {e.detail}") from e
    if isinstance(x, np.ndarray):
        if x.dtype != np.uint8:
            raise ByelError(f"{name}: numpy images must be uint8 (0–255), got {x.dtype}")
        if x.ndim == 3 and x.shape[2] == 1:
            x = x[..., 0]
        if x.ndim == 2:
            x = np.repeat(x[..., None], 3, axis=2)
        if x.ndim != 3 or x.shape[2] not in (3, 4) or min(x.shape[:2]) < 2:
            raise ByelError(f"{name}: a numpy image must be H×W, H×W×3 (RGB) or H×W×4, at least 2×2; "
                            f"got shape {x.shape}")
        return np.ascontiguousarray(x[..., :3])
    raise InputTypeError(f"cannot read a {type(x).__name__}: pass {INPUT_HELP}")


# Arguments are checked at the door: a wrong type is an InputTypeError (a ByelError and a
# TypeError), a value out of range a ByelError; both name the argument and what it takes.
def _path_arg(value, name: str, what: str) -> None:
    if not isinstance(value, (str, os.PathLike)):
        hint = " (write the bytes to a file first)" if isinstance(value, (bytes, bytearray, memoryview)) else ""
        raise InputTypeError(f"{name} takes the path (a str or pathlib.Path) of {what}; "
                             f"got {type(value).__name__}{hint}")


def _whole_arg(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{name} must be a whole number >= 1, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ByelError(f"{name} must be a whole number >= 1, got {value!r}")


def _unusable(what, e, otherwise: str) -> str:
    """The one line for an image that cannot be used (the cause, an imageio.Unusable, stays
    attached: byel serve answers 413 for one over the pixel limit)."""
    from byel import imageio

    return f"{what}: the image is too large: {e.detail}" if e.reason == imageio.TOO_LARGE else f"{what}: {otherwise}"


def _sized(pairs, keep=None):
    """classify_stream items from (key, rgb) pairs: ((key, (width, height)), rgb, keep), keep
    ``keep[i]`` for the i-th pair (None: False for all)."""
    for i, (key, rgb) in enumerate(pairs):
        yield (key, (rgb.shape[1], rgb.shape[0])), rgb, bool(keep[i]) if keep is not None else False


def draw_faces(rgb: np.ndarray, faces, classes):
    """A PIL image of ``rgb`` (same pixels and size) with each face's box in its label's colour,
    ``#number label probability`` above it (inside where there is no room) and, along the box's
    bottom inside it, one small bar per class in the class's colour, as long as its probability."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(np.ascontiguousarray(rgb[..., :3]), "RGB")
    draw = ImageDraw.Draw(img)
    W, H = img.size
    thick = max(1, round(min(W, H) / 300))
    for n, f in enumerate(faces, 1):
        x, y, w, h = f.box
        colour = (CLASS_COLOURS[classes.index(f.label) % len(CLASS_COLOURS)] if f.label in classes
                  else (128, 128, 128))
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=colour, width=thick)
        font = ImageFont.load_default(size=max(10, min(32, round(w / 8))))
        text = f"#{n} {f.label} {max(f.probabilities.values(), default=0):.2f}"
        if f.track is not None:
            text += f" t{f.track}"
        l, t, r, b = draw.textbbox((0, 0), text, font=font)
        ty = y - (b - t) - 4 if y - (b - t) - 4 >= 0 else y + thick
        draw.rectangle([x, ty, x + r - l + 4, ty + b - t + 4], fill=colour)
        draw.text((x + 2 - l, ty + 2 - t), text, fill=(255, 255, 255), font=font)
        bar_h = max(2, round(h / 40))  # one bar per class, inside the box's bottom
        for k, c in enumerate(classes):
            by = y + h - thick - (len(classes) - k) * (bar_h + 1)
            if by < y + thick:
                continue
            colour_c = CLASS_COLOURS[k % len(CLASS_COLOURS)]
            length = round((w - 2 * thick - 2) * float(f.probabilities.get(c, 0.0)))
            if length > 0:
                draw.rectangle([x + thick + 1, by, x + thick + length, by + bar_h - 1], fill=colour_c)
    return img


class Model:
    """A fine-tuned byel classifier with its face detector (see ``byel.load``)."""

    def __init__(self, checkpoint: str | Path | None = None, *, device: str = "cpu", detect: bool = True,
                 detector: str = "auto", min_face: int = 24, batch_size: int = 64, mirror: bool = True):
        from byel.checks import check_device
        from byel import classifier  # late: torch/Lightning import
        from byel.detect import FaceFinder

        _whole_arg(batch_size, "batch_size")
        _whole_arg(min_face, "min_face")
        if checkpoint is not None:
            _path_arg(checkpoint, "byel.load(checkpoint)", "a .ckpt file, or None for the model shipped with byel")
        self.checkpoint = Path(classifier.default_checkpoint() if checkpoint is None else checkpoint)
        self.device = check_device(device)
        self.net = classifier.load(self.checkpoint, self.device)
        self.classes = tuple(self.net.checkpoint_meta["classes"])
        self.finder = FaceFinder(self.net.cfg.data.image_size, detect, detector, min_face)
        self.batch_size = batch_size
        if not isinstance(mirror, bool):
            raise InputTypeError(f"mirror must be True or False, got {mirror!r} ({type(mirror).__name__})")
        self.mirror = mirror

    def __repr__(self) -> str:
        return (f"byel.Model({str(self.checkpoint)!r}, classes={list(self.classes)}, detector={self.finder.name!r}, "
                f"device={self.device!r})")

    def _faces(self, faces, probs, uncertain, *, source, frame=None, size=None, tracks=None, image=None) -> Faces:
        """``faces``: byel.detect.Face (box, mesh) of one image, ``probs`` theirs; numbered left to right."""
        from byel.predict import label_of

        out = [Face(tuple(int(v) for v in f.box), label_of(p, self.classes, uncertain),
                    {c: float(v) for c, v in zip(self.classes, p)}, f.landmarks,
                    None if tracks is None else int(tracks[i]), *f.measured())
               for i, (f, p) in enumerate(zip(faces, probs))]
        out.sort(key=lambda f: (f.box[0], f.box[1]))
        return Faces(out, source=source, frame=frame, size=size, classes=self.classes, image=image)

    def predict(self, x, *, uncertain: float | None = None):
        """The faces in ``x``: an image (path, PIL image, uint8 numpy array, encoded bytes) →
        ``Faces``; a list of images (or an N×H×W×3 array) → ``Results``, one ``Faces`` each.
        ``uncertain`` P: a face whose top probability is below P is labelled ``uncertain``."""
        from byel.predict import check_uncertain, classify_stream

        check_uncertain(uncertain)
        many = isinstance(x, (list, tuple)) or (isinstance(x, np.ndarray) and x.ndim == 4)
        inputs = x if many else [x]
        names = [str(v) if isinstance(v, (str, Path)) else f"<image {i}>" for i, v in enumerate(inputs)]
        out = Results()
        # in-memory inputs keep their pixels for annotate(); a file is read again when drawn
        held = [not isinstance(v, (str, Path)) for v in inputs]
        for (i, size), rgb, faces, probs in classify_stream(self.net, self.finder, _sized(
                ((i, _image_rgb(v, names[i])) for i, v in enumerate(inputs)), held), self.batch_size,
                mirror=self.mirror):
            out.append(self._faces(faces, probs, uncertain, source=names[i], size=size, image=rgb))
        return out if many else out[0]

    def predict_video(self, path: str | Path, *, stride: int = 1, smooth: str = DEFAULT_SMOOTH,
                      uncertain: float | None = None, track: bool = True) -> Results:
        """One ``Faces`` per processed frame (frames 0, stride, 2·stride …), each face with its
        track id (the same face across frames, by box overlap) and its probabilities smoothed
        along the track with ``smooth`` (none | ema:A | window:K, see byel.track; default
        ema:0.5, ``"none"``: off). In a video of 4 or more processed frames, a face whose track
        is seen on one frame only is left out (a passing false detection). ``track``: faces are
        followed from frame to frame by their landmarks, the full face search running on every
        30th frame and when a face is lost (byel.detect.FaceTracker; False: every frame searched)."""
        from byel.media import video_frames
        from byel.predict import check_uncertain, classify_stream
        from byel.track import lasting, parse_smooth, track_and_smooth

        _path_arg(path, "predict_video(path)", "a video file")
        check_uncertain(uncertain)
        parse_smooth(smooth)
        _whole_arg(stride, "stride")
        p = Path(path).expanduser()
        if not p.is_file():
            raise ByelError(f"{path}: {'a folder, not a video' if p.is_dir() else 'not found'}")
        frames = []  # (frame index, size, faces, probabilities)
        items = _sized(video_frames(p, stride))
        for (k, size), _, faces, probs in classify_stream(self.net, self.finder, items, self.batch_size,
                                                          mirror=self.mirror, video=(lambda _: p) if track else None):
            for f in faces:  # the crops are not needed any more: a long video keeps boxes and meshes only
                f.crop = None
            frames.append((k, size, faces, probs))
        if not frames:
            raise ByelError(f"{path}: not a readable video (no frame could be decoded)")
        ids, smoothed = track_and_smooth([[f.box for f in fs] for *_, fs, _ in frames], [pr for *_, pr in frames],
                                         smooth)
        out = Results()
        for (f, size, fs, _), t, pr, keep in zip(frames, ids, smoothed, lasting(ids)):
            kept = [i for i, k in enumerate(keep) if k]
            out.append(self._faces([fs[i] for i in kept], [pr[i] for i in kept], uncertain, source=str(path),
                                   frame=f, size=size, tracks=[t[i] for i in kept]))
        return out


def load(checkpoint: str | Path | None = None, *, device: str = "cpu", detect: bool = True,
         detector: str = "auto", min_face: int = 24, batch_size: int = 64, mirror: bool = True) -> Model:
    """A ready ``Model`` from a fine-tuned checkpoint (None: the model shipped with byel).

    ``detect=False``: every image is one face crop (its centred square is classified).
    ``detector``: auto (the landmarker; where its runtime has no wheel, OpenCV's Haar cascade or
    dlib) | landmarker | opencv-haar | dlib-hog; ``min_face``: only faces whose box is at least
    this many pixels on its shorter side (in the input image; under 8 counts as 8) are reported;
    ``batch_size``: faces per forward pass; ``device``: cpu, cuda, cuda:N or mps.
    ``mirror``: each face's probabilities are the mean of the face's and its mirror image's (a
    face and its mirror image get the same label); ``mirror=False``: the face alone."""
    return Model(checkpoint, device=device, detect=detect, detector=detector, min_face=min_face,
                 batch_size=batch_size, mirror=mirror)
