"""Pre-training throughput and peak memory of a preset, against a plain-PyTorch reference step.

    python benchmarks/pretrain_speed.py --preset cpu-demo [--steps 20] [--method byel] [--json out.json]

byel's step runs through the real Lightning Trainer (augmentation, both views, EMA, logging,
LR schedule). The reference does the same maths in the simplest possible loop (same model,
same kornia augmentation, same optimiser), so the ratio shows what byel's machinery costs.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import lightning as L
import numpy as np
import torch

from byel.config import load_config
from byel.losses import byol_loss, classification_loss, emotion_vector_subtraction, orthogonality_loss
from byel.methods import create_method
from byel.optim import build_optimizer
from byel.train import build_trainer, quiet_lightning
from byel.data.datamodule import ArrayDataModule


class StepTimer(L.Callback):
    def __init__(self, warmup: int):
        self.warmup, self.times = warmup, []

    def on_train_batch_start(self, trainer, *args):
        self.t = time.perf_counter()

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step > self.warmup:
            self.times.append(time.perf_counter() - self.t)


def byel_throughput(cfg, images, labels, steps: int, warmup: int, out: str) -> float:
    timer = StepTimer(warmup)
    cfg.trainer.progress = False
    cfg.trainer.logger = "none"
    model = create_method(cfg.to_dict())
    trainer = build_trainer(cfg, __import__("pathlib").Path(out), 1, limit_train_batches=steps + warmup)
    trainer.callbacks.append(timer)
    dm = ArrayDataModule((images, labels), batch_size=cfg.data.batch_size)
    trainer.fit(model, datamodule=dm)
    return cfg.data.batch_size / float(np.median(timer.times))


def reference_throughput(cfg, images, labels, steps: int, warmup: int) -> float:
    """The same BYEL step written as a bare loop: no Lightning, no logging, no schedule."""
    model = create_method(cfg.to_dict())
    model.train()
    online = torch.nn.ModuleList([model.backbone, model.projector, model.predictor, model.classifier])
    opt = build_optimizer(online, cfg.optim.optimizer, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.momentum)
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)
    bs, times = cfg.data.batch_size, []
    for step in range(steps + warmup):
        t = time.perf_counter()
        idx = torch.randint(0, len(y_all), (bs,))
        x, y = x_all[idx], y_all[idx]
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
                    pt.mul_(0.99).add_(po, alpha=0.01)
        if step >= warmup:
            times.append(time.perf_counter() - t)
    return bs / float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu-demo")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    quiet_lightning()
    cfg = load_config(args.preset, {"method.name": "byel"})
    n = cfg.data.batch_size * 4
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, cfg.data.image_size, cfg.data.image_size, 3), dtype=np.uint8)
    labels = (np.arange(n) % 6).astype(np.int64)
    L.seed_everything(0, verbose=False)
    ref = reference_throughput(cfg, images, labels, args.steps, args.warmup)
    ours = byel_throughput(cfg, images, labels, args.steps, args.warmup, "/tmp/byel-bench")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {
        "preset": args.preset, "backbone": cfg.model.backbone, "image_size": cfg.data.image_size,
        "batch_size": cfg.data.batch_size, "threads": torch.get_num_threads(),
        "byel_images_per_s": round(ours, 1), "reference_images_per_s": round(ref, 1),
        "ratio": round(ours / ref, 3), "peak_rss_mb": round(peak_mb),
    }
    print("| preset | backbone | px | batch | threads | byel img/s | plain-PyTorch img/s | ratio | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("| " + " | ".join(str(v) for v in row.values()) + " |")
    if args.json:
        open(args.json, "w").write(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
