"""File names that are not valid UTF-8 (Latin-1 archives, camera cards, Windows zips) are ordinary
on Linux; Python holds their bytes as surrogate escapes ("caf\\udce9.jpg"). Every command must read
such files, write such names into its reports without losing them, print them without failing,
and never hand them to OpenCV, which crashes the process (a segmentation fault, no message).

The commands run in subprocesses (a segmentation fault would end pytest), with the names as bytes
on the command line and a strict UTF-8 stdout (PYTHONIOENCODING), as under an ordinary UTF-8 locale.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import FER_SAMPLE

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "byel" / "assets" / "default_model" / "model.ckpt"
E = os.fsdecode(b"\xe9")  # Latin-1 "é": not UTF-8, so Python holds it as the surrogate "\udce9"
FACES = sorted(FER_SAMPLE.glob("*/*.jpg"))


def fs(path) -> bytes:
    return os.fsencode(path)


def run(tmp_path: Path, *args, encoding: str = "utf-8", code: str | None = None) -> subprocess.CompletedProcess:
    """`byel ARGS` (or `python -c CODE ARGS`) with the arguments as bytes; temporary files go to
    tmp_path/tmp, which must be empty again afterwards."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": encoding, "TMPDIR": str(tmp)}
    head = [sys.executable, "-c", code] if code else [sys.executable, "-m", "byel"]
    return subprocess.run([*head, *(fs(a) for a in args)], env=env, capture_output=True, timeout=600)


def check_ok(r: subprocess.CompletedProcess, tmp_path: Path) -> str:
    """The run ended well (not a crash, not a bug), said nothing but notes on stderr, and left no
    temporary file; returns its stdout."""
    err = r.stderr.decode(errors="backslashreplace")
    assert r.returncode == 0, f"exit {r.returncode}: {err[-3000:]}"
    assert "Traceback" not in err and "internal error" not in err, err
    assert not list((tmp_path / "tmp").glob("byel-*")), "temporary files left behind"
    return r.stdout.decode(errors="strict")  # escaped: the terminal's encoding can show it


def write_video(path: Path, frames: int = 3, size: tuple[int, int] = (64, 48)) -> Path:
    """A tiny MJPG .avi, written under an ASCII name (OpenCV cannot take the other) and renamed."""
    with tempfile.TemporaryDirectory() as folder:  # an ASCII path (the test's folders are not)
        ascii_name = os.path.join(folder, "video.avi")
        vw = cv2.VideoWriter(ascii_name, cv2.VideoWriter_fourcc(*"MJPG"), 5, size)
        for i in range(frames):
            vw.write(np.full((size[1], size[0], 3), 40 + 60 * i, np.uint8))
        vw.release()
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(ascii_name, path)
    return path


def frames_of(video: Path, tmp_path: Path) -> int:
    """How many frames OpenCV reads from a video with any name (read from an ASCII-named copy)."""
    copy = tmp_path / ("check" + video.suffix)
    shutil.copyfile(video, copy)
    cap = cv2.VideoCapture(str(copy))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    copy.unlink()
    return n


@pytest.mark.slow
def test_predict_reads_and_annotates_files_whose_names_are_not_utf8(tmp_path):
    src = tmp_path / f"d{E}"
    src.mkdir()
    shutil.copyfile(FACES[0], src / f"caf{E}.jpg")
    write_video(src / f"vid{E}o.avi")
    out = tmp_path / f"out{E}"
    r = run(tmp_path, "predict", src, "--out", out / "p.csv", "--annotate", out / "ann", "--no-detect",
            "--no-progress")
    stdout = check_ok(r, tmp_path)
    assert "1 images, 3 video frames" in stdout and "out\\xe9" in stdout  # the name escaped, not an error

    # the CSV keeps each name as its bytes: read back with surrogateescape, they are the files
    with open(out / "p.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        files = [row["file"] for row in csv.DictReader(f)]
    assert files == [str(src / f"caf{E}.jpg")] + [str(src / f"vid{E}o.avi")] * 3
    assert all(os.path.isfile(p) for p in files)

    ann = out / "ann" / f"d{E}"
    (video,) = [n for n in os.listdir(ann) if n.startswith(f"vid{E}o.avi.annotated.")]  # .mp4, or MJPG .avi
    assert video.endswith((".mp4", ".avi"))
    assert sorted(os.listdir(ann)) == sorted([f"caf{E}.jpg", video])  # no temporary file
    assert frames_of(ann / video, tmp_path) == 3


@pytest.mark.slow
def test_predict_video_of_the_python_api_reads_a_video_whose_name_is_not_utf8(tmp_path):
    video = write_video(tmp_path / f"vid{E}o.avi")
    code = ("import os, sys, byel; "
            "r = byel.load(detect=False).predict_video(os.fsdecode(sys.argv[1])); "
            "print(len(r), all(len(f) == 1 for f in r))")
    r = run(tmp_path, video, code=code)
    assert check_ok(r, tmp_path).split() == ["3", "True"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["warp", "mesh"])
def test_generate_from_sources_whose_names_are_not_utf8(tmp_path, backend):
    from byel.data.formats import read_manifest

    sources = tmp_path / f"src{E}"
    sources.mkdir()
    for i, face in enumerate(sorted((FER_SAMPLE.parent / "neutral").glob("*.jpg"))[:3]):
        shutil.copyfile(face, sources / f"n{E}{i}.jpg")
    out = tmp_path / f"gen{E}"
    r = run(tmp_path, "generate", "--backend", backend, "--sources", sources, "--out", out, "--per-class", "1",
            "--no-progress")
    assert f"wrote 6 images to {tmp_path}/gen\\xe9" in check_ok(r, tmp_path)
    # the manifest names each image's source face as its bytes, and reads back the same
    groups = {row["group"] for row in read_manifest(str(out))}
    assert groups and groups <= {f"n{E}{i}.jpg" for i in range(3)}
    info = json.loads((out / "generate.json").read_text())
    assert info["sources"]["path"] == str(sources)


def labelled_folder(root: Path) -> Path:
    """Two real faces per class, and one broken file, all named with a byte that is not UTF-8."""
    for c in ("angry", "disgust", "fear", "happy", "sad", "surprise"):
        (root / c).mkdir(parents=True)
        for i, face in enumerate(sorted((FER_SAMPLE / c).glob("*.jpg"))[:2]):
            shutil.copyfile(face, root / c / f"f{E}{i}.jpg")
    (root / "happy" / f"bad{E}.jpg").write_bytes(b"not an image")
    return root


@pytest.mark.slow
def test_data_inspect_and_evaluate_list_names_that_are_not_utf8(tmp_path):
    data = labelled_folder(tmp_path / f"lab{E}")
    out = tmp_path / f"out{E}"
    bad = f"{data}/happy/bad{E}.jpg"

    r = run(tmp_path, "data", "inspect", data, "--out", out / "sheet.png")
    assert "usable images: 12" in check_ok(r, tmp_path)
    assert (out / "sheet.png").is_file()
    log = (out / "sheet-problems.txt").read_bytes()
    assert fs(bad) in log  # the name as its bytes

    r = run(tmp_path, "evaluate", "--checkpoint", MODEL, "--data", data, "--report", out / "ev.json", "--no-progress")
    check_ok(r, tmp_path)
    report = json.loads((out / "ev.json").read_text(encoding="ascii"))  # JSON escapes the name: lossless
    assert report["data"] == str(data)
    assert fs(bad) in Path(report["problems_log"]).read_bytes()


@pytest.mark.slow
def test_submit_writes_a_video_folder_whose_name_is_not_utf8(tmp_path):
    frames = tmp_path / f"frames{E}"
    (frames / f"v{E}").mkdir(parents=True)
    for i, face in enumerate(FACES[:2], 1):
        shutil.copyfile(face, frames / f"v{E}" / f"{i:05d}.jpg")
    out = tmp_path / f"sub{E}"
    r = run(tmp_path, "submit", "--checkpoint", MODEL, "--frames", frames, "--out", out, "--no-progress")
    check_ok(r, tmp_path)
    assert len((out / f"v{E}.txt").read_text().splitlines()) == 3  # header, frames 1 and 2 (line 1 is frame 0)


@pytest.mark.slow
def test_an_internal_error_on_a_name_that_is_not_utf8_is_one_line(tmp_path):
    """A bug met while handling such a name (here forced) is still one line, in any terminal
    encoding, and its traceback file is written."""
    code = ("import sys, byel.cli as cli, byel.cli.use_cmds as use_cmds\n"
            "def bug(args): raise RuntimeError(f'cannot handle {args.inputs[0]}' + '\\n more' * 5000)\n"
            "use_cmds.cmd_predict = bug\n"
            "raise SystemExit(cli.main(sys.argv[1:]))")
    r = run(tmp_path, "predict", tmp_path / f"caf{E}.jpg", code=code, encoding="ascii")
    err = r.stderr.decode("ascii")
    assert r.returncode == 1, err
    assert err.count("\n") == 1 and err.startswith("byel: internal error"), err
    assert f"RuntimeError: cannot handle {tmp_path}/caf\\xe9.jpg; traceback in " in err
    crash = next((tmp_path / "tmp").glob("byel-crash-*.txt"))
    assert "caf\\udce9.jpg" in crash.read_text(encoding="utf-8")  # the command line, escaped


@pytest.fixture
def crash_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_the_crash_reporter_cannot_fail(crash_dir, monkeypatch, capsys):
    """Whatever goes wrong while reporting a bug (a name that is not UTF-8 in sys.argv, a message
    that cannot be made a string, a huge one, a failing traceback), the report is one line."""
    import traceback

    from byel.cli.guard import run_guarded

    monkeypatch.setattr(sys, "argv", ["byel", "predict", f"caf{E}.jpg"])

    class Odd(Exception):
        def __str__(self):
            raise ValueError("no message")

    def huge():
        raise RuntimeError(f"caf{E}" + "x" * 10_000_000)

    for bug in (lambda: 1 / 0, lambda: (_ for _ in ()).throw(Odd()), huge):
        assert run_guarded(bug) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("byel: internal error (a bug in byel"), err[:500]
        assert len(err) < 1000 and "traceback in" in err

    monkeypatch.setattr(traceback, "format_exc", lambda: f"{E}" + 1)  # the reporter itself fails
    assert run_guarded(lambda: 1 / 0) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not write the traceback (TypeError)" in err
