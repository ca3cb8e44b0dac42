"""`byel serve` under hostile load: every error is {"error": one line}; a foreign Host (DNS
rebinding) or a cross-origin POST is refused before the model runs; the line of requests waiting
for the model is bounded (503 with Retry-After at once); an over-limit body is refused from its
Content-Length before it is read; a full temp disk is the server's fault (507), not the client's.

Each test serves a real app over a real socket (uvicorn in a thread) with a stub model, so it needs
no detector and no trained checkpoint, and runs in seconds.
"""

from __future__ import annotations

import errno
import http.client
import json
import queue
import socket
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace


from byel.classes import CLASSES
from conftest import needs_serve


class Faces(list):
    size = (4, 3)


class StubModel:
    """What create_app uses of a byel.api.Model; predict blocks while ``gate`` is set and closed."""

    classes = list(CLASSES)
    checkpoint = Path("stub.ckpt")
    finder = SimpleNamespace(name="stub")

    def __init__(self, gate: threading.Event | None = None, fail: Exception | None = None):
        self.gate, self.fail, self.seen, self.entered = gate, fail, [], threading.Event()
        self.thresholds = []

    def predict(self, data, uncertain=None):
        self.seen.append(len(data))
        self.thresholds.append(uncertain)
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(120)
        if self.fail is not None:
            raise self.fail
        return Faces()


@contextmanager
def live(model, **options):
    """create_app(model, **options) served by uvicorn on a free local port; yields the port."""
    import uvicorn

    from byel.serve import create_app, listen

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(model, **options), log_level="critical", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 60
        while not server.started and time.time() < deadline:
            time.sleep(0.02)
        assert server.started
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def form(data: bytes, field: str = "file", name: str = "face.png") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def request(port: int, method: str, path: str, body=None, headers: dict | None = None):
    """(status, headers, JSON body or text) of one request; Host defaults to 127.0.0.1:port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body, {"Host": f"127.0.0.1:{port}", **(headers or {})})
        r = conn.getresponse()
        raw = r.read()
        try:
            content = json.loads(raw)
        except ValueError:
            content = raw.decode("utf-8", "replace")
        return r.status, r.headers, content
    finally:
        conn.close()


def post(port: int, data: bytes = b"\x89PNG not really", field: str = "file", headers: dict | None = None):
    body, kind = form(data, field)
    return request(port, "POST", "/api/predict", body, {"Content-Type": kind, **(headers or {})})


def is_error(content) -> bool:
    """The documented error shape: {"error": one line}, nothing else."""
    return (isinstance(content, dict) and set(content) == {"error"} and isinstance(content["error"], str)
            and content["error"] and "\n" not in content["error"])


@needs_serve
def test_every_error_is_one_error_line_never_fastapis_detail():
    model = StubModel()
    with live(model) as port:
        status, _, content = post(port, field="image")  # a wrongly named field
        assert status == 422 and is_error(content) and "'file'" in content["error"], content
        status, _, content = request(port, "POST", "/api/predict", b"x=1",
                                     {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 415 and is_error(content) and "multipart" in content["error"], content
        status, _, content = request(port, "POST", "/api/predict", b"\x89PNG", {"Content-Type": "image/png"})
        assert status == 415 and is_error(content), content
        status, _, content = request(port, "POST", "/api/predict", b"--nope\r\ngarbage",
                                     {"Content-Type": "multipart/form-data; boundary=b"})
        assert 400 <= status < 500 and is_error(content), (status, content)
        status, _, content = request(port, "GET", "/no/such/page")
        assert status == 404 and is_error(content), content
        status, headers, content = request(port, "GET", "/api/predict")
        assert status == 405 and is_error(content) and "POST" in headers["Allow"], content
        assert model.seen == []
        status, _, content = post(port)
        assert status == 200 and content["faces"] == [] and content["width"] == 4
    with live(StubModel(fail=RuntimeError("a bug\non two lines"))) as port:
        status, _, content = post(port)
        assert status == 500 and is_error(content) and "internal error" in content["error"], content


@needs_serve
def test_a_post_from_another_origin_is_refused_and_the_model_not_run():
    model = StubModel()
    with live(model) as port:
        for foreign in ({"Origin": "http://evil.example"}, {"Origin": f"http://127.0.0.1:{port + 1}"},
                        {"Origin": f"https://127.0.0.1:{port}"}, {"Origin": "null"},
                        {"Sec-Fetch-Site": "cross-site"}):
            status, _, content = post(port, headers=foreign)
            assert status == 403 and is_error(content) and "origin" in content["error"], (foreign, status, content)
        assert model.seen == []
        # the page's own request (same origin, as a browser sends it), and curl's (no Origin) are answered
        status, _, content = post(port, headers={"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"})
        assert status == 200, content
        status, _, content = post(port, headers={"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"})
        assert status == 200, content
        status, _, _ = post(port)
        assert status == 200 and len(model.seen) == 3


@needs_serve
def test_a_foreign_host_name_is_refused():
    model = StubModel()
    with live(model) as port:
        for path in ("/", "/api/info"):
            status, _, content = request(port, "GET", path, headers={"Host": f"evil.example:{port}"})
            assert status == 400 and is_error(content) and "--allow-host" in content["error"], content
        status, _, content = post(port, headers={"Host": f"rebound.evil.example:{port}",
                                                 "Origin": f"http://rebound.evil.example:{port}"})
        assert status == 400 and is_error(content) and model.seen == []
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "127.0.0.1"):
            status, _, content = request(port, "GET", "/api/info", headers={"Host": host})
            assert status == 200 and content["detector"] == "stub", (host, content)
    # listening on the whole network: the names given with --allow-host are answered, others not
    with live(model, host="0.0.0.0", allow_hosts=("mybox.lan",)) as port:
        assert request(port, "GET", "/api/info", headers={"Host": f"MyBox.lan:{port}"})[0] == 200
        assert request(port, "GET", "/api/info", headers={"Host": "192.168.1.20:8000"})[0] == 200
        assert request(port, "GET", "/api/info", headers={"Host": f"other.lan:{port}"})[0] == 400


@needs_serve
def test_the_line_for_the_model_is_bounded_and_full_means_503_at_once():
    gate = threading.Event()
    model = StubModel(gate)
    waiting = 2
    inside = waiting + 1  # one running, two waiting
    with live(model, queue=waiting) as port:
        answers: queue.Queue = queue.Queue()

        def client():
            try:
                answers.put(post(port, b"x" * 1_500_000))  # spooled to a temp file, not held in memory
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                answers.put((None, None, repr(e)))

        threads = [threading.Thread(target=client, daemon=True) for _ in range(inside + 2)]
        try:
            for t in threads:
                t.start()
            # while the model is blocked, the two over the bound are answered: busy, come back later
            for _ in range(2):
                status, headers, content = answers.get(timeout=60)
                assert status == 503 and is_error(content) and content["error"].startswith("busy"), content
                assert int(headers["Retry-After"]) > 0
            assert model.entered.wait(60) and len(model.seen) == 1  # the others wait for the lock
        finally:
            gate.set()
        for _ in range(inside):
            status, _, content = answers.get(timeout=60)
            assert status == 200, content
        for t in threads:
            t.join(30)
        assert model.seen == [1_500_000] * inside
        assert post(port)[0] == 200  # the line is free again


@needs_serve
def test_an_over_limit_body_is_refused_before_it_is_read(monkeypatch):
    import byel.serve

    model = StubModel()
    with live(model) as port, socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        # only the headers are sent: the answer must come without waiting for 100 MB
        s.sendall(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {100 * 2**20}\r\n"
                  "Content-Type: multipart/form-data; boundary=b\r\n\r\n".encode())
        head, _, rest = s.recv(65536).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413"), head
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(rest) < length:
            rest += s.recv(65536)
        content = json.loads(rest)
        assert is_error(content) and "25 MB" in content["error"]
    # a body sent in chunks, without Content-Length, is stopped at the limit while it is read
    monkeypatch.setattr(byel.serve, "MAX_UPLOAD", 1000)
    monkeypatch.setattr(byel.serve, "FORM_SLACK", 1000)
    with live(model) as port:
        body, kind = form(b"x" * 200_000)
        chunks = (body[i:i + 10_000] for i in range(0, len(body), 10_000))
        status, _, content = request(port, "POST", "/api/predict", chunks, {"Content-Type": kind})
        assert status == 413 and is_error(content), content
        status, _, content = post(port, b"x" * 1500)  # under the body limit, over the file limit
        assert status == 413 and is_error(content), content
    assert model.seen == []


@needs_serve
def test_a_full_temp_disk_is_the_servers_fault_not_the_clients(monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", full)  # where an upload over 1 MB is spooled
    model = StubModel()
    with live(model) as port:
        status, _, content = post(port, b"x" * 2_000_000)
        assert status == 507 and is_error(content), content
        assert "disk" in content["error"] and tempfile.gettempdir() in content["error"], content
        assert model.seen == []
        assert post(port, b"small")[0] == 200  # kept in memory: no temp file needed


def with_uncertain(value: str) -> tuple[bytes, str]:
    """A form with the image and the optional field 'uncertain'."""
    body, kind = form(b"\x89PNG not really")
    boundary = kind.split("boundary=")[1]
    field = f"--{boundary}\r\nContent-Disposition: form-data; name=\"uncertain\"\r\n\r\n{value}\r\n".encode()
    return field + body, kind


@needs_serve
def test_predict_takes_an_optional_uncertain_threshold_and_info_says_whether_the_model_is_shipped():
    from byel.classifier import default_checkpoint

    model = StubModel()
    with live(model, uncertain=0.3) as port:
        status, _, content = request(port, "GET", "/api/info")
        assert status == 200 and content["shipped"] is False and content["uncertain"] == 0.3, content
        assert post(port)[0] == 200  # no field: the server's --uncertain
        for value in ("0.6", ""):
            body, kind = with_uncertain(value)
            assert request(port, "POST", "/api/predict", body, {"Content-Type": kind})[0] == 200
        for value in ("2", "0", "nan", "lots"):
            body, kind = with_uncertain(value)
            status, _, content = request(port, "POST", "/api/predict", body, {"Content-Type": kind})
            assert status == 400 and is_error(content) and "'uncertain'" in content["error"], (value, content)
        assert model.thresholds == [0.3, 0.6, 0.3]
    try:
        shipped = default_checkpoint()
    except Exception:  # no shipped model in this checkout
        return
    model = StubModel()
    model.checkpoint = shipped
    with live(model) as port:
        content = request(port, "GET", "/api/info")[2]
        assert content["shipped"] is True and content["uncertain"] is None, content
