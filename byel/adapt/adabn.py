"""AdaBN (Li et al. 2016, "Revisiting Batch Normalization for Practical Domain Adaptation"): a
model's BatchNorm statistics re-estimated on unlabelled images of the target domain. No label
and no weight is touched.

The statistics are exact population moments over the whole adaptation set, so they do not depend
on the order of the images or the batch size (the per-batch averages of PyTorch's train mode
would lose the between-batch variance, e.g. with class-sorted loaders).

As a method of `byel adapt` it is the zero-step one: every method ends with these statistics.

The adaptation set is one rule everywhere (evaluate, demo, ablation, the transfer benchmark):
the evaluated images without their labels — exactly the images that are scored — unless an
explicit data spec is given (`adaptation_set`)."""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from byel.errors import DataError
from byel.provenance import fingerprint, overlaps


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the layer being adapted has seen its input."""


class _Moments:
    """Per-channel count, mean and sum of squared deviations, merged batch by batch in float64
    (Chan et al.'s pairwise update: exact up to rounding, whatever the batch order)."""

    def __init__(self, channels: int):
        self.n = 0
        self.mean = torch.zeros(channels, dtype=torch.float64)
        self.m2 = torch.zeros(channels, dtype=torch.float64)

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().transpose(0, 1).reshape(x.shape[1], -1).float()  # (C, N·spatial)
        n = x.shape[1]
        if n == 0:
            return
        mean = x.mean(1)
        m2 = ((x - mean[:, None]) ** 2).sum(1).double().cpu()
        mean = mean.double().cpu()
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta**2 * self.n * n / total
        self.n = total

    def var(self) -> torch.Tensor:
        return self.m2 / self.n


def bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's batch-norm layers that keep running statistics (the ones AdaBN re-estimates
    and Tent's affine parameters live in)."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.running_mean is not None]


def _default_prepare(model: nn.Module) -> Callable[[np.ndarray], torch.Tensor]:
    """uint8 images (N, H, W, 3) → the model's input: its own `preprocess` (byel.methods.Classifier) on its device."""
    device = next(model.parameters()).device
    pre = getattr(model, "preprocess", None)
    return lambda batch: (pre or (lambda x: x))(torch.from_numpy(np.ascontiguousarray(batch)).to(device))


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, images: np.ndarray, batch_size: int = 256, progress: bool = False,
                    prepare: Callable[[np.ndarray], torch.Tensor] | None = None) -> nn.Module:
    """A copy of `model`, in eval mode, whose BatchNorm running statistics are re-estimated on
    `images` (unlabelled); weights are untouched, `model` itself is left as it was.

    Definition. Let B_1 … B_L be the BatchNorm layers in the order a forward pass first runs them.
    B_l's new running_mean and running_var are the per-channel mean and *population* variance
    (divisor n, not n − 1) of B_l's input over every image of `images` and every spatial position,
    where that input is computed by the model in eval mode with B_1 … B_{l−1} already using their
    new statistics (dropout off, no batch statistics anywhere). This is the sequential, layer by
    layer AdaBN: each layer sees the distribution it will meet at test time. It costs one pass
    over `images` per layer, each stopped at that layer (about L/2 full passes in all).

    `prepare` maps a slice of `images` to the model's input (default: `model.preprocess` of the
    uint8 images, on the model's device). A BatchNorm layer that no forward pass reaches, or one
    without running statistics, is left as it was; a layer run several times per forward pass
    is estimated from its first call.
    """
    if len(images) == 0:
        raise DataError("no images to adapt the BatchNorm statistics on")
    adapted = copy.deepcopy(model).eval()
    prepare = prepare or _default_prepare(adapted)
    layers = bn_layers(adapted)

    order: list[nn.Module] = []  # the execution order, from one forward pass on one image
    def record(module, args):
        if module not in order:
            order.append(module)
    hooks = [bn.register_forward_pre_hook(record) for bn in layers]
    try:
        adapted(prepare(images[:1]))
    finally:
        for h in hooks:
            h.remove()

    starts = range(0, len(images), batch_size)
    bar = tqdm(total=len(order) * len(starts), desc="adapt BN", leave=False, disable=not progress)
    for bn in order:
        moments = _Moments(bn.num_features)
        def collect(module, args):
            moments.add(args[0])
            raise _Stop
        hook = bn.register_forward_pre_hook(collect)
        try:
            for s in starts:
                try:
                    adapted(prepare(images[s : s + batch_size]))
                except _Stop:
                    pass
                bar.update()
        finally:
            hook.remove()
        bn.running_mean.copy_(moments.mean.to(bn.running_mean))
        bn.running_var.copy_(moments.var().to(bn.running_var))
    bar.close()
    return adapted


def adapt(model: nn.Module, images: np.ndarray, opts, monitor) -> None:
    """The `adabn` method of byel.adapt: nothing to train. Every method's result is its model with
    AdaBN statistics on the images (monitor.round), so AdaBN is round 0 of every method."""


def adaptation_set(spec: str | bool | None, evaluated: np.ndarray, size: int,
                   progress: bool = False) -> tuple[np.ndarray, dict]:
    """The images AdaBN adapts on, and what to report about them.

    spec None or True: the evaluated images themselves, without their labels (exactly the scored
    images — not, e.g., the skipped neutral ones of the same folder). A data spec: every image
    it holds, read unlabelled, at `size` px. The record says which set (`data`: "evaluated" or
    the spec), how many images (`n_adapt_images`), and whether any evaluated image is among
    them (`transductive`, and how many: `n_evaluated_among`, checked image by image for a spec).
    """
    if spec is None or spec is True:
        return evaluated, {"data": "evaluated", "n_adapt_images": int(len(evaluated)), "transductive": True,
                           "n_evaluated_among": int(len(evaluated))}
    from byel.data.sources import load  # late: keeps `import byel.adapt` light

    unl = load(spec, size, unlabelled=True, progress=progress)
    among = overlaps(fingerprint(unl.images), evaluated)
    return unl.images, {"data": spec, "data_resolved": unl.spec, "n_adapt_images": int(len(unl.images)),
                        "transductive": among > 0, "n_evaluated_among": among}
