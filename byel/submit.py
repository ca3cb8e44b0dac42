"""Challenge submission files for an Aff-Wild2-style frame tree (ABAW expression track layout).

Input: ``FRAMES_ROOT/<video>/<00001>.jpg`` — face crops (e.g. Aff-Wild2 ``cropped_aligned``),
one folder per video, frames named by their 1-based frame number. No face is searched for; a
model with a geometry or fused head measures each crop's face mesh as ``byel evaluate`` does
(tier B) and the pixel CNN alone classifies the crops without one.

Output: ``OUT_DIR/<video>.txt`` per video::

    anger,disgust,fear,happiness,sadness,surprise     <- header: the class names, in index order
    3                                                 <- frame 1: predicted class index 0-5
    3                                                 <- frame 2
    ...

Index mapping (``codes="byel"``, the default): 0 anger, 1 disgust, 2 fear, 3 happiness,
4 sadness, 5 surprise — the position of the class in the header. Note that the official
Aff-Wild2 EXPR files use another coding (header ``Neutral,Anger,Disgust,Fear,Happiness,Sadness,
Surprise,Other``, anger = 1 ... surprise = 6); ``codes="affwild2"`` writes that header and those
codes instead (a 6-class model never predicts Neutral 0; none predicts Other 7).

A 7-class model (the six and neutral) adds ``neutral`` to the byel header, as index 6; with
``codes="affwild2"`` neutral is written as 0.

Line k + 1 of a file is frame k, for k = 1 .. the highest frame number found, so a file has
(highest frame number) + 1 lines. A frame whose file is missing (a gap in the numbering) or
cannot be decoded gets the prediction of its nearest readable frame (the earlier one on a tie);
these are counted per video and in total. A video with no readable frame gets no file and is
reported. Files whose names are not frame numbers (ASCII digits 0-9 only, >= 1: ``１２.jpg`` and
``².jpg`` are not frames) are ignored and counted.

A frame number far beyond a folder's others is refused before any work, naming the file: the
highest frame number may be at most MAX_FILL_FACTOR x (the folder's frame files) + FILL_SLACK,
so that at least about a tenth of a long file's lines are predictions; a stray ``10000000.jpg``
among a few frames would otherwise write ten million lines filled from its neighbours.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from byel.classes import CLASSES, NUM_CLASSES
from byel.data.formats import IMAGE_EXTS
from byel.errors import ByelError, DataError
from byel.files import write_text

HEADERS = {
    "byel": ",".join(CLASSES),
    "affwild2": "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other",
}
CODE_OFFSET = {"byel": 0, "affwild2": 1}  # class index i is written as i + offset, but:
AFFWILD2_NEUTRAL = 0  # neutral (index 6 of a 7-class model) in the official coding
FRAME_NUMBER = re.compile(r"[0-9]+")  # not str.isdigit: it takes "１２" and "²" (int() fails on the latter)
MAX_FILL_FACTOR, FILL_SLACK = 10, 1000  # highest frame number <= 10 x frame files + 1000 (module doc)


def _code(i: int, codes: str) -> int:
    """The written label of class index i."""
    if codes == "affwild2" and i == NUM_CLASSES:
        return AFFWILD2_NEUTRAL
    return i + CODE_OFFSET[codes]


def scan_frames(frames_root: str | Path) -> tuple[dict[str, dict[int, str]], dict[str, int]]:
    """{video: {frame number: path}} of a frame tree, plus counts of ignored entries."""
    root = Path(frames_root)
    if not root.exists():
        raise DataError(f"frames folder not found: {frames_root}")
    if not root.is_dir():
        raise DataError(f"expected a folder of per-video frame folders, got a file: {frames_root}")
    videos: dict[str, dict[int, str]] = {}
    ignored = {"not_a_frame_number": 0, "duplicate_frame_number": 0}
    for vdir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        frames: dict[int, str] = {}
        for f in sorted(vdir.iterdir()):
            if not f.is_file() or f.name.startswith("."):
                continue
            if f.suffix.lower() not in IMAGE_EXTS or not FRAME_NUMBER.fullmatch(f.stem) or int(f.stem) < 1:
                ignored["not_a_frame_number"] += 1
                continue
            n = int(f.stem)
            if n in frames:  # 00001.jpg and 00001.png: keep the first (sorted), count the rest
                ignored["duplicate_frame_number"] += 1
                continue
            frames[n] = str(f)
        if frames:
            check_frame_numbers(frames)
            videos[vdir.name] = frames
    if not videos:
        loose = any(p.is_file() and p.suffix.lower() in IMAGE_EXTS for p in root.iterdir())
        hint = " (images lie directly in it: put each video's frames in its own sub-folder)" if loose else ""
        raise DataError(f"no frame folders FRAMES_ROOT/<video>/<00001>.jpg under {frames_root}{hint}")
    return videos, {k: v for k, v in ignored.items() if v}


def check_frame_numbers(frames: dict[int, str]) -> None:
    """DataError naming the highest-numbered file when its number is far beyond the folder's
    frame files (see the module doc): a stray file, not a video that long."""
    last, limit = max(frames), MAX_FILL_FACTOR * len(frames) + FILL_SLACK
    if last > limit:
        raise DataError(f"{frames[last]}: frame number {last} is far beyond the folder's {len(frames)} frame files "
                        f"(at most {limit} = {MAX_FILL_FACTOR} x {len(frames)} + {FILL_SLACK}; its lines would be "
                        "filled from other frames): remove or rename the stray file")


def fill_nearest(labels: dict[int, int], last: int) -> tuple[list[int], int]:
    """Labels for frames 1..last: known ones as they are, the others from the nearest known
    frame (earlier one on a tie). Returns (labels, number filled)."""
    known = np.array(sorted(labels), dtype=np.int64)
    if known.size == 0:
        raise ValueError("no known frame")
    frames = np.arange(1, last + 1)
    pos = np.searchsorted(known, frames)  # index of the first known frame >= frame
    before = np.where(pos > 0, known[np.maximum(pos - 1, 0)], -(10 ** 12))
    after = np.where(pos < known.size, known[np.minimum(pos, known.size - 1)], 10 ** 12)
    nearest = np.where(frames - before <= after - frames, before, after)
    nearest = np.where(after == frames, frames, nearest)  # a known frame keeps its own label
    out = [labels[int(n)] for n in nearest]
    return out, int(last - sum(1 for n in labels if n <= last))


def submit(
    checkpoint: str | Path,
    frames_root: str | Path,
    out_dir: str | Path,
    *,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
    codes: str = "byel",
) -> dict:
    """Write ``out_dir/<video>.txt`` for every video folder under ``frames_root`` (format in the
    module doc). Returns totals and per-video counts: frames (lines after the header),
    predicted (frames read and classified), filled_missing, filled_unreadable."""
    from tqdm.auto import tqdm

    from byel.data.sources import decode_image
    from byel.imageio import Unusable
    from byel import classifier  # late: Lightning import
    from byel.landmarker import LANDMARKER

    if codes not in HEADERS:
        raise ByelError(f"unknown label coding {codes!r}; choose {' or '.join(HEADERS)}")
    if batch_size < 1:
        raise ByelError(f"batch size must be >= 1, got {batch_size}")
    videos, ignored = scan_frames(frames_root)  # before the model loads: a bad tree is refused at once
    model = classifier.load(checkpoint, device)
    header = ",".join(model.classes) if codes == "byel" else HEADERS[codes]
    size = model.cfg.data.image_size
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    per_video: dict[str, dict] = {}
    problems: list[tuple[str, str]] = []
    n_mesh = n_measured = 0  # frames with a face mesh, frames measured (geometry and fused models)
    bar = tqdm(total=sum(len(f) for f in videos.values()), unit="frame", desc="submit",
               disable=not progress, leave=False)
    try:
        for video, frames in videos.items():
            labels: dict[int, int] = {}
            unreadable = 0
            numbers = sorted(frames)
            for s in range(0, len(numbers), batch_size):
                chunk, images = [], []
                for n in numbers[s:s + batch_size]:
                    try:
                        images.append(decode_image(frames[n], size))
                        chunk.append(n)
                    except Unusable as e:
                        unreadable += 1
                        problems.append((frames[n], e.reason))
                if images:
                    batch = np.stack(images)
                    probs = classifier.predict_probs(model, batch, batch_size)
                    geo = classifier.measure(model, batch, cache=False)  # None for a pixels-only model
                    if geo is not None:  # the frames are face crops already: measured as evaluate measures them
                        probs = geo.fuse(probs)
                        n_mesh += int(geo.found.sum())
                        n_measured += len(geo.found)
                    labels.update(zip(chunk, probs.argmax(1).tolist()))
                bar.update(len(numbers[s:s + batch_size]))
            last = numbers[-1]
            if not labels:
                problems.append((str(Path(frames_root) / video), "no readable frame: no file written"))
                per_video[video] = {"frames": last, "predicted": 0, "filled_missing": 0,
                                    "filled_unreadable": 0, "written": False}
                continue
            filled_labels, filled = fill_nearest(labels, last)
            missing = last - len(frames)
            write_text(out / f"{video}.txt", header + "\n" + "".join(f"{_code(c, codes)}\n" for c in filled_labels))
            per_video[video] = {"frames": last, "predicted": len(labels), "filled_missing": missing,
                                "filled_unreadable": unreadable, "written": True}
    finally:
        bar.close()
    written = [v for v, r in per_video.items() if r["written"]]
    if not written:
        raise DataError(f"no readable frame in any video under {frames_root}")
    return {
        "out_dir": str(out),
        "codes": codes,
        "header": header,
        "videos": len(written),
        "videos_without_frames": [v for v, r in per_video.items() if not r["written"]],
        "frames": sum(per_video[v]["frames"] for v in written),
        "predicted": sum(r["predicted"] for r in per_video.values()),
        "filled_missing": sum(per_video[v]["filled_missing"] for v in written),
        "filled_unreadable": sum(per_video[v]["filled_unreadable"] for v in written),
        "ignored": ignored,
        "per_video": per_video,
        "problems": problems,
        # a geometry or fused model: the face geometry its predictions used (tier B), else None
        "face_geometry": None if not classifier.uses_geometry(model) else {
            "head": model.head_kind, "fusion_weight": round(float(model.fusion_weight), 6), "model": LANDMARKER,
            "n_frames": n_measured, "n_mesh": n_mesh, "no_mesh": classifier.no_mesh_view(model)},
    }


def format_result(r: dict) -> str:
    """Human-readable summary for the CLI."""
    line = (f"{r['videos']} videos, {r['frames']} frame lines ({r['predicted']} frames classified, "
            f"{r['filled_missing']} missing and {r['filled_unreadable']} unreadable frames filled from the "
            f"nearest readable frame) -> {r['out_dir']}")
    extra = []
    if r["videos_without_frames"]:
        extra.append(f"no file for {len(r['videos_without_frames'])} videos without a readable frame: "
                     + ", ".join(r["videos_without_frames"][:5]))
    if r["ignored"]:
        extra.append("ignored: " + ", ".join(f"{k} {v}" for k, v in r["ignored"].items()))
    g = r.get("face_geometry")
    if g:
        extra.append(f"{g['head']} head: face mesh found on {g['n_mesh']} of {g['n_frames']} frames (the pixel CNN "
                     f"classified the others; tier B: + pretrained face-geometry model)")
    return "\n".join([line, *extra])
