"""Find the faces of a photo or video frame and crop them the way training saw faces: the face
finder of ``byel predict``, the Python API and ``byel serve``.

Face detection needs no download. ``detector="auto"`` (the default) is the MediaPipe Face
Landmarker shipped with byel (``landmarker``: BlazeFace on the photo and on tiles of it, then the
478-point mesh of each face, see ``FaceMesher.find``); where its runtime (ai-edge-litert) has no
wheel, OpenCV's bundled Haar cascade if the installed OpenCV ships it (opencv-python-headless 4.x),
otherwise dlib's built-in HOG frontal-face detector (dlib-bin, a core dependency). A missing or
damaged landmarker file is an error, not a silent fallback. Without any detector,
``detect=False`` (pre-cropped faces) still works: the image's centred square is its one face.

The crop given to the model is framed like the training faces: with the landmarker, rotated and
scaled so the outer eye corners sit level where the face generator puts them (``SYNTH_EYES``);
with the other detectors, a larger axis-aligned square around the box (forehead to chin, see
``MARGIN``).
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass

import cv2
import numpy as np

from byel.choices import DETECTORS
from byel.errors import ByelError

# Crop = square of side MARGIN * box side, centred SHIFT_UP * side above the box centre.
# Calibrated on the FER2013 sample (tests/fixtures/fer_sample, faces upscaled 4x, images with
# exactly one detection): the median FER crop is 1.28x dlib's box (89 of 140 detected) and centred
# 0.05 sides above it; 1.20x OpenCV 4.14's Haar box (73 of 140), centred on it.
MARGIN = {"dlib-hog": 1.28, "opencv-haar": 1.2}
SHIFT_UP = {"dlib-hog": 0.05, "opencv-haar": 0.0}
DLIB_WINDOW = 80  # dlib's HOG detector finds faces of >= ~80 px at the scale it runs on
MAX_DETECT_SIDE = 2048  # upsampling for small faces stops at this image side (speed)
MIN_FACE_FLOOR = 8  # a smaller min_face counts as this: detectors would upsample without limit for it


def checked_min_face(min_face) -> int:
    """The smallest reported face box side in pixels (shorter side, in the input image), from a
    user's ``min_face``: a whole number >= 1; values under MIN_FACE_FLOOR count as MIN_FACE_FLOOR."""
    if isinstance(min_face, bool) or not isinstance(min_face, numbers.Integral) or min_face < 1:
        raise ByelError(f"min_face must be a whole number of pixels >= 1, got {min_face!r}")
    return max(MIN_FACE_FLOOR, int(min_face))


@dataclass
class Face:
    """A face found in an image and its crop for the model. Not the landmarker's measurement
    (byel.faces.Face: a float box, scores, landmarks, blendshapes; kept as ``mesh``) nor the API's
    classified face (byel.api.Face: label, probabilities, track), which is made from this one."""

    box: tuple[int, int, int, int]  # x, y, w, h in original pixels (landmarker: the mesh's bounds)
    crop: np.ndarray  # uint8 RGB (size, size, 3)
    mesh: object = None  # byel.faces.Face (landmarks, blendshapes in original pixels) from the landmarker

    @property
    def landmarks(self) -> np.ndarray | None:
        """(478, 3) float32 mesh points: x, y in original pixels, z (MediaPipe's) at the scale of x."""
        return None if self.mesh is None else self.mesh.landmarks

    def measured(self) -> tuple:
        """(score, blendshapes by name, pose) of the landmarker's measurement of this face: the
        face detector's confidence, MediaPipe's 52 blendshape scores (None where it gave none) and
        the head pose (byel.faces.pose); Nones without a mesh (other detectors, no detection)."""
        if self.mesh is None:
            return None, None, None
        from byel.faces.mesher import BLENDSHAPES
        from byel.faces.pose import head_pose

        m = self.mesh
        shapes = None if np.isnan(m.blendshapes).any() else dict(zip(BLENDSHAPES, map(float, m.blendshapes)))
        return float(m.score), shapes, head_pose(m.landmarks)


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


def _mesh_box(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """The box of a landmarker face: its mesh's bounds (x, y, w, h), forehead to chin and cheek
    to cheek. BlazeFace's own box, merged from the photo, its padded copies and tiles, is
    coarser (it sees a large face at 128 px): on the group photo's largest face it stuck out
    0.16 of a side to the right and below the face, the same share at every scale, which on a
    large face is many pixels."""
    lo, hi = landmarks[:, :2].min(0), landmarks[:, :2].max(0)
    return float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])


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
            if min(rgb.shape[:2]) < 2:  # a one-pixel line of an image: no face (the mesher refuses it)
                return []

            return self._cropped(rgb, self.mesher.find(rgb, self.min_face))
        if self.detector is None:
            return [Face(*centre_square(rgb, self.size))]
        return [Face(b, crop_face(rgb, b, self.size, self.margin, self.shift))
                for b in self.detector(rgb) if self.big_enough(b)]

    def _cropped(self, rgb: np.ndarray, meshes: list) -> list[Face]:
        """Landmarker faces (byel.faces.Face) as crops, the ones too small left out."""
        from byel.faces.features import SYNTH_EYES, aligned_crop

        boxes = [(_image_box(_mesh_box(f.landmarks), rgb.shape), f) for f in meshes]
        return [Face(b, aligned_crop(rgb, f.landmarks, self.size, SYNTH_EYES), f)
                for b, f in boxes if self.big_enough(b)]

    def big_enough(self, box) -> bool:
        """``min_face`` is a promise about the reported box: the detectors only aim at it (tiles,
        scales and minimum windows), and clipping to the image can shrink a box below it."""
        return min(box[2], box[3]) >= self.min_face


SEARCH_EVERY = 30  # FaceTracker: the full face search runs on every SEARCH_EVERY-th frame (and the first)


class FaceTracker:
    """``FaceFinder`` for the consecutive frames of one video: called frame after frame, it
    follows each face of the last frame with the landmark model alone (``FaceMesher.track``:
    MediaPipe's VIDEO mode) and runs the finder's full face search (BlazeFace on the frame, its
    padded copies and tiles) only on the first frame, every ``every``-th frame after it
    (SEARCH_EVERY: about once a second of video) and a frame on which a tracked face was lost. A
    searched face that no tracked face covers is added; on the periodic search's frames the
    search's faces are kept (as ``FaceFinder`` finds them) and a tracked face the search missed
    is followed on. Crops are made from the mesh as ``FaceFinder`` makes them. With a detector
    other than the landmarker (or ``detect=False``) it is the finder, frame by frame.
    ``reset()`` before the frames of another video. ``searches``: full searches run so far."""

    def __init__(self, finder: FaceFinder, every: int | None = None):
        every = SEARCH_EVERY if every is None else every
        if every < 1:
            raise ByelError(f"the face search interval must be >= 1 frame, got {every}")
        self.finder, self.every = finder, every
        self.searches = 0
        self.reset()

    def reset(self) -> None:
        self._frame, self._last = 0, []

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        finder, mesher = self.finder, self.finder.mesher
        if mesher is None or min(rgb.shape[:2]) < 2:
            return finder(rgb)
        periodic = self._frame % self.every == 0
        self._frame += 1
        if periodic:  # the search's faces, then the tracked ones it missed
            self.searches += 1
            faces = finder(rgb)
            missed = [m for m in self._last if not _covered_by(_corners(_mesh_box(m.landmarks)), faces)]
            found = finder._cropped(rgb, mesher.track(rgb, missed)) if missed else []
            faces += [f for f in found if not _covered_by(_corners(f.box), faces)]
        else:
            faces = finder._cropped(rgb, mesher.track(rgb, self._last)) if self._last else []
            if len(faces) < len(self._last):  # a face lost: the search, for faces not tracked
                self.searches += 1
                faces += [f for f in finder(rgb) if not _covered_by(_corners(f.box), faces)]
        self._last = [f.mesh for f in faces]
        return faces


TRACK_SAME = 0.5  # a searched face lying this much inside a tracked face's box (or it in it) is that face


def _corners(box) -> np.ndarray:
    return np.array([box[0], box[1], box[0] + box[2], box[1] + box[3]], float)


def _covered_by(a: np.ndarray, faces: list[Face]) -> bool:
    """Whether box a (xmin, ymin, xmax, ymax) is one of the faces' (TRACK_SAME)."""
    if not faces:
        return False
    held = np.array([_corners(f.box) for f in faces], float)
    iw = np.clip(np.minimum(a[2], held[:, 2]) - np.maximum(a[0], held[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[3], held[:, 3]) - np.maximum(a[1], held[:, 1]), 0, None)
    inter = iw * ih
    small = np.minimum((a[2] - a[0]) * (a[3] - a[1]), (held[:, 2] - held[:, 0]) * (held[:, 3] - held[:, 1]))
    return bool((inter / np.maximum(small, 1e-9)).max() > TRACK_SAME)
