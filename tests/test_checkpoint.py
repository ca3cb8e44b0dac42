"""Checkpoints are atomic, self-describing, loaded weights-only; numerical faults stop cleanly."""

import pytest
import torch

import byel.methods.byel as byel_method
from byel.checkpoint import atomic_torch_save, load_checkpoint
from byel.cli import main
from byel.errors import CheckpointError
from conftest import SMOKE as TINY
from conftest import write_class_folders


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_class_folders(tmp_path_factory.mktemp("tiny"), 4)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(CheckpointError, match="disk full .*; the previous checkpoint is kept"):
        atomic_torch_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_checkpoint_is_self_describing(tmp_path, smoke_model):
    ckpt = load_checkpoint(smoke_model.pretrained)  # what `byel pretrain` wrote
    meta = ckpt["byel"]
    assert meta["kind"] == "pretrain" and meta["method"] == "byel" and meta["backbone"] == "smallnet"
    assert meta["classes"] == ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]
    assert meta["image_size"] == 32 and len(meta["mean"]) == 3 and meta["config"]["seed"] == 0
    with pytest.raises(CheckpointError, match="pretrain checkpoint"):
        load_checkpoint(smoke_model.pretrained, kinds=("finetune",))
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "epoch": 3}, foreign)
    with pytest.raises(CheckpointError, match="not a byel checkpoint"):
        load_checkpoint(foreign)


def test_nan_loss_stops_with_one_line_and_keeps_last_checkpoint(tmp_path, tiny_data, monkeypatch, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(tiny_data), "--out", str(out), *TINY]) == 0
    before = (out / "checkpoints" / "last.ckpt").read_bytes()
    monkeypatch.setattr(byel_method, "byol_loss", lambda p, z: torch.tensor(float("nan")) + 0 * p.sum())
    capsys.readouterr()
    rc = main(["pretrain", "--data", str(tiny_data), "--out", str(out), "--epochs", "2", "--resume", *TINY])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("byel: error:")]
    assert rc == 2 and len(errors) == 1 and "the loss became nan" in errors[0] and "Traceback" not in err
    assert (out / "checkpoints" / "last.ckpt").read_bytes() == before


def test_nan_loss_can_skip_the_step_instead(tmp_path, tiny_data, monkeypatch):
    calls = {"n": 0}
    real = byel_method.byol_loss

    def sometimes_nan(p, z):
        calls["n"] += 1
        return real(p, z) * (float("nan") if calls["n"] in (1, 2) else 1.0)  # the first step's two terms

    monkeypatch.setattr(byel_method, "byol_loss", sometimes_nan)
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(tiny_data), "--out", str(out), "--set", "optim.nonfinite=skip",
                 "--epochs", "2", *TINY]) == 0
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    # Lightning still counts the skipped step (it calls the optimiser, which finds no gradients)
    assert ckpt["global_step"] == 2 and calls["n"] > 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
