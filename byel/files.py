"""Writing a user's files so that a failure says which file.

A write() or close() that fails (a full disk, a quota) raises an OSError that names no file: it
would reach the user as "disk full" with no path. ``naming`` attaches the path; ``write_text``
writes a whole text file atomically (a temporary file beside it, then a rename), so a failed
write leaves the previous file, or none, never a truncated or empty one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def naming(path: str | Path, temporary: str | Path | None = None):
    """Within: an OSError that names no file, or names `temporary` (the file written in path's
    place, e.g. a hidden .tmp file), is raised again naming `path`."""
    try:
        yield
    except OSError as e:
        if e.filename is not None and (temporary is None or os.fspath(e.filename) != os.fspath(temporary)):
            raise
        raise OSError(e.errno, e.strerror or str(e), os.fspath(path)) from None


def write_text(path: str | Path, text: str, errors: str = "strict") -> Path:
    """Write UTF-8 text to `path` atomically; an OSError names `path`. `errors`: as for open()
    (e.g. "surrogateescape" writes file names that are not valid UTF-8 as their bytes)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with naming(path, tmp):
            with open(tmp, "w", encoding="utf-8", errors=errors) as f:
                f.write(text)
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
