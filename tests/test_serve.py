"""`byel serve`: the page in a real headless browser (Debian's chromium driven by Playwright),
the JSON endpoint, and one-line errors.

The browser test skips, with its reason, where /usr/bin/chromium or Playwright is missing; it
never downloads a browser. BYEL_SERVE_SCREENSHOT=PATH also saves a screenshot of the page with its
boxes (docs/serve.png is made so, with BYEL_SERVE_CHECKPOINT=a trained checkpoint).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from byel.classes import CLASSES
from byel.errors import ByelError
from byel.serve import is_shipped, require_extra
from conftest import PHOTOS, make_checkpoints, needs_detector, needs_serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 # a fake camera (a moving test pattern) that the page may use without asking
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _served_classes() -> list[str]:
    """The class names of the served model: the smoke model's six, or BYEL_SERVE_CHECKPOINT's own."""
    ckpt = os.environ.get("BYEL_SERVE_CHECKPOINT")
    if not ckpt:
        return list(CLASSES)
    from byel.checkpoint import load_checkpoint

    return list(load_checkpoint(ckpt)["byel"]["classes"])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`byel serve --port 0` in a subprocess with the untrained smoke model; yields its URL."""
    ckpt = os.environ.get("BYEL_SERVE_CHECKPOINT") or str(make_checkpoints(tmp_path_factory.mktemp("serve"))[1])
    proc = subprocess.Popen([sys.executable, "-m", "byel", "serve", "--checkpoint", ckpt, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        deadline = time.time() + 240
        while time.time() < deadline and "http://" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"byel serve exited with {proc.returncode}")
        url = line[line.index("http://"):].split()[0]
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _post(url: str, name: str, data: bytes) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "api/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.slow
@needs_serve
@needs_detector
def test_predict_endpoint_answers_json_and_one_line_errors(server):
    status, body = _post(server, "group.jpg", (PHOTOS / "group.jpg").read_bytes())
    assert status == 200 and (body["width"], body["height"]) == (640, 400) and body["classes"] == _served_classes()
    assert len(body["faces"]) == 5
    for f in body["faces"]:
        assert f["label"] in body["classes"] and abs(sum(f["probabilities"].values()) - 1) < 1e-4 and len(f["box"]) == 4
    status, body = _post(server, "notes.txt", b"not an image at all")
    assert status == 400 and "notes.txt" in body["error"] and "\n" not in body["error"]


needs_browser = pytest.mark.skipif(
    not Path(CHROMIUM).exists() or not _have("playwright"),
    reason=f"no browser: {CHROMIUM} or Playwright for Python (pip install playwright) is absent")


@pytest.fixture
def browser_page(server):
    """(page, outside): a page of the server in headless chromium, fake webcam allowed, and the URLs
    it fetched from elsewhere (there must be none: no CDN). The page's model line is loaded."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 760}, accept_downloads=True)
            outside = []
            page.on("request", lambda r: None if r.url.startswith(server) or r.url.startswith(("blob:", "data:"))
                    else outside.append(r.url))
            page.goto(server)
            page.wait_for_function("document.getElementById('model').textContent.includes('classes')")
            yield page, outside
        finally:
            browser.close()


def _wait_faces(page, n: int, label: str = "") -> None:
    page.wait_for_function(f"document.querySelectorAll('.face-box').length === {n} && "
                           f"/found/.test(document.getElementById('status').textContent)", timeout=120_000)


@pytest.mark.slow
@needs_serve
@needs_detector
@needs_browser
def test_page_in_a_browser_shows_labelled_boxes(browser_page):
    page, outside = browser_page
    # what the page is and how far to trust it: the shipped model's accuracy, another model's none
    about = page.inner_text("#about")
    ckpt = os.environ.get("BYEL_SERVE_CHECKPOINT")
    if ckpt and is_shipped(ckpt):
        assert "0.41" in about and "4 times in 10" in about and "happiness" in about, about
    else:  # the smoke model
        assert "a model trained with byel" in about and "0.41" not in about, about
    assert "expression" in about and "rough guesses" in about, about
    page.set_input_files("#file", str(PHOTOS / "group.jpg"))
    page.wait_for_function("document.querySelectorAll('.face-box').length === 5", timeout=120_000)
    boxes = page.locator(".face-box")
    labels = [boxes.nth(i).get_attribute("data-label") for i in range(5)]
    texts = [boxes.nth(i).inner_text() for i in range(5)]
    assert all(lab in _served_classes() for lab in labels), labels
    assert all(lab in t for lab, t in zip(labels, texts)), texts
    assert all(boxes.nth(i).bounding_box()["width"] > 20 for i in range(5))  # drawn, visible
    assert page.locator(".chart").count() == 5 and page.locator(".chart .bar-row").count() == 5 * len(_served_classes())
    assert "5 faces found" in page.inner_text("#status")
    shot = os.environ.get("BYEL_SERVE_SCREENSHOT")
    if shot:
        page.screenshot(path=shot, full_page=True)

    # the webcam path: a snapshot of chromium's fake camera goes to the same endpoint
    page.click("#camera")
    page.wait_for_function("!document.getElementById('snap').disabled && "
                           "document.getElementById('video').videoWidth > 0", timeout=60_000)
    page.click("#snap")
    page.wait_for_function("/found/.test(document.getElementById('status').textContent)", timeout=120_000)
    assert "Error" not in page.inner_text("#status")
    assert page.evaluate("document.getElementById('photo').src").startswith("data:image/jpeg")
    assert not outside, outside


# A File of the group photo inside the page, in a DataTransfer (what a drop or a paste carries).
_TRANSFER = """(b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], "group.jpg", { type: "image/jpeg" }));
  return dt;
}"""


@pytest.mark.slow
@needs_serve
@needs_detector
@needs_browser
def test_page_takes_a_dropped_or_pasted_photo(browser_page):
    page, outside = browser_page
    b64 = base64.b64encode((PHOTOS / "group.jpg").read_bytes()).decode()
    page.evaluate(f"""(b64) => {{ const dt = ({_TRANSFER})(b64);
        document.getElementById('main').dispatchEvent(new DragEvent('drop', {{ dataTransfer: dt, bubbles: true,
                                                                             cancelable: true }})); }}""", b64)
    _wait_faces(page, 5)
    assert page.evaluate("document.getElementById('photo').src").startswith("blob:")
    page.evaluate("document.getElementById('charts').replaceChildren(); "
                  "document.querySelectorAll('.face-box').forEach((b) => b.remove()); "
                  "document.getElementById('status').textContent = ''")
    page.evaluate(f"""(b64) => {{ const dt = ({_TRANSFER})(b64);
        document.dispatchEvent(new ClipboardEvent('paste', {{ clipboardData: dt, bubbles: true, cancelable: true }})); }}""",
                  b64)
    _wait_faces(page, 5)
    assert page.locator(".chart").count() == 5 and "Error" not in page.inner_text("#status")
    assert not outside, outside


@pytest.mark.slow
@needs_serve
@needs_detector
@needs_browser
def test_page_downloads_csv_json_png_and_labels_uncertain_faces(browser_page, tmp_path):
    page, outside = browser_page
    assert page.is_disabled("#dl-csv") and page.is_disabled("#dl-json") and page.is_disabled("#dl-png")
    page.set_input_files("#file", str(PHOTOS / "group.jpg"))
    _wait_faces(page, 5)

    def slide(value: float) -> None:
        page.evaluate("(v) => { const s = document.getElementById('uncertain'); s.value = v; "
                      "s.dispatchEvent(new Event('input', { bubbles: true })); }", value)

    # the threshold: at 1 every face is uncertain (grey), back at 0 (off) each gets its class again
    slide(1)
    assert [page.locator(".face-box").nth(i).get_attribute("data-label") for i in range(5)] == ["uncertain"] * 5
    assert page.inner_text("#uncertain-value") == "1.00"

    def download(button: str) -> Path:
        with page.expect_download() as info:
            page.click(button)
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(path)
        assert path.stat().st_size > 0
        return path

    data = json.loads(download("#dl-json").read_text())  # as shown: uncertain under the threshold
    assert data["source"] == "group.jpg" and (data["width"], data["height"]) == (640, 400) and data["uncertain"] == 1
    assert len(data["faces"]) == 5 and {f["label"] for f in data["faces"]} == {"uncertain"}
    slide(0)
    labels = [page.locator(".face-box").nth(i).get_attribute("data-label") for i in range(5)]
    assert all(lab in _served_classes() for lab in labels) and page.inner_text("#uncertain-value") == "off"

    csv_path = download("#dl-csv")
    assert csv_path.name == "byel-group.csv"
    import csv

    rows = list(csv.DictReader(csv_path.open(newline="")))
    assert len(rows) == 5 and [r["predicted"] for r in rows] == labels
    for r in rows:
        assert abs(sum(float(r[f"p_{c}"]) for c in _served_classes()) - 1) < 1e-3 and int(r["w"]) > 0

    from PIL import Image

    with Image.open(download("#dl-png")) as im:
        assert im.format == "PNG" and im.size == (640, 400)
    assert not outside, outside


@pytest.mark.slow
@needs_serve
@needs_detector
@needs_browser
def test_page_live_webcam_mode(browser_page):
    page, outside = browser_page
    answered = []
    page.on("response", lambda r: answered.append(r.status) if r.url.endswith("/api/predict") else None)
    assert page.is_disabled("#live")
    page.click("#camera")
    page.wait_for_function("!document.getElementById('live').disabled && "
                           "document.getElementById('video').videoWidth > 0", timeout=60_000)
    page.click("#live")
    assert page.get_attribute("#live", "aria-pressed") == "true"
    page.wait_for_function("Number(document.getElementById('live').dataset.frames) >= 2", timeout=120_000)
    page.click("#live")  # off
    assert page.get_attribute("#live", "aria-pressed") == "false"
    frames = int(page.get_attribute("#live", "data-frames"))
    page.wait_for_timeout(1500)  # nothing more is sent once off (at most the request in flight ends)
    assert int(page.get_attribute("#live", "data-frames")) == frames
    assert len(answered) >= 2 and set(answered) == {200}, answered
    assert page.evaluate("document.getElementById('photo').src").startswith("data:image/jpeg")
    assert "Error" not in page.inner_text("#status")
    assert not outside, outside


def test_missing_extra_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import fails
    with pytest.raises(ByelError, match=r"needs uvicorn: pip install 'byel\[serve\]'"):
        require_extra()


@needs_serve
def test_serve_without_a_shipped_model_or_with_a_busy_port_is_one_line(tmp_path, capsys, monkeypatch):
    import byel.classifier
    from byel.cli import main

    monkeypatch.setattr(byel.classifier, "DEFAULT_MODEL_DIR", tmp_path / "no_default_model")
    assert main(["serve", "--port", "0"]) == 2
    assert capsys.readouterr().err.strip() == "byel: error: no default model shipped yet; pass a checkpoint"
    from byel.serve import listen

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(ByelError, match="port is in use"):
            listen("127.0.0.1", port)
