"""Procedural renderer: output contract, determinism, AU response, robustness."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from byel.classes import CLASSES
from byel.synth.au import AUS, AUSampler
from byel.synth.procedural import ProceduralBackend


def _render(backend, emotion="happiness", seed=0, aus=None):
    rng = np.random.default_rng(seed)
    if aus is None:
        aus = AUSampler().sample(emotion, rng)
    return backend.render(emotion, aus, rng)


@pytest.mark.parametrize("size", [16, 48, 64, 112])
def test_output_contract(size):
    b = ProceduralBackend(size=size)
    for k, c in enumerate(CLASSES):
        img, params = _render(b, c, seed=k)
        assert img.shape == (size, size, 3) and img.dtype == np.uint8
        assert img.std() > 3  # not blank
        assert all(isinstance(k, str) and isinstance(v, (int, float, str)) for k, v in params.items())


def test_same_rng_same_image_and_params():
    b = ProceduralBackend(48)
    (a, pa), (c, pc) = _render(b, seed=3), _render(b, seed=3)
    assert np.array_equal(a, c) and pa == pc
    assert not np.array_equal(a, _render(b, seed=4)[0])


def test_grey_has_equal_channels():
    b = ProceduralBackend(48, grey=True)
    for s in range(20):  # covers JPEG and no-JPEG draws
        img, _ = _render(b, CLASSES[s % 6], seed=s)
        assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()


def test_picklable_for_worker_processes():
    b = pickle.loads(pickle.dumps(ProceduralBackend(40, grey=True)))
    assert b.size == 40 and b.grey and b.name == "procedural"
    assert _render(b)[0].shape == (40, 40, 3)


def _render_with_landmarks(monkeypatch, seed: int, aus: dict, size: int = 64):
    """(image, params, mouth landmarks in image pixels) of one render with the AUs in `aus` (the
    others 0). render() returns no landmarks, so they are read from the renderer's own geometry
    (procedural._geometry, the face-frame points it draws) and projected by its own pose
    (procedural._Pose), through spies on this very call."""
    import byel.synth.procedural as procedural

    seen = {}
    real_geometry = procedural._geometry

    class Pose(procedural._Pose):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            seen["pose"] = self

    def geometry(idn, a, rng):
        seen["geo"] = real_geometry(idn, a, rng)
        return seen["geo"]

    monkeypatch.setattr(procedural, "_geometry", geometry)
    monkeypatch.setattr(procedural, "_Pose", Pose)
    b = ProceduralBackend(size)
    img, params = _render(b, seed=seed, aus={**{au: 0.0 for au in AUS}, **aus})
    monkeypatch.undo()
    geo, to_px = seen["geo"], lambda xy: seen["pose"](np.asarray(xy, np.float32), 0.1) * (size / b.res)
    mid = len(geo["up_in"]) // 2  # the lips' centre point
    marks = {"corners": to_px(np.array(geo["corners"])), "up_in": to_px(geo["up_in"][mid]),
             "lo_in": to_px(geo["lo_in"][mid]),
             "mouth": to_px(np.vstack([geo["up_out"], geo["lo_out"], np.array(geo["corners"])]))}
    return img, params, marks


def _luma(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) @ [0.299, 0.587, 0.114]


def _vertical_shift(neutral: np.ndarray, moved: np.ndarray, points: np.ndarray) -> float:
    """In pixels, how far the pixels that got darker lie below (> 0) or above (< 0) those that got
    lighter, within the box of the mouth landmarks `points` (of both renders) plus a margin."""
    size = neutral.shape[0]
    delta = _luma(moved) - _luma(neutral)
    (x0, y0), (x1, y1) = points.min(0) - 0.06 * size, points.max(0) + 0.06 * size
    yy, xx = np.mgrid[:size, :size] + 0.5
    box = (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)
    darker, lighter = np.clip(-delta, 0, None) * box, np.clip(delta, 0, None) * box
    return float((darker * yy).sum() / darker.sum() - (lighter * yy).sum() / lighter.sum())


SEEDS = range(12)


def test_expression_changes_the_face_not_the_nuisance(monkeypatch):
    """Same rng state, different AUs: identity and nuisance stay (the same params), only the face
    moves, and in the direction of each AU."""
    for seed in SEEDS:
        _, pa, _ = _render_with_landmarks(monkeypatch, seed, {})
        _, pc, _ = _render_with_landmarks(monkeypatch, seed, {6: 1.0, 12: 1.0, 25: 1.0})
        assert pa == pc, seed


def test_au12_lifts_the_mouth_corners(monkeypatch):
    """AU12 (lip-corner puller) lifts both corners in the renderer's own landmarks (smaller y), and
    the pixels follow: around the mouth, what gets darker (the lips' new place) lies above what gets
    lighter. AU15 (lip-corner depressor), the control, moves both the other way."""
    up, down = [], []
    for seed in SEEDS:
        neutral, _, n = _render_with_landmarks(monkeypatch, seed, {})
        smile, _, s = _render_with_landmarks(monkeypatch, seed, {12: 1.0})
        frown, _, f = _render_with_landmarks(monkeypatch, seed, {15: 1.0})
        assert (s["corners"][:, 1] < n["corners"][:, 1] - 2).all(), (seed, s["corners"], n["corners"])
        assert (f["corners"][:, 1] > n["corners"][:, 1] + 2).all(), (seed, f["corners"], n["corners"])
        up.append(_vertical_shift(neutral, smile, np.vstack([n["mouth"], s["mouth"]])))
        down.append(_vertical_shift(neutral, frown, np.vstack([n["mouth"], f["mouth"]])))
    up, down = np.array(up), np.array(down)
    # nearly every face (a dark or blurred photo may hide its mouth), and clearly on average
    assert (up < 0).sum() >= len(up) - 1 and up.mean() < -2, up
    assert (down > 0).sum() >= len(down) - 1 and down.mean() > 2, down


def test_au26_opens_the_mouth(monkeypatch):
    """AU26 (jaw drop) with parted lips (AU25) widens the inner-lip gap in the renderer's own
    landmarks, and the pixels between the inner lips turn to the dark of the open mouth. (AU26
    alone keeps the lips together in this renderer: it only drops the jaw.)"""
    darker = []
    for seed in SEEDS:
        parted, _, p = _render_with_landmarks(monkeypatch, seed, {25: 1.0})
        opened, _, o = _render_with_landmarks(monkeypatch, seed, {25: 1.0, 26: 1.0})
        gap_parted, gap_open = p["lo_in"][0, 1] - p["up_in"][0, 1], o["lo_in"][0, 1] - o["up_in"][0, 1]
        assert gap_open > 3 * gap_parted and gap_open > 0.08 * parted.shape[0], (seed, gap_parted, gap_open)
        x, y = ((o["up_in"][0] + o["lo_in"][0]) / 2).astype(int)  # inside the open mouth
        window = (slice(y - 1, y + 2), slice(x - 1, x + 2))
        darker.append(_luma(parted)[window].mean() - _luma(opened)[window].mean())
    assert sum(d > 20 for d in darker) >= len(darker) - 3 and np.median(darker) > 40, darker


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_extreme_aus_render_without_warnings(value):
    b = ProceduralBackend(48)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for s in range(10):
            img, _ = _render(b, seed=s, aus={au: value for au in AUS})
            assert img.shape == (48, 48, 3)
