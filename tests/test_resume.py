"""Kill and resume: a run killed with SIGKILL continues from its last checkpoint and ends with
exactly the weights, optimiser, EMA target and LR schedule of an uninterrupted run (CPU, same seed).

Bit-exact is expected because every random stream (torch, numpy, python) is saved in each
checkpoint and restored on resume, the data order comes from those streams, and the CPU kernels
are deterministic for a fixed thread count (1 here).
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import write_class_folders

pytestmark = pytest.mark.slow  # subprocess runs of byel, killed and resumed
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _cmd(data, out, *extra):
    return [sys.executable, "-m", "byel", "pretrain", "--data", str(data), "--out", str(out), "--preset", "smoke",
            "--epochs", "6", "--no-progress", "--logger", "none", *extra]


def _equal(a, b, path=""):
    """Recursively compare two checkpoint trees; returns the first differing path or None."""
    if isinstance(a, torch.Tensor):
        return None if torch.equal(a, b) else path
    if isinstance(a, dict):
        if set(a) != set(b):
            return path + " keys"
        for k in a:
            bad = _equal(a[k], b[k], f"{path}.{k}")
            if bad:
                return bad
        return None
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return path + " len"
        for i, (x, y) in enumerate(zip(a, b)):
            bad = _equal(x, y, f"{path}[{i}]")
            if bad:
                return bad
        return None
    return None if a == b else path


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    data = write_class_folders(tmp_path / "data", 40)

    full = tmp_path / "full"
    subprocess.run(_cmd(data, full), check=True, env=ENV, capture_output=True, timeout=300)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(data, killed), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted = torch.load(last, weights_only=True)
    assert interrupted["epoch"] < 5, "the run finished before it could be killed; make it longer"
    assert interrupted["global_step"] > 0

    resumed = subprocess.run(_cmd(data, killed, "--resume"), env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-1500:]

    a = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["global_step"] == b["global_step"] == 6 * 13  # 240 images, 216 after the held-out split / batch 16, six epochs, none repeated
    assert a["epoch"] == b["epoch"]
    for part in ("state_dict", "optimizer_states", "lr_schedulers"):  # weights + EMA target, Adam moments, LR
        assert _equal(a[part], b[part], part) is None, _equal(a[part], b[part], part)
