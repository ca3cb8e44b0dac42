"""Optimisers (LARS-wrapped SGD, SGD, Adam, AdamW) and schedules as plain functions of the step.

Schedules follow DINO's habit of being simple, inspectable functions of the global step:
`lr_factor(step)` (linear warm-up then cosine) and `ema_tau(step)` (fixed or BYOL's cosine ramp).
"""

from __future__ import annotations

import math

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


class WarmupCosine:
    """lr multiplier: linear warm-up over `warmup` steps, then cosine decay to `min_ratio`.

    A callable object rather than a lambda, so LambdaLR can save and restore it on resume.
    """

    def __init__(self, total: int, warmup: int, min_ratio: float = 0.0):
        self.total, self.warmup, self.min_ratio = max(1, total), max(0, warmup), min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def ema_tau(step: int, total: int, base: float, schedule: str) -> float:
    """Target-network decay at `step`: fixed (reference code) or BYOL's cosine ramp base → 1."""
    if schedule == "fixed":
        return base
    progress = min(1.0, step / max(1, total))
    return 1 - (1 - base) * (math.cos(math.pi * progress) + 1) / 2
