"""`byel generate` never writes into a folder it does not own, and never leaves data that looks usable
when it is not: --out must be new, empty or a generate run of its own (a finished run of the same
settings is kept, nothing written; another is replaced only with --overwrite; a folder holding
anything else, real data above all, is refused even with --overwrite); a run stopped midway is
marked unfinished and refused by the loader; sources without a face and --sources on the
procedural backend are refused in one line."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from byel.cli import main
from byel.data.formats import GENERATING, MANIFEST
from byel.data.sources import load
from byel.errors import ConfigError, DataError
from byel.synth import generate as gen_mod
from byel.synth.generate import generate
from conftest import FER_SAMPLE, SMOKE

FIXTURES = Path(__file__).parent / "fixtures"
FACE = FIXTURES / "neutral" / "Training_10031781.jpg"  # one the face detector finds
FAST = ["--size", "48", "--workers", "1", "--no-progress"]


def _gen(out, *extra) -> list[str]:
    return ["generate", "--out", str(out), *FAST, *extra]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("byel: error: "), err
    return lines[0]


def _noise(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"noise{i}.png"), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    return folder


def _needs_warp():
    if importlib.util.find_spec("dlib") is None or importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("the warp backend's optional extra (dlib, face-recognition-models) is not installed")


# --- real data is never written into -------------------------------------------------------------
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_real_labelled_folder_is_refused_even_with_overwrite(tmp_path, capsys, overwrite):
    real = tmp_path / "real"
    shutil.copytree(FER_SAMPLE, real)
    before = _snapshot(real)
    assert main(_gen(real, "--per-class", "1", *(["--overwrite"] if overwrite else []))) == 2
    assert "did not write" in _one_error(capsys.readouterr().err)
    assert _snapshot(real) == before


def test_a_generate_run_with_real_images_added_is_refused_even_with_overwrite(tmp_path, capsys):
    out = tmp_path / "g"
    assert main(_gen(out, "--per-class", "1")) == 0
    shutil.copy(next((FER_SAMPLE / "happy").iterdir()), out / "happiness" / "mine.jpg")
    before = _snapshot(out)
    capsys.readouterr()
    assert main(_gen(out, "--per-class", "2", "--overwrite")) == 2
    assert "mine.jpg" in _one_error(capsys.readouterr().err)
    assert _snapshot(out) == before


def test_out_around_the_sources_is_refused(tmp_path):
    (tmp_path / "src").mkdir()
    shutil.copy(FACE, tmp_path / "src" / FACE.name)
    with pytest.raises(ConfigError, match="overlap"):
        generate(tmp_path, backend="warp", sources=tmp_path / "src", per_class=1, size=48, progress=False,
                 overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


# --- an earlier generate run: kept, or replaced only with --overwrite -----------------------------
def test_other_settings_are_refused_then_replaced_with_overwrite(tmp_path, capsys):
    out = tmp_path / "g"
    assert main(_gen(out, "--per-class", "2")) == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert main(_gen(out, "--per-class", "1")) == 2
    line = _one_error(capsys.readouterr().err)
    assert "other settings" in line and "--overwrite" in line
    assert _snapshot(out) == before

    assert main(_gen(out, "--per-class", "1", "--classes", "happy", "--overwrite")) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png") if p.name != "preview.png") \
        == ["happiness/happiness_000000.png"]  # the other classes' folders went with the old run
    assert len(load(str(out), 48, cache=False, progress=False)) == 1


def test_same_settings_again_writes_nothing(tmp_path, capsys):
    out = tmp_path / "g"
    assert main(_gen(out, "--per-class", "1")) == 0
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    assert main(_gen(out, "--per-class", "1")) == 0
    assert "nothing written" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps


# --- a run stopped midway ------------------------------------------------------------------------
@pytest.fixture
def unfinished(tmp_path, monkeypatch):
    """A generate run killed after its third image (the write raises, as a kill would stop it)."""
    out = tmp_path / "g"
    real_write, n = gen_mod.write_image, []

    def write(path, *a, **k):
        if len(n) == 3:
            raise KeyboardInterrupt
        n.append(path)
        return real_write(path, *a, **k)

    monkeypatch.setattr(gen_mod, "write_image", write)
    with pytest.raises(KeyboardInterrupt):
        generate(out, per_class=2, size=48, progress=False)
    monkeypatch.setattr(gen_mod, "write_image", real_write)
    assert (out / GENERATING).exists() and not (out / MANIFEST).exists()
    return out


def test_an_unfinished_run_is_refused_by_the_loader(unfinished, tmp_path, capsys):
    for unlabelled in (False, True):
        with pytest.raises(DataError, match="unfinished byel generate run.*--overwrite"):
            load(str(unfinished), 48, cache=False, progress=False, unlabelled=unlabelled)
    assert main(["data", "inspect", str(unfinished)]) == 2
    assert "unfinished" in _one_error(capsys.readouterr().err)
    assert main(["pretrain", "--data", str(unfinished), "--out", str(tmp_path / "run"), *SMOKE]) == 2
    assert "unfinished" in _one_error(capsys.readouterr().err)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_an_unfinished_run_is_made_again_only_with_overwrite(unfinished, capsys):
    assert main(_gen(unfinished, "--per-class", "2")) == 2
    assert "unfinished" in _one_error(capsys.readouterr().err)
    assert main(_gen(unfinished, "--per-class", "2", "--overwrite")) == 0
    assert not (unfinished / GENERATING).exists()
    assert len(load(str(unfinished), 48, cache=False, progress=False)) == 12


def test_a_run_missing_its_manifest_is_unfinished(tmp_path):
    out = tmp_path / "g"
    generate(out, per_class=1, size=48, progress=False)
    (out / MANIFEST).unlink()  # written last: without it the run did not finish
    with pytest.raises(DataError, match="unfinished"):
        load(str(out), 48, cache=False, progress=False)


# --- sources ---------------------------------------------------------------------------------------
def test_procedural_with_sources_is_refused(tmp_path, capsys):
    src = _noise(tmp_path / "src", 1)
    assert main(_gen(tmp_path / "g", "--per-class", "1", "--sources", str(src))) == 2
    assert "uses no --sources" in _one_error(capsys.readouterr().err)
    assert not (tmp_path / "g").exists()


def test_demo_with_procedural_faces_and_sources_is_refused_before_it_writes(tmp_path, capsys):
    src = _noise(tmp_path / "src", 1)
    rc = main(["demo", "--out", str(tmp_path / "d"), "--sources", str(src), "--per-class", "2", *SMOKE])
    assert rc == 2 and "uses no source faces" in _one_error(capsys.readouterr().err)
    assert not (tmp_path / "d").exists()


def test_warp_on_sources_without_a_face_is_refused(tmp_path, capsys):
    _needs_warp()
    src = _noise(tmp_path / "src", 4)
    assert main(_gen(tmp_path / "g", "--backend", "warp", "--sources", str(src), "--per-class", "1")) == 2
    assert "finds no face" in _one_error(capsys.readouterr().err)
    assert not (tmp_path / "g").exists()


def test_warp_on_mostly_faceless_sources_warns(tmp_path, capsys):
    _needs_warp()
    src = _noise(tmp_path / "src", 3)
    shutil.copy(FACE, src / FACE.name)
    assert main(_gen(tmp_path / "g", "--backend", "warp", "--sources", str(src), "--per-class", "1")) == 0
    err = capsys.readouterr().err
    assert "byel: warning: 3 of 4 source images" in err and "no face" in err
