"""Optimisers (LARS-wrapped SGD, SGD, Adam, AdamW) and schedules as plain arrays.

Schedules follow DINO's `cosine_scheduler`: computed once per run as arrays indexed by the global
optimiser step, `lr_schedule` (linear warm-up then cosine, with the LR scaling rule) and
`ema_schedule` (τ fixed, or BYOL's cosine ramp to 1). The training module and the speed
benchmark's plain loop look their values up (`at`); `byel.train` saves them beside the run.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from byel.errors import ConfigError


class LARS(torch.optim.Optimizer):
    """SGD with momentum and Layer-wise Adaptive Rate Scaling (You et al. 2017), as used by BYOL.

    Each parameter's step is scaled by the trust ratio η·‖w‖ / (‖g‖ + wd·‖w‖). Biases and
    BatchNorm parameters (1-D tensors) are excluded from both the adaptation and weight decay,
    as in BYOL and SimCLR.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 1e-3):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if p.ndim > 1:  # weights of conv / linear layers only
                    g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.norm(p), torch.norm(g)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm, torch.ones_like(w_norm)
                    )
                    g = g * trust
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(g).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation parameters (1-D tensors)."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(module: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9):
    if name == "lars":
        # LARS excludes 1-D params from decay itself; one group keeps its state dict simple.
        return LARS(module.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    groups = param_groups(module, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ConfigError(f"unknown optimizer {name!r}; choose one of: lars, sgd, adam, adamw")


def scaled_lr(lr: float, scaling: str, batches_per_step: int) -> float:
    """optim.lr_scaling: "none" keeps lr; "linear" multiplies it by the number of per-process
    batches (data.batch_size each) that one optimiser step averages: world size × accumulation."""
    if scaling == "none":
        return lr
    if scaling == "linear":
        return lr * batches_per_step
    raise ConfigError(f"unknown optim.lr_scaling {scaling!r}; choose none or linear")


def lr_schedule(optim, total_steps: int, epochs: int, batches_per_step: int = 1) -> np.ndarray:
    """The learning rate at each global optimiser step 0..total_steps (float64; total_steps + 1
    entries: the last is the rate after the final step, which the last checkpoint's optimiser
    holds). `optim`: the config's optim section. optim.lr, scaled by optim.lr_scaling
    (`scaled_lr`), rises linearly over optim.warmup_epochs (of `epochs`), then decays along a
    cosine to lr·optim.min_lr_ratio at total_steps.

    Each entry is computed in Python floats, term by term as a per-step formula would (not with
    numpy's vectorised cos, which may differ in the last bit): the values are those LambdaLR gave.
    """
    base = scaled_lr(optim.lr, optim.lr_scaling, batches_per_step)
    warmup = max(0, int(round(optim.warmup_epochs * total_steps / max(1, epochs))))
    total, low = max(1, total_steps), optim.min_lr_ratio

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))

    return np.array([base * factor(s) for s in range(total_steps + 1)], dtype=np.float64)


def ema_schedule(method, total_steps: int) -> np.ndarray:
    """The target network's decay τ after each global optimiser step 0..total_steps (float64,
    total_steps + 1 entries; the EMA update after step s uses entry s, s ≥ 1). `method`: the
    config's method section: ema_schedule "fixed" keeps ema_base (the reference code); "cosine"
    ramps it to 1 along BYOL's cosine, 1 − (1 − base)·(cos(π·s/total) + 1)/2."""
    base = method.ema_base
    if method.ema_schedule == "fixed":
        return np.full(total_steps + 1, base, dtype=np.float64)
    total = max(1, total_steps)
    return np.array([1 - (1 - base) * (math.cos(math.pi * min(1.0, s / total)) + 1) / 2
                     for s in range(total_steps + 1)], dtype=np.float64)


def at(schedule: np.ndarray, step: int) -> float:
    """A schedule's value at `step`; past its end, its last value (where both schedules end)."""
    return float(schedule[min(max(0, step), len(schedule) - 1)])


class ScheduledLR(torch.optim.lr_scheduler.LRScheduler):
    """Sets every parameter group's learning rate to `lrs[step]` (an `lr_schedule` array), `step`
    being the optimiser steps taken so far (the scheduler's own count, which a resumed run
    restores). The array is not saved in checkpoints: a resumed run computes it again from its
    config (load_state_dict)."""

    def __init__(self, optimizer: torch.optim.Optimizer, lrs: np.ndarray):
        self.lrs = lrs
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        lr = at(self.lrs, self.last_epoch)
        return [lr for _ in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {k: v for k, v in super().state_dict().items() if k != "lrs"}

    def load_state_dict(self, state_dict: dict) -> None:
        # "lr_lambdas": a checkpoint of an older byel, whose LambdaLR computed the same values per step
        super().load_state_dict({k: v for k, v in state_dict.items() if k not in ("lrs", "lr_lambdas")})
        # The rate at the restored step, from this run's array: the checkpoint's own where the run
        # is the same; a run resumed with more epochs continues on its new, longer schedule.
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr
