"""The default face finder of predict, the API and serve (byel.detect.FaceFinder): the vendored
MediaPipe landmarker finds the faces (BlazeFace on the photo and on tiles of it, then the mesh),
crops them aligned on the eyes like the procedural training faces, and hands its mesh on to the
API (Face.landmarks) and to a geometry head (no second measurement)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

import byel
from byel.classes import CLASSES
from byel.cli import main
from byel.detect import FaceFinder
from byel.faces import Meshes, geometry_features, measure_images
from byel.faces.features import SYNTH_EYES
from byel.predict import NO_FACE, predict
from conftest import PHOTOS, have_detector, make_checkpoints, read_rows, write_image

pytest.importorskip("ai_edge_litert")

GROUP = PHOTOS / "group.jpg"
PASTED = [(30, 60, 150), (230, 40, 130), (420, 90, 110), (120, 240, 120), (470, 260, 100)]  # photos/README.md


def rgb_of(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def eye_angle(landmarks: np.ndarray) -> float:
    """Degrees of the line from the outer eye corner 33 to 263 (0: level)."""
    (x0, y0), (x1, y1) = landmarks[33, :2], landmarks[263, :2]
    return math.degrees(math.atan2(y1 - y0, x1 - x0))


def mesh_in(landmarks, box) -> bool:
    x, y, w, h = box
    return landmarks.shape == (478, 3) and x < landmarks[:, 0].mean() < x + w and y < landmarks[:, 1].mean() < y + h


def centre_in(box, square) -> bool:
    x, y, s = square
    return x <= box[0] + box[2] / 2 <= x + s and y <= box[1] + box[3] / 2 <= y + s


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("finder"))[1]


@pytest.fixture(scope="module")
def finder():
    return FaceFinder(48)


def test_the_default_finder_is_the_landmarker_and_finds_every_face_of_the_group_photo(finder):
    rgb = rgb_of(GROUP)
    faces = finder(rgb)
    assert finder.name == "landmarker" and len(faces) == 5
    assert all(sum(centre_in(f.box, sq) for f in faces) == 1 for sq in PASTED)
    areas = [f.box[2] * f.box[3] for f in faces]
    assert areas == sorted(areas, reverse=True)
    for f in faces:
        x, y, w, h = f.box
        assert all(isinstance(v, int) for v in f.box) and 0 <= x and x + w <= 640 and 0 <= y and y + h <= 400
        assert f.crop.shape == (48, 48, 3) and f.crop.dtype == np.uint8 and mesh_in(f.landmarks, f.box)


@pytest.mark.parametrize("angle", [25, -30])
def test_crops_of_a_rotated_face_have_level_eyes_where_the_training_faces_have_them(finder, angle):
    turn = cv2.getRotationMatrix2D((105, 135), angle, 1.0)  # about the largest face's centre
    photo = cv2.warpAffine(rgb_of(GROUP), turn, (640, 400), borderMode=cv2.BORDER_REFLECT)
    face = finder(photo)[0]
    assert centre_in(face.box, (20, 50, 170)) and abs(eye_angle(face.landmarks)) > 20  # tilted in the photo
    again = measure_images(face.crop[None], cache=False, workers=1)  # the crop measured afresh
    assert again.found[0] and abs(eye_angle(again.landmarks[0])) < 3
    np.testing.assert_allclose(again.landmarks[0, [33, 263], :2] / 48, SYNTH_EYES, atol=0.03)


def test_predict_and_the_api_give_boxes_in_image_pixels_and_the_mesh(tmp_path, ckpt):
    out = tmp_path / "pred.csv"
    r = predict(ckpt, [str(GROUP)], out, progress=False)
    _, rows = read_rows(out)
    assert r["detector"] == "landmarker" and r["faces"] == len(rows) == 5
    csv_boxes = [tuple(int(row[k]) for k in "xywh") for row in rows]
    assert all(sum(centre_in(b, sq) for b in csv_boxes) == 1 for sq in PASTED)
    faces = byel.load(ckpt).predict(GROUP)
    assert [f.box for f in faces] == sorted(csv_boxes)  # the API numbers faces left to right
    by_box = dict(zip(csv_boxes, rows))
    for f, row in ((f, by_box[f.box]) for f in faces):
        p = float(row[f"p_{CLASSES[0]}"])
        assert f.label == row["predicted"] and f.probabilities[CLASSES[0]] == pytest.approx(p, abs=1e-5)
        assert mesh_in(f.landmarks, f.box)
    assert "landmarks" not in faces[0].to_dict() and "landmarks" not in repr(faces[0])


def test_a_photo_without_a_face_gets_one_no_face_row(tmp_path, ckpt):
    blank = write_image(tmp_path / "in" / "wall.png", 90, size=200)
    noise = tmp_path / "in" / "noise.png"
    cv2.imwrite(str(noise), np.random.default_rng(0).integers(0, 256, (120, 300, 3), dtype=np.uint8))
    line = tmp_path / "in" / "line.png"
    cv2.imwrite(str(line), np.full((1, 50, 3), 200, np.uint8))
    r = predict(ckpt, [str(tmp_path / "in")], tmp_path / "pred.csv", progress=False)
    _, rows = read_rows(tmp_path / "pred.csv")
    assert r["no_face"] == 3 and r["faces"] == 0
    assert sorted(row["file"] for row in rows) == sorted([str(noise), str(blank), str(line)])
    assert all(row["predicted"] == NO_FACE and row["x"] == "" for row in rows)


@pytest.mark.skipif(not have_detector(), reason="no fallback detector installed (OpenCV cascade or dlib)")
def test_the_other_detectors_still_work(tmp_path, ckpt, capsys, monkeypatch):
    out = tmp_path / "pred.csv"
    assert main(["predict", str(GROUP), "--checkpoint", str(ckpt), "--out", str(out), "--detector", "dlib-hog",
                 "--no-progress"]) == 0
    assert "[detector: dlib-hog]" in capsys.readouterr().out and len(read_rows(out)[1]) == 5
    faces = byel.load(ckpt, detector="dlib-hog").predict(GROUP)
    assert len(faces) == 5 and all(f.landmarks is None for f in faces)
    monkeypatch.setattr("byel.detect._litert_installed", lambda: False)  # a platform without its wheel
    assert FaceFinder(48).name in ("opencv-haar", "dlib-hog")


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_missing_or_corrupt_landmarker_is_one_error_line_naming_it(tmp_path, ckpt, capsys, monkeypatch, damage):
    from byel.faces import model as landmarker

    path = tmp_path / "face_landmarker.task"
    if damage == "corrupt":
        path.write_bytes(b"PK\x03\x04 not the model" * 50)
    monkeypatch.setattr(landmarker, "DEFAULT_MODEL", path)
    landmarker.read_models.cache_clear()
    try:
        rc = main(["predict", str(GROUP), "--checkpoint", str(ckpt), "--out", str(tmp_path / "p.csv"), "--no-progress"])
    finally:
        landmarker.read_models.cache_clear()
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and err[0].startswith("byel: error: face landmarker model") and str(path) in err[0]
    assert not (tmp_path / "p.csv").exists()


def test_a_fused_model_classifies_with_the_mesh_measured_on_the_photo(tmp_path, monkeypatch):
    from byel import classifier
    from byel.faces import features

    _, ft = make_checkpoints(tmp_path, {"finetune.head": "fused"})
    ck = torch.load(ft, weights_only=False)
    ck["state_dict"]["geometry.mean"] = torch.randn(1008)  # a geometry head with some opinion
    ck["state_dict"]["fusion_weight"] = torch.tensor(0.5)
    torch.save(ck, ft)
    model = byel.load(ft, mirror=False)  # one pass per face: compared with the classifier below
    measured = []
    real = classifier.measure_images
    for where in (classifier, features):  # the crops measured by the classifier, or for their features
        monkeypatch.setattr(where, "measure_images",
                            lambda images, **kw: measured.append(len(images)) or real(images, **kw))
    faces = model.predict(GROUP)
    assert measured == [] and len(faces) == 5  # no face measured a second time
    found = sorted(model.finder(rgb_of(GROUP)), key=lambda f: (f.box[0], f.box[1]))  # the API's order
    pixels = classifier.predict_probs(model.net, np.stack([f.crop for f in found]))
    geo = model.net.geometry.probs(geometry_features(Meshes.from_faces([f.mesh for f in found]))[0])
    want = classifier.fuse(pixels, geo, 0.5)
    got = np.array([list(f.probabilities.values()) for f in faces])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(want - pixels).max() > 1e-3  # the geometry head did count


@pytest.mark.slow
def test_predict_prints_no_tflite_log_line(tmp_path):
    """TFLite's C++ INFO line about its XNNPACK delegate stays out of what a user sees."""
    import subprocess
    import sys

    out = tmp_path / "p.csv"
    p = subprocess.run([sys.executable, "-m", "byel", "predict", str(PHOTOS / "group.jpg"), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "XNNPACK" not in p.stderr + p.stdout and "TensorFlow" not in p.stderr + p.stdout
    assert len(read_rows(out)[1]) == 5


def test_stderr_survives_interpreters_made_in_threads():
    """TFLite's log line is hidden from fd 2 while an interpreter is made; made in several threads
    at once (as measure_images does), stderr must come back afterwards (it stayed /dev/null when
    two threads each saved the other's)."""
    import subprocess
    import sys

    code = ("import sys, threading\n"
            "from byel.faces.model import interpreter, read_models\n"
            "content = read_models()['face_detector.tflite']\n"
            "for _ in range(5):\n"
            "    barrier = threading.Barrier(8)\n"
            "    ts = [threading.Thread(target=lambda: (barrier.wait(), interpreter(content))) for _ in range(8)]\n"
            "    [t.start() for t in ts]\n"
            "    [t.join() for t in ts]\n"
            "print('stderr still shown', file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "stderr still shown" in p.stderr
