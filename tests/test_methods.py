"""The stage-1 methods by value: each training_step's loss against the pure loss functions on the
same views, the EMA target arithmetic, and what the optimiser does and does not see."""

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from byel.cli import main
from byel.config import load_config
from byel.data.datamodule import ArrayDataModule
from byel.losses import byol_loss, classification_loss, emotion_vector_subtraction, orthogonality_loss
from byel.methods import FineTune, create_method
from conftest import write_class_folders


def make(method: str, *overrides: str):
    torch.manual_seed(0)
    return create_method(load_config("smoke", [f"method.name={method}", *overrides]).to_dict())


class Views:
    """Stands in for the random augmentation: returns the given views in turn."""

    def __init__(self, *views):
        self.views, self.calls = list(views), 0

    def __call__(self, x):
        v = self.views[self.calls % len(self.views)]
        self.calls += 1
        return v


def run_step(model, monkeypatch):
    """One training_step on fixed views; returns (returned loss, logged values, views, labels)."""
    g = torch.Generator().manual_seed(1)
    v1, v2 = torch.randn(8, 3, 32, 32, generator=g), torch.randn(8, 3, 32, 32, generator=g)
    y = torch.arange(8) % 6
    monkeypatch.setattr(model.augment, "forward", Views(v1, v2))
    logged = {}
    monkeypatch.setattr(model, "log_dict", lambda d, **kw: logged.update({k: float(v) for k, v in d.items()}))
    monkeypatch.setattr(model, "log", lambda k, v, **kw: logged.update({k: float(v)}))
    model.train()
    loss = model.training_step((torch.zeros(8, 32, 32, 3, dtype=torch.uint8), y), 0)
    return loss, logged, (v1, v2), y


@pytest.mark.parametrize("method", ["byel", "byol-cls", "byol"])
def test_momentum_method_losses_by_value(method, monkeypatch):
    model = make(method)
    with torch.no_grad():  # a target unlike the online network, so swapped views would show
        for p in model.target_projector.parameters():
            p.add_(0.5 * torch.randn_like(p))
    loss, logged, (v1, v2), y = run_step(model, monkeypatch)
    with torch.no_grad():
        p1, p2 = (model.predictor(model.projector(model.backbone(v))) for v in (v1, v2))
        z1, z2 = (model.target_projector(model.target_backbone(v)) for v in (v1, v2))
        expected = 0.0
        if method != "byol":
            W = model.classifier.W
            ce = classification_loss(model.classifier(p1), y) + classification_loss(model.classifier(p2), y)
            orth = orthogonality_loss(W)
            assert logged["train/ce"] == pytest.approx(ce.item(), rel=1e-6)
            assert logged["train/orth"] == pytest.approx(orth.item(), rel=1e-6)
            expected = ce + orth
            if method == "byel":  # EVS on the online predictions only, after the classifier saw them
                p1, p2 = (emotion_vector_subtraction(p, W, y) for p in (p1, p2))
        else:
            assert "train/ce" not in logged and model.classifier is None
        byol = byol_loss(p1, z2) + byol_loss(p2, z1)  # each view's prediction against the other's target
        expected = expected + byol
    assert logged["train/byol"] == pytest.approx(byol.item(), rel=1e-6)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) == logged["train/loss"]


def test_supervised_loss_by_value(monkeypatch):
    model = make("supervised")
    loss, logged, (v1, v2), y = run_step(model, monkeypatch)
    with torch.no_grad():
        expected = sum(classification_loss(model.head(model.backbone(v)), y) for v in (v1, v2))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert logged["train/loss"] == logged["train/ce"] == pytest.approx(expected.item(), rel=1e-6)


# --- the EMA target, through Lightning's loop ------------------------------------------------------
def fit(model, steps: int, **trainer_kw):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, **trainer_kw)
    trainer.fit(model, datamodule=ArrayDataModule((images, np.arange(64) % 6), batch_size=16))
    return trainer


def momentum_model(*overrides):
    model = make("byel", "method.ema_schedule=fixed", "method.ema_base=0.9", *overrides)
    with torch.no_grad():  # target ≠ online, so every EMA update moves the target
        for p in model.target_backbone.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def ema(t0: dict, online: dict, tau: float) -> dict:
    """One update, by the formula: parameters τ·target + (1 − τ)·online; buffers copied."""
    out = {}
    for k, v in online.items():
        out[k] = t0[k].clone().mul_(tau).add_(v, alpha=1 - tau) if v.is_floating_point() and "running" not in k else v
    return out


def assert_state_equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_ema_after_one_step_is_exact():
    model = momentum_model()
    t0 = state(model.target_backbone)
    fit(model, steps=1)
    assert_state_equal(state(model.target_backbone), ema(t0, state(model.backbone), 0.9))


def test_ema_updates_once_per_optimizer_step_under_accumulation():
    model = momentum_model()
    t0 = state(model.target_backbone)
    trainer = fit(model, steps=1, accumulate_grad_batches=2)  # two batches, one optimiser step
    assert trainer.global_step == 1
    assert_state_equal(state(model.target_backbone), ema(t0, state(model.backbone), 0.9))


def test_a_skipped_step_leaves_the_target_unchanged(monkeypatch):
    model = momentum_model("optim.nonfinite=skip")
    t0, online0 = state(model.target_backbone), state(model.backbone)
    nan = torch.full((16, 3, 32, 32), float("nan"))
    monkeypatch.setattr(model.augment, "forward", lambda x: nan)  # a NaN loss: guard() skips the step
    fit(model, steps=1)
    assert model.skipped_steps == 1
    # parameters: the forward pass itself writes the (NaN) batch statistics into both networks' buffers
    params = [k for k, _ in model.backbone.named_parameters()]
    assert all(torch.equal(model.backbone.state_dict()[k], online0[k]) for k in params)  # no step taken
    assert all(torch.equal(model.target_backbone.state_dict()[k], t0[k]) for k in params)  # and no EMA


def test_targets_are_not_optimised():
    model = make("byel")
    trainer = fit(model, steps=1)
    in_optimizer = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    targets = [p for n, p in model.named_parameters() if n.startswith("target")]
    online = [p for n, p in model.named_parameters() if not n.startswith("target")]
    assert targets and not any(id(p) in in_optimizer for p in targets)
    assert all(id(p) in in_optimizer for p in online) and not any(p.requires_grad for p in targets)


# --- learning rates and optimisers -------------------------------------------------------------------
@pytest.mark.parametrize("scaling,world,accumulate,expected", [
    ("none", 4, 1, 0.1), ("linear", 1, 1, 0.1), ("linear", 4, 1, 0.4), ("linear", 4, 2, 0.8)])
def test_linear_lr_scaling_with_a_fake_world_size(monkeypatch, scaling, world, accumulate, expected):
    model = make("byol", "optim.lr=0.1", f"optim.lr_scaling={scaling}")
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, accumulate_grad_batches=accumulate)
    monkeypatch.setattr(L.Trainer, "world_size", property(lambda self: world))
    monkeypatch.setattr(model, "total_steps", lambda: 100)
    model.trainer = trainer
    optimizer = model.configure_optimizers()["optimizer"]
    assert optimizer.param_groups[0]["initial_lr"] == pytest.approx(expected)


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)])
def test_finetune_optimizer_is_the_configured_one(name, cls):
    cfg = load_config("smoke", [f"finetune.optimizer={name}", "finetune.lr=0.03"])
    optimizer = FineTune(cfg.to_dict()).configure_optimizers()
    assert type(optimizer) is cls and optimizer.param_groups[0]["lr"] == 0.03


def test_finetune_flags_reach_the_finetune_run(tmp_path):
    data = write_class_folders(tmp_path / "synth", 4)
    out = tmp_path / "ft"
    assert main(["finetune", "--data", str(data), "--out", str(out), "--preset", "smoke", "--no-progress",
                 "--logger", "none", "--lr", "0.003", "--batch-size", "8", "--optimizer", "sgd"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["finetune"]["lr"] == 0.003 and saved["finetune"]["batch_size"] == 8
    assert saved["finetune"]["optimizer"] == "sgd"
    assert saved["optim"]["lr"] == load_config("smoke").optim.lr  # pre-training's own, untouched
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    group = ckpt["optimizer_states"][0]["param_groups"][0]
    assert group["lr"] == 0.003 and group.get("nesterov") is True  # SGD's own key: not Adam
