"""What the Python API gives per face beyond the label: detection score, blendshapes, head pose,
faces numbered left to right, and the annotated picture (annotate, _repr_png_)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import byel
from byel.faces.mesher import BLENDSHAPES
from conftest import PHOTOS

GROUP = PHOTOS / "group.jpg"


@pytest.fixture(scope="module")
def model():
    return byel.load()  # the shipped model, the landmarker finder


@pytest.fixture(scope="module")
def rgb():
    return np.asarray(Image.open(GROUP).convert("RGB"))


@pytest.fixture(scope="module")
def faces(model):
    return model.predict(GROUP)


def test_landmarker_faces_have_score_blendshapes_and_pose(faces):
    assert len(faces) == 5
    for f in faces:
        assert 0 < f.score <= 1
        assert list(f.blendshapes) == list(BLENDSHAPES) and len(f.blendshapes) == 52
        assert all(0 <= v <= 1 for v in f.blendshapes.values())
        assert f.landmarks.shape == (478, 3) and np.isfinite(f.pose).all() and all(abs(a) < 90 for a in f.pose)
        d = f.to_dict()
        assert d["score"] == f.score and set(d["pose"]) == {"yaw", "pitch", "roll"} and len(d["blendshapes"]) == 52


def test_mirroring_flips_yaw_and_roll(model, faces, rgb):
    mirrored = model.predict(np.ascontiguousarray(np.fliplr(rgb)))
    W = rgb.shape[1]
    flipped = 0
    for f in faces:  # the same face in the mirror: the box whose centre is the mirrored centre
        cx, cy = W - (f.box[0] + f.box[2] / 2), f.box[1] + f.box[3] / 2
        g = min(mirrored, key=lambda m: (m.box[0] + m.box[2] / 2 - cx) ** 2 + (m.box[1] + m.box[3] / 2 - cy) ** 2)
        flipped += np.sign(f.pose.yaw) == -np.sign(g.pose.yaw) and np.sign(f.pose.roll) == -np.sign(g.pose.roll)
        assert abs(f.pose.pitch - g.pose.pitch) < 5
    assert flipped >= 4
    turned = [f for f in faces if abs(f.pose.yaw) > 20]  # the sad face (bottom left) looks to the image's right
    assert len(turned) == 1 and turned[0].pose.yaw > 0 and turned[0].box[0] < W / 2


def test_other_finders_give_none(faces, rgb):
    crops = byel.load(detect=False).predict(rgb)
    (f,) = crops
    assert f.score is None and f.blendshapes is None and f.pose is None and f.landmarks is None
    assert set(f.to_dict()) == {"box", "label", "probabilities"}


def test_faces_are_numbered_left_to_right(faces):
    xs = [(f.box[0], f.box[1]) for f in faces]
    assert xs == sorted(xs)
    assert faces.largest() == max(faces, key=lambda f: f.box[2] * f.box[3]) and faces.largest().box[0] < 100


def test_annotate_draws_on_the_input_pixels(model, faces, rgb):
    for got in (faces.annotate(), model.predict(Image.open(GROUP)).annotate()):
        assert isinstance(got, Image.Image) and got.size == (640, 400)
        drawn = np.asarray(got.convert("RGB"))
        changed = np.any(drawn != rgb, axis=2)
        for f in faces:
            x, y, w, h = f.box
            assert changed[y:y + h, x:x + w].any()
        outside = np.ones_like(changed)
        for f in faces:
            x, y, w, h = f.box
            outside[max(0, y - 40):y + h + 2, max(0, x - 2):x + w + 200] = False  # box, label above it
        assert not changed[outside].any()  # elsewhere the input's pixels
    png = faces._repr_png_()
    assert png.startswith(b"\x89PNG") and Image.open(io.BytesIO(png)).size == (640, 400)
    with pytest.raises(byel.ByelError, match="annotate"):
        faces.annotate(rgb[:100])
