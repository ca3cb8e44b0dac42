"""`byel serve`: a local web page that reads the expressions of the faces in a photo.

Choose, drop or paste a photo (or, where the browser allows it, take a webcam snapshot or run the
webcam live) and the page shows the image with a box and label per face and a bar chart of each
face's class probabilities; an "uncertain" slider and downloads (CSV, JSON, annotated PNG) work in
the browser. The page (byel/assets/web/index.html) is one static file with its script inline:
nothing is fetched from elsewhere. The app (FastAPI, run by uvicorn; ``pip install 'byel[serve]'``):

- ``GET /``: the page;
- ``GET /api/info``: ``{"classes": [...], "checkpoint": name, "detector": name, "shipped": whether
  it is the model shipped with byel, "uncertain": the server's threshold or null}``;
- ``POST /api/predict`` (multipart field ``file``: an encoded image; optional field ``uncertain``: a
  threshold for this request, instead of the server's --uncertain): ``{"width", "height",
  "classes", "faces": [{"box": [x, y, w, h], "label", "probabilities": {class: p}}]}`` (with the
  landmarker also "score", "pose", "blendshapes": byel.api.Face.to_dict), faces left to right.

Every error, whatever its cause, is ``{"error": one line}`` with its status: 400 a file that is not
a readable image, a broken multipart form, an ``uncertain`` field that is not a number in (0, 1], or
a ``Host`` that is not this server's (DNS rebinding); 415 a request that is not multipart/form-data; 403 a POST from a page of another origin (any site the user visits could
otherwise post here); 404/405 no such page or method; 413 a body over MAX_UPLOAD (refused from its
``Content-Length`` before it is read); 422 no ``file`` field; 503 (with ``Retry-After``) when
``queue`` requests are already waiting for the model; 507 the server's temp disk is full; 500 a
bug (the traceback goes to the server's log).

Faces are found and classified by the Python API (byel.api), the same code as ``byel predict``.
"""

# No `from __future__ import annotations`: FastAPI reads the route's annotations (Request,
# imported inside create_app) as objects.
import errno
import ipaddress
import socket
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

from byel.errors import ByelError, os_reason

PAGE = Path(__file__).parent / "assets" / "web" / "index.html"
MAX_UPLOAD = 25 * 1024 * 1024  # bytes
FORM_SLACK = 64 * 1024  # bytes a multipart body may carry around its file (boundaries, part headers)
QUEUE = 4  # requests that may wait for the model while it runs; more get 503 at once
RETRY_AFTER_S = 2  # what a 503 tells a client to wait: about one prediction
LOCAL_NAMES = ("localhost",)  # IP literals are always allowed: DNS rebinding needs a name
ANY_ADDRESS = ("0.0.0.0", "::", "")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class Refused(Exception):
    """A request this server will not answer: its status and one line for ``{"error": ...}``."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def one_line(text: str, limit: int = 300) -> str:
    """text (which may quote what a client sent) as one line of reasonable length."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def host_name(header: str) -> str:
    """The name in a ``Host`` header or a --host/--allow-host value, lower case, without port or
    brackets ('' when malformed)."""
    try:
        return urlsplit("//" + header.strip()).hostname or ""
    except ValueError:  # a malformed IPv6 literal
        return ""


def allowed_names(host: str, allow_hosts=()) -> frozenset:
    """The host names this server answers to: localhost, the name it listens on, and --allow-host."""
    names = {host_name(h) for h in (host, *allow_hosts)} - set(ANY_ADDRESS)
    return frozenset(names | set(LOCAL_NAMES))


def host_allowed(header: str, names: frozenset) -> bool:
    """Whether a ``Host`` header names this server: an IP address or one of ``names``."""
    name = host_name(header)
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name in names


def same_origin(origin: str, host: str, scheme: str) -> bool:
    """Whether a browser's ``Origin`` header is this server's own origin (scheme, host and port)."""
    default = {"http": 80, "https": 443}
    try:
        o, h = urlsplit(origin), urlsplit("//" + host)
        return (o.scheme == scheme and o.hostname is not None and o.hostname == h.hostname
                and (o.port or default.get(o.scheme)) == (h.port or default.get(scheme)))
    except ValueError:  # a port that is not a number
        return False


class BodyTooLarge(Exception):
    """A request body (sent without Content-Length) grew past the limit while it was read."""


class Guard:
    """ASGI middleware run before any route reads a request: refuses a foreign ``Host`` (DNS
    rebinding), a cross-origin POST (any page the user visits could post here), and a body over
    ``max_body`` from its Content-Length, without reading it; a body without one is counted as it
    is read and stops at the limit (BodyTooLarge)."""

    def __init__(self, app, names: frozenset, max_body: int):
        self.app, self.names, self.max_body = app, names, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.datastructures import Headers

        refused = self.check(scope, Headers(scope=scope))
        if refused is not None:
            return await error_response(refused.status, refused.message)(scope, receive, send)
        read = 0

        async def counted():
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > self.max_body:
                raise BodyTooLarge()
            return message

        await self.app(scope, counted, send)

    def check(self, scope, headers) -> Refused | None:
        host = headers.get("host")
        if host is not None and not host_allowed(host, self.names):
            return Refused(400, f"this server does not answer to the host name in {one_line(host, 80)!r}: open it "
                                "as http://localhost:PORT/ or start it with --allow-host NAME")
        if scope["method"] not in SAFE_METHODS:
            origin, site = headers.get("origin"), headers.get("sec-fetch-site")
            if (origin is not None and not same_origin(origin, host or "", scope.get("scheme", "http"))) \
                    or site in ("cross-site", "same-site"):
                return Refused(403, f"a page from another origin ({one_line(origin or site, 80)}) may not post "
                                    "to byel serve; open the page from this server")
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return Refused(400, "the Content-Length header is not a number")
            if int(length) > self.max_body:
                return Refused(413, f"the file is over {MAX_UPLOAD // 2**20} MB")
        return None


class Line:
    """The requests let in to the model: one running and up to ``queue`` waiting (their uploads
    spooled to temp files). Past that a request is refused at once, before its body is read, so
    waiting requests cannot pile up memory or disk."""

    def __init__(self, queue: int):
        self.limit, self.inside, self.lock = queue + 1, 0, threading.Lock()

    def enter(self) -> bool:
        with self.lock:
            if self.inside >= self.limit:
                return False
            self.inside += 1
            return True

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1


def error_response(status: int, message: str, headers: dict | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)


def spool_error(e: OSError) -> Refused:
    """The upload could not be spooled to a temp file: the server's disk, not the client's fault."""
    where = tempfile.gettempdir()
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return Refused(507, f"the server's temp disk is full ({where}: {os_reason(e)}); free space there "
                            "or start byel serve with TMPDIR set to a folder on a disk with room")
    return Refused(500, f"the server cannot write the upload to its temp folder {where}: {os_reason(e)}")


def is_shipped(checkpoint) -> bool:
    """Whether ``checkpoint`` is the model shipped with byel (whose accuracy the page may state)."""
    from byel.classifier import default_checkpoint

    try:
        return Path(checkpoint).resolve() == default_checkpoint().resolve()
    except (ByelError, OSError):
        return False


def form_uncertain(value, default: float | None) -> float | None:
    """The optional form field ``uncertain`` of /api/predict (a number > 0 and <= 1; empty or absent:
    the server's --uncertain), or Refused(400)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        p = float(value) if isinstance(value, str) else None
    except ValueError:
        p = None
    if p is None or not 0 < p <= 1:  # also NaN
        raise Refused(400, f"the field 'uncertain' must be a number > 0 and <= 1, got {one_line(str(value), 40)!r}")
    return p


def require_extra() -> None:
    """One clear line when the optional web dependencies are missing."""
    import importlib.util

    def found(*modules) -> bool:  # without importing (python-multipart >= 0.0.13 also names itself python_multipart)
        for m in modules:
            try:
                if importlib.util.find_spec(m) is not None:
                    return True
            except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
                pass
        return False

    missing = [package for modules, package in ((("fastapi",), "fastapi"), (("uvicorn",), "uvicorn"),
                                                (("python_multipart", "multipart"), "python-multipart"))
               if not found(*modules)]
    if missing:
        raise ByelError(f"byel serve needs {', '.join(missing)}: pip install 'byel[serve]'")


def create_app(model, uncertain: float | None = None, queue: int = QUEUE, host: str = "127.0.0.1",
               allow_hosts=()):
    """The FastAPI app serving the page and the predictions of ``model`` (a byel.api.Model).
    ``queue``: requests that may wait for the model; ``host`` and ``allow_hosts``: the names the
    server answers to (besides localhost and IP addresses)."""
    require_extra()
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    from byel.predict import check_uncertain

    check_uncertain(uncertain)
    shipped = is_shipped(model.checkpoint)  # the page states the shipped model's accuracy, not another's
    page = PAGE.read_text(encoding="utf-8")
    lock = threading.Lock()  # one model: one request at a time (it uses every core anyway)
    line = Line(queue)
    app = FastAPI(title="byel", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(Guard, names=allowed_names(host, allow_hosts), max_body=MAX_UPLOAD + FORM_SLACK)

    # Every error is {"error": one line}, never FastAPI's {"detail": ...}.
    @app.exception_handler(Refused)
    async def refused(request, e: Refused):
        return error_response(e.status, e.message, e.headers)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request, e):
        return error_response(413, f"the file is over {MAX_UPLOAD // 2**20} MB")

    @app.exception_handler(HTTPException)
    async def http_error(request, e: HTTPException):
        what = f"{request.method} {request.url.path}"
        return error_response(e.status_code, f"{what}: {str(e.detail).lower()}", getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request, e: RequestValidationError):
        where = "; ".join(f"{'.'.join(map(str, err.get('loc', ())))}: {err.get('msg', '')}" for err in e.errors())
        return error_response(422, f"invalid request: {where}")

    @app.exception_handler(Exception)
    async def bug(request, e: Exception):  # the traceback still goes to the server's log
        return error_response(500, f"internal error in byel serve ({type(e).__name__}); see the server's log")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/info")
    def info() -> dict:
        return {"classes": list(model.classes), "checkpoint": model.checkpoint.name, "detector": model.finder.name,
                "shipped": shipped, "uncertain": uncertain}

    async def read_form(request):
        """The multipart form, its file spooled to a temp file (over 1 MB) rather than held in memory."""
        kind = request.headers.get("content-type", "")
        if kind.split(";")[0].strip().lower() != "multipart/form-data":
            raise Refused(415, f"the request is {one_line(kind, 60) or 'without a Content-Type'}: send a "
                               "multipart/form-data form with the image in the field 'file'")
        try:
            return await request.form(max_files=1, max_fields=16)
        except OSError as e:
            raise spool_error(e) from None
        except ClientDisconnect:
            raise Refused(400, "the upload was cut off before its end") from None
        except HTTPException as e:  # not multipart data
            raise Refused(400, f"the request is not a multipart form with the image in the field 'file' "
                               f"({e.detail})") from None

    async def answer(form):
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise Refused(422, "no file in the form: send the image as the multipart/form-data field 'file'")
        if (file.size or 0) > MAX_UPLOAD:
            return JSONResponse({"error": f"the file is over {MAX_UPLOAD // 2**20} MB"}, status_code=413)
        threshold = form_uncertain(form.get("uncertain"), uncertain)

        def run():
            with lock:  # the bytes are read only now: requests waiting in line hold none in memory
                file.file.seek(0)
                data = file.file.read(MAX_UPLOAD + 1)
                return model.predict(data, uncertain=threshold)

        try:
            faces = await run_in_threadpool(run)
        except ByelError as e:
            name = file.filename or "the upload"
            return JSONResponse({"error": f"{name}: {e}".replace("<image 0>: ", "")}, status_code=_status(e))
        width, height = faces.size
        return {"width": width, "height": height, "classes": list(model.classes),
                "faces": [f.to_dict() for f in faces]}

    @app.post("/api/predict")
    async def predict(request: Request):
        if not line.enter():  # refused before the body is read
            raise Refused(503, f"busy: the model is in use and {line.limit - 1} more requests wait for it; try "
                               "again in a few seconds", {"Retry-After": str(RETRY_AFTER_S)})
        try:
            form = await read_form(request)
            try:
                return await answer(form)
            finally:
                await form.close()  # deletes the temp file
        finally:
            line.leave()

    return app


def _status(e: ByelError) -> int:
    """413 for an image over the pixel limit (byel.imageio), 400 for any other unusable upload."""
    from byel.imageio import TOO_LARGE, Unusable

    too_large = isinstance(e.__cause__, Unusable) and e.__cause__.reason == TOO_LARGE
    return 413 if too_large else 400


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket (port 0: a free one), or one ByelError line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ByelError(f"cannot listen on {host}: unknown host ({e.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(64)
    except OSError as e:
        sock.close()
        why = "the port is in use" if e.errno in (98, 48, 10048) else os_reason(e)
        raise ByelError(f"cannot listen on {host}:{port}: {why}") from None
    return sock


def serve(checkpoint: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000,
          device: str = "cpu", uncertain: float | None = None, queue: int = QUEUE, allow_hosts=()) -> None:
    """Load the model, then serve the page until Ctrl-C."""
    require_extra()
    import uvicorn

    from byel.api import load

    model = load(checkpoint, device=device)
    app = create_app(model, uncertain, queue=queue, host=host, allow_hosts=allow_hosts)
    sock = listen(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"byel serve: http://{shown}:{bound}/ (model {model.checkpoint}; Ctrl-C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
