"""The multi-process path: DDP with 2 CPU processes (gloo)."""

import os
import subprocess
import sys

import lightning as L
import numpy as np
import pytest
import torch

from byel.config import load_config
from byel.train import pretrain
from conftest import write_class_folders


@pytest.mark.slow
def test_ddp_two_cpu_processes_from_the_command_line(tmp_path):
    """Launched the way users launch it: `byel pretrain --devices 2 --strategy ddp`."""
    data = write_class_folders(tmp_path / "synth", 8)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "byel", "pretrain", "--data", str(data), "--out", str(out), "--preset", "smoke",
           "--no-progress", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--batch-size", "8"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    # 48 images, 42 after the held-out split, 8 per process × 2 processes = a global batch of 16
    # → 2 optimiser steps per epoch
    assert ckpt["global_step"] == 2
    assert ckpt["byel"]["config"]["trainer"]["devices"] == "2"


@pytest.mark.slow
def test_a_small_set_on_more_processes_trains_on_each_share(tmp_path):
    """Each process's batch is at most its share of the images: 10 images on 2 processes with a
    batch size of 8 train in batches of 5 (a batch of 8 left each process with no batch at all)."""
    data = write_class_folders(tmp_path / "synth", 2)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "byel", "pretrain", "--data", str(data), "--out", str(out), "--preset", "smoke",
           "--no-progress", "--logger", "none", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
           "--batch-size", "8", "--epochs", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2  # one step per epoch


def test_too_few_images_for_the_processes_is_one_line_before_any_work(tmp_path):
    from byel.errors import DataError

    images, labels = _data()
    cfg = load_config("smoke", {"trainer.progress": False, "trainer.logger": "none", "trainer.devices": "2",
                                "trainer.strategy": "ddp_spawn"})
    with pytest.raises(DataError, match="2 images for 2 processes: each needs at least 2"):
        pretrain(cfg, images[:2], labels[:2], tmp_path / "run")
    assert not (tmp_path / "run" / "config.yaml").exists()


class DumpState(L.Callback):
    """Each rank saves its online and EMA-target weights and its per-step losses."""

    def __init__(self, folder):
        self.folder, self.losses = str(folder), []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))

    def on_train_end(self, trainer, pl_module):
        state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        torch.save({"state": state, "losses": self.losses}, f"{self.folder}/rank{trainer.global_rank}.pt")


def _data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), np.arange(64) % 6


@pytest.mark.slow
@pytest.mark.parametrize("method", ["byel"])
def test_ddp_ranks_agree_and_match_one_process(tmp_path, method):
    images, labels = _data()
    base = {"method.name": method, "pretrain.epochs": 2, "trainer.progress": False, "trainer.logger": "none",
            "trainer.accelerator": "cpu"}
    one = tmp_path / "one"
    one.mkdir()
    pretrain(load_config("smoke", {**base, "data.batch_size": 16}), images, labels, one, callbacks=[DumpState(one)])
    two = tmp_path / "two"
    two.mkdir()
    cfg = load_config("smoke", {**base, "data.batch_size": 8, "trainer.devices": "2", "trainer.strategy": "ddp_spawn"})
    pretrain(cfg, images, labels, two, callbacks=[DumpState(two)])

    r0, r1 = (torch.load(two / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in r0["state"]:
        if "running" not in key and "num_batches" not in key:  # BN statistics are per-rank on CPU
            # online weights are all-reduced, so the EMA target computed from them is identical on every rank
            assert torch.equal(r0["state"][key], r1["state"][key]), key
    single = torch.load(one / "rank0.pt", weights_only=True)
    assert len(single["losses"]) == len(r0["losses"]) == 8  # same global batch → same number of steps
    # Same initial weights and global batch; each rank sees half the batch (own augmentations and,
    # on CPU, own BatchNorm statistics), so the curves agree within a tolerance, not exactly.
    assert np.allclose(np.mean(r0["losses"] + r1["losses"]), np.mean(single["losses"]), rtol=0.1)
    assert abs(r0["losses"][0] - single["losses"][0]) / single["losses"][0] < 0.1
