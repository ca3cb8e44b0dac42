"""Writing a user's files whole, and so that a failure says which file: the one home of atomic writes.

A write() or close() that fails (a full disk, a quota) raises an OSError that names no file: it
would reach the user as "disk full" with no path. ``naming`` attaches the path. ``replacing``
writes a file whole: a temporary file beside it (``.NAME.PID.tmp``), renamed into place
(os.replace), so a failed or killed write leaves the previous file, or none, never a truncated or
empty one under the real name. On it: ``written_whole`` (the CLI's outputs: a failure is one
line, a ByelError naming the file), ``write_text`` (an OSError naming the file).

(byel.checkpoint.atomic_torch_save writes checkpoints the same way, with an fsync before the
rename, and turns torch's own write errors into one line.)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from byel.errors import ByelError, os_reason


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


@contextlib.contextmanager
def replacing(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Write `path` whole: yields a temporary path beside it (``.NAME.PID`` + `suffix`: a writer
    that picks the format by the name's ending wants e.g. ".tmp.png") to write to; on success the
    temporary file replaces `path` (os.replace: a reader sees the old file or the new one, never
    half of one); on any failure it is removed and `path` left as it was. An OSError that names no
    file, or the temporary one, is raised again naming `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{suffix}")
    try:
        with naming(path, tmp):
            yield tmp
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def written_whole(path: str | Path) -> Iterator[Path]:
    """``replacing`` for a file a command writes: its folder is made first, and an OSError (a full
    disk) becomes one line naming `path`, not the temporary file (a ByelError)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            yield tmp
    except OSError as e:
        raise ByelError(f"cannot write {path}: {os_reason(e)}") from None


def write_text(path: str | Path, text: str, errors: str = "strict") -> Path:
    """Write UTF-8 text to `path` atomically; an OSError names `path`. `errors`: as for open()
    (e.g. "surrogateescape" writes file names that are not valid UTF-8 as their bytes)."""
    path = Path(path)
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8", errors=errors) as f:
        f.write(text)
    return path

