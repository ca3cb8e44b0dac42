"""Edge cases of the default face finder (byel.detect.FaceFinder over the landmarker), issue #29
item 9, each on a picture made from the fixtures: a face filling the photo, a rotated head
(no boxes on its fragments), a large face (its box fits the face)."""

from __future__ import annotations

import cv2
import pytest

from byel.detect import FaceFinder
from conftest import PHOTOS

pytest.importorskip("ai_edge_litert")

PASTED = [(30, 60, 150), (230, 40, 130), (420, 90, 110), (120, 240, 120), (470, 260, 100)]  # photos/README.md
GREY = (128, 128, 128)


@pytest.fixture(scope="module")
def group():
    return cv2.cvtColor(cv2.imread(str(PHOTOS / "group.jpg")), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def finder():
    return FaceFinder(48, min_face=24)


def inside(a, b) -> float:
    """Share of box a (x, y, w, h) lying inside box b."""
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return iw * ih / (a[2] * a[3])


def test_a_face_filling_a_512_px_photo_is_found_without_a_border(group, finder):
    x, y, s = PASTED[3]  # the sad face, cut 15 % inside its pasted square: it fills the frame and more
    cut = int(0.15 * s)
    photo = cv2.resize(group[y + cut:y + s - cut, x + cut:x + s - cut], (512, 512), interpolation=cv2.INTER_CUBIC)
    faces = finder(photo)
    assert len(faces) == 1, [f.box for f in faces]
    bx, by, bw, bh = faces[0].box
    assert bw * bh > 0.6 * 512 * 512 and abs(bx + bw / 2 - 256) < 64 and abs(by + bh / 2 - 256) < 64


def test_a_rotated_head_gets_one_box_and_none_on_its_fragments(group, finder):
    x, y, s = PASTED[3]  # the sad face at 400 px, turned 30 degrees on an 800 px plain canvas
    face = cv2.resize(group[y:y + s, x:x + s], (400, 400), interpolation=cv2.INTER_CUBIC)
    canvas = cv2.copyMakeBorder(face, 200, 200, 200, 200, cv2.BORDER_CONSTANT, value=GREY)
    turn = cv2.getRotationMatrix2D((400, 400), 30, 1.0)
    photo = cv2.warpAffine(canvas, turn, (800, 800), borderValue=GREY)
    boxes = [f.box for f in finder(photo)]
    assert len(boxes) <= 1, boxes  # it was the head and a 77 px box on its chin
    assert not any(inside(a, b) > 0.6 for a in boxes for b in boxes if a is not b)
    assert len(boxes) == 1 and 250 < boxes[0][0] + boxes[0][2] / 2 < 550 and 250 < boxes[0][1] + boxes[0][3] / 2 < 550


def test_a_large_faces_box_fits_its_mesh_not_overshooting_down_and_right(group, finder):
    photo = cv2.resize(group, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)  # faces of 300-450 px
    faces = finder(photo)
    assert len(faces) == 5
    for f in faces:
        x, y, w, h = f.box
        lo, hi = f.landmarks[:, :2].min(0), f.landmarks[:, :2].max(0)
        side = max(hi - lo)
        # it was up to 0.2 of a side past the mesh's right edge on the happy face (76 px)
        assert x + w - hi[0] < 0.05 * side and y + h - hi[1] < 0.05 * side, (f.box, lo, hi)
        assert abs(x + w / 2 - (lo[0] + hi[0]) / 2) < 0.05 * side and abs(y + h / 2 - (lo[1] + hi[1]) / 2) < 0.05 * side
