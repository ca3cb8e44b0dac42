"""Writing images: encoded in memory by OpenCV, written by Python, so a failed write (full
disk, no permission) is an OSError naming the file, not a libpng message on stderr and a False."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_image(path: str | Path, pixels: np.ndarray, params: tuple | list = ()) -> Path:
    """Write BGR (or single-channel grey) uint8 pixels to path, encoded by its suffix (PNG for an
    unknown one)."""
    path = Path(path)
    suffix = path.suffix.lower() if path.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"} else ".png"
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(pixels), list(params))
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {pixels.shape} as {suffix}")
    try:
        with open(path, "wb") as f:
            f.write(buf.tobytes())
    except OSError as e:
        if e.filename is None:  # a write (not the open) failed: say which file
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    return path
