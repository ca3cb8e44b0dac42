"""Videos through OpenCV, whatever their file names: the one door by which byel opens a video.

OpenCV's Python binding takes a path as a ``str`` and hands it to C++ encoded as UTF-8. A file
name that is not valid UTF-8 (Latin-1 archives, camera cards, Windows zips) reaches Python as a
``str`` holding surrogate escapes, which cannot be encoded: OpenCV then crashes the process (a
segmentation fault, no message). Images never need a path (Python reads the bytes,
``cv2.imdecode`` decodes them); videos do, so such a file is handed to OpenCV under an ASCII
alias (a symbolic link, else a hard link, else a copy) in a private temporary folder, removed
afterwards, and a video is written under an ASCII temporary name in its folder and renamed into
place by Python.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator

import cv2
import numpy as np

from byel.errors import ByelError

# FFmpeg, OpenCV's video reader, prints its own complaints about a broken file on stderr (e.g.
# "moov atom not found" for a truncated .mp4) around byel's one line: quiet, unless the user set a
# level. OpenCV reads the variable when its FFmpeg backend first opens a file, after this.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


class CodecUnavailable(ByelError):
    """OpenCV's video writer cannot open a video of this codec and file type here (its build has
    no such encoder); a caller may try another (``byel predict``: .mp4, else MJPG .avi)."""


@contextlib.contextmanager
def _native_stderr_silenced():
    """File descriptor 2 on /dev/null for the duration. When FFmpeg cannot open a file, OpenCV
    tries its own AVI reader, which prints its complaints with fprintf (e.g. "Unexpected element.
    Expected: LIST"): no log level turns them off, and the file is reported unreadable anyway."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no stderr at all: nothing to keep clean
        yield
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _opencv_quiet():
    """OpenCV's own log (e.g. "[ WARN] ... Failed to write frame") off for the duration."""
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None:
        yield
        return
    before = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        log.setLogLevel(before)


def cv2_safe(path: str | os.PathLike) -> bool:
    """Whether OpenCV can be given this path as it is: its UTF-8 encoding is the file's name."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        return False
    try:
        return text.encode("utf-8") == os.fsencode(text)
    except UnicodeEncodeError:  # surrogate escapes: bytes that are not UTF-8
        return False


def _suffix(path: str) -> str:
    """path's extension when it is plain ASCII (OpenCV picks a container by it), else ''."""
    ext = os.path.splitext(path)[1]
    return ext if ext[1:].isascii() and ext[1:].isalnum() else ""


def _alias(target: str, alias: str) -> None:
    """alias names the file target: a symbolic link, else a hard link, else a copy."""
    for make in (os.symlink, os.link, shutil.copyfile):
        try:
            make(target, alias)
            return
        except OSError:
            if make is shutil.copyfile:
                raise


@contextlib.contextmanager
def readable_path(path: str | os.PathLike) -> Iterator[str]:
    """A path OpenCV can open to read the file at path, valid while the context lasts: path
    itself, or an ASCII alias in a private temporary folder."""
    path = os.fsdecode(os.fspath(path))
    if cv2_safe(path):
        yield path
        return
    folder = tempfile.mkdtemp(prefix="byel-video-")
    try:
        alias = os.path.join(folder, "video" + _suffix(path))
        _alias(os.path.abspath(path), alias)
        yield alias
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def video_reader(path: str | os.PathLike) -> Iterator[cv2.VideoCapture]:
    """A cv2.VideoCapture of the video at path (check ``isOpened()``), released at the end."""
    with readable_path(path) as p:
        with _native_stderr_silenced():  # a broken file's chatter; it is reported unreadable anyway
            cap = cv2.VideoCapture(p)
        try:
            yield cap
        finally:
            cap.release()


def video_frames(path: str | os.PathLike, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, RGB) of every stride-th frame; yields nothing for an unreadable video."""
    with video_reader(path) as cap:
        if not cap.isOpened():
            return
        i = 0
        while True:
            if i % stride:
                ok = cap.grab()
                frame = None
            else:
                ok, frame = cap.read()
            if not ok:
                break
            if frame is not None:
                yield i, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            i += 1


def video_info(path: str | os.PathLike) -> tuple[int, float]:
    """(frame count as the container states it, frames per second; 0.0 when unknown) of the
    video at path; (0, 0.0) when it cannot be opened."""
    with video_reader(path) as cap:
        if not cap.isOpened():
            return 0, 0.0
        return max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))), float(cap.get(cv2.CAP_PROP_FPS) or 0.0)


@contextlib.contextmanager
def _writable_folder(folder: str) -> Iterator[str]:
    """A path OpenCV can write into that is folder itself (or an ASCII link to it), or, where no
    link can be made, a private temporary folder."""
    if cv2_safe(folder):
        yield folder
        return
    private = tempfile.mkdtemp(prefix="byel-video-")
    try:
        link = os.path.join(private, "out")
        try:
            os.symlink(folder, link)
        except OSError:
            link = private
        yield link
    finally:
        shutil.rmtree(private, ignore_errors=True)  # removes the link, never the folder it points to


class _Counted:
    """A cv2.VideoWriter that counts the frames given to it."""

    def __init__(self, vw: cv2.VideoWriter):
        self.vw, self.frames = vw, 0

    def write(self, frame: np.ndarray) -> None:
        self.vw.write(frame)
        self.frames += 1

    def __getattr__(self, name):
        return getattr(self.vw, name)


@contextlib.contextmanager
def video_writer(path: str | os.PathLike, fourcc: str, fps: float, size: tuple[int, int]) -> Iterator[cv2.VideoWriter]:
    """A cv2.VideoWriter (codec ``fourcc``, ``size`` = (width, height)) whose video appears at
    path when the context ends without an error, and not at all otherwise: it is written under
    an ASCII temporary name beside path and renamed by Python. OpenCV's writer fails silently (a
    full disk: one warning per frame, a broken file, no error): the frames stored are counted
    afterwards, and a short video is one error line, never a broken file."""
    path = os.path.abspath(os.fsdecode(os.fspath(path)))
    with _writable_folder(os.path.dirname(path)) as folder:
        tmp = os.path.join(folder, f".byel-{secrets.token_hex(6)}{_suffix(path) or '.avi'}")
        vw = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*fourcc), fps, size)
        try:
            if not vw.isOpened():
                if not os.access(os.path.dirname(path), os.W_OK):
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
                raise CodecUnavailable(f"{path}: OpenCV cannot write a {fourcc} video of this type; use a .avi name")
            counted = _Counted(vw)
            with _opencv_quiet():  # a failing writer warns once per frame; checked below instead
                yield counted
            vw.release()
            stored = video_info(tmp)[0] if counted.frames else 0
            if stored < counted.frames:
                why = ("disk full (no space left on device)" if shutil.disk_usage(folder).free < 1 << 20
                       else "OpenCV's video writer failed")
                raise ByelError(f"cannot write {path}: {why}; {stored} of {counted.frames} frames were stored")
            try:
                os.replace(tmp, path)
            except OSError as e:  # written in a private folder on another file system: copied
                if e.errno != errno.EXDEV:
                    raise
                shutil.copyfile(tmp, path)
        finally:
            vw.release()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
