"""Options mean what they say: --min-face is a lower bound on every reported face box, submit
reads only ASCII frame numbers and refuses a stray far-beyond frame, and the bounds of --smooth
and --max-per-set are checked when the command line is parsed (before any model loads)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

import byel
from byel.cli import main
from byel.cli.args import MAX_WINDOW as CLI_MAX_WINDOW
from byel.cli.args import MIN_PER_SET as CLI_MIN_PER_SET
from byel.detect import FaceDetector, FaceFinder, checked_min_face
from byel.errors import ByelError, DataError
from byel.predict import NO_FACE
from byel.submit import FILL_SLACK, MAX_FILL_FACTOR, submit
from byel.track import MAX_WINDOW, check_smooth
from conftest import FER_SAMPLE, PHOTOS, make_checkpoints, write_class_folders, write_image

GROUP = PHOTOS / "group.jpg"  # five faces, 89-158 px boxes (photos/README.md)
# Blurred noise in which the landmarker of byel <= 20d4234 reported one small "face" each (14 to
# 17 px boxes at the default --min-face 24): (seed, blur sigma) of blurred_noise.
NOISE = [(2, 1.0), (9, 1.0), (14, 1.5), (36, 1.0), (47, 1.0)]


def _have_landmarker() -> bool:
    import importlib.util

    return importlib.util.find_spec("ai_edge_litert") is not None


def _have(backend: str) -> bool:
    try:
        FaceDetector(backend)
        return True
    except ByelError:
        return False


DETECTORS = [pytest.param("landmarker", marks=pytest.mark.skipif(not _have_landmarker(), reason="no ai-edge-litert")),
             pytest.param("dlib-hog", marks=pytest.mark.skipif(not _have("dlib-hog"), reason="no dlib")),
             pytest.param("opencv-haar", marks=pytest.mark.skipif(
                 not _have("opencv-haar"), reason="this OpenCV ships no Haar cascade (OpenCV 5 moved it)"))]


def blurred_noise(seed: int, sigma: float, h: int = 240, w: int = 320) -> np.ndarray:
    """uint8 RGB noise blurred by a Gaussian, in numpy float64 (the same bytes on any CPU, unlike
    OpenCV's SIMD paths), stretched to 0..255."""
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.float64)
    r = int(3 * sigma)
    k = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    for axis in (0, 1):
        p = np.pad(img, [(r, r) if a == axis else (0, 0) for a in range(3)], mode="reflect")
        img = sum(k[i] * np.take(p, range(i, i + img.shape[axis]), axis=axis) for i in range(2 * r + 1))
    return np.round((img - img.min()) / (img.max() - img.min()) * 255).astype(np.uint8)


def rgb_of(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("ckpt"))


def read_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# --------------------------------------------------------------------------- --min-face


@pytest.mark.parametrize("detector", DETECTORS)
@pytest.mark.parametrize("min_face", [100, 200])
def test_min_face_is_a_lower_bound_on_every_reported_box(detector, min_face):
    faces = FaceFinder(32, True, detector, min_face)(rgb_of(GROUP))
    assert all(min(f.box[2:]) >= min_face for f in faces), [f.box for f in faces]
    if min_face == 200:  # larger than every face of the photo (the largest is ~160 px)
        assert faces == []


@pytest.mark.parametrize("detector", DETECTORS)
def test_a_box_clipped_below_min_face_is_not_reported(detector, monkeypatch):
    finder = FaceFinder(32, True, detector, 24)
    if finder.mesher is not None:
        monkeypatch.setattr(finder.mesher, "find", lambda rgb, min_face: [
            type("Mesh", (), {"box": (-60.0, 10.0, 70.0, 70.0),  # 10 px inside the image; the box is the mesh's
                              "landmarks": np.array([[-60.0, 10.0, 0.0], [10.0, 80.0, 0.0]], np.float32)})()])
    else:
        monkeypatch.setattr(finder, "detector", lambda rgb: [(0, 0, 4, 3), (100, 50, 30, 23)])
    assert finder(np.full((120, 160, 3), 128, np.uint8)) == []


@pytest.mark.skipif(not _have_landmarker(), reason="no ai-edge-litert")
def test_noise_has_no_face_at_the_default_min_face_in_predict_and_the_api(tmp_path, ckpts, capsys):
    folder = tmp_path / "noise"
    folder.mkdir()
    for seed, sigma in NOISE:
        cv2.imwrite(str(folder / f"noise{seed}.png"), blurred_noise(seed, sigma)[..., ::-1])
    out = tmp_path / "p.csv"
    assert main(["predict", "--checkpoint", str(ckpts[1]), str(folder), "--out", str(out), "--no-progress"]) == 0
    rows = read_rows(out)
    assert len(rows) == len(NOISE) and {r["predicted"] for r in rows} == {NO_FACE}
    model = byel.load(ckpts[1])
    assert [len(f) for f in model.predict([blurred_noise(s, g) for s, g in NOISE])] == [0] * len(NOISE)


@pytest.mark.skipif(not _have_landmarker(), reason="no ai-edge-litert")
def test_a_photo_with_min_face_above_its_faces_has_none(tmp_path, ckpts):
    out = tmp_path / "p.csv"
    assert main(["predict", "--checkpoint", str(ckpts[1]), str(GROUP), "--out", str(out), "--no-progress",
                 "--min-face", "1000"]) == 0
    (row,) = read_rows(out)
    assert row["predicted"] == NO_FACE
    assert main(["predict", "--checkpoint", str(ckpts[1]), str(GROUP), "--out", str(out), "--no-progress",
                 "--min-face", "100", "--overwrite"]) == 0
    rows = read_rows(out)
    assert rows and all(min(int(r["w"]), int(r["h"])) >= 100 for r in rows)
    faces = byel.load(ckpts[1], min_face=100).predict(str(GROUP))
    assert len(faces) == len(rows) and all(min(f.box[2:]) >= 100 for f in faces)
    assert byel.load(ckpts[1], min_face=200).predict(str(GROUP)) == []


@pytest.mark.slow
@pytest.mark.skipif(not _have_landmarker(), reason="no ai-edge-litert")
def test_serve_reports_no_face_in_noise(tmp_path, ckpts):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    proc = subprocess.Popen([sys.executable, "-m", "byel", "serve", "--checkpoint", str(ckpts[1]), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        while "http://" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "byel serve exited"
        url = line[line.index("http://"):].split()[0]
        ok, png = cv2.imencode(".png", blurred_noise(*NOISE[0])[..., ::-1])
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"noise.png\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + png.tobytes() + f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(url + "api/predict", body,
                                     {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(req, timeout=120) as r:
            assert json.loads(r.read())["faces"] == []
    finally:
        proc.terminate()
        proc.wait(30)


def test_min_face_must_be_a_whole_number():
    assert checked_min_face(1) == 8 and checked_min_face(24) == 24
    for bad in (0, -3, 2.5, "24", True, None):
        with pytest.raises(ByelError, match="min_face"):
            checked_min_face(bad)


# --------------------------------------------------------------------------- submit


def frame_tree(root: Path, names: list[str]) -> Path:
    """root/clip/<name> for each name, real FER faces (frames 1-4 always there)."""
    faces = sorted(FER_SAMPLE.glob("*/*.jpg"))
    video = root / "frames" / "clip"
    video.mkdir(parents=True)
    for k, name in enumerate(["00001.jpg", "00002.jpg", "00003.jpg", "00004.jpg", *names]):
        (video / name).write_bytes(faces[(11 * k) % len(faces)].read_bytes())
    return root / "frames"


def test_submit_reads_only_ascii_frame_numbers(tmp_path, ckpts):
    frames = frame_tree(tmp_path, ["１２.jpg", "².jpg", "٧.jpg"])  # full-width 12, superscript 2, Arabic-Indic 7
    r = submit(ckpts[1], frames, tmp_path / "sub", progress=False)
    assert r["frames"] == 4 and r["predicted"] == 4 and r["ignored"] == {"not_a_frame_number": 3}
    assert len((tmp_path / "sub" / "clip.txt").read_text().splitlines()) == 1 + 4


def test_submit_refuses_a_stray_frame_far_beyond_the_others_before_the_model_loads(tmp_path, ckpts, capsys,
                                                                                   monkeypatch):
    frames = frame_tree(tmp_path, ["10000000.jpg"])
    out = tmp_path / "sub"

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the frame tree was checked")

    monkeypatch.setattr("byel.classifier.load", no_model)
    with pytest.raises(DataError, match="10000000"):
        submit(ckpts[1], frames, out, progress=False)
    assert main(["submit", "--checkpoint", str(ckpts[1]), "--frames", str(frames), "--out", str(out),
                 "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("byel: error: ") and str(frames / "clip" / "10000000.jpg") in line
    assert not out.exists() or not any(out.iterdir())


def test_submit_still_fills_a_gap_within_the_rule(tmp_path, ckpts):
    last = MAX_FILL_FACTOR * 5 + FILL_SLACK  # 5 frame files: the highest allowed number
    frames = frame_tree(tmp_path, [f"{last:05d}.jpg"])
    r = submit(ckpts[1], frames, tmp_path / "sub", progress=False)
    assert r["frames"] == last and r["predicted"] == 5 and r["filled_missing"] == last - 5


# --------------------------------------------------------------------------- parser bounds


def parse_fails(argv, capsys, monkeypatch) -> str:
    """The parser refuses argv (SystemExit 2, one line) before any command runs."""
    import byel.classifier

    def no_model(*a, **k):
        raise AssertionError("a model was loaded")

    for name in ("load", "load_backbone"):
        monkeypatch.setattr(byel.classifier, name, no_model)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    line = one_error_line(capsys)
    assert ": error: " in line and line.startswith("byel ")
    return line


@pytest.mark.parametrize("spec", ["window:1000000", f"window:{MAX_WINDOW + 1}", "window:0", "window:2.0",
                                  "window:３", "ema:0", "ema:1.5", "ema:nan", "ema:٠.٥"])
def test_smooth_bounds_are_checked_when_parsing(tmp_path, ckpts, capsys, monkeypatch, spec):
    img = write_image(tmp_path / "a.png")
    line = parse_fails(["predict", "--checkpoint", str(ckpts[1]), str(img), "--out", str(tmp_path / "p.csv"),
                        "--smooth", spec], capsys, monkeypatch)
    assert "--smooth" in line and str(MAX_WINDOW) in line


def test_smooth_specs_normalise_to_what_they_parse_back_to():
    assert CLI_MAX_WINDOW == MAX_WINDOW
    for spec, want in [("window:1001", "window:1001"), ("window:07", "window:7"), ("ema:0.60", "ema:0.6"),
                       ("ema:1", "ema:1"), ("ema:0.123456789", "ema:0.123456789"), ("none", "none")]:
        assert check_smooth(spec) == want and check_smooth(want) == want


def test_max_per_set_bound_is_checked_when_parsing(tmp_path, ckpts, capsys, monkeypatch):
    import byel.latents

    assert CLI_MIN_PER_SET == byel.latents.MIN_PER_SET
    data = write_class_folders(tmp_path / "synth", 2)
    line = parse_fails(["plot", "latents", "--checkpoint", str(ckpts[1]), "--data", str(data), "--out",
                        str(tmp_path / "l.png"), "--max-per-set", "1"], capsys, monkeypatch)
    assert "--max-per-set" in line and "≥ 2" in line
    monkeypatch.undo()
    # the bound is the real one: two images per set are enough for the projection
    r = byel.latents.plot_latents(ckpts[1], [str(data), str(FER_SAMPLE)], tmp_path / "l.png", max_per_set=2)
    assert [v["n"] for v in r["sets"].values()] == [2, 2]
