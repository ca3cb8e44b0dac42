"""What `byel predict` shows and writes: a per-face table or JSON on stdout, one CSV schema for
any inputs, no output replaced without --overwrite, annotated videos as .mp4 (else MJPG .avi)."""

import hashlib
import json

import cv2
import numpy as np
import pytest

from byel import classifier
from byel.classes import CLASSES
from byel.cli import main
from byel.media import video_info
from byel.predict import TABLE_MAX
from conftest import make_checkpoints, read_rows, write_image


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(make_checkpoints(tmp_path_factory.mktemp("ckpt"))[1])


def write_video(path, frames: int = 3, size=(64, 48)):
    path.parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, size)
    for i in range(frames):
        vw.write(np.full((size[1], size[0], 3), 40 + 60 * i, np.uint8))
    vw.release()
    return path


def run(capsys, ckpt, inputs, out, *extra):
    rc = main(["predict", *map(str, inputs), "--checkpoint", ckpt, "--out", str(out), "--no-detect",
               "--no-progress", *extra])
    return rc, capsys.readouterr()


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_small_input_prints_an_aligned_row_per_face(tmp_path, ckpt, capsys):
    images = [write_image(tmp_path / "in" / f"face{i}.png", 60 + 40 * i) for i in range(3)]
    rc, cap = run(capsys, ckpt, images, tmp_path / "p.csv")
    assert rc == 0
    lines = cap.out.splitlines()
    head = lines[0].split()
    assert head == ["file", "face", "box", "label", "p"]
    _, rows = read_rows(tmp_path / "p.csv")
    table = lines[1:1 + len(rows)]
    assert len(table) == 3 and lines[-1].startswith("3 images")
    for line, row in zip(table, rows):
        cells = line.split()  # file, face, "x,y", "wxh", label, p
        assert cells[:2] == [row["file"], "1"] and cells[4] == row["predicted"]
        assert cells[2:4] == [f"{row['x']},{row['y']}", f"{row['w']}x{row['h']}"]
        assert float(cells[-1]) == pytest.approx(max(float(row[f"p_{c}"]) for c in CLASSES), abs=0.006)
        assert line.rindex(row["predicted"]) == lines[0].index("label")  # aligned columns


def test_more_faces_than_a_screen_print_the_summary_and_point_to_the_csv(tmp_path, ckpt, capsys):
    images = [write_image(tmp_path / "in" / f"face{i:02d}.png", 2 * i) for i in range(TABLE_MAX + 1)]
    rc, cap = run(capsys, ckpt, images, tmp_path / "p.csv")
    assert rc == 0
    assert cap.out.splitlines()[0].startswith(f"{TABLE_MAX + 1} images")
    assert "see the CSV" in cap.out and "label" not in cap.out


def test_json_is_one_object_that_matches_the_csv(tmp_path, ckpt, capsys):
    images = [write_image(tmp_path / "in" / f"face{i}.png", 60 + 40 * i) for i in range(2)]
    video = write_video(tmp_path / "in" / "clip.avi")
    rc, cap = run(capsys, ckpt, [*images, video], tmp_path / "p.csv", "--json")
    assert rc == 0
    got = json.loads(cap.out)
    _, rows = read_rows(tmp_path / "p.csv")
    assert got["files"] == [str(p) for p in (*images, video)]
    assert len(got["faces"]) == len(rows) == 5
    for face, row in zip(got["faces"], rows):
        assert face["file"] == row["file"] and face["label"] == row["predicted"]
        assert face["box"] == [int(row[k]) for k in "xywh"]
        assert face["probabilities"] == {c: float(row[f"p_{c}"]) for c in CLASSES}
        assert face["frame"] == (int(row["frame"]) if row["frame"] else None)
        assert face["track"] == (int(row["track"]) if row["track"] else None)
    assert [f["frame"] for f in got["faces"]] == [None, None, 0, 1, 2]
    assert got["summary"]["images"] == 2 and got["summary"]["frames"] == 3 and got["summary"]["csv"] == str(
        tmp_path / "p.csv")


def test_the_csv_has_the_same_columns_for_images_and_for_videos(tmp_path, ckpt, capsys):
    image = write_image(tmp_path / "in" / "face.png")
    video = write_video(tmp_path / "in" / "clip.avi")
    assert run(capsys, ckpt, [image], tmp_path / "images.csv")[0] == 0
    assert run(capsys, ckpt, [image, video], tmp_path / "both.csv")[0] == 0
    cols_images, rows = read_rows(tmp_path / "images.csv")
    cols_both, _ = read_rows(tmp_path / "both.csv")
    assert cols_images == cols_both == ["file", "frame", "track", "x", "y", "w", "h", "predicted",
                                        *[f"p_{c}" for c in CLASSES]]
    assert rows[0]["frame"] == rows[0]["track"] == ""


def test_an_existing_csv_is_refused_before_the_model_loads_and_replaced_with_overwrite(tmp_path, ckpt, capsys,
                                                                                       monkeypatch):
    image = write_image(tmp_path / "in" / "face.png")
    out = tmp_path / "predictions.csv"
    out.write_text("my own table\n")
    before = digest(out)
    real_load = classifier.load

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(classifier, "load", no_load)
    rc, cap = run(capsys, ckpt, [image], out)
    err = cap.err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("byel: error:")
    assert str(out) in err[0] and "--overwrite" in err[0]
    assert digest(out) == before

    monkeypatch.setattr(classifier, "load", real_load)
    rc, _ = run(capsys, ckpt, [image], out, "--overwrite")
    assert rc == 0 and read_rows(out)[0][0] == "file" and len(read_rows(out)[1]) == 1


def test_annotated_files_of_the_same_names_are_refused_and_replaced_with_overwrite(tmp_path, ckpt, capsys):
    image = write_image(tmp_path / "in" / "face.png")
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "face.png").write_bytes(b"an earlier drawing")
    before = digest(ann / "face.png")
    rc, cap = run(capsys, ckpt, [image], tmp_path / "p.csv", "--annotate", str(ann))
    err = cap.err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("byel: error:")
    assert str(ann / "face.png") in err[0] and "--overwrite" in err[0]
    assert digest(ann / "face.png") == before and not (tmp_path / "p.csv").exists()

    rc, _ = run(capsys, ckpt, [image], tmp_path / "p.csv", "--annotate", str(ann), "--overwrite")
    assert rc == 0 and digest(ann / "face.png") != before
    assert cv2.imread(str(ann / "face.png")) is not None


def test_an_annotated_video_is_written_readable(tmp_path, ckpt, capsys):
    video = write_video(tmp_path / "in" / "clip.avi")
    ann = tmp_path / "ann"
    rc, cap = run(capsys, ckpt, [video], tmp_path / "p.csv", "--annotate", str(ann))
    assert rc == 0, cap.err
    written = sorted(p.name for p in ann.iterdir())
    assert written == ["clip.avi.annotated.mp4" if can_write_mp4(tmp_path) else "clip.avi.annotated.avi"]
    assert video_info(ann / written[0])[0] == 3


def can_write_mp4(folder) -> bool:
    vw = cv2.VideoWriter(str(folder / "probe.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48))
    ok = vw.isOpened()
    vw.release()
    (folder / "probe.mp4").unlink(missing_ok=True)
    return ok


def test_an_annotated_video_falls_back_to_mjpg_avi_where_mp4_cannot_be_written(tmp_path, ckpt, capsys,
                                                                                 monkeypatch):
    real = cv2.VideoWriter

    class NoMp4:  # an OpenCV build without an MPEG-4 encoder: the writer does not open
        def isOpened(self):
            return False

        def release(self):
            pass

    def writer(path, fourcc, *args):
        return NoMp4() if fourcc == cv2.VideoWriter_fourcc(*"mp4v") else real(path, fourcc, *args)

    video = write_video(tmp_path / "in" / "clip.avi")
    monkeypatch.setattr(cv2, "VideoWriter", writer)
    ann = tmp_path / "ann"
    rc, _ = run(capsys, ckpt, [video], tmp_path / "p.csv", "--annotate", str(ann))
    assert rc == 0
    assert sorted(p.name for p in ann.iterdir()) == ["clip.avi.annotated.avi"]
    assert video_info(ann / "clip.avi.annotated.avi")[0] == 3
