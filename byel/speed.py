"""`byel benchmark speed`: what a pre-training step costs, measured in one run on this machine.

For each preset (its backbone at its resolution):
- byel's BYEL step through the real Lightning Trainer (per-sample augmentation of two views,
  forward/backward, optimiser, EMA, LR schedule, logging) vs a plain-PyTorch reference loop that
  does the same maths the simplest way: the ratio is the figure (> 1: byel's loop costs nothing);
- achieved FLOP/s of the step (torch's FlopCounterMode) vs this machine's dense float32 matmul peak;
- images/s the data loader delivers vs images/s the step consumes;
- peak resident memory of the process.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from byel.config import load_config
from byel.data.datamodule import ArrayDataModule
from byel.losses import byol_loss, classification_loss, emotion_vector_subtraction, orthogonality_loss
from byel.methods import create_method
from byel.optim import build_optimizer


def matmul_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t)


def reference_step(model, opt, x, y, tau: float = 0.99) -> torch.Tensor:
    """BYEL's step in a bare loop: no Lightning, no logging, no schedule."""
    v1, v2 = model.augment(x), model.augment(x)
    p1, p2 = (model.predictor(model.projector(model.backbone(v))) for v in (v1, v2))
    with torch.no_grad():
        z1, z2 = (model.target_projector(model.target_backbone(v)) for v in (v1, v2))
    W = model.classifier.W
    loss = classification_loss(model.classifier(p1), y) + classification_loss(model.classifier(p2), y)
    loss = loss + orthogonality_loss(W)
    p1, p2 = emotion_vector_subtraction(p1, W, y), emotion_vector_subtraction(p2, W, y)
    loss = loss + byol_loss(p1, z2) + byol_loss(p2, z1)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        for o, tg in ((model.backbone, model.target_backbone), (model.projector, model.target_projector)):
            for po, pt in zip(o.parameters(), tg.parameters()):
                pt.mul_(tau).add_(po, alpha=1 - tau)
    return loss


class _StepTimer(L.Callback):
    def __init__(self, warmup: int):
        self.warmup, self.times = warmup, []

    def on_train_batch_start(self, trainer, *args):
        self.t = time.perf_counter()

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step > self.warmup:
            self.times.append(time.perf_counter() - self.t)


def _data(cfg, n_batches: int):
    n = cfg.data.batch_size * n_batches
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, cfg.data.image_size, cfg.data.image_size, 3), dtype=np.uint8)
    return images, (np.arange(n) % 6).astype(np.int64)


def measure(preset: str, steps: int = 10, warmup: int = 2, batch_size: int | None = None, device: str = "cpu") -> dict:
    from byel.train import build_trainer, quiet_lightning

    quiet_lightning()
    over = {"method.name": "byel", "trainer.progress": False, "trainer.logger": "none",
            "trainer.accelerator": "gpu" if device.startswith("cuda") else "cpu"}
    if batch_size:
        over["data.batch_size"] = batch_size
    cfg = load_config(preset, over)
    images, labels = _data(cfg, steps + warmup)
    L.seed_everything(0, verbose=False)

    # plain-PyTorch reference
    model = create_method(cfg.to_dict()).to(device).train()
    online = torch.nn.ModuleList([model.backbone, model.projector, model.predictor, model.classifier])
    opt = build_optimizer(online, cfg.optim.optimizer, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.momentum)
    bs = cfg.data.batch_size
    x_all, y_all = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
    times = []
    for s in range(steps + warmup):
        x, y = x_all[s * bs:(s + 1) * bs], y_all[s * bs:(s + 1) * bs]
        t = time.perf_counter()
        reference_step(model, opt, x, y)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if s >= warmup:
            times.append(time.perf_counter() - t)
    ref = bs / float(np.median(times))
    with FlopCounterMode(display=False) as fc:
        reference_step(model, opt, x_all[:bs], y_all[:bs])
    flops_per_step = fc.get_total_flops()

    # byel's Lightning step
    timer = _StepTimer(warmup)
    trainer = build_trainer(cfg, Path("/tmp/byel-speed"), 1, checkpoints=False, limit_train_batches=steps + warmup,
                            callbacks=[timer])
    dm = ArrayDataModule((images, labels), batch_size=bs)
    trainer.fit(create_method(cfg.to_dict()), datamodule=dm)
    step_s = float(np.median(timer.times))
    ours = bs / step_s

    # the loader alone
    t = time.perf_counter()
    n = sum(len(b[1]) for b in dm.train_dataloader())
    loader = n / (time.perf_counter() - t)

    peak = matmul_peak_flops()
    return {
        "preset": preset, "backbone": cfg.model.backbone, "image_size": cfg.data.image_size, "batch_size": bs,
        "threads": torch.get_num_threads(), "device": device,
        "byel_images_per_s": round(ours, 1), "reference_images_per_s": round(ref, 1), "ratio": round(ours / ref, 3),
        "gflop_per_step": round(flops_per_step / 1e9, 2),
        "achieved_gflops": round(flops_per_step / step_s / 1e9, 1), "matmul_peak_gflops": round(peak / 1e9, 1),
        "percent_of_peak": round(100 * flops_per_step / step_s / peak, 1),
        "loader_images_per_s": round(loader), "loader_vs_step": round(loader / ours, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


HEADER = ("| preset | backbone | px | batch | byel img/s | plain-PyTorch img/s | ratio | GFLOP/step | achieved GFLOP/s "
          "| matmul peak GFLOP/s | % of peak | loader img/s | loader ÷ step | peak RSS MB |")


def row(r: dict) -> str:
    keys = ["preset", "backbone", "image_size", "batch_size", "byel_images_per_s", "reference_images_per_s", "ratio",
            "gflop_per_step", "achieved_gflops", "matmul_peak_gflops", "percent_of_peak", "loader_images_per_s",
            "loader_vs_step", "peak_rss_mb"]
    return "| " + " | ".join(str(r[k]) for k in keys) + " |"


def run_speed(presets: list[str], steps: int, batch_sizes: dict[str, int], out_json: str | None, device: str = "cpu") -> list[dict]:
    results = []
    print(HEADER)
    print("|" + "---|" * 14)
    for p in presets:
        r = measure(p, steps=steps, batch_size=batch_sizes.get(p), device=device)
        results.append(r)
        print(row(r), flush=True)
    if out_json:
        Path(out_json).write_text(json.dumps(results, indent=2))
    return results
