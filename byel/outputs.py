"""The files a command writes besides the paths given on its command line, named in one place:
the command writes them under these names and the CLI checks every one of them before any work
(byel.cli.paths: against the inputs and against each other), so the plan cannot drift from what is
written. (Writing each of them whole is byel.files's job.)

Light on purpose (no torch, no OpenCV at import): the CLI plans with it before loading anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from byel.checks import lies_inside

PACKAGE = Path(__file__).resolve().parent  # the installed byel: nothing is ever written in it
EXPORT_FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}  # export format -> the model file's suffix


def safe_name(text: str) -> str:
    """text as a file name: letters, digits, - _ . kept, anything else (separators, colons,
    undecodable bytes) written as _."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(text))


def data_name(spec: str) -> str:
    """A short file name for a data spec: the name of its (last) path, a FER2013 usage kept
    (imagefolder:/d/fer2013-publictest -> fer2013-publictest; faces.csv:PublicTest ->
    faces.csv_PublicTest)."""
    body = str(spec).strip()
    kind, sep, rest = body.partition(":")
    if sep and kind.replace("-", "").isalnum() and kind.islower() and not os.path.exists(body):
        body = rest  # imagefolder:PATH, fer2013-csv:FILE[:USAGE], affwild2:FRAMES,ANNOTATIONS
    name = Path(os.path.abspath(os.path.expanduser(body or "."))).name  # "." and "dir/": the folder's name
    return safe_name(name) or "data"


def default_report(checkpoint: str | Path, data: str) -> Path:
    """Where `byel evaluate` writes its report when not told: RUN/eval/<data>.json for a
    checkpoint in a run's RUN/checkpoints/ folder, else ./eval-<checkpoint name>/<data>.json in
    the current folder (never beside a checkpoint that lies elsewhere, e.g. in the installed
    package or in a home folder)."""
    ckpt = Path(checkpoint).expanduser()
    folder = ckpt.resolve().parent
    if folder.name == "checkpoints" and not lies_inside(folder, PACKAGE):
        where = folder.parent / "eval"
    else:
        where = Path(f"eval-{safe_name(ckpt.stem) or 'model'}")
    return where / f"{data_name(data)}.json"


def evaluation_files(report: str | Path, adapt_bn: bool = False) -> dict[str, Path]:
    """Every file `byel evaluate` writes, by what it is: the JSON report, its confusion matrix
    beside it (NAME.png), the AdaBN one (NAME_adabn.png) and the list of unusable files
    (NAME-data-problems.txt, written only when there are some)."""
    report = Path(report)
    files = {"report": report, "confusion matrix": report.with_suffix(".png")}
    if adapt_bn:
        files["AdaBN confusion matrix"] = report.with_name(report.stem + "_adabn.png")
    files["list of unusable files"] = report.with_name(report.stem + "-data-problems.txt")
    return files


def export_files(out: str | Path, fmt: str) -> dict[str, Path]:
    """Every file `byel export` writes, by what it is: the model (OUT, given the format's suffix
    when it has none), its JSON (OUT.json) and, for a geometry or fused head, the geometry
    model (OUT_STEM.geometry.pt|.onnx)."""
    model = Path(out)
    if not model.suffix:
        model = model.with_suffix(EXPORT_FORMATS[fmt])
    return {"model": model, "JSON": model.with_name(model.name + ".json"),
            "geometry model": model.with_name(f"{model.stem}.geometry{model.suffix}")}


def inspect_log(out_png: str | Path) -> str:
    """Where `byel data inspect` lists unusable files when --out is given and --log is not:
    beside the contact sheet, as <sheet stem>-problems.txt."""
    return os.path.splitext(str(out_png))[0] + "-problems.txt"

