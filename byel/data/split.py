"""The held-out split of the training data: carved once, before stage 1, kept out of both stages.

Fine-tuning picks its best epoch on this split, which is only honest on images no stage trained
on, and on people no stage saw: the warp backend turns each source face into many images of
all classes, so a split by image would put one person on both sides. `byel generate`
records a `group` per image in OUT/manifest.csv (warp: the source face; procedural: the image
itself, each image drawing its own identity); whole groups go to one side. Data without a
manifest (user folders, ABAW LSD, FER2013 CSV, Aff-Wild2) is split by image, per class.

The split is recorded as split.json in the run folder (settings, held-out files and groups) so
a later stage, or a reader, can check which images were held out.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from byel.classes import NUM_CLASSES
from byel.data.formats import MANIFEST, read_manifest
from byel.data.sources import ImageSet
from byel.data.specs import parse_spec
from byel.files import write_text

SPLIT_FILE = "split.json"


def grouped_split(labels: np.ndarray, groups, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held_out). Whole groups are held out, in a random order, while each one
    brings the held-out count of every class closer to `fraction` of that class's images (at
    least one image of each class that has two or more) and leaves every class some training
    images."""
    labels = np.asarray(labels)
    names, gid = np.unique(np.asarray(groups), return_inverse=True)
    n_classes = max(NUM_CLASSES, int(labels.max()) + 1 if len(labels) else 0)  # 7 with neutral
    counts = np.zeros((len(names), n_classes), np.int64)
    np.add.at(counts, (gid, labels), 1)
    total = counts.sum(0)
    target = np.where(total > 1, np.maximum(1, np.round(fraction * total)), 0)
    held, take = np.zeros(n_classes, np.int64), np.zeros(len(names), bool)

    def fits(new: np.ndarray) -> bool:
        return bool(((new < total) | (total == 0)).all())

    order = np.random.default_rng(seed).permutation(len(names))
    for g in order:
        new = held + counts[g]
        if np.abs(new - target).sum() < np.abs(held - target).sum() and fits(new):
            held, take[g] = new, True
            if (held >= target).all():
                break
    # Groups that span many classes (a warp source face) can overshoot a small class's share;
    # a class still absent then gets the smallest group that holds it.
    for c in np.flatnonzero((held == 0) & (target > 0)):
        cand = [g for g in order if not take[g] and counts[g, c] and fits(held + counts[g])]
        if cand:
            g = min(cand, key=lambda g: counts[g].sum())
            held, take[g] = held + counts[g], True
    out = take[gid]
    return np.flatnonzero(~out), np.flatnonzero(out)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held_out) with `fraction` of every class held out, image by image."""
    return grouped_split(labels, np.arange(len(labels)), fraction, seed)


def image_groups(data: ImageSet) -> tuple[np.ndarray | None, str]:
    """(group of each image, what a group is) from the manifest of a `byel generate` folder;
    (None, reason) when there is none."""
    kind, args = parse_spec(data.spec)
    root = args.get("path", "")
    if kind != "imagefolder" or not os.path.isfile(os.path.join(root, MANIFEST)):
        return None, f"no {MANIFEST}"
    rows = read_manifest(root)
    if rows is None:
        return None, f"unreadable {MANIFEST}"
    cols = set(rows[0]) if rows else set()
    # Manifests from before the group column: a warp one names the source face in "source".
    col = "group" if "group" in cols else "source" if "source" in cols else None
    if "file" not in cols or col is None:
        return None, f"no group column in {MANIFEST}"
    of = {r["file"]: r[col] for r in rows}
    # A file the manifest does not list (added by hand) is a group of its own.
    rel = [os.path.relpath(p, root).replace(os.sep, "/") for p in data.paths]
    groups = np.array([of.get(r) or f"file:{r}" for r in rel])
    backends = {r.get("backend") for r in rows}
    what = "source face" if backends == {"warp"} else \
        "identity draw (one per image)" if backends == {"procedural"} else f"manifest {col}"
    return groups, what


def holdout_split(data: ImageSet, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(train indices, held-out indices, the record for split.json) of a labelled image set,
    grouped by the manifest where there is one, else by image (said in one stderr line)."""
    groups, what = image_groups(data)
    if groups is None:
        print(f"byel: note: {data.spec} has {what}: the held-out split is by image (stratified), "
              "so one person may be on both sides", file=sys.stderr)
        groups, grouped_by = np.array([f"file:{p}" for p in data.paths]), "image"
    else:
        grouped_by = what
    train, held = grouped_split(data.labels, groups, fraction, seed)
    info = {
        "spec": data.spec, "fraction": fraction, "seed": seed, "grouped_by": grouped_by,
        "n_train": int(len(train)), "n_held_out": int(len(held)),
        "held_out_per_class": dict(zip(data.classes, np.bincount(data.labels[held], minlength=len(data.classes)).tolist())),
        "held_out_groups": sorted(set(groups[held].tolist())),
        "held_out_files": [data.paths[i] for i in held],
    }
    return train, held, info


def save_split(info: dict, run_dir: str | Path) -> Path:
    """Write split.json into run_dir (atomically: every DDP rank may write the same file)."""
    path = Path(run_dir) / SPLIT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, json.dumps(info, indent=1))


def recorded_split(data: ImageSet, path: str | Path) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """The split recorded in `path` applied to `data`, or None when there is no record or it
    was made for other data."""
    try:
        info = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("spec") != data.spec:
        return None
    held_files = set(info.get("held_out_files", ()))
    out = np.array([p in held_files for p in data.paths])
    if not out.any():
        return None
    info = {**info, "from": str(path), "n_train": int((~out).sum()), "n_held_out": int(out.sum())}
    return np.flatnonzero(~out), np.flatnonzero(out), info


def stage1_split(checkpoint: str | Path) -> Path:
    """Where the run that wrote `checkpoint` (RUN/checkpoints/last.ckpt) recorded its split."""
    return Path(checkpoint).resolve().parent.parent / SPLIT_FILE
