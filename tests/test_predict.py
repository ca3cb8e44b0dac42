"""byel.predict: faces in photos, folders and videos -> one CSV row per face."""

import cv2
import numpy as np
import pytest

from byel.classes import CLASSES
from byel.detect import crop_face
from byel.errors import CheckpointError, DataError
from byel.predict import COLUMNS, NO_FACE, predict
from conftest import FER_SAMPLE, PHOTOS, make_checkpoints, needs_detector, read_rows, write_image


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("ckpt"))


def check_face_row(r):
    probs = np.array([float(r[f"p_{c}"]) for c in CLASSES])
    assert abs(probs.sum() - 1) < 1e-4 and (probs >= 0).all()
    assert r["predicted"] == CLASSES[int(probs.argmax())]
    assert int(r["w"]) > 0 and int(r["h"]) > 0


@needs_detector
def test_group_photo_one_row_per_face(tmp_path, ckpts):
    out = tmp_path / "pred.csv"
    r = predict(ckpts[1], [str(PHOTOS / "group.jpg")], out, annotate_dir=tmp_path / "ann", progress=False)
    cols, rows = read_rows(out)
    assert cols == COLUMNS == ["file", "frame", "track", "x", "y", "w", "h", "predicted", *[f"p_{c}" for c in CLASSES]]
    assert len(rows) == r["faces"] == 5 and r["images"] == 1 and r["no_face"] == 0
    for row in rows:
        check_face_row(row)
        assert row["frame"] == row["track"] == "" and row["file"].endswith("group.jpg")
        assert 0 <= int(row["x"]) and int(row["x"]) + int(row["w"]) <= 640 and int(row["y"]) + int(row["h"]) <= 400
    areas = [int(row["w"]) * int(row["h"]) for row in rows]
    assert areas == sorted(areas, reverse=True)  # largest face first
    # every pasted face (see fixtures/photos/README.md) is covered by a box centre
    for x, y, s in [(30, 60, 150), (230, 40, 130), (420, 90, 110), (120, 240, 120), (470, 260, 100)]:
        assert any(x <= int(b["x"]) + int(b["w"]) / 2 <= x + s and y <= int(b["y"]) + int(b["h"]) / 2 <= y + s
                   for b in rows)
    drawn = cv2.imread(str(tmp_path / "ann" / "group.jpg"))
    assert drawn is not None and drawn.shape == (400, 640, 3) and r["annotated"] == 1


@needs_detector
def test_no_face_gets_one_row(tmp_path, ckpts):
    blank = write_image(tmp_path / "in" / "wall.png", 90, size=200)
    (tmp_path / "in" / "sub").mkdir()
    (tmp_path / "in" / "sub" / "group.jpg").write_bytes((PHOTOS / "group.jpg").read_bytes())
    out = tmp_path / "pred.csv"
    r = predict(ckpts[1], [str(tmp_path / "in")], out, progress=False)
    _, rows = read_rows(out)
    empty = [row for row in rows if row["file"] == str(blank)]
    assert len(empty) == 1 and r["no_face"] == 1 and r["images"] == 2 and r["faces"] == 5
    row = empty[0]
    assert row["predicted"] == NO_FACE
    assert all(row[k] == "" for k in ["x", "y", "w", "h", *[f"p_{c}" for c in CLASSES]])
    assert sum(row["predicted"] in CLASSES for row in rows) == 5


def test_no_detect_folder_of_crops(tmp_path, ckpts):
    out = tmp_path / "pred.csv"
    r = predict(ckpts[1], [str(FER_SAMPLE / "happy"), str(FER_SAMPLE / "sad")], out, detect=False,
                batch_size=7, progress=False)
    _, rows = read_rows(out)
    assert len(rows) == r["faces"] == r["images"] == 40 and r["detector"].startswith("none")
    for row in rows:
        check_face_row(row)
        assert (row["x"], row["y"], row["w"], row["h"]) == ("0", "0", "48", "48")
    # same probabilities as the model on the same crops (batching and order preserved)
    from byel.data.sources import decode_image
    from byel import classifier

    model = classifier.load(ckpts[1])
    imgs = np.stack([decode_image(row["file"], 32) for row in rows])
    want = classifier.predict_probs(model, imgs, mirror=True)  # byel predict mirrors by default
    got = np.array([[float(row[f"p_{c}"]) for c in CLASSES] for row in rows])
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_video_input_frame_index_and_stride(tmp_path, ckpts):
    faces = sorted((FER_SAMPLE / "surprise").glob("*.jpg"))[:7]
    video = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 96))
    assert vw.isOpened()
    for f in faces:
        vw.write(cv2.resize(cv2.imread(str(f)), (96, 96)))
    vw.release()
    out = tmp_path / "pred.csv"
    r = predict(ckpts[1], [str(video)], out, detect=False, video_stride=2, annotate_dir=tmp_path / "ann",
                progress=False)
    _, rows = read_rows(out)
    assert [row["frame"] for row in rows] == ["0", "2", "4", "6"] and r["frames"] == 4 and r["images"] == 0
    for row in rows:
        check_face_row(row)
        assert row["file"] == str(video)
    (annotated,) = (tmp_path / "ann").glob("clip.avi.annotated.*")  # .mp4, or MJPG .avi where OpenCV has no mp4v
    assert annotated.suffix in (".mp4", ".avi")
    cap = cv2.VideoCapture(str(annotated))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()


def test_crop_is_square_and_padded_at_the_border():
    img = np.zeros((100, 120, 3), np.uint8)
    img[:50] = 200
    crop = crop_face(img, (0, 0, 40, 40), 32)  # the margin leaves the image: replicated border
    assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8


def test_bad_inputs_one_line_errors(tmp_path, ckpts):
    pre, ft = ckpts
    good = str(next((FER_SAMPLE / "fear").glob("*.jpg")))
    cases = [
        (dict(checkpoint=tmp_path / "missing.ckpt", inputs=[good]), CheckpointError, "not found"),
        (dict(checkpoint=pre, inputs=[good]), CheckpointError, "fine-tune it first"),
        (dict(checkpoint=ft, inputs=[str(tmp_path / "nope.jpg")]), DataError, "not found"),
        (dict(checkpoint=ft, inputs=[]), DataError, "nothing to predict"),
    ]
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image" * 20)
    cases.append((dict(checkpoint=ft, inputs=[str(garbage)]), DataError, "no readable"))
    for kw, exc, needle in cases:
        with pytest.raises(exc) as e:
            predict(out_csv=tmp_path / "x.csv", detect=False, progress=False, **kw)
        assert needle in str(e.value) and "\n" not in str(e.value), (kw, str(e.value))
    assert not (tmp_path / "x.csv").exists()
    # some inputs bad, one good: predictions for the good one, the rest counted
    r = predict(ft, [good, str(tmp_path / "nope.jpg"), str(garbage)], tmp_path / "y.csv", detect=False, progress=False)
    assert r["faces"] == 1 and r["missing"] == [str(tmp_path / "nope.jpg")] and r["unreadable"] == [str(garbage)]
