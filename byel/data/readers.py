"""One reader per data format: image folders (imagefolder, abaw-lsd), Aff-Wild2 frames and
annotations, FER2013 CSV rows (byel.data.specs names and detects them).

A reader scans cheaply: the files to decode, as ``(path, label, size, mtime_ns)`` items, or (FER2013
CSV, whose rows hold their pixels) how to read the images at once, and a ``Tally`` of what it could
not use. Nothing the user brings makes a reader crash: unreadable, zero-byte and unsupported files,
malformed labels and rows are skipped, counted in ``dropped`` and listed in ``problems``; classes
outside the six are counted in ``skipped``. With 7 classes neutral is read as class 6: a
``neutral`` (or ``ne``) folder, FER2013 emotion 6, Aff-Wild2 expression 0. byel.data.sources
decodes the files and loads the result.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
from tqdm import tqdm

from byel.classes import CLASSES, KNOWN_OTHER, NUM_CLASSES
from byel.data.formats import GENERATE_INFO, IMAGE_EXTS, MANIFEST, PREVIEW, generate_run
from byel.data.specs import accepted_names, class_index, folder_entries
from byel.errors import DataError
from byel.imageio import fit

# FER2013 emotion codes 0-5 follow CLASSES (angry, disgust, fear, happy, sad, surprise); 6 neutral
# (class 6 of a 7-class set too).
_FER_NEUTRAL = 6
_FER_SIDE = 48
# Aff-Wild2 EXPR codes: 1-6 are CLASSES; these are skipped (counted), -1 is an invalid frame
# (0, neutral, is class 6 of a 7-class set).
_AFFWILD2_SKIPPED = {0: "neutral", 7: "other"}
_AFFWILD2_NEUTRAL = 0


def tally_parts(skipped: dict[str, int], dropped: dict[str, int]) -> list[str]:
    """"skipped: ..." and "dropped: ..." of a summary line, for the tallies that are not empty."""
    parts = []
    if skipped:
        parts.append("skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())))
    if dropped:
        parts.append("dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())))
    return parts


class Tally:
    """Skipped classes, dropped items and notes collected while scanning and decoding."""

    def __init__(self) -> None:
        self.skipped: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.problems: list[tuple[str, str]] = []
        self.notes: list[str] = []

    def drop(self, where: str, reason: str, detail: str = "", n: int = 1) -> None:
        self.dropped[reason] += n
        self.problems.append((str(where), f"{reason}: {detail}" if detail else reason))

    def to_json(self) -> dict:
        return {"skipped": self.skipped, "dropped": self.dropped,
                "problems": self.problems, "notes": self.notes}

    @classmethod
    def from_json(cls, d: dict) -> Tally:
        t = cls()
        t.skipped.update(d["skipped"])
        t.dropped.update(d["dropped"])
        t.problems = [tuple(p) for p in d["problems"]]
        t.notes = list(d["notes"])
        return t


@dataclass
class Built:
    """What the expensive step (decoding) produced; this is what the cache stores."""

    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    tally: Tally


@dataclass
class Scan:
    """What a cheap scan found: the cache fingerprint and what to read, either image ``files`` to
    decode (byel.data.sources decodes them) or ``read``, a format that holds its pixels."""

    fingerprint: list
    tally: Tally
    files: list | None = None  # (path, label, size, mtime_ns) of every image file to decode
    read: Callable[[int, bool], Built] | None = None  # (size, progress) -> Built


def scan(kind: str, args: dict, unlabelled: bool, n_classes: int = NUM_CLASSES) -> Scan:
    """Scan the data of a parsed spec (``kind``, ``args``: byel.data.specs.parse_spec)."""
    return _SCANNERS[kind](args, unlabelled, n_classes)


# --------------------------------------------------------------------------- scanning


def _walk(top: str, tally: Tally, seen: set | None = None, root: str | None = None):
    """Every file under top, sorted, each real folder visited once. Links to folders are
    followed only while they stay inside the top folder: one out of it (a loop such as
    happiness/loop -> ..) would count other classes' images as this one's; it is listed."""
    seen = set() if seen is None else seen
    root = os.path.realpath(top) if root is None else root
    st = os.stat(top)
    if (st.st_dev, st.st_ino) in seen:
        return
    seen.add((st.st_dev, st.st_ino))
    for e in folder_entries(top, tally):
        if e.is_dir():
            target = os.path.realpath(e.path)
            if e.is_symlink() and os.path.commonpath([target, root]) != root:
                tally.drop(e.path, "link_outside_folder", f"a link to {target}, outside {root}: not followed")
                continue
            yield from _walk(e.path, tally, seen, root)
        else:
            yield e


def _add_file(e: os.DirEntry, label: int, items: list, tally: Tally) -> None:
    """Queue a file for decoding, or record why it cannot be used."""
    ext = os.path.splitext(e.name)[1].lower()
    if ext not in IMAGE_EXTS:
        tally.drop(e.path, "unsupported", ext or "no extension")
        return
    try:
        st = e.stat()
    except OSError as err:
        tally.drop(e.path, "unreadable", err.strerror or str(err))
        return
    if st.st_size == 0:
        tally.drop(e.path, "zero_byte")
    else:
        items.append((e.path, label, st.st_size, st.st_mtime_ns))


def _scan_imagefolder(args: dict, unlabelled: bool, n_classes: int = NUM_CLASSES, *, numeric: bool) -> Scan:
    root, tally, items = args["path"], Tally(), []
    if generate_run(root) == "unfinished":  # some classes or images missing: not a data set to train on
        raise DataError(f"{root} is an unfinished byel generate run (it stopped before it finished); "
                        f"make it again: byel generate --out {root} --overwrite with the same options")
    # `byel generate` output: its manifest and preview sheet sit beside the class folders.
    ours = {os.path.join(root, n) for n in (MANIFEST, GENERATE_INFO, PREVIEW)} \
        if os.path.isfile(os.path.join(root, MANIFEST)) else set()
    if unlabelled:
        for e in _walk(root, tally):
            if e.path not in ours:
                _add_file(e, -1, items, tally)
        return _files_scan(items, tally)
    unknown: dict[str, int] = {}
    for e in folder_entries(root, tally):
        if e.path in ours:
            continue
        if e.is_dir():
            label = class_index(e.name, numeric=numeric, n=n_classes)
            if label is not None:
                for f in _walk(e.path, tally):
                    _add_file(f, label, items, tally)
                continue
            n = sum(os.path.splitext(f.name)[1].lower() in IMAGE_EXTS for f in _walk(e.path, tally))
            if n:
                tally.skipped[e.name.lower()] += n
                if e.name.lower() not in KNOWN_OTHER:
                    unknown[e.name] = n
        elif os.path.splitext(e.name)[1].lower() in IMAGE_EXTS:
            tally.drop(e.path, "no_class_folder", "image directly in the root, not in a class folder")
    if unknown:
        tally.notes.append(
            "skipped folders that are not one of the six classes: "
            + ", ".join(f"{k} ({v} images)" for k, v in unknown.items())
            + f"; class folder names understood: {accepted_names()}"
            + ("; numbered folders 0-5 are read by abaw-lsd:" if any(k.isdigit() for k in unknown) else ""))
    return _files_scan(items, tally)


def _scan_affwild2(args: dict, unlabelled: bool, n_classes: int = NUM_CLASSES) -> Scan:
    frames, ann_dir = args["frames"], args["annotations"]
    every = int(args["options"].get("every", 1))
    tally, items = Tally(), []
    ann_files = [e for e in folder_entries(ann_dir, tally) if e.is_file() and e.name.lower().endswith(".txt")]
    if not ann_files:
        raise DataError(f"no annotation files (<video>.txt) in {ann_dir}")
    found_videos = 0
    for ann in ann_files:
        video = os.path.splitext(ann.name)[0]
        lines = _annotation_lines(ann.path, tally)
        if lines is None:
            continue
        vdir = os.path.join(frames, video)
        have = {os.path.splitext(e.name)[0]: e for e in folder_entries(vdir, None)
                if os.path.splitext(e.name)[1].lower() in IMAGE_EXTS}
        found_videos += bool(have)
        wanted = []  # (frame number, label) still to be found on disk
        for n, raw in enumerate(lines, start=1):
            if (n - 1) % every:
                continue
            where = f"{ann.path}:{n}"
            try:
                code = int(raw)
            except ValueError:
                tally.drop(where, "malformed_label", repr(raw[:40]))
                continue
            if unlabelled:
                wanted.append((n, -1))
            elif code == -1:
                tally.drop(where, "invalid_label")
            elif code == _AFFWILD2_NEUTRAL and n_classes > NUM_CLASSES:
                wanted.append((n, NUM_CLASSES))
            elif code in _AFFWILD2_SKIPPED:
                tally.skipped[_AFFWILD2_SKIPPED[code]] += 1
            elif 1 <= code <= len(CLASSES):
                wanted.append((n, code - 1))
            else:
                tally.drop(where, "label_out_of_range", str(code))
        if not have and wanted:  # one log line for a whole missing video, not one per frame
            tally.drop(vdir, "missing_frame", f"no frame folder for {len(wanted)} annotated frames",
                       n=len(wanted))
            continue
        for n, label in wanted:
            e = have.get(f"{n:05d}")
            if e is None:
                tally.drop(os.path.join(vdir, f"{n:05d}.jpg"), "missing_frame")
            else:
                _add_file(e, label, items, tally)
    if not found_videos:
        hint = ""
        if os.path.isdir(os.path.join(frames, "cropped_aligned")):
            hint = f"; did you mean {os.path.join(frames, 'cropped_aligned')}?"
        raise DataError(f"none of the {len(ann_files)} videos annotated in {ann_dir} has a frame folder "
                        f"in {frames} (expected {frames}/<video>/00001.jpg){hint}")
    return _files_scan(items, tally)


def _annotation_lines(path: str, tally: Tally) -> list[str] | None:
    """Per-frame label strings of one Aff-Wild2 file (line n = frame n), header removed."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [ln.strip() for ln in f.read().splitlines()]
    except OSError as e:
        tally.drop(path, "unreadable", e.strerror or str(e))
        return None
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        tally.drop(path, "bad_annotation_file", "empty")
        return None
    if re.fullmatch(r"-?\d+", lines[0]):  # no header: the first line is frame 1
        return lines
    if "neutral" in lines[0].lower():
        return lines[1:]
    tally.drop(path, "bad_annotation_file", "first line is neither the Neutral,Anger,... header nor a label")
    return None


def _scan_fer_csv(args: dict, unlabelled: bool, n_classes: int = NUM_CLASSES) -> Scan:
    st = os.stat(args["path"])
    return Scan(fingerprint=[args["path"], st.st_size, st.st_mtime_ns], tally=Tally(),
                read=partial(_read_fer_csv, args["path"], args["usage"], unlabelled, n_classes))


def _files_scan(items: list, tally: Tally) -> Scan:
    return Scan(fingerprint=items, tally=tally, files=items)


_SCANNERS: dict[str, Callable[[dict, bool, int], Scan]] = {
    "imagefolder": partial(_scan_imagefolder, numeric=False),
    "abaw-lsd": partial(_scan_imagefolder, numeric=True),
    "affwild2": _scan_affwild2,
    "fer2013-csv": _scan_fer_csv,
}


# --------------------------------------------------------------------------- FER2013 CSV


def _read_fer_csv(path: str, usage: str | None, unlabelled: bool, n_classes: int,
                  size: int, progress: bool) -> Built:
    try:
        return _read_fer_rows(path, usage, unlabelled, size, progress, n_classes)
    except csv.Error as e:  # e.g. a binary file: "field larger than field limit"
        raise DataError(f"{path} is not a FER2013 CSV: {e}") from None


def _read_fer_rows(path: str, usage: str | None, unlabelled: bool, size: int, progress: bool,
                   n_classes: int = NUM_CLASSES) -> Built:
    """Rows of a FER2013 CSV (emotion,pixels,Usage) as RGB images of n_classes (7: with neutral);
    bad rows dropped, not fatal.

    Single-threaded: parsing 48x48 rows is cheap next to decoding JPEGs."""
    tally, images, labels, where = Tally(), [], [], []
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        col = {h: i for i, h in enumerate(header)}
        need = ["pixels"] + ([] if unlabelled else ["emotion"]) + (["usage"] if usage else [])
        missing = [c for c in need if c not in col]
        if missing:
            raise DataError(f"{path} is not a FER2013 CSV: no column {', '.join(missing)} "
                            f"(header: {(','.join(header) or 'empty')[:80]}; expected emotion,pixels,Usage)")
        usages: Counter[str] = Counter()
        for row in tqdm(reader, desc="reading csv rows", unit="row", disable=not progress):
            at = f"{path}:{reader.line_num}"
            if usage:
                u = row[col["usage"]].strip() if len(row) > col["usage"] else ""
                usages[u] += 1
                if u.lower() != usage.lower():
                    continue
            try:
                pixels = np.array(row[col["pixels"]].split(), dtype=np.int64)
                code = -1 if unlabelled else int(row[col["emotion"]])
            except (IndexError, ValueError):
                tally.drop(at, "malformed_row", "missing or non-numeric field")
                continue
            if pixels.size != _FER_SIDE ** 2 or pixels.min() < 0 or pixels.max() > 255:
                tally.drop(at, "malformed_row",
                           f"{pixels.size} pixel values, not {_FER_SIDE}x{_FER_SIDE} in 0-255")
                continue
            if code == _FER_NEUTRAL and n_classes == NUM_CLASSES:
                tally.skipped["neutral"] += 1
                continue
            if not unlabelled and not 0 <= code < n_classes:
                tally.drop(at, "label_out_of_range", f"emotion {code}")
                continue
            images.append(fit(pixels.astype(np.uint8).reshape(_FER_SIDE, _FER_SIDE), size))
            labels.append(code)
            where.append(at)
    if usage and not any(u.lower() == usage.lower() for u in usages):
        found = ", ".join(f"{u or '(empty)'} {n}" for u, n in usages.most_common())
        raise DataError(f"no rows with Usage {usage} in {path} (Usage values: {found or 'none'})")
    grey = np.stack(images) if images else np.empty((0, size, size), np.uint8)
    return Built(np.repeat(grey[..., None], 3, axis=-1), np.array(labels, np.int64), where, tally)
