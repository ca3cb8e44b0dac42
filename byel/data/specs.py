"""The data spec grammar, and what a plain path holds (format detection).

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

A wrong spec raises a one-line ``DataError``. The folder rules detection and the readers
(byel.data.readers) share live here too: which entries of a folder count (``folder_entries``) and which
folder names are classes (``class_index``).
"""

from __future__ import annotations

import os
import re
from typing import Protocol

from byel.classes import ALIASES, CLASSES, KNOWN_OTHER, NUM_CLASSES, canonical, class_names
from byel.data.formats import IMAGE_EXTS
from byel.errors import DataError

KINDS: tuple[str, ...] = ("imagefolder", "abaw-lsd", "affwild2", "fer2013-csv")
FER_USAGES: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")

# The ABAW4 LSD release names its anger folder "ANGERE".
_EXTRA_ALIASES = {"angere": "anger"}
# Written by file managers and archivers, never data: ignored without a word.
_JUNK = frozenset({"__macosx", "thumbs.db", "desktop.ini"})
# Options a spec may carry after "?", per kind.
_OPTIONS = {"affwild2": {"every"}}


class Problems(Protocol):
    """Where an unreadable folder is recorded (a byel.data.readers.Tally)."""

    def drop(self, where: str, reason: str, detail: str = "", n: int = 1) -> None: ...


# --------------------------------------------------------------------------- specs


def parse_spec(spec: str) -> tuple[str, dict]:
    """``(kind, arguments)`` of a data spec; a plain path is detected. Raises DataError."""
    kind, args = split_spec(spec)
    return (kind, args) if kind else detect_kind(args, unlabelled=False)


def split_spec(spec: str) -> tuple[str | None, dict]:
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


def format_spec(kind: str, args: dict) -> str:
    if kind == "affwild2":
        body = f"{args['frames']},{args['annotations']}"
    elif kind == "fer2013-csv" and args["usage"]:
        body = f"{args['path']}:{args['usage']}"
    else:
        body = args["path"]
    query = "&".join(f"{k}={v}" for k, v in sorted(args["options"].items()))
    return f"{kind}:{body}" + (f"?{query}" if query else "")


# --------------------------------------------------------------------------- detection


def detect_kind(args: dict, *, unlabelled: bool) -> tuple[str, dict]:
    """Kind of a plain path (see the module docstring)."""
    path, options = args["path"], args["options"]
    if os.path.isfile(path):
        if not path.lower().endswith(".csv"):
            raise DataError(f"{path} is a file; give a folder of images or a FER2013 .csv")
        kind, out = "fer2013-csv", {"path": path, "usage": None}
    elif unlabelled:  # any folder: every image below it
        kind, out = "imagefolder", {"path": path}
    else:
        entries = folder_entries(path)
        names = [e.name for e in entries if e.is_dir()]
        if any(class_index(n, numeric=False) is not None or n.lower() in KNOWN_OTHER for n in names):
            kind, out = "imagefolder", {"path": path}
        elif (found := _find_affwild2(path)) is not None:
            kind, out = "affwild2", found
        elif any(class_index(n, numeric=True) is not None for n in names):
            kind, out = "abaw-lsd", {"path": path}
        else:
            loose = sum(os.path.splitext(e.name)[1].lower() in IMAGE_EXTS for e in entries if e.is_file())
            raise DataError(
                f"cannot tell what data {path} holds: {f'{loose} images but ' if loose else ''}"
                f"no class folders (e.g. {accepted_names()}), "
                f"no Aff-Wild2 annotations; name the kind, e.g. imagefolder:{path} "
                f"(kinds: {', '.join(KINDS)}){class_folder_hint(path)}")
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
        for e in folder_entries(d):
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


def class_folder_hint(root: str) -> str:
    """"; class folders found in X" when a sub-folder of root looks like the real root."""
    for e in folder_entries(root):
        if e.is_dir() and any(class_index(s.name, numeric=False) is not None
                              for s in folder_entries(e.path) if s.is_dir()):
            return f"; class folders found in {e.path} - use that folder"
    return ""


# --------------------------------------------------------------------------- folders


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in _JUNK


def folder_entries(d: str, tally: Problems | None = None) -> list[os.DirEntry]:
    """Sorted non-junk entries of d; an unreadable folder is a problem, not a crash."""
    try:
        with os.scandir(d) as it:
            return sorted((e for e in it if not _is_junk(e.name)), key=lambda e: e.name)
    except OSError as e:
        if tally is not None:
            tally.drop(d, "unreadable", e.strerror or str(e))
        return []


def accepted_names() -> str:
    """The class folder names understood, for messages: "anger/angry, disgust/..."."""
    names = {c: sorted(a for a, t in ALIASES.items() if t == c and a != c and len(a) > 2) for c in CLASSES}
    return ", ".join("/".join([c, *names[c]]) for c in CLASSES)


def class_index(name: str, *, numeric: bool, n: int = NUM_CLASSES) -> int | None:
    """Label of a class folder name among n classes (7: neutral too), or None."""
    key = name.strip().lower()
    c = canonical(key, n) or _EXTRA_ALIASES.get(key)
    if c is not None:
        return class_names(n).index(c)
    if numeric and key.isdigit() and int(key) < len(CLASSES) and len(key) == 1:
        return int(key)
    return None
