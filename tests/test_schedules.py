"""Schedules computed once as arrays (byel.optim), and the held-out score of every pre-training
epoch (val/macro_f1): the same learning rates and τ, bit for bit, as the per-step formulas byel
used before; the arrays saved beside the run; and weights that do not depend on the scoring."""

import csv
import math

import numpy as np
import pytest
import torch

from byel.config import load_config
from byel.methods import create_method
from byel.optim import ScheduledLR, at, ema_schedule, lr_schedule, scaled_lr
from byel.train import SCHEDULES_FILE, SCHEDULES_PLOT, pretrain, quiet_lightning


# --- the per-step formulas byel used before the arrays (byel.optim.WarmupCosine and ema_tau, as
# configure_optimizers and MomentumMethod.current_tau called them), kept here as the reference ----
class WarmupCosine:
    def __init__(self, total: int, warmup: int, min_ratio: float = 0.0):
        self.total, self.warmup, self.min_ratio = max(1, total), max(0, warmup), min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def ema_tau(step: int, total: int, base: float, schedule: str) -> float:
    if schedule == "fixed":
        return base
    progress = min(1.0, step / max(1, total))
    return 1 - (1 - base) * (math.cos(math.pi * progress) + 1) / 2


def old_lrs(cfg, total: int, epochs: int, batches: int) -> list[float]:
    """The rates the optimiser held at steps 0..total under the old LambdaLR(WarmupCosine)."""
    o = cfg.optim
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=scaled_lr(o.lr, o.lr_scaling, batches))
    warmup = int(round(o.warmup_epochs * total / max(1, epochs)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(total, warmup, o.min_lr_ratio))
    lrs = []
    for _ in range(total + 1):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


# (preset, steps per epoch, overrides): cpu-demo's and paper's own runs, and their variants
RUNS = [("cpu-demo", 25, []), ("cpu-demo", 1, []), ("cpu-demo", 7, ["optim.min_lr_ratio=0.1"]),
        ("cpu-demo", 25, ["method.ema_schedule=fixed", "optim.warmup_epochs=0"]),
        ("paper", 105, []), ("paper", 105, ["method.ema_schedule=cosine", "method.ema_base=0.996"]),
        ("paper", 3, ["optim.warmup_epochs=200"]),  # warm-up longer than the run
        ("smoke", 13, [])]


@pytest.mark.parametrize("preset,per_epoch,overrides", RUNS)
@pytest.mark.parametrize("scaling,batches", [("none", 1), ("linear", 4)])
def test_arrays_equal_the_per_step_formulas_bit_for_bit(preset, per_epoch, overrides, scaling, batches):
    cfg = load_config(preset, [*overrides, f"optim.lr_scaling={scaling}"])
    epochs = cfg.pretrain.epochs
    total = per_epoch * epochs
    lrs = lr_schedule(cfg.optim, total, epochs, batches)
    assert lrs.dtype == np.float64 and len(lrs) == total + 1
    assert lrs.tolist() == old_lrs(cfg, total, epochs, batches)  # == on Python floats: bit for bit
    m = cfg.method
    taus = ema_schedule(m, total)
    assert len(taus) == total + 1
    assert np.array_equal(taus, np.array([ema_tau(s, total, m.ema_base, m.ema_schedule) for s in range(total + 1)]))
    # past the end (a step the run never takes), the per-step formulas' value there too
    assert at(taus, total + 5) == ema_tau(total + 5, total, m.ema_base, m.ema_schedule)


@pytest.mark.parametrize("preset", ["cpu-demo", "paper"])
def test_scheduler_sets_the_arrays_rates_as_lambdalr_did(preset):
    cfg = load_config(preset)
    total, epochs = 40, cfg.pretrain.epochs
    lrs = lr_schedule(cfg.optim, total, epochs)
    params = [torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(2))]
    opt = torch.optim.AdamW([{"params": params[:1]}, {"params": params[1:], "weight_decay": 0.0}], lr=lrs.max())
    opt.param_groups[0]["lr"] = opt.param_groups[1]["lr"] = cfg.optim.lr  # the optimiser's own lr: initial_lr
    sched = ScheduledLR(opt, lrs)
    seen = []
    for _ in range(total + 1):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert [s[0] for s in seen] == [s[1] for s in seen] == old_lrs(cfg, total, epochs, 1)
    state = sched.state_dict()
    assert "lrs" not in state  # recomputed from the config on resume, not stored
    again = ScheduledLR(torch.optim.AdamW(params, lr=cfg.optim.lr), lrs)
    again.load_state_dict({**state, "lr_lambdas": [{"total": 1}]})  # an older byel's LambdaLR state
    assert again.last_epoch == sched.last_epoch and again.get_lr()[0] == at(lrs, sched.last_epoch)


def test_the_module_indexes_its_schedules(monkeypatch):
    """configure_optimizers computes both arrays once; the optimiser's rate and the EMA's τ are
    their entries at the global step."""
    import lightning as L

    model = create_method(load_config("smoke", ["method.name=byol"]).to_dict())
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=4, logger=False)
    monkeypatch.setattr(model, "total_steps", lambda: 60)
    model.trainer = trainer
    conf = model.configure_optimizers()
    m, o = model.cfg.method, model.cfg.optim
    assert set(model.schedules) == {"lr", "tau"} and len(model.schedules["tau"]) == 61
    assert conf["optimizer"].param_groups[0]["lr"] == model.schedules["lr"][0] == o.lr * (1 / 15)  # warm-up: 15 steps
    for step in (0, 1, 30, 60):
        trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress.total.completed = step
        trainer.fit_loop.epoch_loop.automatic_optimization.optim_progress.optimizer.step.total.completed = step
        assert model.current_tau() == ema_tau(step, 60, m.ema_base, m.ema_schedule)


# --- a smoke run: the files beside it, the held-out score, the weights --------------------------
def _data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 6
    images = np.clip(rng.normal(30 + 35 * labels[:, None, None, None], 40, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def _run(tmp_path, name: str, method: str, val) -> dict:
    quiet_lightning()
    cfg = load_config("smoke", [f"method.name={method}", "pretrain.epochs=2", "trainer.progress=false",
                                "trainer.logger=csv", "optim.grad_clip=1.0"])
    out = tmp_path / name
    last = pretrain(cfg, *_data(96, 0), out, val=val)
    return {"out": out, "ckpt": torch.load(last, weights_only=True)}


def _val_rows(out) -> list[float]:
    with open(out / "logs" / "version_0" / "metrics.csv") as f:
        return [float(r["val/macro_f1"]) for r in csv.DictReader(f) if r.get("val/macro_f1")]


@pytest.mark.parametrize("method", ["byel", "byol"])
def test_smoke_run_saves_schedules_logs_val_and_keeps_its_weights(tmp_path, method):
    held = _data(30, 1)
    scored = _run(tmp_path, "scored", method, held)
    plain = _run(tmp_path, "plain", method, None)
    out, ckpt = scored["out"], scored["ckpt"]

    steps = ckpt["global_step"]  # 96 images / batch 16, two epochs
    assert steps == 12
    with np.load(out / SCHEDULES_FILE) as saved:
        assert set(saved.files) == {"lr", "tau"} and len(saved["lr"]) == len(saved["tau"]) == steps + 1
        cfg = load_config("smoke", [f"method.name={method}", "pretrain.epochs=2"])
        assert np.array_equal(saved["lr"], lr_schedule(cfg.optim, steps, 2))
        assert np.array_equal(saved["tau"], ema_schedule(cfg.method, steps))
    assert (out / SCHEDULES_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))

    scores = _val_rows(out)
    assert len(scores) == 2 and all(0 <= s <= 1 for s in scores)  # one per epoch
    assert _val_rows(plain["out"]) == []  # no held-out images: nothing scored

    # the weights (online, target, heads), the optimiser and the random streams of a run without the
    # score, bit for bit; byol's detached probe rides beside them, outside the state_dict
    a, b = ckpt, plain["ckpt"]
    assert set(a["state_dict"]) == set(b["state_dict"])
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    oa, ob = a["optimizer_states"][0], b["optimizer_states"][0]
    assert oa["param_groups"] == ob["param_groups"]
    assert all(torch.equal(oa["state"][i][k], ob["state"][i][k]) for i in oa["state"] for k in oa["state"][i])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert ("online_probe" in a) == (method == "byol") and "online_probe" not in b


def test_supervised_scores_its_own_head(tmp_path):
    model = create_method(load_config("smoke", ["method.name=supervised"]).to_dict())
    images, labels = _data(12, 2)
    model.set_heldout(images, labels)
    assert model.probe is None
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    assert torch.equal(model.heldout_logits(x), model.head(model.backbone(x)))


def test_probe_gradient_never_reaches_the_backbone():
    model = create_method(load_config("smoke", ["method.name=byol"]).to_dict())
    state = torch.get_rng_state()
    model.set_heldout(*_data(12, 2))
    assert torch.equal(torch.get_rng_state(), state)  # its initialisation draws from its own stream
    probe = model.probe
    assert probe is not None and not any(p is q for p in model.parameters() for q in probe.linear.parameters())
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 6
    features = model.backbone(x)
    before = probe.linear.weight.detach().clone()
    probe.step(features, y)
    assert all(p.grad is None for p in model.parameters())
    assert not torch.equal(probe.linear.weight, before)


def test_a_run_resumed_with_more_epochs_continues_on_its_longer_schedule():
    cfg = load_config("cpu-demo")
    short, long = lr_schedule(cfg.optim, 20, 2), lr_schedule(cfg.optim, 30, 3)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=cfg.optim.lr)
    sched = ScheduledLR(opt, short)
    for _ in range(20):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == short[20]
    resumed_opt = torch.optim.SGD([param], lr=cfg.optim.lr)
    resumed = ScheduledLR(resumed_opt, long)
    resumed_opt.load_state_dict(opt.state_dict())  # as Lightning restores: optimiser, then scheduler
    resumed.load_state_dict(sched.state_dict())
    assert resumed_opt.param_groups[0]["lr"] == long[20] == resumed.get_last_lr()[0]
