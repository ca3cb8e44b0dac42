"""`byel benchmark speed`: whole steps timed (fetch and EMA included), one loss code path for byel's
Lightning loop and the plain-PyTorch reference, an end-to-end pretrain() row, results files."""

from __future__ import annotations

import json
import math

import lightning as L
import pytest
import torch

from byel import speed
from byel.cli import main
from byel.config import load_config
from byel.data.datamodule import ArrayDataset
from byel.methods import create_method
from byel.methods.base import MomentumMethod
from byel.methods.byel import BYEL
from byel.train import build_trainer, quiet_lightning


def _smoke(**over):
    return load_config("smoke", {"trainer.progress": False, "trainer.logger": "none", "trainer.accelerator": "cpu",
                                 "trainer.devices": "1", **over})


@pytest.mark.slow
def test_cli_writes_results_with_an_end_to_end_row(tmp_path, capsys):
    rc = main(["benchmark", "speed", "--presets", "smoke", "--steps", "2", "--warmup", "1", "--repeats", "1",
               "--e2e-epochs", "2", "--e2e-steps", "2", "--out", str(tmp_path), "--name", "speed"])
    assert rc == 0
    res = json.loads((tmp_path / "speed.json").read_text())
    (row,) = res["rows"]
    for key in ("byel_images_per_s", "reference_images_per_s", "ratio", "gflop_per_step", "achieved_gflops",
                "matmul_peak_gflops", "percent_of_peak", "loader_images_per_s", "peak_rss_mb",
                "e2e_images_per_s", "e2e_step_images_per_s", "e2e_s", "checkpoint_s"):
        assert math.isfinite(row[key]) and row[key] > 0, (key, row[key])
    assert math.isfinite(row["epoch_overhead_s"]) and math.isfinite(row["e2e_startup_s"])
    assert row["checkpoint_saves"] == 2 and row["e2e_steps"] == 4  # one save per epoch, 2 epochs × 2 steps
    assert row["backbone"] == load_config("smoke").model.backbone
    assert res["command"].startswith("byel benchmark speed --presets smoke --steps 2")
    assert res["machine"]["cpu"] and res["machine"]["torch"] == torch.__version__
    assert res["machine"]["lightning"] == L.__version__ and res["machine"]["logical_cpus"] >= 1
    assert res["command"] in (tmp_path / "speed.md").read_text()  # the table names its command
    assert "| smoke |" in capsys.readouterr().out


def test_plain_loop_computes_the_lightning_losses(tmp_path):
    """Same batches, same seeds: the plain loop's losses equal byel's Lightning losses step for step
    (one loss code path; the optimiser, LR schedule and EMA also match, or steps 2-3 would differ)."""
    quiet_lightning()
    cfg = _smoke()
    images, labels = speed._data(cfg.data.batch_size, 3, cfg.data.image_size)
    seen = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            torch.manual_seed(100 + batch_idx)  # the augmentation draws
            seen.append([batch[0].clone(), batch[1].clone()])

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen[-1].append(outputs["loss"].item())

    L.seed_everything(cfg.seed, verbose=False)
    trainer = build_trainer(cfg, tmp_path, 1, checkpoints=False, callbacks=[Record()])
    trainer.fit(create_method(cfg.to_dict()), datamodule=speed._datamodule(cfg, images, labels))
    assert len(seen) == 3

    L.seed_everything(cfg.seed, verbose=False)
    loop = speed.PlainLoop(create_method(cfg.to_dict()), total_steps=3)
    plain = []
    for i, (x, y, _) in enumerate(seen):
        torch.manual_seed(100 + i)
        plain.append(loop.step((x, y), i).item())
    lightning = [s[2] for s in seen]
    assert plain == lightning or torch.allclose(torch.tensor(plain), torch.tensor(lightning), rtol=1e-5, atol=0)
    assert len(set(lightning)) == 3  # the steps did change the weights


def test_step_clock_covers_fetch_step_and_ema(monkeypatch, tmp_path):
    """With a fake clock that moves only in the loader fetch (+10), the training step (+100) and the
    module's EMA hook (+1), every timed step of both loops lasts exactly 111."""
    quiet_lightning()
    now = [0.0]
    monkeypatch.setattr(speed, "clock", lambda: now[0])

    def ticking(fn, dt):
        def wrapped(*args, **kwargs):
            now[0] += dt
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(ArrayDataset, "__getitems__", ticking(ArrayDataset.__getitems__, 10))
    monkeypatch.setattr(BYEL, "training_step", ticking(BYEL.training_step, 100))
    monkeypatch.setattr(MomentumMethod, "on_train_batch_end", ticking(MomentumMethod.on_train_batch_end, 1))
    cfg = _smoke()
    images, labels = speed._data(cfg.data.batch_size, 4, cfg.data.image_size)
    assert speed.time_lightning(cfg, images, labels, 1, "cpu", tmp_path) == [111.0, 111.0]
    gaps, _ = speed.time_plain(cfg, images, labels, 1, "cpu", "32-true")
    assert gaps == [111.0, 111.0]
