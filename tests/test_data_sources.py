"""Reading the data users bring: every format, every kind of bad file, the cache, inspect."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import fer_pixels, write_affwild2_annotation, write_image

from byel.cli import main
from byel.classes import CLASSES
from byel.data import cache as cache_store
from byel.data import load, parse_spec, sources, write_problem_log
from byel.data.inspect import inspect
from byel.errors import DataError

FER_PUBLICTEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013-publictest"  # ../shared beside the checkout


def counts(s, **nonzero):
    return {c: nonzero.get(c, 0) for c in CLASSES}


def quiet_load(spec, size=32, **kw):
    return load(str(spec), size, progress=False, **kw)


# --------------------------------------------------------------------------- image folders


def test_imagefolder_aliases_nested_and_bad_files(imagefolder_tree):
    s = quiet_load(f"imagefolder:{imagefolder_tree}")
    assert s.counts() == counts(s, anger=3, disgust=1, fear=1, happiness=2, sadness=1, surprise=1)
    assert s.images.shape == (9, 32, 32, 3) and s.images.dtype == np.uint8
    assert s.labels.dtype == np.int64
    assert s.skipped == {"contempt": 1, "misc": 1, "neutral": 2}
    assert s.dropped == {"corrupt": 2, "unsupported": 1, "zero_byte": 1}
    bad = {Path(p).name: reason for p, reason in s.problems}
    assert set(bad) == {"garbage.jpg", "truncated.jpg", "empty.png", "notes.txt"}
    assert "truncated" in bad["truncated.jpg"].lower()
    assert any("misc (1 images)" in n for n in s.notes)
    assert any(p.endswith("ü-a3.jpg") for p in s.paths)
    assert s.spec == f"imagefolder:{os.path.realpath(imagefolder_tree)}"


def test_decoded_pixels_are_rgb_and_resized(tmp_path):
    bgr = np.zeros((60, 80, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in OpenCV's BGR order
    cv2.imencode(".png", bgr)[1].tofile(str(tmp_path / "red.png"))
    red = sources.decode_image(str(tmp_path / "red.png"), 24)
    assert red.shape == (24, 24, 3) and red[..., 0].min() == 255 and red[..., 1:].max() == 0
    grey = sources.decode_image(str(write_image(tmp_path / "g.png", 100, size=10, channels=1)), 20)
    assert grey.shape == (20, 20, 3) and (grey[..., 0] == grey[..., 2]).all()
    rgba = sources.decode_image(str(write_image(tmp_path / "a.png", channels=4)), 40)
    assert rgba.shape == (40, 40, 3)


def test_problem_log_lists_every_unusable_file(imagefolder_tree, tmp_path):
    s = quiet_load(imagefolder_tree)
    log = tmp_path / "logs" / "problems.txt"
    write_problem_log(s, str(log))
    lines = [ln for ln in log.read_text().splitlines() if not ln.startswith("#")]
    assert len(lines) == len(s.problems) == 4
    assert any(ln.startswith("zero_byte\t") and ln.endswith("empty.png") for ln in lines)


def test_parallel_and_serial_decoding_agree(imagefolder_tree, monkeypatch):
    monkeypatch.setattr(sources, "_CHUNK", 2)  # several chunks, so the pool is really used
    one = quiet_load(imagefolder_tree, workers=1, cache=False)
    two = quiet_load(imagefolder_tree, workers=2, cache=False)
    assert one.paths == two.paths and (one.images == two.images).all() and one.dropped == two.dropped


# --------------------------------------------------------------------------- ABAW LSD


def test_abaw_lsd_accepts_numbers_names_and_angere(tmp_path):
    for i in range(6):
        write_image(tmp_path / "lsd" / str(i) / "00001.jpg", 30 * i)
    write_image(tmp_path / "lsd" / "ANGERE" / "00001.jpg")
    write_image(tmp_path / "lsd" / "6" / "00001.jpg")
    s = quiet_load(f"abaw-lsd:{tmp_path / 'lsd'}")
    assert s.counts() == counts(s, anger=2, disgust=1, fear=1, happiness=1, sadness=1, surprise=1)
    assert s.skipped == {"6": 1}
    # numbered folders are ambiguous for plain image folders (RAF-DB numbers from 1): skipped
    s = quiet_load(f"imagefolder:{tmp_path / 'lsd'}")
    assert s.counts() == counts(s, anger=1)
    assert any("abaw-lsd" in n for n in s.notes)


# --------------------------------------------------------------------------- Aff-Wild2


def test_affwild2_keeps_1_to_6_and_counts_the_rest(affwild2_tree):
    frames, ann = affwild2_tree / "cropped_aligned", affwild2_tree / "annotations" / "Validation_Set"
    s = quiet_load(f"affwild2:{frames},{ann}")
    assert s.counts() == counts(s, anger=1, disgust=1, fear=1, sadness=1, surprise=2)
    assert s.skipped == {"neutral": 1, "other": 1}
    assert s.dropped == {"invalid_label": 1, "label_out_of_range": 1, "malformed_label": 1,
                         "missing_frame": 1}
    assert [Path(p).name for p in s.paths[:3]] == ["00001.jpg", "00002.jpg", "00007.jpg"]
    assert s.labels[:3].tolist() == [0, 1, 2]


def test_affwild2_every_kth_frame(affwild2_tree):
    frames, ann = affwild2_tree / "cropped_aligned", affwild2_tree / "annotations" / "Validation_Set"
    s = quiet_load(f"affwild2:{frames},{ann}?every=2")  # frames 1, 3, 5, 7
    assert [f"{Path(p).parent.name}/{Path(p).name}" for p in s.paths] == [
        "videoA/00001.jpg", "videoA/00007.jpg", "videoB/00001.jpg", "videoB/00003.jpg"]
    assert s.skipped == {"neutral": 1} and s.dropped == {"invalid_label": 1}
    assert s.spec.endswith("?every=2")
    with pytest.raises(DataError, match="every="):
        quiet_load(f"affwild2:{frames},{ann}?every=0")


def test_affwild2_missing_video_folder_and_headerless_file(affwild2_tree):
    frames, ann = affwild2_tree / "cropped_aligned", affwild2_tree / "annotations" / "Validation_Set"
    write_affwild2_annotation(ann / "videoC.txt", [1, 1, 1])
    write_affwild2_annotation(ann / "videoB.txt", [5, 6], header=False)
    s = quiet_load(f"affwild2:{frames},{ann}")
    assert s.counts()["sadness"] == 1 and s.dropped["missing_frame"] == 1 + 3
    assert (str(frames / "videoC"), "missing_frame: no frame folder for 3 annotated frames") in s.problems
    with pytest.raises(DataError, match="did you mean"):
        quiet_load(f"affwild2:{affwild2_tree},{ann}")


def test_affwild2_unlabelled_reads_every_existing_frame(affwild2_tree):
    frames, ann = affwild2_tree / "cropped_aligned", affwild2_tree / "annotations" / "Validation_Set"
    s = quiet_load(f"affwild2:{frames},{ann}", unlabelled=True)
    assert len(s) == 7 + 3 and (s.labels == -1).all()  # videoA 8 lines, 7 frames; videoB 1 malformed


# --------------------------------------------------------------------------- FER2013 CSV


def test_fer_csv_usage_split_and_bad_rows(fer_csv):
    s = quiet_load(f"fer2013-csv:{fer_csv}:publictest", size=48)
    assert s.counts() == counts(s, happiness=1, surprise=1)
    assert s.skipped == {"neutral": 1}
    assert s.dropped == {"label_out_of_range": 1, "malformed_row": 2}
    assert s.paths == [f"{fer_csv}:3", f"{fer_csv}:5"]
    expected = np.array([int(v) for v in fer_pixels(20).split()], np.uint8).reshape(48, 48)
    assert (s.images[0, ..., 0] == expected).all() and (s.images[0, ..., 1] == expected).all()
    assert quiet_load(f"{fer_csv}:PublicTest").spec == f"fer2013-csv:{fer_csv}:PublicTest"
    everything = quiet_load(fer_csv, size=24)  # plain .csv path: detected, all rows
    assert everything.counts() == counts(s, anger=1, fear=1, happiness=1, surprise=1)
    assert everything.images.shape == (4, 24, 24, 3)


def test_fer_csv_errors(fer_csv, tmp_path):
    with pytest.raises(DataError, match="PublicTest"):
        quiet_load(f"fer2013-csv:{fer_csv}:Validation")
    bad = tmp_path / "other.csv"
    bad.write_text("label,image\n1,2 3\n")
    with pytest.raises(DataError, match="no column pixels"):
        quiet_load(bad)
    only_train = tmp_path / "train.csv"
    only_train.write_text(f"emotion,pixels,Usage\n0,{fer_pixels(1)},Training\n")
    with pytest.raises(DataError, match="Usage values: Training 1"):
        quiet_load(f"fer2013-csv:{only_train}:PrivateTest")


# --------------------------------------------------------------------------- detection, unlabelled


def test_plain_paths_are_detected(imagefolder_tree, affwild2_tree, fer_csv, tmp_path):
    assert parse_spec(str(imagefolder_tree))[0] == "imagefolder"
    assert parse_spec(str(fer_csv)) == ("fer2013-csv", {"path": str(fer_csv.resolve()), "usage": None,
                                                        "options": {}})
    kind, args = parse_spec(str(affwild2_tree))
    assert kind == "affwild2"
    assert args["frames"].endswith("cropped_aligned") and args["annotations"].endswith("Validation_Set")
    assert quiet_load(f"{affwild2_tree}?every=2").spec.endswith("?every=2")
    for i in range(6):
        write_image(tmp_path / "numbered" / str(i) / "1.png")
    assert parse_spec(str(tmp_path / "numbered"))[0] == "abaw-lsd"
    # a second annotation set makes the root ambiguous
    write_affwild2_annotation(affwild2_tree / "annotations" / "Train_Set" / "videoA.txt", [1])
    with pytest.raises(DataError, match="several Aff-Wild2 annotation sets"):
        parse_spec(str(affwild2_tree))


def test_unlabelled_reads_every_image_recursively(imagefolder_tree):
    s = quiet_load(imagefolder_tree, unlabelled=True)
    assert len(s) == 9 + 4 and (s.labels == -1).all()  # the six classes + neutral 2, contempt, misc
    assert s.skipped == {} and s.dropped["corrupt"] == 2 and s.counts() == counts(s)
    assert s.summary().startswith("13 unlabelled images")


# --------------------------------------------------------------------------- cache


def test_second_load_comes_from_the_cache(imagefolder_tree, monkeypatch):
    first = quiet_load(imagefolder_tree)

    def no_decoding(*_):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(sources, "decode_image", no_decoding)
    second = quiet_load(imagefolder_tree)
    assert (first.images == second.images).all() and (first.labels == second.labels).all()
    assert (first.paths, first.skipped, first.dropped, first.problems) == \
        (second.paths, second.skipped, second.dropped, second.problems)
    with pytest.raises(AssertionError, match="decoded"):
        quiet_load(imagefolder_tree, cache=False)
    with pytest.raises(AssertionError, match="decoded"):
        quiet_load(imagefolder_tree, size=16)  # another size is another entry


def test_cache_follows_changes_and_survives_damage(imagefolder_tree):
    quiet_load(imagefolder_tree)
    write_image(imagefolder_tree / "sad" / "s2.png")
    assert quiet_load(imagefolder_tree).counts()["sadness"] == 2
    entries = list(cache_store.cache_dir().glob("*.npz"))
    assert len(entries) == 1  # the stale entry of the same data set was replaced
    entries[0].write_bytes(entries[0].read_bytes()[:100])
    again = quiet_load(imagefolder_tree)
    assert again.counts()["sadness"] == 2 and len(list(cache_store.cache_dir().glob("*.npz"))) == 1


# --------------------------------------------------------------------------- errors


def test_unusable_data_is_one_clear_error(tmp_path, imagefolder_tree):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot tell what data"):
        quiet_load(tmp_path / "empty")
    with pytest.raises(DataError, match=r"no usable images of the six classes .*no image files found"):
        quiet_load(f"imagefolder:{tmp_path / 'empty'}")
    write_image(tmp_path / "only" / "Neutral" / "n.jpg")
    (tmp_path / "only" / "Neutral" / "bad.jpg").write_bytes(b"xx")
    with pytest.raises(DataError, match=r"\(skipped: neutral 2\)$"):
        quiet_load(tmp_path / "only")
    write_image(tmp_path / "only" / "sad" / "s.jpg")
    (tmp_path / "only" / "sad" / "s.jpg").write_bytes(b"broken")
    with pytest.raises(DataError, match=r"skipped: neutral 2; dropped: corrupt 1"):
        quiet_load(tmp_path / "only")
    with pytest.raises(DataError, match="class folders found in .*faces"):
        shutil.copytree(imagefolder_tree, tmp_path / "wrapper" / "faces")
        quiet_load(f"imagefolder:{tmp_path / 'wrapper'}")


@pytest.mark.parametrize("spec, message", [
    ("/no/such/folder", "data path not found"),
    ("imagefolder:/no/such/folder", "data path not found"),
    ("imagefolders:/tmp", "unknown data kind 'imagefolders'.*imagefolder, abaw-lsd, affwild2, fer2013-csv"),
    ("affwild2:/tmp", "FRAMES_DIR,ANNOTATIONS_DIR"),
    ("imagefolder:/tmp?every=3", "unknown option 'every' for imagefolder"),
    ("", "empty data spec"),
])
def test_bad_specs(spec, message):
    with pytest.raises(DataError, match=message):
        quiet_load(spec)


# --------------------------------------------------------------------------- inspect, real data


def test_inspect_reports_and_writes_a_contact_sheet(imagefolder_tree, tmp_path):
    out = tmp_path / "sheet" / "faces.png"
    report = inspect(str(imagefolder_tree), str(out), size=32, progress=False)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "anger" in report and "skipped (not one of the 6 classes): contempt 1, misc 1, neutral 2" in report
    assert (tmp_path / "sheet" / "faces-problems.txt").is_file()
    assert f"4 problems listed in {tmp_path / 'sheet' / 'faces-problems.txt'}" in report
    report = inspect(str(imagefolder_tree), None, size=32, progress=False)
    assert "give --out" in report and "zero_byte" in report


def test_inspect_with_seven_classes_counts_neutral(fer_sample, capsys):
    assert main(["data", "inspect", str(fer_sample), "--classes", "7", "--size", "32"]) == 0
    report = capsys.readouterr().out
    assert "usable images: 140" in report and "  neutral        20   14.3%" in report and "skipped" not in report


def test_fer_sample_fixture(fer_sample):
    s = quiet_load(fer_sample, size=48)
    assert s.counts() == {c: 20 for c in CLASSES} and s.skipped == {"neutral": 20} and not s.dropped


@pytest.mark.skipif(not FER_PUBLICTEST.is_dir(), reason="shared FER2013 PublicTest not available")
def test_fer2013_publictest_counts():
    s = quiet_load(FER_PUBLICTEST, size=48)
    assert len(s) == 2982 and s.skipped == {"neutral": 607} and not s.dropped
    assert s.counts() == {"anger": 467, "disgust": 56, "fear": 496, "happiness": 895,
                          "sadness": 653, "surprise": 415}
