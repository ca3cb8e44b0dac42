"""Face finding and measuring with MediaPipe's Face Landmarker v2 models on the TFLite runtime.

Each step follows MediaPipe's own graph (google-ai-edge/mediapipe, file in brackets), so the
output matches ``mediapipe.tasks.vision.FaceLandmarker`` in IMAGE mode (tested against stored
reference output in tests/test_faces.py):

1. detector (tasks/cc/vision/face_detector/face_detector_graph.cc): the whole image letterboxed
   to 128x128 (zero border), values in [-1, 1]; 896 SSD anchors (short-range options); boxes
   and 6 keypoints decoded relative to the anchors (scale 128); score = sigmoid(clip(raw, ±100));
   threshold 0.5; weighted NMS at IoU 0.5; projected back through the letterbox.
2. face rectangle (same file): the box, rotated so that keypoint 0 -> 1 (the eyes) is
   horizontal, scaled 1.5x.
3. landmarks (face_landmarks_detector_graph.cc): the rotated rectangle warped to 256x256
   (bilinear, replicated border), values in [0, 1]; 478 x (x, y, z) in crop pixels,
   normalised by 256 and projected back; face presence = sigmoid(output 1), kept if >= 0.5.
4. blendshapes (face_blendshapes_graph.cc): 146 of the landmarks, (x, y) in image pixels -> 52
   scores, names in BLENDSHAPES.

``mode="crop"`` skips 1-2 for images that are already face crops: the landmark model sees
the whole image (a centred square of side ``crop_scale`` x the image's longer side), then the
rectangle its landmarks give (MediaPipe's tracking rectangle: eye-line rotation, 1.5x the
landmarks' box).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from byel.errors import ByelError
from byel.faces.model import interpreter, read_models

BLENDSHAPES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight")

# Landmarks the blendshape model reads (face_blendshapes_graph.cc, kLandmarksSubsetIdxs).
BLENDSHAPE_INPUT = np.array([
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66,
    67, 70, 78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145,
    146, 148, 149, 150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176,
    178, 181, 185, 191, 195, 197, 234, 246, 249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285,
    288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334,
    336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382, 384, 385, 386, 387,
    388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472, 473, 474,
    475, 476, 477])
N_LANDMARKS = 478
EYE_CORNERS = (33, 263)  # outer corner of the subject's right eye (image left), of the left eye

DETECT_SIZE, MESH_SIZE = 128, 256
RECT_SCALE = 1.5  # face_detector_graph.cc, RectTransformationCalculator
MODES = ("detect", "crop")
# ``find``: BlazeFace short range sees faces of ~20-100 % of its input's side, so photos are also
# searched in half-overlapping square tiles of 1/2, 1/4 and 1/8 of their longer side (a level
# runs while its tiles are >= TILE_PER_FACE x the smallest face wanted).
TILE_LEVELS, TILE_PER_FACE = 4, 3
FRAME_PAD = 0.25  # and once with this border (x its longer side): faces that fill the photo
FRAME_WIDE_PAD = 0.5  # and with a plain (zero) border this wide: a face seen only there is added
TILE_EDGE = 0.02  # a tile's detection this close (x its side) to a side cutting the photo: a cut face
FIND_NMS_IOU = 0.3  # one face seen in several tiles and levels: its detections merged
SAME_FACE = 0.5  # a mesh whose landmark box lies this much inside a larger one's is not another face
# nor a detection lying this much inside a larger face's head: the square of HEAD_SCALE x its
# landmark box's longer side (the hair, ears and chin of a tilted or bowed head)
SAME_HEAD, HEAD_SCALE = 0.6, 1.5


def _anchors() -> np.ndarray:
    """(896, 2) anchor centres of BlazeFace short range (SsdAnchorsCalculator: 4 layers, strides
    8/16/16/16, one aspect ratio + one interpolated scale each, fixed size, offset 0.5)."""
    strides, out, layer = [8, 16, 16, 16], [], 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        per_cell, side = 2 * (last - layer), math.ceil(DETECT_SIZE / strides[layer])
        ys, xs = np.mgrid[0:side, 0:side]
        centres = np.stack([(xs + 0.5) / side, (ys + 0.5) / side], -1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
        layer = last
    return np.concatenate(out).astype(np.float32)


ANCHORS = _anchors()


@dataclass
class Face:
    """One measured face; coordinates in pixels of the image given to ``measure``."""

    box: tuple[float, float, float, float]  # x, y, w, h: the detector's box (else the landmarks' box)
    score: float  # detector confidence (without the detector: the presence score)
    presence: float  # the landmark model's face-presence score
    landmarks: np.ndarray  # float32 (478, 3): x, y in px; z in px at the scale of x (MediaPipe's)
    blendshapes: np.ndarray  # float32 (52,), names in BLENDSHAPES
    keypoints: np.ndarray | None = None  # float32 (6, 2) detector keypoints (eyes, nose, mouth, ears)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


def _warp(rgb: np.ndarray, cx: float, cy: float, w: float, h: float, rotation: float, size: int,
          border: int) -> np.ndarray:
    """The rotated rectangle to a size x size uint8 image, as ImageToTensorCalculator (OpenCV)
    does it: cv::boxPoints -> perspective transform -> bilinear warp."""
    src = cv2.boxPoints(((cx, cy), (w, h), rotation * 180.0 / math.pi)).astype(np.float32)
    dst = np.array([[0, size], [0, 0], [size, 0], [size, size]], np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)


def _rect_to_image(cx, cy, w, h, rotation, pts: np.ndarray) -> np.ndarray:
    """Points normalised to a rotated rectangle ([0, 1] over its sides) to image pixels
    (GetRotatedSubRectToRectTransformMatrix)."""
    c, s = math.cos(rotation), math.sin(rotation)
    x, y = (pts[:, 0] - 0.5) * w, (pts[:, 1] - 0.5) * h
    return np.stack([c * x - s * y + cx, s * x + c * y + cy], -1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box (xmin, ymin, xmax, ymax) with many."""
    iw = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _inside(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fraction of box a (xmin, ymin, xmax, ymax) that lies inside each of many boxes b."""
    iw = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    area = (a[2] - a[0]) * (a[3] - a[1])
    return iw * ih / area if area > 0 else np.ones(len(b))


def _weighted_nms(boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray, iou: float,
                  flags: np.ndarray | None = None):
    """NonMaxSuppressionCalculator, WEIGHTED: each kept detection is the score-weighted mean of
    the boxes and keypoints overlapping it by more than ``iou``; its score stays the top one.
    With ``flags`` (one bool per detection), each result also carries its members' flags."""
    order = np.argsort(-scores, kind="stable")
    out = []
    while len(order):
        top = order[0]
        sim = _iou(boxes[top], boxes[order])
        cand, rest = order[sim > iou], order[sim <= iou]
        if len(cand):
            w = scores[cand][:, None]
            box = (boxes[cand] * w).sum(0) / w.sum()
            kp = (kps[cand].reshape(len(cand), -1) * w).sum(0).reshape(-1, 2) / w.sum()
        else:
            box, kp = boxes[top], kps[top]
        out.append((box, kp, float(scores[top])) if flags is None else
                   (box, kp, float(scores[top]), flags[cand if len(cand) else [top]]))
        if len(rest) == len(order):
            break
        order = rest
    return out


class FaceMesher:
    """Finds faces and measures each: box, 478 landmarks, 52 blendshapes, presence score.

    ``mode="detect"``: BlazeFace finds the faces (any photo), at most ``max_faces`` of them,
    most confident first. ``mode="crop"``: the image is one ready-cut face; the landmark model
    reads a centred square of ``crop_scale`` x its longer side, then (``refine``) once more the
    rectangle MediaPipe would track the face with (refining found a mesh on 86.8 % of 400
    FER2013 PublicTest faces, 82.5 % without). ``max_faces``: None = all (MediaPipe's default
    is 1). Not thread-safe: one mesher per thread (see ``byel.faces.batch``).
    ``model``: a face_landmarker.task (default: the one shipped with byel)."""

    def __init__(self, mode: str = "detect", *, max_faces: int | None = None, min_detection: float = 0.5,
                 min_presence: float = 0.5, nms_iou: float = 0.5, crop_scale: float = 1.0,
                 refine: bool = True, blendshapes: bool = True, model: str | None = None, threads: int = 1):
        if mode not in MODES:
            raise ByelError(f"unknown face mesher mode {mode!r}; choose {' or '.join(MODES)}")
        for name, v in (("min_detection", min_detection), ("min_presence", min_presence), ("nms_iou", nms_iou)):
            if not 0 <= v <= 1:
                raise ByelError(f"face mesher {name} must be within 0-1, got {v}")
        if not crop_scale > 0 or (max_faces is not None and max_faces < 1):
            raise ByelError(f"face mesher needs crop_scale > 0 and max_faces >= 1 (got {crop_scale}, {max_faces})")
        self.mode, self.max_faces = mode, max_faces
        self.min_detection, self.min_presence, self.nms_iou = min_detection, min_presence, nms_iou
        self.crop_scale, self.refine = crop_scale, refine
        models = read_models(model)
        self._det = interpreter(models["face_detector.tflite"], threads) if mode == "detect" else None
        self._mesh = interpreter(models["face_landmarks_detector.tflite"], threads)
        self._blend = interpreter(models["face_blendshapes.tflite"], threads) if blendshapes else None

    # -- steps -------------------------------------------------------------------------------

    def detect(self, rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Face detections: (box xmin, ymin, xmax, ymax in px; 6 keypoints in px; score)."""
        H, W = rgb.shape[:2]
        side = max(H, W)  # letterbox: the whole image padded to a square (PadRoi)
        tensor = _warp(rgb, W / 2, H / 2, side, side, 0.0, DETECT_SIZE, cv2.BORDER_CONSTANT)
        it = self._det
        it.set_tensor(it.get_input_details()[0]["index"], (tensor[None].astype(np.float32) / 127.5 - 1.0))
        it.invoke()
        outs = {d["name"]: d["index"] for d in it.get_output_details()}
        raw = it.get_tensor(outs["regressors"])[0] / DETECT_SIZE
        scores = _sigmoid(np.clip(it.get_tensor(outs["classificators"])[0, :, 0], -100, 100))
        keep = np.flatnonzero(scores >= self.min_detection)
        if not len(keep):
            return []
        raw, scores, anc = raw[keep], scores[keep], ANCHORS[keep]
        cx, cy = raw[:, 0] + anc[:, 0], raw[:, 1] + anc[:, 1]
        w, h = raw[:, 2], raw[:, 3]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
        kps = raw[:, 4:16].reshape(-1, 6, 2) + anc[:, None, :]
        ok = (w >= 0) & (h >= 0)
        found = _weighted_nms(boxes[ok], kps[ok], scores[ok], self.nms_iou)
        if self.max_faces is not None:
            found = found[:self.max_faces]
        # tensor [0, 1] -> image px (DetectionProjectionCalculator; no rotation here)
        to_px = lambda p: (p - 0.5) * side + np.array([W / 2, H / 2], np.float32)  # noqa: E731
        return [(np.concatenate([to_px(b[:2]), to_px(b[2:])]), to_px(k), s) for b, k, s in found]

    def _face_rect(self, box: np.ndarray, kps: np.ndarray) -> tuple[float, float, float, float, float]:
        """Landmark ROI (cx, cy, w, h px, rotation rad): the detection box rotated by the
        eye line and scaled 1.5x (DetectionsToRects + RectTransformation)."""
        (x0, y0), (x1, y1) = kps[0], kps[1]
        rotation = -math.atan2(-(y1 - y0), x1 - x0)
        rotation = rotation - 2 * math.pi * math.floor((rotation + math.pi) / (2 * math.pi))
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        return cx, cy, (box[2] - box[0]) * RECT_SCALE, (box[3] - box[1]) * RECT_SCALE, rotation

    @staticmethod
    def _landmark_rect(pts: np.ndarray) -> tuple[float, float, float, float, float]:
        """The ROI MediaPipe tracks a face with (face_landmarks_detector_graph.cc): the landmarks'
        bounding box, rotated by the eye corners 33 -> 263, squared on its long side, 1.5x."""
        lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
        (x0, y0), (x1, y1) = pts[EYE_CORNERS[0], :2], pts[EYE_CORNERS[1], :2]
        rotation = -math.atan2(-(y1 - y0), x1 - x0)
        side = float(max(hi - lo)) * RECT_SCALE
        return float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2, side, side, rotation

    def landmarks(self, rgb: np.ndarray, rect) -> tuple[np.ndarray, float]:
        """(478, 3) landmarks in image px and the presence score, for one ROI rectangle."""
        cx, cy, w, h, rot = rect
        crop = _warp(rgb, cx, cy, w, h, rot, MESH_SIZE, cv2.BORDER_REPLICATE)
        it = self._mesh
        it.set_tensor(it.get_input_details()[0]["index"], crop[None].astype(np.float32) / 255.0)
        it.invoke()
        outs = it.get_output_details()  # [0] landmarks, [1] presence logit (graph's split)
        raw = it.get_tensor(outs[0]["index"]).reshape(N_LANDMARKS, 3) / MESH_SIZE
        presence = float(_sigmoid(it.get_tensor(outs[1]["index"]).reshape(-1)[0]))
        pts = np.empty((N_LANDMARKS, 3), np.float32)
        pts[:, :2] = _rect_to_image(cx, cy, w, h, rot, raw[:, :2])
        pts[:, 2] = raw[:, 2] * w  # z scales with the ROI width, like x
        return pts, presence

    def blendshapes(self, landmarks: np.ndarray) -> np.ndarray:
        """52 blendshape scores from the (478, 3) px landmarks."""
        if self._blend is None:
            return np.full(len(BLENDSHAPES), np.nan, np.float32)
        it = self._blend
        it.set_tensor(it.get_input_details()[0]["index"],
                      np.ascontiguousarray(landmarks[BLENDSHAPE_INPUT, :2][None], np.float32))
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"]).reshape(-1).astype(np.float32)

    # -- the whole pipeline -----------------------------------------------------------------

    def measure(self, rgb: np.ndarray) -> list[Face]:
        """Every face found in a uint8 RGB image (H, W, 3), most confident first; [] when none."""
        rgb = _as_rgb(rgb)
        if self.mode == "crop":
            H, W = rgb.shape[:2]
            side = max(H, W) * self.crop_scale
            face = self._mesh_face(rgb, (W / 2, H / 2, side, side, 0.0), self.refine)
            return [face] if face else []
        faces = []
        for box, kps, score in self.detect(rgb):
            pts, presence = self.landmarks(rgb, self._face_rect(box, kps))
            if presence < self.min_presence:
                continue
            xywh = (float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1]))
            faces.append(Face(xywh, score, presence, pts, self.blendshapes(pts), kps.astype(np.float32)))
        return faces

    def find(self, rgb: np.ndarray, min_face: int = 24) -> list[Face]:
        """Every face of a photo, small ones too, largest box first: ``detect`` on the whole
        image, on a copy with a border (FRAME_PAD) and on tiles (TILE_LEVELS), the detections
        merged (weighted NMS), then the mesh and blendshapes of each as in ``measure``; a face
        meshed twice is kept once, a face seen only cut by tile sides or lying inside a larger
        face's head is not kept, and a face seen only on a copy with a wide plain border
        (FRAME_WIDE_PAD) is added."""
        rgb = _as_rgb(rgb)
        if self._det is None:
            raise ByelError("FaceMesher.find needs mode='detect'")
        H, W = rgb.shape[:2]
        boxes, kps, scores, cut = [], [], [], []
        pad = int(round(FRAME_PAD * max(H, W)))  # a face that fills the photo: seen with a border too
        for box, kp, score in self.detect(cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)):
            boxes.append(box - pad)
            kps.append(kp - pad)
            scores.append(score)
            cut.append(False)
        for level in range(TILE_LEVELS):
            t = int(round(max(H, W) / 2 ** level))
            if level and t < TILE_PER_FACE * min_face:
                break
            for y0 in _tile_starts(H, t):
                for x0 in _tile_starts(W, t):
                    for box, kp, score in self.detect(rgb[y0:y0 + t, x0:x0 + t]):
                        cut.append(_cut_by_tile(box, x0, y0, t, W, H))
                        boxes.append(box + [x0, y0, x0, y0])
                        kps.append(kp + [x0, y0])
                        scores.append(score)
        meshed = self._mesh_found(rgb, boxes, kps, scores, cut)
        # A face filling the photo can hide from all of these (the replicated border smears it)
        # while its eyes pass for faces in the tiles: the photo once more with a wide plain
        # border; a face seen only there is meshed too (and the fragments give way to it below).
        pad = int(round(FRAME_WIDE_PAD * max(H, W)))
        wide = [(b - pad, k - pad, sc) for b, k, sc in
                self.detect(cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT))]
        seen = np.array([m[1] for m in meshed])
        wide = [d for d in wide if not len(seen) or _iou(d[0], seen).max() <= FIND_NMS_IOU]
        if wide:
            meshed += self._mesh_found(rgb, *map(list, zip(*wide)), [False] * len(wide))
        # Largest mesh first; one mostly inside a kept one is the same face again or a part of
        # it (fine tiles can take an eye region for a small face).
        meshed.sort(key=lambda m: (m[0][2] - m[0][0]) * (m[0][3] - m[0][1]), reverse=True)
        faces, kept, heads = [], [], []
        for lm_box, box, kp, score, presence, pts in meshed:
            if kept and (_inside(lm_box, np.array(kept)).max() > SAME_FACE
                         or _inside(box, np.array(heads)).max() > SAME_HEAD):
                continue
            kept.append(lm_box)
            mid, half = (lm_box[:2] + lm_box[2:]) / 2, (lm_box[2:] - lm_box[:2]).max() * HEAD_SCALE / 2
            heads.append(np.r_[mid - half, mid + half])
            xywh = (float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1]))
            faces.append(Face(xywh, score, presence, pts, self.blendshapes(pts), kp.astype(np.float32)))
        faces.sort(key=lambda f: f.box[2] * f.box[3], reverse=True)
        return faces[:self.max_faces] if self.max_faces is not None else faces

    def _mesh_found(self, rgb, boxes, kps, scores, cut) -> list:
        """The detections of ``find`` merged and meshed: (landmark box, box, keypoints, score,
        presence, landmarks) of each with a face present; a merged detection whose every part
        was cut by a tile side is not meshed (a fragment of a larger face)."""
        if not boxes:
            return []
        meshed = []
        merged = _weighted_nms(np.array(boxes), np.array(kps), np.array(scores), FIND_NMS_IOU, np.array(cut))
        for box, kp, score, parts in merged:
            if parts.all():
                continue
            pts, presence = self.landmarks(rgb, self._face_rect(box, kp))
            if presence >= self.min_presence:
                meshed.append((np.r_[pts[:, :2].min(0), pts[:, :2].max(0)], box, kp, score, presence, pts))
        return meshed

    def track(self, rgb: np.ndarray, previous: list[Face]) -> list[Face]:
        """The faces of ``previous`` (the last video frame's) on this frame, without BlazeFace, as
        MediaPipe's VIDEO mode tracks them: the landmark model on the ROI the previous landmarks
        give (``_landmark_rect``: eye-line rotation, 1.5x their box), kept while its face-presence
        score is >= ``min_presence``; a face that has run onto one kept before it (two tracks on
        one face) is dropped. In ``previous``'s order; box and score as ``measure_box`` gives them."""
        rgb = _as_rgb(rgb)
        faces, kept = [], []
        for prev in previous:
            pts, presence = self.landmarks(rgb, self._landmark_rect(prev.landmarks))
            if presence < self.min_presence:
                continue
            lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
            if kept and _inside(np.r_[lo, hi], np.array(kept)).max() > SAME_FACE:
                continue
            kept.append(np.r_[lo, hi])
            faces.append(Face((float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])),
                              presence, presence, pts, self.blendshapes(pts)))
        return faces

    def measure_box(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> Face | None:
        """The face in a box another detector found (x, y, w, h px; e.g. dlib's, for faces too
        small for BlazeFace short range): the mesh on the box's square scaled 1.5x, refined
        once. None when the landmark model sees no face there."""
        rgb = _as_rgb(rgb)
        x, y, w, h = box
        side = max(w, h) * RECT_SCALE
        return self._mesh_face(rgb, (x + w / 2, y + h / 2, side, side, 0.0), True)

    def _mesh_face(self, rgb: np.ndarray, rect, refine: bool) -> Face | None:
        pts, presence = self.landmarks(rgb, rect)
        if refine:
            pts, presence = self.landmarks(rgb, self._landmark_rect(pts))
        if presence < self.min_presence:
            return None
        lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
        return Face((float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])),
                    presence, presence, pts, self.blendshapes(pts))


def _cut_by_tile(box: np.ndarray, x0: int, y0: int, t: int, W: int, H: int) -> bool:
    """Whether a detection (xmin, ymin, xmax, ymax in tile px) reaches within TILE_EDGE x t of a
    side of its tile that cuts the photo (not the photo's own edge): maybe a part of a face larger
    than the tile. A face is kept only if some detection saw it uncut (the whole photo, the padded
    photo, a tile): on large, rotated or bowed heads, fine tiles took eyes, ears or a chin for
    faces of their own."""
    e = TILE_EDGE * t
    return bool((x0 > 0 and box[0] < e) or (y0 > 0 and box[1] < e)
                or (x0 + t < W and box[2] > t - e) or (y0 + t < H and box[3] > t - e))


def _tile_starts(n: int, t: int) -> list[int]:
    """Starts of tiles of side t, stride t / 2, covering 0..n (one tile when t >= n)."""
    if t >= n:
        return [0]
    starts = list(range(0, n - t + 1, max(1, t // 2)))
    return starts if starts[-1] == n - t else [*starts, n - t]


def _as_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.shape[0] < 2 or img.shape[1] < 2:
        raise ByelError(f"face mesher needs an RGB image (H, W, 3), got shape {img.shape}")
    if img.dtype != np.uint8:
        raise ByelError(f"face mesher needs uint8 pixels, got {img.dtype}")
    return np.ascontiguousarray(img[..., :3])
