"""byel.submit: one text file per video, header + one label per frame, gaps filled."""

from pathlib import Path

import numpy as np
import pytest

from byel.classes import CLASSES
from byel.errors import DataError
from byel.submit import fill_nearest, submit
from conftest import FER_SAMPLE, make_checkpoints


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture
def frames(tmp_path) -> Path:
    """videoA: frames 1-8, 00004 missing, 00006 corrupt, a stray notes.txt; videoB: frames 1-3."""
    root = tmp_path / "cropped_aligned"
    faces = sorted(FER_SAMPLE.glob("*/*.jpg"))
    for video, numbers in [("videoA", [1, 2, 3, 5, 6, 7, 8]), ("videoB", [1, 2, 3])]:
        (root / video).mkdir(parents=True)
        for k, n in enumerate(numbers):
            (root / video / f"{n:05d}.jpg").write_bytes(faces[(7 * n + 31 * k + len(video)) % len(faces)].read_bytes())
    (root / "videoA" / "00006.jpg").write_bytes(b"corrupt" * 10)
    (root / "videoA" / "notes.txt").write_text("x")
    return root


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_submission_format_and_gap_filling(tmp_path, ckpts, frames):
    out = tmp_path / "sub"
    r = submit(ckpts[1], frames, out, batch_size=4, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["videoA.txt", "videoB.txt"]
    a, b = lines(out / "videoA.txt"), lines(out / "videoB.txt")
    assert a[0] == b[0] == "anger,disgust,fear,happiness,sadness,surprise" == ",".join(CLASSES)
    assert len(a) == 8 + 1 and len(b) == 3 + 1  # frame count (highest frame number) + 1
    assert all(v in {"0", "1", "2", "3", "4", "5"} for v in a[1:] + b[1:])
    assert a[4] == a[3]  # frame 4 missing: nearest readable is frame 3
    assert a[6] == a[5]  # frame 6 unreadable: frames 5 and 7 are equally near, the earlier wins
    assert r["videos"] == 2 and r["frames"] == 11 and r["predicted"] == 9
    assert r["filled_missing"] == 1 and r["filled_unreadable"] == 1 and r["ignored"] == {"not_a_frame_number": 1}
    assert r["per_video"]["videoA"] == {"frames": 8, "predicted": 6, "filled_missing": 1,
                                        "filled_unreadable": 1, "written": True}


def test_predicted_labels_match_the_model(tmp_path, ckpts, frames):
    from byel.data.sources import decode_image
    from byel import classifier

    submit(ckpts[1], frames, tmp_path / "sub", progress=False)
    want = classifier.predict_probs(classifier.load(ckpts[1]), np.stack(
        [decode_image(str(frames / "videoB" / f"{n:05d}.jpg"), 32) for n in (1, 2, 3)])).argmax(1)
    assert lines(tmp_path / "sub" / "videoB.txt")[1:] == [str(int(v)) for v in want]


def test_affwild2_coding_reads_back_as_annotations(tmp_path, ckpts, frames):
    """With codes="affwild2" the files are valid Aff-Wild2 EXPR annotations for byel's own loader."""
    from byel.data.sources import load

    out = tmp_path / "ann"
    submit(ckpts[1], frames, out, codes="affwild2", progress=False)
    a = lines(out / "videoA.txt")
    assert a[0] == "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
    assert all(v in {"1", "2", "3", "4", "5", "6"} for v in a[1:])
    data = load(f"affwild2:{frames},{out}", 32, progress=False, cache=False)
    assert len(data) == 9  # every readable frame back, labelled with its prediction
    got = {p: int(y) for p, y in zip(data.paths, data.labels)}
    assert got[str(frames / "videoA" / "00001.jpg")] == int(a[1]) - 1


def test_fill_nearest():
    labels, filled = fill_nearest({1: 0, 2: 1, 5: 2, 9: 3}, 9)
    assert labels == [0, 1, 1, 2, 2, 2, 2, 3, 3] and filled == 5  # ties go to the earlier frame
    assert fill_nearest({3: 4}, 5) == ([4, 4, 4, 4, 4], 4)


def test_bad_frame_trees(tmp_path, ckpts):
    with pytest.raises(DataError, match="not found"):
        submit(ckpts[1], tmp_path / "nope", tmp_path / "o", progress=False)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "00001.jpg").write_bytes(sorted(FER_SAMPLE.glob("*/*.jpg"))[0].read_bytes())
    with pytest.raises(DataError, match="own sub-folder"):
        submit(ckpts[1], flat, tmp_path / "o", progress=False)
    bad = tmp_path / "bad" / "videoZ"
    bad.mkdir(parents=True)
    (bad / "00001.jpg").write_bytes(b"junk")
    with pytest.raises(DataError, match="no readable frame") as e:
        submit(ckpts[1], bad.parent, tmp_path / "o", progress=False)
    assert "\n" not in str(e.value)
