"""Faces across video frames: track ids by box overlap (IoU), and per-track smoothing of the
class probabilities.

Tracking: each processed frame's boxes are matched to the live tracks' last boxes, maximising the
summed IoU (Hungarian assignment with SciPy when installed, else greedy by highest IoU); a pair
with IoU below ``min_iou`` is no match. An unmatched box starts a new track (ids 0, 1, 2 ... in
order of appearance); a track not matched for more than ``max_gap`` processed frames ends.

Smoothing (``smooth`` spec), applied to each track's faces in frame order:

- ``none``: the per-frame probabilities as they are.
- ``ema:A`` (0 < A <= 1): exponential moving average, s_0 = p_0, s_t = A * p_t + (1 - A) * s_{t-1}.
  A is the weight of the newest frame: 1 is no smoothing, 0.6 forgets a frame's weight to a
  tenth in about 2.5 frames. Causal: a frame's value uses only earlier frames.
- ``window:K`` (1 <= K <= MAX_WINDOW = 1001, a whole number): centred moving average, the mean
  over the track's K faces around each one (K // 2 before and (K - 1) // 2 after; fewer at the
  track's ends). 1001 frames are 40 s at 25 fps: a longer window is a mistake, not smoothing.

By default videos are smoothed with ``DEFAULT_SMOOTH`` (ema:0.5), and in a video of
``MIN_FRAMES_FOR_DROP`` or more processed frames a face whose track is seen on a single frame is
dropped (``lasting``).

Numbers are ASCII decimals (``ema:0.6``, ``ema:1e-3``, ``window:5``); the spec is checked, and
normalised to a form that parses back to the same value, when the command line is parsed.

The average of probability vectors is again a probability vector, so labels stay their argmax.
"""

from __future__ import annotations

import re

import numpy as np

from byel.errors import ByelError

MAX_WINDOW = 1001
# what `byel predict`, byel.load(...).predict_video use unless told (``none`` turns it off)
DEFAULT_SMOOTH = "ema:0.5"
# in a video of at least this many processed frames, a face whose track is seen on one frame
# only is dropped from the outputs (a passing false detection, not a face)
MIN_FRAMES_FOR_DROP = 4
SMOOTH_HELP = (f"none | ema:A (0 < A <= 1, weight of the newest frame) | window:K (centred, K frames, "
               f"a whole number 1 <= K <= {MAX_WINDOW})")
# ASCII only: int() and float() also take other scripts' digits ("٣", "３") and underscores
_INT = re.compile(r"[0-9]+")
_REAL = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?")


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _match(cost: np.ndarray) -> list[tuple[int, int]]:
    """Row/column pairs of a minimum-cost assignment (SciPy's Hungarian, else greedy)."""
    try:
        from scipy.optimize import linear_sum_assignment

        return list(zip(*(idx.tolist() for idx in linear_sum_assignment(cost))))
    except ImportError:
        pairs, used_r, used_c = [], set(), set()
        for flat in np.argsort(cost, axis=None, kind="stable"):
            r, c = divmod(int(flat), cost.shape[1])
            if r not in used_r and c not in used_c:
                pairs.append((r, c))
                used_r.add(r)
                used_c.add(c)
        return pairs


class IoUTracker:
    """Online IoU tracker: ``update(boxes)`` once per processed frame returns a track id per box."""

    def __init__(self, min_iou: float = 0.3, max_gap: int = 5):
        self.min_iou, self.max_gap = min_iou, max_gap
        self.tracks: dict[int, tuple[tuple, int]] = {}  # id -> (last box, frames since seen)
        self.next_id = 0

    def update(self, boxes: list) -> list[int]:
        ids = list(self.tracks)
        out: list[int | None] = [None] * len(boxes)
        if ids and boxes:
            overlap = np.array([[iou(b, self.tracks[t][0]) for t in ids] for b in boxes])
            # pairs under min_iou cost more than any real match, so they never displace one
            for r, c in _match(np.where(overlap >= self.min_iou, -overlap, 1.0)):
                if overlap[r, c] >= self.min_iou:
                    out[r] = ids[c]
        for i, t in enumerate(out):
            if t is None:
                out[i] = t = self.next_id
                self.next_id += 1
        seen = set(out)
        for t in ids:  # age the unmatched tracks; drop the stale ones
            box, age = self.tracks[t]
            if t not in seen:
                if age + 1 > self.max_gap:
                    del self.tracks[t]
                else:
                    self.tracks[t] = (box, age + 1)
        for b, t in zip(boxes, out):
            self.tracks[t] = (tuple(b), 0)
        return out


def assign_tracks(frames: list[list], min_iou: float = 0.3, max_gap: int = 5) -> list[list[int]]:
    """Track ids for the boxes of consecutive processed frames (a list of box lists)."""
    tracker = IoUTracker(min_iou, max_gap)
    return [tracker.update(boxes) for boxes in frames]


def parse_smooth(spec) -> tuple[str, float]:
    """("none", 0) | ("ema", A) | ("window", K) from a spec string (see the module docstring)."""
    if spec is None:
        return "none", 0.0
    text = str(spec).strip().lower()
    if text in ("none", "off", ""):
        return "none", 0.0
    kind, _, value = text.partition(":")
    value = value.strip()
    if kind == "ema" and _REAL.fullmatch(value) and 0 < float(value) <= 1:
        return "ema", float(value)
    if kind == "window" and _INT.fullmatch(value) and 1 <= int(value) <= MAX_WINDOW:
        return "window", float(int(value))
    raise ByelError(f"bad smoothing {spec!r}; use {SMOOTH_HELP}")


def smooth(tracks: list[int], probs: np.ndarray, spec) -> np.ndarray:
    """Smoothed copy of ``probs`` (one row per face, in frame order); ``tracks[i]`` is row i's
    track id. Each track is smoothed on its own, over its faces in the order given."""
    kind, value = parse_smooth(spec)
    probs = np.asarray(probs, dtype=np.float64)
    out = probs.copy()
    if kind == "none" or not len(probs):
        return out
    tracks = np.asarray(tracks)
    for t in np.unique(tracks):
        rows = np.flatnonzero(tracks == t)
        p = probs[rows]
        if kind == "ema":
            s = p.copy()
            for i in range(1, len(p)):
                s[i] = value * p[i] + (1 - value) * s[i - 1]
        else:
            k = int(value)
            before, after = k // 2, (k - 1) // 2
            c = np.vstack([np.zeros((1, p.shape[1])), np.cumsum(p, axis=0)])
            lo = np.clip(np.arange(len(p)) - before, 0, len(p))
            hi = np.clip(np.arange(len(p)) + after + 1, 0, len(p))
            s = (c[hi] - c[lo]) / (hi - lo)[:, None]
        out[rows] = s
    return out


def track_and_smooth(boxes: list[list], probs: list, spec, min_iou: float = 0.3, max_gap: int = 5):
    """For the processed frames of one video, in order (``boxes[i]``, ``probs[i]``: frame i's face
    boxes and their probability rows): each frame's track ids and smoothed probabilities."""
    ids = assign_tracks(boxes, min_iou, max_gap)
    rows = [np.asarray(p, dtype=np.float64) for b, p in zip(boxes, probs) if len(b)]
    if not rows:
        return ids, [np.asarray(p, dtype=np.float64) for p in probs]
    smoothed = smooth([t for frame in ids for t in frame], np.concatenate(rows), spec)
    parts = np.split(smoothed, np.cumsum([len(b) for b in boxes])[:-1])
    return ids, parts


def lasting(ids: list[list[int]], min_frames: int = MIN_FRAMES_FOR_DROP) -> list[list[bool]]:
    """Per processed frame, per face (``ids``: each frame's track ids): whether to report it;
    False for a face whose track is seen on one frame only, in a video of ``min_frames`` or more
    processed frames (shorter videos keep every face)."""
    if len(ids) < min_frames:
        return [[True] * len(frame) for frame in ids]
    ids_flat = [t for frame in ids for t in frame]
    seen = dict(zip(*np.unique(ids_flat, return_counts=True))) if ids_flat else {}
    return [[seen[t] > 1 for t in frame] for frame in ids]


def check_smooth(spec) -> str:
    """The smoothing spec, checked and normalised (``ema:0.60`` -> ``ema:0.6``, ``window:07`` ->
    ``window:7``); the result parses back to the same value."""
    kind, value = parse_smooth(spec)
    if kind == "window":
        return f"window:{int(value)}"
    if kind == "ema":  # 6 significant digits where they are exact, else every digit needed
        return f"ema:{value:g}" if float(f"{value:g}") == value else f"ema:{value!r}"
    return kind
