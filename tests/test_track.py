"""byel.track: IoU tracks across frames and per-track smoothing, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from byel import track
from byel.errors import ByelError
from byel.track import IoUTracker, assign_tracks, iou, parse_smooth, smooth, track_and_smooth


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0


def test_tracks_follow_moving_faces_whatever_the_detection_order():
    a = [(0, 0, 50, 50), (200, 0, 50, 50)]
    b = [(205, 2, 50, 50), (4, 3, 50, 50)]  # listed the other way round, both moved a little
    c = [(8, 5, 50, 50), (400, 400, 40, 40)]  # the right face is gone, a new one appears
    assert assign_tracks([a, b, c]) == [[0, 1], [1, 0], [0, 2]]


def test_a_missed_frame_keeps_the_id_up_to_max_gap():
    f = [(10, 10, 40, 40)]
    assert assign_tracks([f, [], [], f], max_gap=2) == [[0], [], [], [0]]
    assert assign_tracks([f, [], [], f], max_gap=1) == [[0], [], [], [1]]


def test_greedy_matching_without_scipy_gives_the_same_tracks(monkeypatch):
    frames = [[(0, 0, 50, 50), (60, 0, 50, 50)], [(62, 1, 50, 50), (1, 1, 50, 50)], [(3, 2, 50, 50)]]
    with_scipy = assign_tracks(frames)
    monkeypatch.setitem(__import__("sys").modules, "scipy.optimize", None)  # import fails: greedy
    assert assign_tracks(frames) == with_scipy == [[0, 1], [1, 0], [0]]


def test_a_weak_overlap_never_displaces_a_real_match():
    t = IoUTracker(min_iou=0.3)
    t.update([(0, 0, 100, 100), (150, 0, 100, 100)])
    # the first box overlaps track 0 well and track 1 slightly; the second box overlaps nothing
    assert t.update([(10, 0, 100, 100), (600, 0, 100, 100)]) == [0, 2]


def test_ema_matches_hand_computed_values():
    p = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.5, 0.5]])
    # s0 = p0; s1 = .6*p1 + .4*s0 = (.4, .6); s2 = .6*p2 + .4*s1 = (.16, .84); s3 = .6*p3 + .4*s2 = (.364, .636)
    want = np.array([[1.0, 0.0], [0.4, 0.6], [0.16, 0.84], [0.364, 0.636]])
    np.testing.assert_allclose(smooth([7, 7, 7, 7], p, "ema:0.6"), want)
    np.testing.assert_allclose(smooth([7, 7, 7, 7], p, "ema:1"), p)  # alpha 1: no smoothing
    np.testing.assert_allclose(smooth([7, 7, 7, 7], p, "none"), p)


def test_tracks_are_smoothed_separately():
    # rows interleave two tracks (two faces per frame): each gets its own average
    p = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    got = smooth([0, 1, 0, 1], p, "ema:0.5")
    np.testing.assert_allclose(got, [[1, 0], [0, 1], [0.5, 0.5], [0.5, 0.5]])


def test_centred_window_matches_hand_computed_values():
    p = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # window 3: the mean of rows i-1 .. i+1 (fewer at the ends)
    want = np.array([[0.5, 0.5], [2 / 3, 1 / 3], [2 / 3, 1 / 3], [2 / 3, 1 / 3], [0.5, 0.5]])
    np.testing.assert_allclose(smooth([0] * 5, p, "window:3"), want)
    # window 4: 2 before, 1 after
    want4 = np.array([[0.5, 0.5], [2 / 3, 1 / 3], [3 / 4, 1 / 4], [2 / 4, 2 / 4], [2 / 3, 1 / 3]])
    np.testing.assert_allclose(smooth([0] * 5, p, "window:4"), want4)
    np.testing.assert_allclose(smooth([0] * 5, p, "window:1"), p)
    assert np.allclose(smooth([0] * 5, p, "window:3").sum(1), 1)  # still probabilities


def test_track_and_smooth_keeps_frames_without_faces():
    boxes = [[(0, 0, 10, 10)], [], [(1, 0, 10, 10)]]
    probs = [np.array([[1.0, 0.0]]), np.zeros((0, 0)), np.array([[0.0, 1.0]])]
    ids, sm = track_and_smooth(boxes, probs, "ema:0.5")
    assert ids == [[0], [], [0]] and [len(s) for s in sm] == [1, 0, 1]
    np.testing.assert_allclose(sm[2], [[0.5, 0.5]])


@pytest.mark.parametrize("spec", ["ema:0", "ema:1.5", "ema:x", "window:0", "window:2.5", "median:3", "ema"])
def test_bad_smoothing_is_one_line(spec):
    with pytest.raises(ByelError) as e:
        parse_smooth(spec)
    assert "\n" not in str(e.value) and track.SMOOTH_HELP in str(e.value)


def test_smoothing_spec_is_normalised():
    assert [track.check_smooth(s) for s in ("none", None, "EMA:0.60", "window:5")] == ["none", "none", "ema:0.6", "window:5"]
