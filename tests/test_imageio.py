"""byel.imageio, the one image decoder: the pixel limit read from the header before decoding
(a header bomb and a small PNG of 20,000 x 20,000 through decode, the loaders, `byel predict`,
`byel data inspect` and `byel serve`), truncated JPEGs with an end marker appended, and Pillow
images of any mode (16-bit) decoded by the rules files are decoded by."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import byel
from byel import imageio
from byel.cli import main
from byel.data import sources
from byel.errors import ByelError
from conftest import FER_SAMPLE, PHOTOS, make_checkpoints, needs_detector

GROUP = PHOTOS / "group.jpg"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def header_bomb(side: int = 70_000) -> bytes:
    """A real 2 x 2 PNG whose IHDR (and its CRC) is patched to claim side x side pixels."""
    ok, buf = cv2.imencode(".png", np.full((2, 2), 200, np.uint8))
    png = bytearray(buf.tobytes())
    assert ok and png[12:16] == b"IHDR"
    png[16:24] = struct.pack(">II", side, side)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


def blank_png(side: int = 20_000) -> bytes:
    """A valid, all-black 1-bit PNG of side x side pixels, tens of KB (OpenCV would decode it to
    side² x 3 bytes)."""
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then the packed bits
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row * 1000) for _ in range(side // 1000)) + z.compress(row * (side % 1000)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def truncated_jpeg(data: bytes | None = None) -> bytes:
    """A JPEG (group.jpg) cut at 60 %, with the end marker (FF D9) appended."""
    data = data or GROUP.read_bytes()
    return data[: len(data) * 6 // 10] + b"\xff\xd9"


def with_thumbnail(jpeg: bytes) -> bytes:
    """The JPEG with a small JPEG inside a segment before its frame, as cameras store an EXIF
    thumbnail (here in a comment segment, which decoders skip alike)."""
    ok, thumb = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))
    segment = b"\xff\xfe" + struct.pack(">H", 2 + len(thumb)) + thumb.tobytes()
    return jpeg[:2] + segment + jpeg[2:]


@pytest.fixture(scope="module")
def big() -> dict[str, bytes]:
    return {"bomb.png": header_bomb(), "blank.png": blank_png()}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("imageio"))[1]


def _no_decoding(*_a, **_k):
    raise AssertionError("an image over the pixel limit was handed to a decoder")


# --------------------------------------------------------------------------- the pixel limit


def test_images_over_the_pixel_limit_are_refused_from_the_header(big, monkeypatch):
    assert len(big["bomb.png"]) < 100 and len(big["blank.png"]) < 400_000
    assert cv2.imdecode(np.frombuffer(blank_png(2000), np.uint8), cv2.IMREAD_GRAYSCALE).shape == (2000, 2000)
    monkeypatch.setattr(imageio.cv2, "imdecode", _no_decoding)  # the header decides, nothing is decoded
    monkeypatch.setattr(imageio.Image.Image, "load", _no_decoding)
    for name, data in big.items():
        with pytest.raises(imageio.Unusable) as e:
            imageio.decode(data)
        assert e.value.reason == imageio.TOO_LARGE == "too_large", name
        assert "megapixels" in e.value.detail and imageio.MAX_PIXELS_ENV in e.value.detail


def test_the_limit_is_configurable(tmp_path, monkeypatch):
    png = tmp_path / "small.png"
    cv2.imwrite(str(png), np.zeros((30, 40, 3), np.uint8))
    assert imageio.max_pixels() == imageio.MAX_IMAGE_PIXELS == 50_000_000
    monkeypatch.setenv(imageio.MAX_PIXELS_ENV, "1000")
    with pytest.raises(imageio.Unusable, match="40 x 30 pixels"):
        imageio.read(png)
    jpg = tmp_path / "small.jpg"
    cv2.imwrite(str(jpg), np.zeros((30, 40, 3), np.uint8))
    with pytest.raises(imageio.Unusable, match="too_large"):  # the size from a JPEG's frame header
        imageio.read(jpg)
    monkeypatch.setenv(imageio.MAX_PIXELS_ENV, "0")  # no limit
    assert imageio.read(png).shape == (30, 40, 3)
    monkeypatch.setenv(imageio.MAX_PIXELS_ENV, "lots")
    with pytest.raises(ByelError, match=imageio.MAX_PIXELS_ENV):
        imageio.read(png)


def test_loaders_skip_and_list_images_over_the_limit(tmp_path, big):
    root = tmp_path / "data"
    for c in ("happy", "sad"):
        (root / c).mkdir(parents=True)
        for f in sorted((FER_SAMPLE / c).glob("*.jpg"))[:2]:
            (root / c / f.name).write_bytes(f.read_bytes())
    for name, data in big.items():
        (root / "happy" / name).write_bytes(data)
    s = sources.load(str(root), 32, cache=False, progress=False)
    assert len(s) == 4 and s.dropped == {"too_large": 2}
    assert sorted(Path(w).name for w, r in s.problems if r.startswith("too_large: ")) == ["blank.png", "bomb.png"]

    assert main(["data", "inspect", str(root), "--out", str(tmp_path / "sheet.png")]) == 0
    log = (tmp_path / "sheet-problems.txt").read_text()
    assert "too_large" in log and "bomb.png" in log and "blank.png" in log


def test_predict_on_a_folder_with_a_bomb_writes_its_csv_and_lists_the_bomb(tmp_path, ckpt, big, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "group.jpg").write_bytes(GROUP.read_bytes())
    face = next((FER_SAMPLE / "happy").glob("*.jpg"))
    (folder / "face.jpg").write_bytes(face.read_bytes())
    for name, data in big.items():
        (folder / name).write_bytes(data)
    out = tmp_path / "pred.csv"
    rc = main(["predict", str(folder), "--checkpoint", str(ckpt), "--out", str(out), "--no-detect", "--no-progress"])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    rows = out.read_text().splitlines()
    assert len(rows) == 3 and {Path(r.split(",")[0]).name for r in rows[1:]} == {"group.jpg", "face.jpg"}
    assert "2 unreadable" in printed.out and "bomb.png" in printed.out and "blank.png" in printed.out

    from byel.predict import predict

    r = predict(ckpt, [str(folder)], tmp_path / "again.csv", detect=False, progress=False)
    why = {Path(w).name: reason for w, reason in r["problems"]}
    assert "too_large" in why["bomb.png"] and "too_large" in why["blank.png"] and r["images"] == 2


def _post(app, filename: str, data: bytes) -> tuple[int, dict]:
    """POST one multipart upload to /api/predict of an ASGI app, in process (no server, no httpx)."""
    boundary = "byel-test-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/api/predict", "raw_path": b"/api/predict", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-length", str(len(body)).encode()),
                         (b"content-type", f"multipart/form-data; boundary={boundary}".encode())]}
    sent, chunks = [], [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if chunks:
            return chunks.pop()
        await asyncio.sleep(3600)  # the client waits for the answer

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_serve_answers_413_for_an_image_over_the_limit(ckpt, big):
    pytest.importorskip("fastapi")
    pytest.importorskip("python_multipart")
    from byel.serve import create_app

    app = create_app(byel.load(ckpt, detect=False))
    for name, data in big.items():
        status, body = _post(app, name, data)
        assert status == 413 and list(body) == ["error"], (name, body)
        assert name in body["error"] and "too large" in body["error"] and "\n" not in body["error"]
    status, body = _post(app, "cut.jpg", truncated_jpeg())
    assert status == 400 and "cut.jpg" in body["error"]
    status, body = _post(app, "face.jpg", next((FER_SAMPLE / "happy").glob("*.jpg")).read_bytes())
    assert status == 200 and len(body["faces"]) == 1


# --------------------------------------------------------------------------- truncated JPEGs


def test_truncated_jpeg_with_an_end_marker_is_unusable_and_silent(tmp_path, capfd):
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(truncated_jpeg())
    assert cv2.imdecode(np.fromfile(str(bad), np.uint8), cv2.IMREAD_COLOR) is not None  # libjpeg takes it
    capfd.readouterr()
    with pytest.raises(imageio.Unusable) as e:
        imageio.read(bad)
    assert e.value.reason == "corrupt" and "truncated" in e.value.detail
    root = tmp_path / "data"
    (root / "happy").mkdir(parents=True)
    (root / "happy" / "cut.jpg").write_bytes(bad.read_bytes())
    face = next((FER_SAMPLE / "happy").glob("*.jpg"))
    (root / "happy" / face.name).write_bytes(face.read_bytes())
    s = sources.load(str(root), 32, cache=False, progress=False)
    assert len(s) == 1 and s.dropped == {"corrupt": 1}
    assert "Corrupt JPEG" not in capfd.readouterr().err  # libjpeg's warning is not printed either
    camera = with_thumbnail(GROUP.read_bytes())  # a thumbnail's own scan does not hide the cut
    assert np.array_equal(imageio.decode(camera), imageio.read(GROUP))
    with pytest.raises(imageio.Unusable, match="truncated"):
        imageio.decode(truncated_jpeg(camera))


def test_complete_jpegs_decode_as_before(tmp_path):
    """Every fixture JPEG, a progressive one, one with data after its end marker: the pixels
    OpenCV (or, for progressive files, Pillow) gives, untouched by the truncation check."""
    files = sorted(FER_SAMPLE.rglob("*.jpg")) + [GROUP]
    for f in files:
        ref = cv2.cvtColor(cv2.imdecode(np.fromfile(str(f), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert np.array_equal(imageio.read(f), ref), f
    buf = io.BytesIO()
    Image.open(GROUP).save(buf, "JPEG", progressive=True, quality=90)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        assert np.array_equal(imageio.decode(buf.getvalue()), np.asarray(im.convert("RGB")))
    trailing = GROUP.read_bytes() + b"camera trailer" * 10
    assert imageio.decode(trailing).shape == (400, 640, 3)
    cut_without_marker = GROUP.read_bytes()[:30_000]
    with pytest.raises(imageio.Unusable, match="truncated"):
        imageio.decode(cut_without_marker)


# --------------------------------------------------------------------------- Pillow images


def test_pillow_images_follow_the_rules_of_files(tmp_path):
    grey = cv2.imread(str(GROUP), cv2.IMREAD_GRAYSCALE)
    png16 = tmp_path / "group16.png"
    cv2.imwrite(str(png16), grey.astype(np.uint16) * 257)
    by_path = imageio.read(png16)
    assert np.array_equal(by_path[..., 0], grey)
    with Image.open(png16) as im:
        assert im.mode.startswith("I")  # 16-bit: convert("RGB") would clip it to white
        assert np.array_equal(imageio.from_pil(im), by_path)
    rgb = cv2.cvtColor(cv2.imread(str(GROUP)), cv2.COLOR_BGR2RGB)
    for mode in ("RGBA", "LA", "P", "L", "CMYK"):
        image = Image.fromarray(rgb).convert(mode)
        file = tmp_path / f"g-{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
        image.save(file)
        out = imageio.from_pil(image)
        assert out.shape == rgb.shape and out.dtype == np.uint8, mode
        if mode != "CMYK":  # the file (OpenCV) and the image (Pillow) agree
            assert np.abs(out.astype(int) - imageio.read(file).astype(int)).max() <= 1, mode


@needs_detector
def test_a_16_bit_pil_image_finds_the_faces_its_file_does(tmp_path, ckpt):
    png16 = tmp_path / "group16.png"
    cv2.imwrite(str(png16), cv2.imread(str(GROUP), cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 257)
    model = byel.load(ckpt)
    by_path = model.predict(png16)
    with Image.open(png16) as im:
        by_image = model.predict(im)
    assert len(by_path) >= 3 and [f.box for f in by_image] == [f.box for f in by_path]
