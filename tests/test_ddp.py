"""The multi-process path: DDP with 2 CPU processes (gloo), launched the way users launch it."""

import subprocess
import sys

import torch

from conftest import write_class_folders


def test_ddp_two_cpu_processes(tmp_path):
    data = write_class_folders(tmp_path / "synth", 8)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "byel", "pretrain", "--data", str(data), "--out", str(out), "--preset", "smoke",
           "--no-progress", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--batch-size", "8"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    # 48 images, 8 per process × 2 processes = a global batch of 16 → 3 optimiser steps per epoch
    assert ckpt["global_step"] == 3
    assert ckpt["byel"]["config"]["trainer"]["devices"] == "2"
