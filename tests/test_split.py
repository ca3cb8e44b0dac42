"""The held-out split (byel.data.split): carved once before stage 1, by person, kept out of both
stages, and recorded in the run so fine-tuning holds out the same images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import byel.train
from byel.classes import CLASSES
from byel.cli import main
from byel.config import load_config
from byel.data.sources import load
from byel.synth.generate import generate
from conftest import write_class_folders

# Imported per test, so that on code without byel.data.split the leak tests still run (and fail).
SPLIT_FILE = "split.json"

TINY = ["--preset", "smoke", "--no-progress", "--logger", "none"]
NEUTRAL = Path(__file__).parent / "fixtures" / "neutral"


def _warp_available() -> bool:
    try:
        import dlib  # noqa: F401

        from byel.synth.landmarks import predictor_path

        predictor_path()
        return True
    except Exception:  # noqa: BLE001 - the optional extra is not installed
        return False


def _manifest_groups(root: Path) -> dict[str, str]:
    with open(root / "manifest.csv", newline="") as f:
        return {str(root / r["file"]): r["group"] for r in csv.DictReader(f)}


def _sides(data, held) -> tuple[set, set]:
    """Groups (from the manifest) of the held-out and of the training images."""
    groups = _manifest_groups(Path(data.spec.partition(":")[2]))
    out = set(held)
    return ({groups[p] for i, p in enumerate(data.paths) if i in out},
            {groups[p] for i, p in enumerate(data.paths) if i not in out})


@pytest.fixture(scope="module")
def procedural(tmp_path_factory):
    root = tmp_path_factory.mktemp("proc") / "synth"
    generate(root, per_class=10, size=32, seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def warped(tmp_path_factory):
    if not _warp_available():
        pytest.skip("the warp backend's optional extra (dlib, face-recognition-models) is not installed")
    mp = pytest.MonkeyPatch()
    mp.setenv("BYEL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    root = tmp_path_factory.mktemp("warp") / "synth"
    generate(root, backend="warp", sources=str(NEUTRAL), per_class=12, size=32, progress=False)
    mp.undo()
    return root


# --------------------------------------------------------------------------- the split itself


def test_grouped_split_keeps_every_group_on_one_side_and_every_class_on_both():
    from byel.data.split import grouped_split

    rng = np.random.default_rng(0)
    groups = rng.integers(0, 80, 600)  # 80 people, each in ~7 images of random classes
    labels = rng.integers(0, len(CLASSES), 600)
    train, held = grouped_split(labels, groups, 0.1, seed=1)
    assert sorted([*train, *held]) == list(range(600))
    assert not set(groups[train]) & set(groups[held])
    per_class = np.bincount(labels[held], minlength=6) / np.bincount(labels, minlength=6)
    assert (per_class > 0.03).all() and (per_class < 0.2).all(), per_class
    assert (np.bincount(labels[train], minlength=6) > 0).all()


def test_big_groups_still_leave_every_class_on_both_sides():
    from byel.data.split import grouped_split

    labels = np.tile(np.arange(6), 8)  # 8 people, each in every class once
    groups = np.repeat(np.arange(8), 6)
    train, held = grouped_split(labels, groups, 0.1, seed=0)
    assert len(set(groups[held])) == 1 and not set(groups[train]) & set(groups[held])
    assert set(labels[held]) == set(labels[train]) == set(range(6))


def test_stratified_split_holds_out_the_fraction_of_each_class():
    from byel.data.split import stratified_split

    labels = np.repeat(np.arange(6), [10, 1, 2, 50, 3, 20])
    train, held = stratified_split(labels, 0.1, 0)
    assert np.bincount(labels[held], minlength=6).tolist() == [1, 0, 1, 5, 1, 2]
    assert (np.bincount(labels[train], minlength=6) > 0).all()


# --------------------------------------------------------------------------- groups from the manifest


def test_warp_manifest_groups_by_source_face_and_split_keeps_faces_apart(warped):
    from byel.data.split import holdout_split

    groups = _manifest_groups(warped)
    with open(warped / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:5] == ["file", "class", "group", "backend", "seed"]
    assert all(r["group"] == r["source"] for r in rows)
    assert len(set(groups.values())) < len(groups)  # one face warped into several images
    data = load(str(warped), 32, progress=False)
    train, held, info = holdout_split(data, 0.1, seed=0)
    assert info["grouped_by"] == "source face"
    held_groups, train_groups = _sides(data, held)
    assert held_groups and not held_groups & train_groups
    assert sorted(info["held_out_groups"]) == sorted(held_groups)


def test_procedural_identities_are_drawn_per_image(procedural):
    from byel.data.split import holdout_split

    groups = _manifest_groups(procedural)
    assert len(set(groups.values())) == len(groups) == 60
    data = load(str(procedural), 32, progress=False)
    train, held, info = holdout_split(data, 0.1, seed=0)
    assert info["grouped_by"] == "identity draw (one per image)"
    assert info["held_out_per_class"] == {c: 1 for c in CLASSES}
    assert sorted(info["held_out_files"]) == sorted(data.paths[i] for i in held)
    assert info["fraction"] == 0.1 and info["seed"] == 0 and info["spec"] == data.spec


def test_data_without_manifest_is_split_by_image_and_says_so(tmp_path, capsys):
    from byel.data.split import holdout_split

    data = load(str(write_class_folders(tmp_path / "d", 10)), 32, progress=False)
    train, held, info = holdout_split(data, 0.1, seed=0)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "by image" in err[0]
    assert info["grouped_by"] == "image" and len(held) == 6


# --------------------------------------------------------------------------- neither stage trains on it


def _spy(monkeypatch) -> list:
    """The (training images, validation images) of every data module the stages build, in order:
    stage 1 (no validation), then stage 2."""
    seen = []

    class Spy(byel.train.ArrayDataModule):
        def __init__(self, train, val=None, **k):
            seen.append((train[0].copy(), None if val is None else val[0].copy()))
            super().__init__(train, val, **k)

    monkeypatch.setattr(byel.train, "ArrayDataModule", Spy)
    return seen


def _held_images(split_file: Path, size: int) -> tuple[dict, np.ndarray]:
    info = json.loads(split_file.read_text())
    data = load(info["spec"], size, progress=False)
    held = np.array([p in set(info["held_out_files"]) for p in data.paths])
    return info, data.images[held]


def _rows(images: np.ndarray) -> set[bytes]:
    return {im.tobytes() for im in images}


def _check_stages(seen: list, held: np.ndarray | None = None) -> None:
    (pre, pre_val), (ft, val) = seen
    assert pre_val is None and val is not None and len(val)
    assert not _rows(val) & _rows(pre), "stage 1 trained on images that select stage 2's epoch"
    assert not _rows(val) & _rows(ft)
    if held is not None:
        assert _rows(val) == _rows(held)


@pytest.mark.slow
def test_demo_trains_neither_stage_on_the_held_out_images(tmp_path, monkeypatch):
    from byel.pipeline import run_demo

    seen = _spy(monkeypatch)
    cfg = load_config("smoke", ["trainer.progress=false", "trainer.logger=none"])
    summary = run_demo(cfg, tmp_path / "demo", per_class=10)
    _check_stages(seen)
    split_file = tmp_path / "demo" / "pretrain" / SPLIT_FILE
    info, held = _held_images(split_file, cfg.data.image_size)
    assert summary["held_out"]["file"] == str(split_file) and summary["held_out"]["fraction"] == 0.1
    assert len(held) == info["n_held_out"] == 6
    _check_stages(seen, held)


@pytest.mark.slow
def test_ablation_holds_out_one_split_for_every_run(tmp_path, fer_sample, monkeypatch):
    from byel.experiments import run_ablation

    seen = _spy(monkeypatch)
    out = tmp_path / "abl"
    run_ablation(out, [str(fer_sample)], preset="smoke", seeds=1, methods=("supervised",),
                 overrides=["generate.per_class=8", "trainer.logger=none"])
    _check_stages(seen)
    info, held = _held_images(out / SPLIT_FILE, 32)
    assert info["grouped_by"] == "identity draw (one per image)" and len(held) == 6
    _check_stages(seen, held)


@pytest.mark.slow
def test_finetune_after_pretrain_holds_out_the_same_files(tmp_path, procedural):
    from byel.data.split import holdout_split

    pre, ft, other = tmp_path / "pre", tmp_path / "ft", tmp_path / "other"
    assert main(["pretrain", "--data", str(procedural), "--out", str(pre), "--seed", "1", *TINY]) == 0
    recorded = json.loads((pre / SPLIT_FILE).read_text())
    assert recorded["seed"] == 1 and recorded["fraction"] == 0.1 and recorded["n_held_out"] == 6
    assert len(recorded["held_out_files"]) == 6
    # Another seed would carve another split; stage 2 keeps stage 1's.
    assert main(["finetune", "--checkpoint", str(pre / "checkpoints" / "last.ckpt"), "--data", str(procedural),
                 "--out", str(ft), "--seed", "2", *TINY]) == 0
    used = json.loads((ft / SPLIT_FILE).read_text())
    assert sorted(used["held_out_files"]) == sorted(recorded["held_out_files"])
    assert used["from"] == str((pre / SPLIT_FILE).resolve())
    data = load(str(procedural), 32, progress=False)
    assert sorted(holdout_split(data, 0.1, 2)[2]["held_out_files"]) != sorted(recorded["held_out_files"])
    # Other data: stage 1's record does not apply; a split of its own is carved and recorded.
    d2 = write_class_folders(tmp_path / "d2", 10)
    assert main(["finetune", "--checkpoint", str(pre / "checkpoints" / "last.ckpt"), "--data", str(d2),
                 "--out", str(other), *TINY]) == 0
    own = json.loads((other / SPLIT_FILE).read_text())
    assert "from" not in own and own["grouped_by"] == "image" and own["n_held_out"] == 6
