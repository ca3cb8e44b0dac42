"""File extensions and names shared by the loader, the generator, prediction and submission, and
the reader of `byel generate`'s manifest."""

import csv
import os
from pathlib import Path

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_EXTS = frozenset({".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})

# What `byel generate` writes next to the class folders of its output: not training images.
MANIFEST = "manifest.csv"
PREVIEW = "preview.png"
# ... and its provenance: backend, seed, size, and the warp backend's real source faces (tier C)
GENERATE_INFO = "generate.json"
# ... and, from its start until its manifest (written last) is in place: a folder holding this
# marker is a run that stopped midway (killed, crashed, out of disk) and must not be read as data.
GENERATING = ".generating"


def generate_run(folder) -> str | None:
    """What `byel generate` left in folder: "finished" (its manifest, written last, and no
    GENERATING marker), "unfinished" (the marker, or its provenance without the manifest that
    follows it) or None (no generate output; older generate sets without generate.json count as
    finished)."""
    f = Path(folder)
    if (f / GENERATING).exists() or ((f / GENERATE_INFO).is_file() and not (f / MANIFEST).exists()):
        return "unfinished"
    return "finished" if (f / MANIFEST).is_file() else None


def read_manifest(root: str) -> list[dict] | None:
    """The rows of a `byel generate` folder's manifest.csv; None without a readable one."""
    try:
        # surrogateescape: a source face's name that is not UTF-8 comes back as it was written
        with open(os.path.join(root, MANIFEST), newline="", encoding="utf-8", errors="surrogateescape") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
