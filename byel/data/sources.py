"""Read the data users bring into one in-memory ``ImageSet`` of the six classes.

Data specs (one string on the command line)::

    imagefolder:PATH                  PATH/<class>/**/*.jpg, class names or aliases (any case)
    abaw-lsd:PATH                     the same, and folders may also be numbered 0-5
                                      (0 anger, 1 disgust, 2 fear, 3 happiness, 4 sadness, 5 surprise)
    affwild2:FRAMES_DIR,ANNOTATIONS_DIR[?every=K]
                                      FRAMES_DIR/<video>/00001.jpg + ANNOTATIONS_DIR/<video>.txt;
                                      every=K keeps frames 1, 1+K, 1+2K ... of each video
    fer2013-csv:FILE.csv[:USAGE]      columns emotion,pixels,Usage; USAGE is Training,
                                      PublicTest or PrivateTest (default: all rows)
    PATH                              detected: a .csv file (or FILE.csv:USAGE), a folder of
                                      class folders, a folder of numbered class folders
                                      (abaw-lsd) or a folder holding exactly one Aff-Wild2
                                      annotation set and its frames

Nothing the user brings makes this crash: unreadable, corrupt, truncated, zero-byte, too large
(over byel.imageio's pixel limit) and unsupported files are skipped, counted in ``dropped``
and listed in ``problems``; classes outside the six are counted in ``skipped``.
``load(..., classes=7)`` (a 7-class run or model)
also reads neutral, as class 6: a ``neutral`` (or ``ne``) folder, FER2013 emotion 6, Aff-Wild2
expression 0; with 6 classes neutral is skipped like any other class. Only when nothing usable remains (or the spec
itself is wrong) is a one-line ``DataError`` raised.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import numpy as np
from tqdm import tqdm

from byel import imageio
from byel.classes import ALIASES, CLASSES, KNOWN_OTHER, NUM_CLASSES, canonical, class_names
from byel.data import cache as cache_store
from byel.data.formats import GENERATE_INFO, IMAGE_EXTS, MANIFEST, PREVIEW, generate_run
from byel.errors import DataError
from byel.files import write_text
from byel.imageio import Unusable, fit
from byel.provenance import generator_uses

KINDS: tuple[str, ...] = ("imagefolder", "abaw-lsd", "affwild2", "fer2013-csv")
FER_USAGES: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")

# FER2013 emotion codes 0-5 follow CLASSES (angry, disgust, fear, happy, sad, surprise); 6 neutral
# (class 6 of a 7-class set too).
_FER_NEUTRAL = 6
_FER_SIDE = 48
# Aff-Wild2 EXPR codes: 1-6 are CLASSES; these are skipped (counted), -1 is an invalid frame
# (0, neutral, is class 6 of a 7-class set).
_AFFWILD2_SKIPPED = {0: "neutral", 7: "other"}
_AFFWILD2_NEUTRAL = 0
# The ABAW4 LSD release names its anger folder "ANGERE".
_EXTRA_ALIASES = {"angere": "anger"}
# Written by file managers and archivers, never data: ignored without a word.
_JUNK = frozenset({"__macosx", "thumbs.db", "desktop.ini"})
# Options a spec may carry after "?", per kind.
_OPTIONS = {"affwild2": {"every"}}
# Images per decoding task: big enough to amortise scheduling, small enough for a live bar.
_CHUNK = 128


@dataclass
class ImageSet:
    """Decoded images of one data spec, ready for a Dataset."""

    images: np.ndarray  # uint8 (N, size, size, 3) RGB
    labels: np.ndarray  # int64 (N,), index into `classes`; -1 when unlabelled
    paths: list[str]  # source of each image: a file, or "FILE.csv:LINE"
    skipped: dict[str, int]  # class outside the six (lower-case name) -> images skipped
    dropped: dict[str, int]  # reason -> unusable files / frames / rows
    problems: list[tuple[str, str]]  # (where, reason[: detail]) for every dropped item
    spec: str  # normalised spec: "kind:path[...]"
    notes: list[str] = field(default_factory=list)  # warnings worth showing the user
    classes: tuple[str, ...] = CLASSES  # the class set read: the six, or the six and neutral
    # Real images behind these images (byel.provenance): warp faces of `byel generate` are made of
    # real unlabelled source faces, so a model trained on them is tier C (see generator_uses).
    real_uses: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        """Images per class, every class of the set present (zeros for an unlabelled set)."""
        n = np.bincount(self.labels[self.labels >= 0], minlength=len(self.classes))
        return {c: int(k) for c, k in zip(self.classes, n)}

    def summary(self) -> str:
        """One line: how many images of which classes, what was skipped and dropped."""
        if len(self) and self.labels[0] < 0:
            head = f"{len(self)} unlabelled images"
        else:
            head = f"{len(self)} images (" + ", ".join(f"{c} {n}" for c, n in self.counts().items()) + ")"
        return "; ".join([head, *_tally_parts(self.skipped, self.dropped)])


def _tally_parts(skipped: dict[str, int], dropped: dict[str, int]) -> list[str]:
    parts = []
    if skipped:
        parts.append("skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())))
    if dropped:
        parts.append("dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())))
    return parts


class _Tally:
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
    def from_json(cls, d: dict) -> _Tally:
        t = cls()
        t.skipped.update(d["skipped"])
        t.dropped.update(d["dropped"])
        t.problems = [tuple(p) for p in d["problems"]]
        t.notes = list(d["notes"])
        return t


@dataclass
class _Built:
    """What the expensive step (decoding) produced; this is what the cache stores."""

    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    tally: _Tally


@dataclass
class _Scan:
    """What a cheap directory scan found: the cache fingerprint and how to build the rest."""

    fingerprint: list
    build: Callable[[int, int, bool], _Built]  # (size, workers, progress) -> _Built
    tally: _Tally


# --------------------------------------------------------------------------- specs


def parse_spec(spec: str) -> tuple[str, dict]:
    """``(kind, arguments)`` of a data spec; a plain path is detected. Raises DataError."""
    kind, args = _parse(spec)
    return (kind, args) if kind else _detect(args, unlabelled=False)


def _parse(spec: str) -> tuple[str | None, dict]:
    """Split a spec without looking at the data; kind is None for a plain path."""
    spec = spec.strip()
    if not spec:
        raise DataError("empty data spec; give a path or KIND:PATH (kinds: " + ", ".join(KINDS) + ")")
    kind, sep, rest = spec.partition(":")
    if not (sep and kind in KINDS):
        # "C:\data" is a path, "imagefolders:x" a typo.
        if sep and re.fullmatch(r"[A-Za-z][\w-]+", kind) and not os.path.exists(spec):
            raise DataError(f"unknown data kind {kind!r} in {spec!r}; valid kinds: "
                            + ", ".join(KINDS) + " (or a plain path)")
        kind, rest = None, spec
    body, options = _split_options(rest)
    if kind is None and re.search(r"\.csv:\w+$", body, re.IGNORECASE) and not os.path.exists(body):
        kind = "fer2013-csv"  # plain FILE.csv:Usage
    if not body:
        raise DataError(f"no path in data spec {spec!r}")
    if kind == "affwild2":
        frames, annotations = _split_pair(body, spec)
        args = {"frames": _existing(frames, dir_=True), "annotations": _existing(annotations, dir_=True)}
    elif kind == "fer2013-csv":
        args = _fer_args(body)
    else:
        args = {"path": _existing(body, dir_=True if kind else None)}
    args["options"] = options
    if kind:
        _check_options(kind, args)
    return kind, args


def _split_options(body: str) -> tuple[str, dict[str, str]]:
    """"PATH?every=5&x=y" -> ("PATH", {"every": "5", "x": "y"}); a "?" in a path is left alone."""
    head, sep, query = body.rpartition("?")
    if sep and re.fullmatch(r"\w+=[^&=]*(&\w+=[^&=]*)*", query):
        return head, dict(kv.split("=", 1) for kv in query.split("&"))
    return body, {}


def _split_pair(body: str, spec: str) -> tuple[str, str]:
    """FRAMES_DIR,ANNOTATIONS_DIR; with commas inside paths, the split where both exist wins."""
    cuts = [i for i, ch in enumerate(body) if ch == ","]
    if not cuts:
        raise DataError(f"affwild2 needs two folders, FRAMES_DIR,ANNOTATIONS_DIR; got {spec!r}")
    for i in cuts:
        if os.path.isdir(os.path.expanduser(body[:i])) and os.path.isdir(os.path.expanduser(body[i + 1:])):
            return body[:i], body[i + 1:]
    return body[: cuts[0]], body[cuts[0] + 1:]


def _fer_args(body: str) -> dict:
    path, sep, usage = body.rpartition(":")
    if sep and path.lower().endswith(".csv") and not os.path.exists(body):
        match = [u for u in FER_USAGES if u.lower() == usage.strip().lower()]
        if not match:
            raise DataError(f"unknown FER2013 Usage {usage!r}; choose one of " + ", ".join(FER_USAGES))
        return {"path": _existing(path, dir_=False), "usage": match[0]}
    return {"path": _existing(body, dir_=False), "usage": None}


def _existing(path: str, *, dir_: bool | None) -> str:
    """Absolute real path; DataError when missing or (dir_ True/False) of the wrong type."""
    p = os.path.realpath(os.path.expanduser(path))
    if not os.path.exists(p):
        raise DataError(f"data path not found: {path}")
    if dir_ is True and not os.path.isdir(p):
        raise DataError(f"expected a folder, got a file: {path}")
    if dir_ is False and not os.path.isfile(p):
        raise DataError(f"expected a file, got a folder: {path}")
    return p


def _check_options(kind: str, args: dict) -> None:
    allowed = _OPTIONS.get(kind, set())
    for key, value in args["options"].items():
        if key not in allowed:
            accepted = ", ".join(sorted(allowed)) if allowed else "none"
            raise DataError(f"unknown option {key!r} for {kind} (accepted: {accepted})")
        if key == "every" and not (value.isdigit() and int(value) >= 1):
            raise DataError(f"every= needs a whole number >= 1, got {value!r}")


def _format_spec(kind: str, args: dict) -> str:
    if kind == "affwild2":
        body = f"{args['frames']},{args['annotations']}"
    elif kind == "fer2013-csv" and args["usage"]:
        body = f"{args['path']}:{args['usage']}"
    else:
        body = args["path"]
    query = "&".join(f"{k}={v}" for k, v in sorted(args["options"].items()))
    return f"{kind}:{body}" + (f"?{query}" if query else "")


# --------------------------------------------------------------------------- detection


def _detect(args: dict, *, unlabelled: bool) -> tuple[str, dict]:
    """Kind of a plain path (see the module docstring)."""
    path, options = args["path"], args["options"]
    if os.path.isfile(path):
        if not path.lower().endswith(".csv"):
            raise DataError(f"{path} is a file; give a folder of images or a FER2013 .csv")
        kind, out = "fer2013-csv", {"path": path, "usage": None}
    elif unlabelled:  # any folder: every image below it
        kind, out = "imagefolder", {"path": path}
    else:
        entries = _entries(path)
        names = [e.name for e in entries if e.is_dir()]
        if any(_class_index(n, numeric=False) is not None or n.lower() in KNOWN_OTHER for n in names):
            kind, out = "imagefolder", {"path": path}
        elif (found := _find_affwild2(path)) is not None:
            kind, out = "affwild2", found
        elif any(_class_index(n, numeric=True) is not None for n in names):
            kind, out = "abaw-lsd", {"path": path}
        else:
            loose = sum(os.path.splitext(e.name)[1].lower() in IMAGE_EXTS for e in entries if e.is_file())
            raise DataError(
                f"cannot tell what data {path} holds: {f'{loose} images but ' if loose else ''}"
                f"no class folders (e.g. {_accepted_names()}), "
                f"no Aff-Wild2 annotations; name the kind, e.g. imagefolder:{path} "
                f"(kinds: {', '.join(KINDS)}){_class_folder_hint(path)}")
    out["options"] = options
    _check_options(kind, out)
    return kind, out


def _find_affwild2(root: str, max_depth: int = 4) -> dict | None:
    """The one (frames dir, annotations dir) pair under root, None if there are no annotations.

    Annotation folders hold .txt files starting with the "Neutral,Anger,..." header; the
    frames folder is the one whose sub-folders are named after the annotated videos. Folders
    holding images are not descended into, so a tree of many frame folders is cheap to scan.
    """
    ann_dirs: dict[str, set[str]] = {}  # dir -> video names
    children: dict[str, list[str]] = {}
    stack = [(root, 0)]
    while stack:
        d, depth = stack.pop()
        subdirs, txts = [], []
        for e in _entries(d):
            if e.is_dir():
                subdirs.append(e.name)
            elif e.name.lower().endswith(".txt"):
                txts.append(e)
            elif os.path.splitext(e.name)[1].lower() in IMAGE_EXTS:
                subdirs = []
                break
        children[d] = subdirs
        if txts and _is_affwild2_annotation(txts[0].path):
            ann_dirs[d] = {os.path.splitext(t.name)[0] for t in txts}
        if depth < max_depth:
            stack.extend((os.path.join(d, s), depth + 1) for s in subdirs)
    if not ann_dirs:
        return None
    if len(ann_dirs) > 1:
        raise DataError(f"{root} holds several Aff-Wild2 annotation sets ({', '.join(sorted(ann_dirs))}); "
                        "choose one with affwild2:FRAMES_DIR,ANNOTATIONS_DIR")
    (ann, videos), = ann_dirs.items()
    frame_roots = sorted(d for d, subs in children.items() if d != ann and videos & set(subs))
    if len(frame_roots) != 1:
        what = "no folder of per-video frame folders" if not frame_roots else \
            f"several frame folders ({', '.join(frame_roots)})"
        raise DataError(f"{root} has Aff-Wild2 annotations in {ann} but {what}; "
                        "use affwild2:FRAMES_DIR,ANNOTATIONS_DIR")
    return {"frames": frame_roots[0], "annotations": ann}


def _is_affwild2_annotation(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline()
    except OSError:
        return False
    return first.replace(" ", "").lower().startswith("neutral,anger")


def _class_folder_hint(root: str) -> str:
    """"; class folders found in X" when a sub-folder of root looks like the real root."""
    for e in _entries(root):
        if e.is_dir() and any(_class_index(s.name, numeric=False) is not None
                              for s in _entries(e.path) if s.is_dir()):
            return f"; class folders found in {e.path} - use that folder"
    return ""


# --------------------------------------------------------------------------- scanning


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in _JUNK


def _entries(d: str, tally: _Tally | None = None) -> list[os.DirEntry]:
    """Sorted non-junk entries of d; an unreadable folder is a problem, not a crash."""
    try:
        with os.scandir(d) as it:
            return sorted((e for e in it if not _is_junk(e.name)), key=lambda e: e.name)
    except OSError as e:
        if tally is not None:
            tally.drop(d, "unreadable", e.strerror or str(e))
        return []


def _walk(top: str, tally: _Tally, seen: set | None = None, root: str | None = None):
    """Every file under top, sorted, each real folder visited once. Links to folders are
    followed only while they stay inside the top folder: one out of it (a loop such as
    happiness/loop -> ..) would count other classes' images as this one's; it is listed."""
    seen = set() if seen is None else seen
    root = os.path.realpath(top) if root is None else root
    st = os.stat(top)
    if (st.st_dev, st.st_ino) in seen:
        return
    seen.add((st.st_dev, st.st_ino))
    for e in _entries(top, tally):
        if e.is_dir():
            target = os.path.realpath(e.path)
            if e.is_symlink() and os.path.commonpath([target, root]) != root:
                tally.drop(e.path, "link_outside_folder", f"a link to {target}, outside {root}: not followed")
                continue
            yield from _walk(e.path, tally, seen, root)
        else:
            yield e


def _accepted_names() -> str:
    names = {c: sorted(a for a, t in ALIASES.items() if t == c and a != c and len(a) > 2) for c in CLASSES}
    return ", ".join("/".join([c, *names[c]]) for c in CLASSES)


def _class_index(name: str, *, numeric: bool, n: int = NUM_CLASSES) -> int | None:
    """Label of a class folder name among n classes (7: neutral too), or None."""
    key = name.strip().lower()
    c = canonical(key, n) or _EXTRA_ALIASES.get(key)
    if c is not None:
        return class_names(n).index(c)
    if numeric and key.isdigit() and int(key) < len(CLASSES) and len(key) == 1:
        return int(key)
    return None


def _add_file(e: os.DirEntry, label: int, items: list, tally: _Tally) -> None:
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


def _scan_imagefolder(args: dict, unlabelled: bool, n_classes: int = NUM_CLASSES, *, numeric: bool) -> _Scan:
    root, tally, items = args["path"], _Tally(), []
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
    for e in _entries(root, tally):
        if e.path in ours:
            continue
        if e.is_dir():
            label = _class_index(e.name, numeric=numeric, n=n_classes)
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
            + f"; class folder names understood: {_accepted_names()}"
            + ("; numbered folders 0-5 are read by abaw-lsd:" if any(k.isdigit() for k in unknown) else ""))
    return _files_scan(items, tally)


def _scan_affwild2(args: dict, unlabelled: bool, n_classes: int = NUM_CLASSES) -> _Scan:
    frames, ann_dir = args["frames"], args["annotations"]
    every = int(args["options"].get("every", 1))
    tally, items = _Tally(), []
    ann_files = [e for e in _entries(ann_dir, tally) if e.is_file() and e.name.lower().endswith(".txt")]
    if not ann_files:
        raise DataError(f"no annotation files (<video>.txt) in {ann_dir}")
    found_videos = 0
    for ann in ann_files:
        video = os.path.splitext(ann.name)[0]
        lines = _annotation_lines(ann.path, tally)
        if lines is None:
            continue
        vdir = os.path.join(frames, video)
        have = {os.path.splitext(e.name)[0]: e for e in _entries(vdir, None)
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


def _annotation_lines(path: str, tally: _Tally) -> list[str] | None:
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


def _scan_fer_csv(args: dict, unlabelled: bool, n_classes: int = NUM_CLASSES) -> _Scan:
    st = os.stat(args["path"])
    return _Scan(fingerprint=[args["path"], st.st_size, st.st_mtime_ns],
                 build=partial(_read_fer_csv, args["path"], args["usage"], unlabelled, n_classes),
                 tally=_Tally())


def _files_scan(items: list, tally: _Tally) -> _Scan:
    return _Scan(fingerprint=items, build=partial(_decode_files, items), tally=tally)


_SCANNERS: dict[str, Callable[[dict, bool, int], _Scan]] = {
    "imagefolder": partial(_scan_imagefolder, numeric=False),
    "abaw-lsd": partial(_scan_imagefolder, numeric=True),
    "affwild2": _scan_affwild2,
    "fer2013-csv": _scan_fer_csv,
}


# --------------------------------------------------------------------------- decoding


def decode_image(path: str, size: int) -> np.ndarray:
    """uint8 RGB (size, size, 3) of an image file, whatever its colour mode. Raises Unusable."""
    return fit(imageio.read(path), size)


def _decode_files(items: list, size: int, workers: int, progress: bool) -> _Built:
    """Decode in a thread pool (cv2 and Pillow release the GIL while decoding)."""
    paths = [it[0] for it in items]
    out = np.empty((len(paths), size, size, 3), np.uint8)
    failed: dict[int, Unusable] = {}

    def work(lo: int, hi: int) -> int:
        for i in range(lo, hi):
            try:
                out[i] = decode_image(paths[i], size)
            except Unusable as e:
                failed[i] = e
        return hi - lo

    chunks = [(lo, min(lo + _CHUNK, len(paths))) for lo in range(0, len(paths), _CHUNK)]
    workers = workers or imageio.io_workers()
    with tqdm(total=len(paths), desc="decoding images", unit="img", disable=not progress) as bar:
        if workers == 1 or len(chunks) <= 1:
            for lo, hi in chunks:
                bar.update(work(lo, hi))
        else:
            with ThreadPoolExecutor(workers) as pool:
                for done in pool.map(lambda c: work(*c), chunks):
                    bar.update(done)
    tally = _Tally()
    for i in sorted(failed):
        tally.drop(paths[i], failed[i].reason, failed[i].detail)
    keep = [i for i in range(len(paths)) if i not in failed]
    if failed:
        out = out[keep]
    labels = np.array([items[i][1] for i in keep], np.int64)
    return _Built(out, labels, [paths[i] for i in keep], tally)


def _read_fer_csv(path: str, usage: str | None, unlabelled: bool, n_classes: int,
                  size: int, _workers: int, progress: bool) -> _Built:
    try:
        return _read_fer_rows(path, usage, unlabelled, size, progress, n_classes)
    except csv.Error as e:  # e.g. a binary file: "field larger than field limit"
        raise DataError(f"{path} is not a FER2013 CSV: {e}") from None


def _read_fer_rows(path: str, usage: str | None, unlabelled: bool, size: int, progress: bool,
                   n_classes: int = NUM_CLASSES) -> _Built:
    """Rows of a FER2013 CSV (emotion,pixels,Usage) as RGB images of n_classes (7: with neutral);
    bad rows dropped, not fatal.

    Single-threaded: parsing 48x48 rows is cheap next to decoding JPEGs."""
    tally, images, labels, where = _Tally(), [], [], []
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
    return _Built(np.repeat(grey[..., None], 3, axis=-1), np.array(labels, np.int64), where, tally)


# --------------------------------------------------------------------------- load


def load(spec: str, size: int, *, cache: bool = True, progress: bool = True, workers: int = 0,
         unlabelled: bool = False, classes: int = NUM_CLASSES) -> ImageSet:
    """Read a data spec into memory as size x size RGB uint8 images.

    ``unlabelled`` reads every image (folders: recursively, no class folders needed; FER
    CSV: every row of the split; Aff-Wild2: every annotated frame), labels all -1.
    ``workers`` decoding threads, 0 = one per available core (at most 8). With ``cache``
    the decoded arrays are kept under ``$BYEL_CACHE_DIR`` (``~/.cache/byel/data``) so the
    next load of unchanged files decodes nothing. ``classes``: 6, the six emotions (neutral
    skipped and counted), or 7, the six and neutral (label 6). Raises DataError when nothing
    is usable.
    """
    names = class_names(classes)
    if size < 1:
        raise DataError(f"image size must be a positive number of pixels, got {size}")
    kind, args = _parse(spec)
    if kind is None:
        kind, args = _detect(args, unlabelled=unlabelled)
    name = _format_spec(kind, args)
    scan = _SCANNERS[kind](args, unlabelled, classes)
    # a 6-class load keeps the cache name it had before the class count was a choice
    family = cache_store.digest(kind, args, size, unlabelled, *([classes] if classes != NUM_CLASSES else []))
    content = cache_store.digest(scan.fingerprint)
    built = _from_cache(cache_store.read(family, content), size) if cache else None
    if built is None:
        built = scan.build(size, workers, progress)
        if cache and len(built.labels):
            cache_store.write(family, content, {"images": built.images, "labels": built.labels},
                              {"paths": built.paths, **built.tally.to_json()})
    s = _finish(name, scan.tally, built, unlabelled, args, names)
    if kind in ("imagefolder", "abaw-lsd"):
        s.real_uses = generator_uses(args["path"], s.paths, size)
    return s


def _from_cache(hit: tuple[dict, dict] | None, size: int) -> _Built | None:
    if hit is None:
        return None
    arrays, meta = hit
    try:
        images, labels, paths = arrays["images"], arrays["labels"], meta["paths"]
        ok = images.dtype == np.uint8 and images.shape[1:] == (size, size, 3) and \
            len(images) == len(labels) == len(paths)
        return _Built(images, labels.astype(np.int64), list(paths), _Tally.from_json(meta)) if ok else None
    except (KeyError, TypeError, ValueError):
        return None


def _finish(name: str, scanned: _Tally, built: _Built, unlabelled: bool, args: dict,
            classes: tuple[str, ...] = CLASSES) -> ImageSet:
    skipped = scanned.skipped + built.tally.skipped
    dropped = scanned.dropped + built.tally.dropped
    s = ImageSet(images=built.images, labels=built.labels, paths=built.paths,
                 skipped=dict(sorted(skipped.items())), dropped=dict(sorted(dropped.items())),
                 problems=scanned.problems + built.tally.problems, spec=name,
                 notes=scanned.notes + built.tally.notes, classes=classes)
    if not len(s):
        what = "no usable images" + ("" if unlabelled else " of the six classes"
                                     + (" and neutral" if len(classes) > NUM_CLASSES else ""))
        found = "; ".join(_tally_parts(s.skipped, s.dropped)) or "no image files found"
        hint = _class_folder_hint(args["path"]) if "path" in args and os.path.isdir(args["path"]) else ""
        raise DataError(f"{what} in {name} ({found}){hint}")
    if not unlabelled:
        empty = [c for c, n in s.counts().items() if n == 0]
        if empty:
            s.notes.append("no images of: " + ", ".join(empty))
    return s


def write_problem_log(imageset: ImageSet, path: str) -> None:
    """One line per unusable item, "reason<TAB>where", after a short header."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_text(path, "".join([f"# unusable items in {imageset.spec}\n",
                              *(f"# {part}\n" for part in _tally_parts(imageset.skipped, imageset.dropped)),
                              *(f"{reason}\t{where}\n" for where, reason in imageset.problems)]),
               errors="surrogateescape")  # names not UTF-8: their bytes
