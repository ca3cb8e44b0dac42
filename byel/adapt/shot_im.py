"""SHOT-IM (Liang et al., "Do We Really Need to Access the Source Data?", ICML 2020), the
information-maximisation part of SHOT: the backbone learns, the classifier head stays frozen (the
source hypothesis), and the loss on each shuffled unlabelled batch is
  L = mean_i H(p_i) − H(mean_i p_i)
— confident predictions per image, diverse over the batch (the second term keeps them off one
class). BatchNorm normalises with batch statistics while training; the saved model's running
statistics are the exact AdaBN moments on the images (the monitor)."""

from __future__ import annotations

import numpy as np
import torch

from byel.adapt.common import Monitor, Options, batches, bn_train_mode, entropy, optimizer, prepare


def adapt(model, images: np.ndarray, opts: Options, monitor: Monitor) -> None:
    model.requires_grad_(False)
    model.backbone.requires_grad_(True)
    opt = optimizer([p for p in model.backbone.parameters()], opts)
    gen = torch.Generator().manual_seed(opts.seed)
    for epoch in range(1, opts.epochs + 1):
        bn_train_mode(model)
        ent, div = [], []
        for idx in batches(len(images), opts.batch_size, gen):
            probs = model(prepare(model, images[idx])).softmax(-1)
            per_image, diversity = entropy(probs).mean(), entropy(probs.mean(0))
            loss = per_image - diversity
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ent.append(per_image.item())
            div.append(diversity.item())
        monitor.round(model, f"epoch {epoch}/{opts.epochs}", entropy_loss=float(np.mean(ent)),
                      diversity=float(np.mean(div)))
    model.requires_grad_(True)
