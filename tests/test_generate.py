"""`generate`: determinism across workers, label balance, manifest, preview, bad inputs."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from byel.classes import CLASSES
from byel.errors import ByelError, ConfigError
from byel.synth.au import AUS
from byel.synth.generate import generate
from byel.synth.preview import contact_sheet


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))
            if p.name != "preview.png"}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "a"
    summary = generate(out, per_class=3, size=32, seed=7, workers=1, progress=False)
    return out, summary


def test_layout_balance_and_summary(small):
    out, summary = small
    assert summary["n_images"] == 18
    assert summary["per_class"] == {c: 3 for c in CLASSES}
    for c in CLASSES:
        assert sorted(p.name for p in (out / c).iterdir()) == [f"{c}_{i:06d}.png" for i in range(3)]
    assert (out / "preview.png").stat().st_size > 0
    assert summary["preview"] == str(out / "preview.png")
    assert summary["images_per_s"] > 0


def test_manifest_columns_and_rows(small):
    out, _ = small
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cols = list(rows[0])
    assert cols[:5] == ["file", "class", "group", "backend", "seed"]
    assert cols[5:5 + len(AUS)] == [f"au{au:02d}" for au in AUS]
    assert {"yaw", "roll", "jpeg", "flip"} <= set(cols)
    assert len(rows) == 18
    assert [r["class"] for r in rows] == [c for c in CLASSES for _ in range(3)]
    for r in rows:
        assert (out / r["file"]).exists()
        assert r["backend"] == "procedural" and r["seed"] == "7"
        assert r["group"] == r["file"].split("/")[1][:-4]  # each procedural image draws its own identity
        assert all(0.0 <= float(r[f"au{au:02d}"]) <= 1.0 for au in AUS)
    assert not list(out.glob("*.tmp"))


@pytest.mark.parametrize("unlabelled", [False, True])
def test_output_loads_without_problems(small, unlabelled):
    """manifest.csv and preview.png beside the class folders are generate's, not unusable data."""
    from byel.data.sources import load

    out, _ = small
    data = load(str(out), 32, cache=False, progress=False, unlabelled=unlabelled)
    assert data.problems == [] and data.dropped == {} and data.notes == []
    assert len(data) == 18 and not any(p.endswith((".csv", "preview.png")) for p in data.paths)


def test_one_list_of_image_extensions():
    from byel import predict, submit
    from byel.data import formats, readers
    from byel.synth import landmarks

    assert predict.IMAGE_EXTS is submit.IMAGE_EXTS is readers.IMAGE_EXTS is landmarks.IMAGE_EXTS \
        is formats.IMAGE_EXTS


def test_same_seed_is_byte_identical_across_workers(small, tmp_path):
    out, _ = small
    generate(tmp_path / "b", per_class=3, size=32, seed=7, workers=2, progress=False)
    assert _files(tmp_path / "b") == _files(out)
    assert (tmp_path / "b" / "manifest.csv").read_bytes() == (out / "manifest.csv").read_bytes()


def test_other_seed_differs(small, tmp_path):
    out, _ = small
    generate(tmp_path / "c", per_class=3, size=32, seed=8, progress=False)
    assert _files(tmp_path / "c") != _files(out)


def test_class_subset_and_aliases_match_full_run(small, tmp_path):
    out, _ = small
    s = generate(tmp_path / "d", per_class=3, size=32, seed=7, classes=["happy", "anger"], progress=False)
    assert s["per_class"] == {"anger": 3, "happiness": 3}
    got = _files(tmp_path / "d")
    assert set(got) == {f"{c}/{c}_{i:06d}.png" for c in ("anger", "happiness") for i in range(3)}
    assert all(got[k] == _files(out)[k] for k in got)


def test_rerun_with_fewer_images_removes_stale_ones(tmp_path):
    generate(tmp_path, per_class=3, size=16, classes=["fear"], progress=False)
    generate(tmp_path, per_class=1, size=16, classes=["fear"], progress=False, overwrite=True)
    assert [p.name for p in (tmp_path / "fear").iterdir()] == ["fear_000000.png"]


def test_grey_output_is_one_channel_png_read_as_equal_channels(tmp_path):
    import cv2

    from byel.data.sources import load

    generate(tmp_path, per_class=2, size=24, grey=True, progress=False)
    for p in tmp_path.rglob("*_00000*.png"):
        assert cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape == (24, 24)
    images = load(f"imagefolder:{tmp_path}", 24, cache=False, progress=False).images
    assert images.shape == (12, 24, 24, 3)
    assert (images[..., 0] == images[..., 1]).all() and (images[..., 1] == images[..., 2]).all()


@pytest.mark.parametrize("kwargs, words", [
    ({"per_class": 0}, "per-class"),
    ({"per_class": -3}, "per-class"),
    ({"size": 8}, "at least 16"),
    ({"backend": "gan"}, "procedural, warp"),
    ({"classes": ["happy", "contempt"]}, "anger, disgust"),
    ({"workers": 0}, "workers"),
    ({"backend": "warp"}, "--sources"),
])
def test_bad_inputs_raise_one_line_errors(tmp_path, kwargs, words):
    with pytest.raises(ConfigError) as e:
        generate(tmp_path / "x", progress=False, **{"per_class": 1, **kwargs})
    assert words in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "x").exists()  # nothing is written for bad input


def test_errors_are_byel_errors():
    assert issubclass(ConfigError, ByelError)


def test_contact_sheet_takes_grey_rgb_and_short_rows(tmp_path):
    import cv2

    imgs = {"a": [np.zeros((20, 20), np.uint8)] * 3, "b": [np.full((40, 30, 3), 200, np.uint8)] * 12}
    p = contact_sheet(imgs, tmp_path / "s.png", per_row=4)
    sheet = cv2.imread(str(p))
    assert sheet.shape[0] == 2 * 96 and sheet.shape[1] == 110 + 4 * 96
