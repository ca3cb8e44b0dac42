"""On-disk cache of decoded images, so a second load of the same data does no decoding.

One uncompressed ``.npz`` per (data set, image size): named arrays (the uint8 images, the
labels) plus a JSON string with everything else. Files are named ``<family>-<content>.npz``: *family* hashes
what the user asked for (kind, resolved paths, size), *content* hashes what was on disk
(file paths, sizes, mtimes). A changed data set gets a new content hash and its stale
entry of the same family is removed, so the cache does not grow with every edit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Bump when the stored layout or the decoding (resize, colour handling) changes.
FORMAT_VERSION = 2  # 2: truncated JPEGs and images over the pixel limit are dropped (byel.imageio)


def cache_dir() -> Path:
    """``$BYEL_CACHE_DIR`` if set, else ``~/.cache/byel/data``."""
    env = os.environ.get("BYEL_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "byel" / "data"


def digest(*parts: object) -> str:
    """Short stable hash of JSON-serialisable parts."""
    h = hashlib.sha1(str(FORMAT_VERSION).encode())
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _path(family: str, content: str) -> Path:
    return cache_dir() / f"{family}-{content}.npz"


def read(family: str, content: str) -> tuple[dict[str, np.ndarray], dict] | None:
    """Cached (arrays, meta), or None when absent or unreadable (an unreadable file is removed)."""
    path = _path(family, content)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "meta"}
            meta = json.loads(str(z["meta"]))
        return arrays, meta
    except Exception as e:  # any damage (truncated zip, bad JSON, missing key) means rebuild
        log.warning("ignoring damaged cache file %s (%s); rebuilding", path, e)
        path.unlink(missing_ok=True)
        return None


def write(family: str, content: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Store atomically (temp file + rename). A cache that cannot be written is only a warning."""
    path = _path(family, content)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays, meta=np.array(json.dumps(meta)))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as e:
        log.warning("could not write data cache %s (%s); continuing without it", path, e)
        return
    for stale in path.parent.glob(f"{family}-*.npz"):
        if stale != path:
            stale.unlink(missing_ok=True)
