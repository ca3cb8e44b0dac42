"""Stable predictions: test-time mirroring (on by default, off with mirror=False / --no-mirror),
video smoothing on by default (off with --smooth none), one-frame tracks dropped from videos."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

import byel
from byel import classifier
from byel.classes import CLASSES
from byel.cli import main
from byel.predict import PredictionWriter
from byel.track import iou, lasting, smooth
from conftest import FER_SAMPLE, PHOTOS, make_checkpoints, needs_detector

GROUP = PHOTOS / "group.jpg"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("stable"))[1]


@pytest.fixture(scope="module")
def net(ckpt):
    return classifier.load(ckpt)


def fer_crops(n: int = 4, size: int = 48) -> np.ndarray:
    files = [f for d in ("happy", "angry") for f in sorted((FER_SAMPLE / d).glob("*.jpg"))[:n // 2]]
    return np.stack([cv2.resize(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB), (size, size)) for f in files])


def test_mirror_averages_a_face_and_its_mirror_image(net):
    crops = fer_crops()
    alone = classifier.predict_probs(net, crops)
    flipped = classifier.predict_probs(net, crops[:, :, ::-1].copy())
    both = classifier.predict_probs(net, crops, mirror=True)
    np.testing.assert_allclose(both, (alone + flipped) / 2, atol=1e-6)
    assert not np.allclose(alone, flipped, atol=1e-4)  # the faces are not symmetric: mirroring matters
    np.testing.assert_allclose(classifier.face_probs(net, crops, mirror=True), both, atol=1e-6)
    np.testing.assert_allclose(classifier.face_probs(net, crops), alone, atol=1e-6)


def test_mirror_changes_nothing_for_a_symmetric_face(net):
    half = fer_crops()[:, :, :24]
    symmetric = np.ascontiguousarray(np.concatenate([half, half[:, :, ::-1]], axis=2))
    np.testing.assert_allclose(classifier.predict_probs(net, symmetric, mirror=True),
                               classifier.predict_probs(net, symmetric), atol=1e-6)


def test_the_api_mirrors_by_default_and_mirror_false_turns_it_off(ckpt):
    on, off = byel.load(ckpt, detect=False), byel.load(ckpt, detect=False, mirror=False)
    crop = fer_crops(2, 64)[0]
    probs = lambda faces: np.array([faces[0].probabilities[c] for c in CLASSES])  # noqa: E731
    want = (probs(off.predict(crop)) + probs(off.predict(np.ascontiguousarray(crop[:, ::-1])))) / 2
    np.testing.assert_allclose(probs(on.predict(crop)), want, atol=1e-5)
    assert not np.allclose(probs(off.predict(crop)), want, atol=1e-4)


def test_predict_cli_mirrors_unless_no_mirror(tmp_path, ckpt):
    img = tmp_path / "face.png"
    cv2.imwrite(str(img), cv2.cvtColor(fer_crops(2, 64)[0], cv2.COLOR_RGB2BGR))
    rows = {}
    for name, extra in (("on", []), ("off", ["--no-mirror"])):
        out = tmp_path / f"{name}.csv"
        assert main(["predict", str(img), "--checkpoint", str(ckpt), "--out", str(out), "--no-detect",
                     "--no-progress", *extra]) == 0
        with open(out, newline="") as fh:
            (row,) = csv.DictReader(fh)
        rows[name] = np.array([float(row[f"p_{c}"]) for c in CLASSES])
    api = byel.load(ckpt, detect=False).predict(img)[0].probabilities
    np.testing.assert_allclose(rows["on"], [api[c] for c in CLASSES], atol=2e-6)
    assert not np.allclose(rows["on"], rows["off"], atol=1e-4)


@pytest.mark.slow
@needs_detector
def test_label_changes_under_mirroring_of_the_group_photo_do_not_increase():
    from byel import imageio

    rgb = imageio.read(GROUP)

    def changed(model) -> int:
        faces, flipped = model.predict(rgb), model.predict(np.ascontiguousarray(rgb[:, ::-1]))
        assert len(faces) == len(flipped) == 5
        n = 0
        for f in faces:
            x, y, w, h = f.box
            other = max(flipped, key=lambda g: iou((rgb.shape[1] - x - w, y, w, h), g.box))
            n += other.label != f.label
        return n

    assert changed(byel.load()) <= changed(byel.load(mirror=False))


def write_video(path, frames):
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for f in frames:
        vw.write(f)
    vw.release()
    return path


def test_videos_are_smoothed_by_default_and_smooth_none_turns_it_off(tmp_path, ckpt):
    faces = [cv2.resize(cv2.imread(str(f)), (96, 96)) for d in ("happy", "angry")
             for f in sorted((FER_SAMPLE / d).glob("*.jpg"))[:3]]
    video = write_video(tmp_path / "clip.avi", faces)
    got = {}
    for name, extra in (("default", []), ("none", ["--smooth", "none"])):
        out = tmp_path / f"{name}.csv"
        assert main(["predict", str(video), "--checkpoint", str(ckpt), "--out", str(out), "--no-detect",
                     "--no-progress", *extra]) == 0
        with open(out, newline="") as fh:
            got[name] = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in csv.DictReader(fh)])
    assert len(got["none"]) == 6
    np.testing.assert_allclose(got["default"], smooth([0] * 6, got["none"], "ema:0.5"), atol=2e-6)
    assert not np.allclose(got["default"], got["none"], atol=1e-4)
    model = byel.load(ckpt, detect=False)
    api = lambda res: np.array([[r[0].probabilities[c] for c in CLASSES] for r in res])  # noqa: E731
    np.testing.assert_allclose(api(model.predict_video(video)), got["default"], atol=2e-6)
    np.testing.assert_allclose(api(model.predict_video(video, smooth="none")), got["none"], atol=2e-6)


def test_a_one_frame_track_is_dropped_from_a_video(tmp_path):
    classes = CLASSES
    writer = PredictionWriter(tmp_path / "p.csv", classes, smooth="none")
    p = np.full(len(classes), 1 / len(classes))
    face, ghost = (10, 10, 40, 40), (200, 10, 30, 30)
    with writer.writing():
        for k in range(6):
            boxes = [face, ghost] if k == 2 else [face]
            meta = {"file": "v.avi", "frame": k, "_kind": "video", "_ann": "v.avi", "_fps": 10.0}
            writer.add(meta, boxes, np.stack([p] * len(boxes)))
    writer.close()
    with open(tmp_path / "p.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["frame"], r["track"], r["x"]) for r in rows] == [(str(k), "0", "10") for k in range(6)]
    assert writer.faces == 6 and writer.dropped == 1
    # a short video keeps every face; a track seen twice stays
    assert lasting([[0], [0, 1], [0]]) == [[True], [True, True], [True]]
    assert lasting([[0], [0, 1], [0, 1], [0], [0, 2]]) == [[True], [True, True], [True, True], [True], [True, False]]
