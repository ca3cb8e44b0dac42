"""Load the data users bring into one in-memory ``ImageSet`` of the six classes: the door of
byel.data. A data spec (byel.data.specs: its grammar and format detection) names the data; a reader
per format (byel.data.readers) finds the images; here they are decoded in a thread pool, kept in the
cache and gathered with what could not be used.

Nothing the user brings makes this crash: unreadable, corrupt, truncated, zero-byte, too large
(over byel.imageio's pixel limit) and unsupported files are skipped, counted in ``dropped``
and listed in ``problems``; classes outside the six are counted in ``skipped``.
``load(..., classes=7)`` (a 7-class run or model)
also reads neutral, as class 6: a ``neutral`` (or ``ne``) folder, FER2013 emotion 6, Aff-Wild2
expression 0; with 6 classes neutral is skipped like any other class. Only when nothing usable remains (or the spec
itself is wrong) is a one-line ``DataError`` raised.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from byel import imageio
from byel.classes import CLASSES, NUM_CLASSES, class_names
from byel.data import cache as cache_store
from byel.data.readers import Built, Tally, scan, tally_parts
from byel.data.specs import class_folder_hint, detect_kind, format_spec, split_spec
from byel.errors import DataError
from byel.files import write_text
from byel.imageio import Unusable, fit
from byel.provenance import generator_uses

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
        return "; ".join([head, *tally_parts(self.skipped, self.dropped)])


# --------------------------------------------------------------------------- decoding


def decode_image(path: str, size: int) -> np.ndarray:
    """uint8 RGB (size, size, 3) of an image file, whatever its colour mode. Raises Unusable."""
    return fit(imageio.read(path), size)


def _decode_files(items: list, size: int, workers: int, progress: bool) -> Built:
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
    tally = Tally()
    for i in sorted(failed):
        tally.drop(paths[i], failed[i].reason, failed[i].detail)
    keep = [i for i in range(len(paths)) if i not in failed]
    if failed:
        out = out[keep]
    labels = np.array([items[i][1] for i in keep], np.int64)
    return Built(out, labels, [paths[i] for i in keep], tally)



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
    kind, args = split_spec(spec)
    if kind is None:
        kind, args = detect_kind(args, unlabelled=unlabelled)
    name = format_spec(kind, args)
    found = scan(kind, args, unlabelled, classes)
    # a 6-class load keeps the cache name it had before the class count was a choice
    family = cache_store.digest(kind, args, size, unlabelled, *([classes] if classes != NUM_CLASSES else []))
    content = cache_store.digest(found.fingerprint)
    built = _from_cache(cache_store.read(family, content), size) if cache else None
    if built is None:
        built = found.read(size, progress) if found.read else _decode_files(found.files, size, workers, progress)
        if cache and len(built.labels):
            cache_store.write(family, content, {"images": built.images, "labels": built.labels},
                              {"paths": built.paths, **built.tally.to_json()})
    s = _finish(name, found.tally, built, unlabelled, args, names)
    if kind in ("imagefolder", "abaw-lsd"):
        s.real_uses = generator_uses(args["path"], s.paths, size)
    return s


def _from_cache(hit: tuple[dict, dict] | None, size: int) -> Built | None:
    if hit is None:
        return None
    arrays, meta = hit
    try:
        images, labels, paths = arrays["images"], arrays["labels"], meta["paths"]
        ok = images.dtype == np.uint8 and images.shape[1:] == (size, size, 3) and \
            len(images) == len(labels) == len(paths)
        return Built(images, labels.astype(np.int64), list(paths), Tally.from_json(meta)) if ok else None
    except (KeyError, TypeError, ValueError):
        return None


def _finish(name: str, scanned: Tally, built: Built, unlabelled: bool, args: dict,
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
        found = "; ".join(tally_parts(s.skipped, s.dropped)) or "no image files found"
        hint = class_folder_hint(args["path"]) if "path" in args and os.path.isdir(args["path"]) else ""
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
                              *(f"# {part}\n" for part in tally_parts(imageset.skipped, imageset.dropped)),
                              *(f"{reason}\t{where}\n" for where, reason in imageset.problems)]),
               errors="surrogateescape")  # names not UTF-8: their bytes
