"""Image files in and out, one door for the whole package.

Decoding: ``decode(data)`` (the bytes of a file) and ``read(path)`` return full-resolution uint8
RGB (H, W, 3) of any colour mode (grey, palette, alpha, 16-bit: scaled to 8 bits as OpenCV
does, EXIF-rotated), or raise one ``Unusable(reason, detail)`` whose ``reason`` is the key files
are counted under where they are skipped: ``unreadable``, ``zero_byte``, ``corrupt`` (includes
a truncated JPEG, with or without an end marker) or ``too_large``. ``from_pil`` applies the
same rules to an image already opened with Pillow. ``fit(img, size)``: the loader's resize to
size x size.

The size an image claims in its header is checked before any pixel is decoded: over
``max_pixels()`` (``MAX_IMAGE_PIXELS``, 50 megapixels, or the environment variable
``BYEL_MAX_IMAGE_PIXELS``; 0 turns the check off) it is ``too_large``, so a small file that
expands to gigabytes (a "decompression bomb") costs nothing.

Writing: ``write_image`` encodes in memory with OpenCV and writes with Python, so a failed
write (full disk, no permission) is an OSError naming the file, not a libpng message on stderr
and a False. ``io_workers()``: the number of threads for decoding and other file work.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from byel.errors import ByelError

MAX_IMAGE_PIXELS = 50_000_000  # default limit on width x height; BYEL_MAX_IMAGE_PIXELS overrides
MAX_PIXELS_ENV = "BYEL_MAX_IMAGE_PIXELS"
TOO_LARGE = "too_large"

_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
# SOF markers (baseline, progressive, lossless, arithmetic...): the frame header with the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Zero bytes standing in for a JPEG's end marker (see _decode_jpeg): more than libjpeg's bit
# buffer reads ahead (57 bits on 64-bit builds).
_JPEG_TAIL = bytes(16)


class Unusable(Exception):
    """An image file that cannot be used; ``reason`` is the key it is counted under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


# --------------------------------------------------------------------------- decoding


def max_pixels() -> int:
    """The largest width x height decoded: $BYEL_MAX_IMAGE_PIXELS, else MAX_IMAGE_PIXELS; 0: no limit."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not raw:
        return MAX_IMAGE_PIXELS
    if not raw.isdigit():
        raise ByelError(f"{MAX_PIXELS_ENV} must be a whole number of pixels (0: no limit), got {raw!r}")
    return int(raw)


def read(path: str | os.PathLike) -> np.ndarray:
    """uint8 RGB (H, W, 3) of an image file. Raises Unusable."""
    try:
        # np.fromfile + imdecode: cv2.imread fails on paths it cannot encode
        data = np.fromfile(os.fspath(path), np.uint8)
    except OSError as e:
        raise Unusable("unreadable", e.strerror or str(e)) from None
    return decode(data)


def decode(data: np.ndarray | bytes | bytearray | memoryview) -> np.ndarray:
    """uint8 RGB (H, W, 3) of an encoded image (the bytes of a file). Raises Unusable."""
    if not isinstance(data, np.ndarray):
        data = np.frombuffer(data, np.uint8)
    if data.size == 0:
        raise Unusable("zero_byte")
    limit = max_pixels()
    claimed = _claimed_size(data)
    if claimed is not None:
        _check_pixels(*claimed, limit)
    if data[:2].tobytes() == _JPEG_SOI:
        img = _decode_jpeg(data)
    else:
        img = _decode_cv2(data)
        if img is None:  # a format or a variant OpenCV does not read (e.g. some TIFF, GIF)
            img = _decode_pillow(data)
    if claimed is None:  # a header only OpenCV could read
        _check_pixels(img.shape[1], img.shape[0], limit)
    return img


def from_pil(image: Image.Image) -> np.ndarray:
    """uint8 RGB (H, W, 3) of a Pillow image by the rules files are decoded by: EXIF-rotated,
    16-bit scaled to 8 bits (not clipped), alpha dropped, palettes applied."""
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        grey = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        # 16-bit as OpenCV reads 16-bit files (the high byte); mode I (32-bit) holds 16-bit PNGs
        # in older Pillow, and 8-bit values where it was made from an 8-bit image
        if mode != "I" or grey.max(initial=0) > 255:
            grey >>= 8
        return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
    if mode == "F":  # float: as Pillow makes it 8-bit (clipped to 0-255)
        image = image.convert("L")
    try:
        return np.asarray(image.convert("RGB"))
    except ValueError as e:  # a mode Pillow cannot convert
        raise Unusable("corrupt", f"colour mode {mode}: {e}") from None


def fit(img: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size: area averaging when shrinking (no aliasing), bilinear when growing."""
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img
    interp = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def _claimed_size(data: np.ndarray) -> tuple[int, int] | None:
    """(width, height) an encoded image claims in its header, read without decoding it; None
    when no reader recognises the header (OpenCV may still decode it)."""
    start = data[:64].tobytes()
    if start.startswith(_PNG_SIGNATURE) and start[12:16] == b"IHDR":
        return struct.unpack(">II", start[16:24])
    if start.startswith(_JPEG_SOI):
        frame = _jpeg_frame(data)
        if frame is not None:
            return frame[1:]
    try:
        with warnings.catch_warnings():  # Pillow's own bomb warning: the limit here is byel's
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data.tobytes())) as im:  # reads the header only
                return im.size
    except Image.DecompressionBombError as e:  # over twice Pillow's limit: no reader of ours goes on
        raise Unusable(TOO_LARGE, str(e).split(",")[0]) from None
    except Exception:  # not an image Pillow knows (OpenCV may still read it)
        return None


def _jpeg_frame(data: np.ndarray) -> tuple[int, int, int] | None:
    """(offset, width, height) of a JPEG's frame header, walking its marker segments from the
    start (an EXIF thumbnail inside an APP1 segment is skipped with it)."""
    buf, i, n = memoryview(data), 2, data.size  # a memoryview indexes to ints, fast
    while i + 9 < n:
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", buf[i + 5:i + 9])
            return i, width, height
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or a scan before any frame header
            return None
        i += 2 + (buf[i + 2] << 8 | buf[i + 3])
    return None


def _check_pixels(width: int, height: int, limit: int) -> None:
    if limit and width * height > limit:
        raise Unusable(TOO_LARGE, f"{width} x {height} pixels ({width * height / 1e6:,.0f} megapixels) "
                                  f"is over the limit of {limit / 1e6:g} megapixels "
                                  f"(set {MAX_PIXELS_ENV} to allow more)")


def _decode_cv2(data: np.ndarray) -> np.ndarray | None:
    """OpenCV's decoding (grey/RGBA/16-bit -> 8-bit, EXIF-rotated) as RGB; None when it cannot."""
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as e:  # e.g. a size over OpenCV's own limit, in a header only OpenCV reads
        if "pixels" in str(e).lower():
            raise Unusable(TOO_LARGE, "over OpenCV's limit on pixels per image") from None
        raise Unusable("corrupt", "OpenCV cannot decode it") from None
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _decode_jpeg(data: np.ndarray) -> np.ndarray:
    """A JPEG, refusing one whose image data ends before the image does.

    libjpeg decodes a truncated JPEG anyway, filling the rest with grey, and a truncated file
    with an end marker appended only earns a "Corrupt JPEG data: premature end of data segment"
    warning on stderr, which no Python binding reports. So the end marker is replaced by zero
    bytes: a complete single-scan JPEG decodes to the same pixels (the decoder stops after the
    last block, before the zeros), while a truncated one runs out of data and fails, silently.
    Files not ending in the marker (truncated, or with data after it) go to Pillow, which
    refuses truncation. Multi-scan (progressive) JPEGs need the marker to finish: decoded as
    they are, by Pillow, which prints nothing."""
    if data[-2:].tobytes() != _JPEG_EOI:
        return _decode_pillow(data)
    img = _decode_cv2(np.concatenate([data[:-2], np.frombuffer(_JPEG_TAIL, np.uint8)]))
    if img is not None:
        return img
    if _jpeg_scans(data) > 1:
        return _decode_pillow(data)
    raise Unusable("corrupt", "truncated JPEG (the image data ends early)")


def _jpeg_scans(data: np.ndarray) -> int:
    """Start-of-scan markers after a JPEG's frame header (those of an EXIF thumbnail come before)."""
    frame = _jpeg_frame(data)
    body = data[frame[0] if frame else 0:]
    return int(np.count_nonzero((body[:-1] == 0xFF) & (body[1:] == 0xDA)))


def _decode_pillow(data: np.ndarray) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit is byel's
            with Image.open(io.BytesIO(data.tobytes())) as src:
                src.load()
                return from_pil(src)
    except Unusable:
        raise
    except Image.DecompressionBombError as e:
        raise Unusable(TOO_LARGE, str(e)) from None
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError... for bad files
        raise Unusable("corrupt", str(e) or type(e).__name__) from None


# --------------------------------------------------------------------------- writing


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


# --------------------------------------------------------------------------- threads


def io_workers() -> int:
    """Threads for decoding and other file work: one per available core, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))
