"""TENT (Wang et al., "Tent: Fully Test-Time Adaptation by Entropy Minimization", ICLR 2021):
the BatchNorm layers normalise with each batch's own statistics and only their affine parameters
(γ, β) learn, by minimising the mean entropy of the predictions on shuffled unlabelled batches.
Every other weight is frozen. The saved model's running statistics are then the exact AdaBN
moments on the images (the monitor), the statistics TENT's γ and β were learned under."""

from __future__ import annotations

import numpy as np
import torch

from byel.adapt.adabn import bn_layers
from byel.adapt.common import Monitor, Options, batches, bn_train_mode, entropy, optimizer, prepare


def adapt(model, images: np.ndarray, opts: Options, monitor: Monitor) -> None:
    affine = [p for bn in bn_layers(model) for p in (bn.weight, bn.bias) if p is not None]
    model.requires_grad_(False)
    for p in affine:
        p.requires_grad_(True)
    opt = optimizer(affine, opts)
    gen = torch.Generator().manual_seed(opts.seed)
    for epoch in range(1, opts.epochs + 1):
        bn_train_mode(model)
        losses = []
        for idx in batches(len(images), opts.batch_size, gen):
            loss = entropy(model(prepare(model, images[idx])).softmax(-1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        monitor.round(model, f"epoch {epoch}/{opts.epochs}", entropy_loss=float(np.mean(losses)))
    model.requires_grad_(True)
