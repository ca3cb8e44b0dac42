"""A user's mistake is one line and exit code 2; a bug in byel says it is one (exit code 1) and
leaves its traceback in a file instead of passing for bad input."""

import tempfile

import pytest
import torch

from byel.checkpoint import FORMAT
from byel.classes import CLASSES
from byel.cli import main
from byel.cli.guard import run_guarded
from byel.config import load_config
from conftest import write_class_folders


@pytest.fixture
def crash_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("bug", [lambda: {}["model"], lambda: 1 / 0])
def test_an_unexpected_exception_is_reported_as_a_bug(bug, crash_dir, capsys):
    assert run_guarded(bug) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("byel: internal error (a bug in byel")
    crash = next(crash_dir.glob("byel-crash-*.txt"))
    assert str(crash) in err and "Traceback (most recent call last)" in crash.read_text()


def foreign_checkpoint(path, kind: str, drop: str):
    """A checkpoint with byel metadata whose config lacks a section (another tool's, or edited)."""
    config = load_config("smoke").to_dict()
    del config[drop]
    meta = {"format": FORMAT, "kind": kind, "classes": list(CLASSES), "config": config}
    torch.save({"state_dict": {"backbone.w": torch.zeros(1)}, "byel": meta}, path)
    return path


@pytest.mark.parametrize("kind,drop", [("pretrain", "model"), ("pretrain", "aug"), ("finetune", "data")])
def test_a_checkpoint_missing_a_config_section_is_a_checkpoint_error(tmp_path, crash_dir, capsys, kind, drop):
    ckpt = foreign_checkpoint(tmp_path / "foreign.ckpt", kind, drop)
    if kind == "pretrain":
        data = write_class_folders(tmp_path / "data", 2)
        argv = ["finetune", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "ft"),
                "--preset", "smoke", "--no-progress", "--logger", "none"]
    else:
        argv = ["evaluate", "--checkpoint", str(ckpt), "--data", str(tmp_path), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"byel: error: {ckpt} is not a byel checkpoint: its byel metadata has no config.{drop}\n"
    assert not list(crash_dir.glob("byel-crash-*"))
