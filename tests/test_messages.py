"""One line of byel's own for every refusal: no third-party text around it (torch's warnings and
unpickler boilerplate, FFmpeg's and OpenCV's chatter), advice that is true (no --resume where
there is none, no `pip install dlib-bin` when dlib is installed), the path of the file a full disk
refused, and API arguments of the wrong type named at the door."""

from __future__ import annotations

import builtins
import errno
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import byel
from byel.checkpoint import read_checkpoint
from byel.cli import main
from byel.errors import ByelError, CheckpointError, InputTypeError
from conftest import FER_SAMPLE, make_checkpoints, write_image

FACE = next(iter(sorted((FER_SAMPLE / "happy").glob("*.jpg"))))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A fine-tuned checkpoint of the (untrained) smoke model."""
    return make_checkpoints(tmp_path_factory.mktemp("messages"))[1]


@pytest.fixture(scope="module")
def crops_model(ckpt):
    return byel.load(ckpt, detect=False)


def error_line(capsys_or_fd) -> tuple[str, str]:
    """(the one `byel: error:` line, all of stderr)."""
    err = capsys_or_fd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("byel: error:")]
    assert len(lines) == 1, err
    return lines[0], err


class _Bomb:
    def __reduce__(self):  # unpickling would call os.system("true"); weights_only=True never does
        return os.system, ("true",)


class _Foreign:
    pass


# --- checkpoints -------------------------------------------------------------------------------
def test_a_pickle_bomb_is_refused_in_our_words_never_suggesting_weights_only_false(tmp_path, capfd):
    bomb = tmp_path / "bomb.ckpt"
    torch.save({"byel": {}, "state_dict": _Bomb()}, bomb)
    rc = main(["predict", str(FACE), "--checkpoint", str(bomb), "--out", str(tmp_path / "p.csv"), "--no-detect",
               "--no-progress"])
    line, err = error_line(capfd)
    assert rc == 2 and "not a byel checkpoint" in line and "code or objects byel does not load" in line
    assert "system" in line and "weights_only=True" in line
    assert "weights_only=False" not in err and "`weights_only`" not in err and "torch.load" not in err
    assert not (tmp_path / "p.csv").exists()


def test_an_unknown_class_in_a_checkpoint_is_named(tmp_path):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"x": _Foreign()}, foreign)
    with pytest.raises(CheckpointError, match=r"code or objects byel does not load \(.*_Foreign\)") as e:
        read_checkpoint(foreign)
    assert "weights_only=False" not in str(e.value) and "add_safe_globals" not in str(e.value)


def test_torchs_pickle_protocol_warning_becomes_part_of_the_one_line(tmp_path, capfd):
    other = tmp_path / "protocol4.ckpt"
    torch.save({"byel": {}, "state_dict": {}}, other, pickle_protocol=4)
    rc = main(["evaluate", "--checkpoint", str(other), "--data", str(FER_SAMPLE), "--report",
               str(tmp_path / "r.json"), "--no-progress"])
    line, err = error_line(capfd)
    assert rc == 2 and "pickle protocol 4" in line
    assert "UserWarning" not in err and "weights_only=False" not in err


def test_a_torchscript_model_given_as_a_checkpoint_says_what_it_is(tmp_path):
    scripted = tmp_path / "model.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(scripted))
    with pytest.raises(CheckpointError, match="is a TorchScript model .*pass the .ckpt") as e:
        read_checkpoint(scripted)
    assert "weights_only=False" not in str(e.value)


def test_load_of_a_folder_says_it_is_a_folder_and_names_the_checkpoint_in_it(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("last.ckpt", "best.ckpt"):
        (run / "checkpoints" / name).write_bytes(b"")
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint") as e:
        byel.load(run)
    assert str(run / "checkpoints" / "best.ckpt") in str(e.value) and "not found" not in str(e.value)
    with pytest.raises(CheckpointError, match=r"is a folder, not a checkpoint: pass a checkpoint file \(.ckpt\)"):
        byel.load(tmp_path / "run" / "checkpoints" / "..")


# --- API arguments -----------------------------------------------------------------------------
@pytest.mark.parametrize("call, match", [
    (lambda m: m.predict_video(None), r"predict_video\(path\) takes the path .* of a video file; got NoneType"),
    (lambda m: m.predict_video(b"\x00\x00\x00\x18ftypmp42"), r"predict_video\(path\) .*got bytes"),
    (lambda m: m.predict(np.zeros((8, 8, 3), np.uint8), uncertain="0.5"), r"uncertain must be a number .*'0.5'"),
    (lambda m: m.predict_video("clip.mp4", uncertain="0.5"), r"uncertain must be a number"),
    (lambda m: m.predict_video("clip.mp4", stride="2"), r"stride must be a whole number"),
], ids=["predict_video(None)", "predict_video(bytes)", "predict(uncertain=str)", "predict_video(uncertain=str)",
        "predict_video(stride=str)"])
def test_api_arguments_of_the_wrong_type_are_named(crops_model, call, match):
    with pytest.raises(InputTypeError, match=match) as e:
        call(crops_model)
    assert isinstance(e.value, ByelError) and isinstance(e.value, TypeError)


@pytest.mark.parametrize("kwargs, match", [
    ({"checkpoint": 123}, r"byel.load\(checkpoint\) takes the path .* of a .ckpt file, or None .*got int"),
    ({"min_face": None}, r"min_face must be a whole number >= 1, got None"),
    ({"batch_size": "8"}, r"batch_size must be a whole number"),
])
def test_load_arguments_of_the_wrong_type_are_named(kwargs, match):
    with pytest.raises(InputTypeError, match=match):
        byel.load(**kwargs)


# --- detectors ---------------------------------------------------------------------------------
def test_opencv_haar_says_what_is_missing_and_what_works(monkeypatch):
    import byel.detect as detect

    monkeypatch.setattr(detect, "_haar_xml", lambda: None)  # as in OpenCV 5 wheels: no cascade file
    with pytest.raises(ByelError, match="the opencv-haar detector is not available: .*no Haar cascade file") as e:
        detect.FaceDetector("opencv-haar")
    msg = str(e.value)
    assert "opencv-python-headless<5" in msg
    try:
        import dlib  # noqa: F401
    except ImportError:
        assert "--no-detect" in msg
    else:  # dlib is there: say so, never ask to install it
        assert "dlib-hog detector (installed)" in msg and "pip install dlib-bin" not in msg


# --- adapt -------------------------------------------------------------------------------------
def test_adapt_into_a_run_folder_does_not_suggest_a_resume_it_lacks(tmp_path, ckpt, capfd):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("seed: 0\n")
    rc = main(["adapt", "--checkpoint", str(ckpt), "--data", str(FER_SAMPLE), "--method", "adabn",
               "--out", str(out), "--no-progress"])
    line, _ = error_line(capfd)
    assert rc == 2 and "already holds a run" in line and "--overwrite" in line and "--resume" not in line


# --- videos ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_broken_videos_are_listed_without_ffmpeg_or_opencv_chatter(tmp_path, ckpt):
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copy(FACE, folder / "face.jpg")
    (folder / "x.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    good = tmp_path / "good.avi"  # a real MJPEG AVI, cut in half: OpenCV's own AVI reader complains
    vw = cv2.VideoWriter(str(good), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for i in range(10):
        vw.write(np.full((64, 64, 3), 20 * i, np.uint8))
    vw.release()
    data = good.read_bytes()
    (folder / "cut.avi").write_bytes(data[: len(data) // 2])
    # a fresh process: FFmpeg reads its log level once, when it first opens a file
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(byel.__file__).parents[1]), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-m", "byel", "predict", str(folder), "--checkpoint", str(ckpt),
                        "--out", str(tmp_path / "p.csv"), "--no-detect", "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "2 unreadable" in r.stdout and "x.mp4" in r.stdout and "cut.avi" in r.stdout
    assert "moov atom" not in r.stderr and "Unexpected element" not in r.stderr and "WARN" not in r.stderr, r.stderr


def test_an_annotated_video_the_writer_could_not_store_is_an_error_naming_it(tmp_path, ckpt, monkeypatch, capfd):
    clip = tmp_path / "in" / "clip.avi"
    clip.parent.mkdir()
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for i in range(3):
        vw.write(np.full((64, 64, 3), 60 * i, np.uint8))
    vw.release()

    class SilentWriter:  # OpenCV's writer on a full disk: it opens, then no error, no frames
        def __init__(self, *args):
            pass

        def isOpened(self):
            return True

        def write(self, frame):
            pass

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoWriter", SilentWriter)
    rc = main(["predict", str(clip), "--checkpoint", str(ckpt), "--out", str(tmp_path / "p.csv"),
               "--annotate", str(tmp_path / "ann"), "--no-detect", "--no-progress"])
    line, _ = error_line(capfd)
    assert rc == 2 and f"cannot write {tmp_path / 'ann' / 'clip.avi.annotated.mp4'}" in line  # mp4v "opened"
    assert "0 of 3 frames" in line


# --- a full disk -------------------------------------------------------------------------------
class _FullFile:
    """A file on a full disk: opening works, every write fails as write() does there (ENOSPC,
    no file name)."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __iter__(self):
        return iter(self._f)


@pytest.fixture
def full_disk(tmp_path, monkeypatch) -> Path:
    """A folder on a 'full disk': files opened for writing under it fail on write()."""
    disk = tmp_path / "full"
    disk.mkdir()
    real_open = io.open

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        writing = any(c in mode for c in "wax+") and isinstance(file, (str, os.PathLike))
        return _FullFile(f) if writing and os.path.abspath(file).startswith(str(disk) + os.sep) else f

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)  # pathlib's write_text
    return disk


def _assert_full_disk_line(capfd, rc: int, path: Path) -> None:
    line, err = error_line(capfd)
    assert rc == 2 and f"cannot write {path}" in line and "disk full" in line, err


def test_full_disk_evaluate_names_the_file(tmp_path, ckpt, full_disk, capfd):
    report = full_disk / "eval.json"
    rc = main(["evaluate", "--checkpoint", str(ckpt), "--data", str(FER_SAMPLE), "--report", str(report),
               "--no-progress"])
    _assert_full_disk_line(capfd, rc, full_disk / "eval")  # its confusion matrix or its report
    assert not report.exists()


def test_full_disk_predict_names_the_file(tmp_path, ckpt, full_disk, capfd):
    out = full_disk / "p.csv"
    rc = main(["predict", str(FACE), "--checkpoint", str(ckpt), "--out", str(out), "--no-detect", "--no-progress"])
    _assert_full_disk_line(capfd, rc, out)
    assert not any(full_disk.iterdir())


def test_full_disk_submit_names_the_file_and_leaves_no_temporary(tmp_path, ckpt, full_disk, capfd):
    frames = tmp_path / "frames" / "v1"
    frames.mkdir(parents=True)
    for i, src in enumerate(sorted((FER_SAMPLE / "happy").glob("*.jpg"))[:3], 1):
        shutil.copy(src, frames / f"{i:05d}.jpg")
    rc = main(["submit", "--checkpoint", str(ckpt), "--frames", str(frames.parent), "--out", str(full_disk / "sub"),
               "--no-progress"])
    _assert_full_disk_line(capfd, rc, full_disk / "sub" / "v1.txt")
    assert list((full_disk / "sub").iterdir()) == []


def test_full_disk_adapt_names_the_file(tmp_path, ckpt, full_disk, capfd):
    out = full_disk / "adapted"
    rc = main(["adapt", "--checkpoint", str(ckpt), "--data", str(FER_SAMPLE / "happy"), "--method", "adabn",
               "--out", str(out), "--no-progress"])
    _assert_full_disk_line(capfd, rc, out / "adapt.json")
    assert not list(out.glob(".adapt.json*tmp"))  # the temporary file is gone too


@pytest.mark.parametrize("option", ["--log", "--out"])
def test_full_disk_data_inspect_names_the_file(tmp_path, full_disk, capfd, option):
    data = tmp_path / "data"
    shutil.copytree(FER_SAMPLE / "happy", data / "happy")
    (data / "happy" / "broken.jpg").write_bytes(b"not a jpeg")  # one problem: a log to write
    write_image(data / "sad" / "a.png")
    target = full_disk / ("problems.txt" if option == "--log" else "sheet.png")
    rc = main(["data", "inspect", str(data), option, str(target)])
    # --out: the sheet's problem log beside it is written first
    _assert_full_disk_line(capfd, rc, target if option == "--log" else full_disk / "sheet")
