"""Video faces tracked from frame to frame (byel.detect.FaceTracker, issue #29 item 6): the
landmark model follows each face of the last frame, the full face search runs only on the first
frame, every ``every``-th frame and a frame on which a face was lost."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from byel import imageio
from byel.detect import FaceFinder, FaceTracker
from byel.track import iou

GROUP = Path(__file__).parent / "fixtures" / "photos" / "group.jpg"  # five faces


def shifted(n: int, dx: int = 3, dy: int = 1) -> list[np.ndarray]:
    """The group photo panning (dx, dy) px a frame, as RGB frames."""
    img = imageio.read(GROUP)
    h, w = img.shape[:2]
    return [cv2.warpAffine(img, np.float32([[1, 0, dx * i], [0, 1, dy * i]]), (w, h),
                           borderMode=cv2.BORDER_REPLICATE) for i in range(n)]


def counted(finder: FaceFinder) -> list[int]:
    """Wrap the finder's full search; returns the list its calls are appended to."""
    calls, find = [], finder.mesher.find
    finder.mesher.find = lambda *a, **k: calls.append(1) or find(*a, **k)
    return calls


def write_clip(path, frames: list[np.ndarray]):
    """The RGB frames as an MJPG .avi at 10 frames/s; returns path."""
    from byel.media import video_writer

    with video_writer(path, "MJPG", 10, frames[0].shape[1::-1]) as vw:
        for f in frames:
            vw.write(np.ascontiguousarray(f[..., ::-1]))
    return path


@pytest.fixture(scope="module")
def finder():
    pytest.importorskip("ai_edge_litert")
    return FaceFinder(48, detector="landmarker")


def test_tracking_finds_the_faces_of_the_search_and_searches_on_schedule(finder):
    frames = shifted(6)
    searched = [finder(f) for f in frames]
    calls = counted(finder)
    tracker = FaceTracker(finder, every=4)
    tracked, searches = [], []
    for f in frames:
        tracked.append(tracker(f))
        searches.append(len(calls))
    finder.mesher.find = type(finder.mesher).find.__get__(finder.mesher)
    assert searches == [1, 1, 1, 1, 2, 2]  # frames 0 and 4 only
    assert tracker.searches == 2
    assert [f.box for f in tracked[4]] == [f.box for f in searched[4]]  # a search frame: the search's faces
    for s, t in zip(searched, tracked):
        assert len(s) == len(t) == 5
        for face in s:
            assert max(iou(face.box, o.box) for o in t) > 0.8
        assert all(o.mesh is not None and o.crop.shape == (48, 48, 3) for o in t)


def test_a_face_that_leaves_is_dropped_then_found_by_the_periodic_search(finder):
    frames = shifted(6)
    gone = finder(frames[0])[0].box  # the largest face, covered on frames 1 and 2
    x, y, w, h = gone
    for f in frames[1:3]:
        f[max(0, y - h // 4):y + h + h // 4, max(0, x - w // 4):x + w + w // 4] = 128
    calls = counted(finder)
    tracker = FaceTracker(finder, every=4)
    counts, searches = [], []
    for f in frames:
        counts.append(len(tracker(f)))
        searches.append(len(calls))
    finder.mesher.find = type(finder.mesher).find.__get__(finder.mesher)
    # frame 1: the face is lost (a search, which cannot see it); frame 3: it is back but not
    # tracked; frame 4: the periodic search finds it again
    assert counts == [5, 4, 4, 4, 5, 5]
    assert searches == [1, 2, 2, 2, 3, 3]


def test_tracker_without_the_landmarker_is_the_finder():
    finder = FaceFinder(48, detect=False)
    frame = shifted(1)[0]
    tracker = FaceTracker(finder)
    assert [f.box for f in tracker(frame)] == [f.box for f in finder(frame)]


@pytest.mark.slow
def test_predict_video_tracks_by_default_with_the_labels_of_the_search(tmp_path):
    pytest.importorskip("ai_edge_litert")
    import byel

    video = write_clip(tmp_path / "pan.avi", shifted(5))
    model = byel.load()
    calls = counted(model.finder)
    tracked = model.predict_video(video, smooth="none")
    assert len(calls) == 1  # the first frame only
    untracked = model.predict_video(video, smooth="none", track=False)
    assert len(calls) == 1 + 5
    same = total = 0
    for t, u in zip(tracked, untracked):
        assert len(t) == len(u) == 5
        for face in u:
            match = max(t, key=lambda o: iou(face.box, o.box))
            assert iou(face.box, match.box) > 0.8
            if max(face.probabilities.values()) >= 0.5:  # a clear label: the same
                assert match.label == face.label
            same += match.label == face.label
            total += 1
    # the tracked mesh is MediaPipe's tracking ROI's, not the detection ROI's: the crops differ a
    # little, and faces the (shipped) model finds ambiguous (top probability ~0.3) can flip
    assert same >= 0.6 * total


@pytest.mark.slow
def test_predict_cli_tracks_unless_no_track(tmp_path, monkeypatch):
    pytest.importorskip("ai_edge_litert")
    from byel.cli import main
    from byel.faces import FaceMesher

    video = write_clip(tmp_path / "pan.avi", shifted(3))
    calls, find = [], FaceMesher.find
    monkeypatch.setattr(FaceMesher, "find", lambda self, *a, **k: calls.append(1) or find(self, *a, **k))
    searches = {}
    for name, extra in (("on", []), ("off", ["--no-track"])):
        calls.clear()
        assert main(["predict", str(video), "--out", str(tmp_path / f"{name}.csv"), "--no-progress", *extra]) == 0
        searches[name] = len(calls)
    assert searches == {"on": 1, "off": 3}


@pytest.mark.slow
def test_inference_speed_tracking_benchmark_writes_its_tables(tmp_path):
    pytest.importorskip("ai_edge_litert")
    import json
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "inference_speed.py"
    p = subprocess.run([sys.executable, str(script), "--tracking", "--preset", "smoke", "--frames", "3",
                        "--min-face", "64", "--repeats", "1", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    info = json.loads((tmp_path / "inference_speed_tracking.json").read_text())
    rows = info["rows"]
    assert [(r["clip"][0], r["search_every"]) for r in rows] == [("5", None), ("5", 10), ("5", 30),
                                                                ("1", None), ("1", 10), ("1", 30)]
    assert [r["faces"] for r in rows] == [15, 15, 15, 3, 3, 3] and all(r["frames_per_s"] > 0 for r in rows)
    assert info["command"] in (tmp_path / "inference_speed_tracking.md").read_text()
