"""The vendored MediaPipe Face Landmarker bundle: find it, check it, open its three TFLite models."""

from __future__ import annotations

import hashlib
import io
import os
import sys
import threading
import warnings
import zipfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from byel.errors import ByelError
from byel.landmarker import SHA256

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "face_landmarker" / "face_landmarker.task"
MEMBERS = ("face_detector.tflite", "face_landmarks_detector.tflite", "face_blendshapes.tflite")


def model_path(path: str | Path | None = None) -> Path:
    return Path(path).expanduser() if path else DEFAULT_MODEL


@lru_cache(maxsize=4)
def read_models(path: str | Path | None = None) -> dict[str, bytes]:
    """The three .tflite files of a face_landmarker.task, by name. Raises ByelError (one line,
    naming the file) when it is missing, is not the expected bundle, or is damaged."""
    p = model_path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ByelError(f"face landmarker model {p} cannot be read ({e.strerror or e}); "
                        "reinstall byel (the model ships inside it)") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise ByelError(f"face landmarker model {p} is corrupt or not MediaPipe's face_landmarker.task "
                        f"v2 (sha256 {digest[:12]}…, expected {SHA256[:12]}…); reinstall byel")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {name: z.read(name) for name in MEMBERS}


def interpreter(content: bytes, threads: int = 1, preserve_all_tensors: bool = False):
    """A TFLite interpreter (ai-edge-litert) over a model held in memory, tensors allocated.
    ``preserve_all_tensors``: keep every intermediate tensor readable after ``invoke`` (TFLite's
    ``experimental_preserve_all_tensors``; more memory, and about 1.4x the time of the landmark
    model: byel.faces.activations uses it, nothing else)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ByelError("face geometry needs Google's TFLite runtime: pip install ai-edge-litert "
                        "(wheels for Linux, Windows and Apple-silicon macOS; none for Intel macOS)") from None
    with _native_stderr_hidden(), warnings.catch_warnings():
        # its "intended for debugging purposes only" warning: byel reads one tensor on purpose
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
        it = Interpreter(model_content=content, num_threads=threads,
                         **({"experimental_preserve_all_tensors": True} if preserve_all_tensors else {}))
        it.allocate_tensors()
    return it


_STDERR_LOCK = threading.Lock()  # one hider at a time: interpreters are made in several threads


@contextmanager
def _native_stderr_hidden():
    """TFLite's C++ side prints 'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.' on file
    descriptor 2 for every interpreter, into every `byel predict`; Python errors still raise.
    Serialised: two threads hiding at once would each save the other's /dev/null, and stderr
    would stay silenced for the rest of the process."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured): nothing to hide
        yield
        return
    with _STDERR_LOCK:
        sys.stderr.flush()
        saved = os.dup(fd)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), fd)
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
