"""`byel serve`: a local web page that reads the expressions of the faces in a photo.

Upload a photo (or, where the browser allows it, take a webcam snapshot) and the page shows
the image with a box and label per face and a bar chart of each face's class probabilities.
The page (byel/assets/web/index.html) is one static file with its script inline: nothing is
fetched from elsewhere. The app (FastAPI, run by uvicorn; ``pip install 'byel[serve]'``):

- ``GET /``: the page;
- ``GET /api/info``: ``{"classes": [...], "checkpoint": name, "detector": name}``;
- ``POST /api/predict`` (multipart field ``file``: an encoded image): ``{"width", "height",
  "classes", "faces": [{"box": [x, y, w, h], "label", "probabilities": {class: p}}]}``, largest
  face first; a file that is not a readable image: status 400 and ``{"error": one line}``.

Faces are found and classified by the Python API (byel.api), the same code as ``byel predict``.
"""

# No `from __future__ import annotations`: FastAPI reads the route's annotations (UploadFile,
# imported inside create_app) as objects.
import socket
import threading
from pathlib import Path

from byel.errors import ByelError, os_reason

PAGE = Path(__file__).parent / "assets" / "web" / "index.html"
MAX_UPLOAD = 25 * 1024 * 1024  # bytes


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


def create_app(model, uncertain: float | None = None):
    """The FastAPI app serving the page and the predictions of ``model`` (a byel.api.Model)."""
    require_extra()
    from fastapi import FastAPI, File, UploadFile
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import HTMLResponse, JSONResponse

    from byel.predict import check_uncertain

    check_uncertain(uncertain)
    page = PAGE.read_text(encoding="utf-8")
    lock = threading.Lock()  # one model: one request at a time (it uses every core anyway)
    app = FastAPI(title="byel", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/info")
    def info() -> dict:
        return {"classes": list(model.classes), "checkpoint": model.checkpoint.name, "detector": model.finder.name}

    @app.post("/api/predict")
    async def predict(file: UploadFile = File(...)):
        data = await file.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            return JSONResponse({"error": f"the file is over {MAX_UPLOAD // 2**20} MB"}, status_code=413)

        def run():
            with lock:
                return model.predict(data, uncertain=uncertain)

        try:
            faces = await run_in_threadpool(run)
        except ByelError as e:
            name = file.filename or "the upload"
            return JSONResponse({"error": f"{name}: {e}".replace("<image 0>: ", "")}, status_code=_status(e))
        width, height = faces.size
        return {"width": width, "height": height, "classes": list(model.classes),
                "faces": [f.to_dict() for f in faces]}

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
          device: str = "cpu", uncertain: float | None = None) -> None:
    """Load the model, then serve the page until Ctrl-C."""
    require_extra()
    import uvicorn

    from byel.api import load

    model = load(checkpoint, device=device)
    app = create_app(model, uncertain)
    sock = listen(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"byel serve: http://{shown}:{bound}/ (model {model.checkpoint}; Ctrl-C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
