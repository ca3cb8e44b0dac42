"""The Python API (byel.load → Model.predict / predict_video / to_frame) and the options it
shares with `byel predict` (--uncertain, --smooth, the track column)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import byel
from byel.classes import CLASSES
from byel.errors import ByelError
from byel.track import smooth
from conftest import FER_SAMPLE, PHOTOS, have_detector, make_checkpoints, needs_detector, write_image

GROUP = PHOTOS / "group.jpg"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("api"))[1]


@pytest.fixture(scope="module")
def model(ckpt):
    return byel.load(ckpt)


@pytest.fixture(scope="module")
def crops_model(ckpt):
    return byel.load(ckpt, detect=False)


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(f)
    vw.release()
    return path


def summary(faces) -> list:
    return [(f.box, f.label, [round(f.probabilities[c], 4) for c in CLASSES]) for f in faces]


@pytest.mark.slow
def test_import_byel_is_light():
    code = "import sys, byel; bad = {'torch', 'cv2', 'lightning', 'numpy', 'byel.api'} & set(sys.modules); " \
           "assert not bad, bad; assert callable(byel.load) and 'byel.api' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@needs_detector
def test_path_pil_numpy_bytes_and_list_give_the_same_faces(model):
    by_path = model.predict(str(GROUP))
    assert isinstance(by_path, byel.Faces) and len(by_path) == 5 and by_path.size == (640, 400)
    f = by_path[0]
    assert f.label in CLASSES and f.landmarks.shape == (478, 3) and f.track is None  # the default finder's mesh
    assert list(f.probabilities) == list(CLASSES) and abs(sum(f.probabilities.values()) - 1) < 1e-5
    assert f.label == max(f.probabilities, key=f.probabilities.get)
    rgb = np.asarray(Image.open(GROUP).convert("RGB"))
    want = summary(by_path)
    assert summary(model.predict(GROUP)) == want  # pathlib.Path
    assert summary(model.predict(Image.open(GROUP))) == want
    assert summary(model.predict(rgb)) == want
    assert summary(model.predict(GROUP.read_bytes())) == want
    many = model.predict([str(GROUP), rgb, Image.open(GROUP)])
    assert isinstance(many, byel.Results) and [summary(x) for x in many] == [want] * 3
    assert [x.source for x in many] == [str(GROUP), "<image 1>", "<image 2>"]
    stacked = model.predict(np.stack([rgb, rgb]))  # an N×H×W×3 array is N images
    assert [summary(x) for x in stacked] == [want] * 2
    grey = model.predict(np.asarray(Image.open(GROUP).convert("L")))  # H×W
    assert len(grey) == 5


def test_batching_does_not_change_results(ckpt, crops_model):
    files = sorted((FER_SAMPLE / "happy").glob("*.jpg"))[:7]
    small = byel.load(ckpt, detect=False, batch_size=3)
    a, b = crops_model.predict(files), small.predict(files)
    for x, y in zip(a, b):
        assert x[0].box == y[0].box == (0, 0, 48, 48) and x[0].label == y[0].label
        np.testing.assert_allclose(list(x[0].probabilities.values()), list(y[0].probabilities.values()), atol=2e-6)


def test_to_frame_has_the_csv_columns_and_a_no_face_row(tmp_path, model, monkeypatch):
    pd = pytest.importorskip("pandas")
    blank = write_image(tmp_path / "wall.png", 90, size=200)
    res = model.predict([blank, blank])
    assert [len(x) for x in res] == [0, 0]  # no face: an empty list ...
    df = res.to_frame()  # ... and one no_face row each in the table
    assert list(df.columns) == ["file", "frame", "track", "x", "y", "w", "h", "predicted", *[f"p_{c}" for c in CLASSES]]
    assert list(df["predicted"]) == ["no_face", "no_face"] and df["x"].isna().all()
    if have_detector():
        one = model.predict(GROUP).to_frame()
        assert len(one) == 5 and set(one["predicted"]) <= set(CLASSES) and one["frame"].isna().all()
        assert np.allclose(one[[f"p_{c}" for c in CLASSES]].sum(axis=1), 1, atol=1e-5)
        assert byel.to_frame(model.predict(GROUP)).equals(one)
    assert isinstance(df, pd.DataFrame)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ByelError, match="to_frame needs pandas: pip install pandas"):
        res.to_frame()


@needs_detector
def test_video_track_ids_are_stable_for_static_faces(tmp_path, model):
    bgr = cv2.imread(str(GROUP))
    video = write_video(tmp_path / "static.avi", [bgr] * 5)
    res = model.predict_video(video, smooth="ema:0.6")
    assert [r.frame for r in res] == [0, 1, 2, 3, 4] and all(len(r) == 5 for r in res)
    first = {f.track: f.box for f in res[0]}
    assert sorted(first) == [0, 1, 2, 3, 4]
    # the same face keeps its id in every frame (its box moves a few px with the JPEG noise, and up to
    # ~15 px on the bowed face once tracked: the mesh of MediaPipe's tracking ROI, byel.detect.FaceTracker)
    for r in res[1:]:
        now = {f.track: f.box for f in r}
        assert sorted(now) == sorted(first) and all(np.abs(np.subtract(now[t], first[t])).max() <= 16 for t in first)
    df = res.to_frame()
    assert len(df) == 25 and sorted(df["track"].unique()) == [0, 1, 2, 3, 4]
    assert [r.frame for r in model.predict_video(video, stride=2)] == [0, 2, 4]


def test_video_smoothing_is_the_documented_ema_per_track(tmp_path, crops_model):
    # detect=False: each frame is one face with the same box, so one track whose faces change
    faces = [cv2.resize(cv2.imread(str(f)), (96, 96)) for d in ("happy", "angry", "surprise")
             for f in sorted((FER_SAMPLE / d).glob("*.jpg"))[:2]]
    video = write_video(tmp_path / "faces.avi", faces)
    raw = crops_model.predict_video(video, smooth="none")
    ema = crops_model.predict_video(video, smooth="ema:0.3")
    win = crops_model.predict_video(video, smooth="window:3")
    assert {f.track for r in raw for f in r} == {0}
    p = np.array([[r[0].probabilities[c] for c in CLASSES] for r in raw])
    s = np.array([[r[0].probabilities[c] for c in CLASSES] for r in ema])
    hand = [p[0]]
    for row in p[1:]:
        hand.append(0.3 * row + 0.7 * hand[-1])
    np.testing.assert_allclose(s, np.array(hand), atol=1e-6)
    assert [r[0].label for r in ema] == [CLASSES[i] for i in s.argmax(1)]  # labels follow the smoothed values
    w = np.array([[r[0].probabilities[c] for c in CLASSES] for r in win])
    np.testing.assert_allclose(w[2], p[1:4].mean(0), atol=1e-6)
    np.testing.assert_allclose(w, smooth([0] * len(p), p, "window:3"), atol=1e-6)


def test_uncertain_threshold(crops_model, tmp_path, ckpt):
    files = sorted((FER_SAMPLE / "sad").glob("*.jpg"))[:4]
    plain = crops_model.predict(files)
    top = [max(x[0].probabilities.values()) for x in plain]
    cut = float(np.median(top))
    marked = crops_model.predict(files, uncertain=cut)
    for x, y, t in zip(plain, marked, top):
        assert y[0].label == ("uncertain" if t < cut else x[0].label)
        assert y[0].probabilities == x[0].probabilities
    assert all(x[0].label == "uncertain" for x in crops_model.predict(files, uncertain=1.0))
    # the CLI: the same labels in the CSV, counted
    from byel.predict import predict

    r = predict(ckpt, [str(f) for f in files], tmp_path / "p.csv", detect=False, progress=False, uncertain=cut)
    with open(tmp_path / "p.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["predicted"] for row in rows] == [y[0].label for y in marked]
    assert r["class_counts"]["uncertain"] == sum(y[0].label == "uncertain" for y in marked)


def test_cli_video_csv_has_a_track_column_and_smoothing(tmp_path, ckpt):
    from byel.cli import main

    faces = [cv2.resize(cv2.imread(str(f)), (96, 96)) for f in sorted((FER_SAMPLE / "fear").glob("*.jpg"))[:4]]
    video = write_video(tmp_path / "clip.avi", faces)
    out = tmp_path / "p.csv"
    assert main(["predict", str(video), "--checkpoint", str(ckpt), "--out", str(out), "--no-detect",
                 "--no-progress", "--smooth", "ema:0.5", "--annotate", str(tmp_path / "ann")]) == 0
    with open(out, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames[:4] == ["file", "frame", "track", "x"]
    assert [r["track"] for r in rows] == ["0"] * 4 and [r["frame"] for r in rows] == ["0", "1", "2", "3"]
    p = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in rows])
    raw = byel.load(ckpt, detect=False).predict_video(video, smooth="none")
    want = smooth([0] * 4, np.array([[x[0].probabilities[c] for c in CLASSES] for x in raw]), "ema:0.5")
    np.testing.assert_allclose(p, want, atol=2e-6)
    (annotated,) = (tmp_path / "ann").glob("clip.avi.annotated.*")  # .mp4, or MJPG .avi where OpenCV has no mp4v
    cap = cv2.VideoCapture(str(annotated))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()


@pytest.mark.parametrize("args, needle", [
    (["--uncertain", "0"], "--uncertain"),
    (["--uncertain", "1.5"], "--uncertain"),
    (["--smooth", "ema:2"], "--smooth"),
    (["--smooth", "median:3"], "--smooth"),
])
def test_cli_bad_uncertain_or_smooth_is_one_line(tmp_path, capsys, args, needle):
    from byel.cli import main

    with pytest.raises(SystemExit) as e:
        main(["predict", str(GROUP), "--checkpoint", "x.ckpt", *args])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and needle in err and len(err.splitlines()) == 1


def test_bad_inputs_are_one_line(tmp_path, model):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg" * 10)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"nothing here")
    cases = [
        (lambda: model.predict(tmp_path / "missing.jpg"), "not found"),
        (lambda: model.predict(corrupt), "not a readable image"),
        (lambda: model.predict(notes), "not a readable image"),
        (lambda: model.predict(tmp_path), "is a folder"),
        (lambda: model.predict(bad_video), "use model.predict_video"),
        (lambda: model.predict(b"garbage"), "not a readable image"),
        (lambda: model.predict(42), "cannot read a int"),
        (lambda: model.predict({"image": 1}), "cannot read a dict"),
        (lambda: model.predict(np.zeros((20, 20, 3), np.float32)), "must be uint8"),
        (lambda: model.predict(np.zeros((20, 20, 5), np.uint8)), "shape (20, 20, 5)"),
        (lambda: model.predict([str(GROUP), 3.5]), "cannot read a float"),
        (lambda: model.predict(str(GROUP), uncertain=0), "uncertain threshold"),
        (lambda: model.predict_video(tmp_path / "missing.mp4"), "not found"),
        (lambda: model.predict_video(bad_video), "not a readable video"),
        (lambda: model.predict_video(bad_video, stride=0), "stride"),
        (lambda: model.predict_video(bad_video, smooth="ema:3"), "bad smoothing"),
        (lambda: byel.load(tmp_path / "missing.ckpt"), "checkpoint not found"),
        (lambda: byel.load(corrupt), "checkpoint"),
        (lambda: byel.load(GROUP, batch_size=0), "batch_size"),
    ]
    for call, needle in cases:
        with pytest.raises(ByelError) as e:
            call()
        msg = str(e.value)
        assert needle in msg and "\n" not in msg, (needle, msg)


def test_load_without_a_shipped_model_is_one_clear_line(tmp_path, monkeypatch):
    import byel.classifier

    monkeypatch.setattr(byel.classifier, "DEFAULT_MODEL_DIR", tmp_path / "default_model")
    with pytest.raises(ByelError) as e:
        byel.load()
    assert str(e.value) == "no default model shipped yet; pass a checkpoint"


def test_the_shipped_model_reads_a_photo_without_any_training():
    """The issue's check: `byel.load().predict(photo)` right after install, one entry per face."""
    import json

    import byel.export
    import byel.classifier

    ship = byel.classifier.DEFAULT_MODEL_DIR
    card = json.loads((ship / "model_card.json").read_text())
    ckpt = ship / "model.ckpt"
    assert ckpt.stat().st_size <= 20 * 1024 * 1024
    model = byel.load()
    assert model.checkpoint == ckpt and list(model.classes) == card["model"]["classes"]
    assert byel.export.file_sha256(ckpt) == card["model"]["sha256"]  # the card describes this very file
    faces = model.predict(str(PHOTOS / "group.jpg"))
    assert len(faces) == 5 and all(f.label in model.classes for f in faces)
    assert all(abs(sum(f.probabilities.values()) - 1) < 1e-4 for f in faces)


@pytest.mark.slow
@needs_detector
def test_inference_speed_benchmark_writes_its_tables(tmp_path):
    import json

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "inference_speed.py"
    p = subprocess.run([sys.executable, str(script), "--preset", "smoke", "--frames", "3", "--workers", "1",
                        "--min-face", "64", "--repeats", "1", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    info = json.loads((tmp_path / "inference_speed.json").read_text())
    (row,) = info["rows"]
    assert (row["workers"], row["min_face"], row["frames"], row["faces"]) == (1, 64, 3, 15) and row["faces_per_s"] > 0
    assert info["command"].startswith("python benchmarks/inference_speed.py --preset smoke")
    assert info["command"] in (tmp_path / "inference_speed.md").read_text()  # the table names its command
    bad = subprocess.run([sys.executable, str(script), "--workers", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
