"""Self-training on the unlabelled images: rounds of class-balanced confident pseudo-labels.

Round r of R labels, for each class c, the k_r images the current model (in its deployed form,
with AdaBN statistics: the monitor's) predicts as c most confidently, k_r = ⌈share · r/R · N/6⌉
(fewer if fewer are predicted as c; 6 is the number of classes, 7 with neutral), so no class can take over and the set grows as the model
improves. The model then fine-tunes for `epochs` passes over them, every batch half pseudo-labelled
real images and half labelled synthetic images (the synthetic set keeps the classes' meaning
anchored), with the training augmentation and cross-entropy. No real label is read: the
pseudo-labels are the model's own predictions.

In a geometry or fused model the teacher is the pixel CNN alone (byel.classifier.predict_probs) and
the geometry and activation heads are left as they are: the CNN learns its own labels, so its
scores stay tier C. byel.adapt.co_train is the method whose views teach each other."""

from __future__ import annotations

import math

import numpy as np
import torch

from byel.adapt.common import Monitor, Options, histogram, optimizer, steps_of
from byel.data.augment import TrainAugment
from byel.errors import DataError
from byel.losses import classification_loss


def pseudo_labels(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and labels of the top-k most confident images of each predicted class."""
    pred, conf = probs.argmax(1), probs.max(1)
    chosen = []
    for c in range(probs.shape[1]):
        idx = np.flatnonzero(pred == c)
        chosen.append(idx[np.argsort(-conf[idx], kind="stable")[:k]])
    idx = np.concatenate(chosen)
    return idx, pred[idx]


def fine_tune(model, opt, gen: torch.Generator, images: np.ndarray, idx: np.ndarray, labels: np.ndarray,
              synthetic: tuple[np.ndarray, np.ndarray], opts: Options) -> float:
    """`epochs` passes over the pseudo-labelled images images[idx] (labels `labels`), every batch
    half of them and half labelled synthetic images, with the training augmentation and
    cross-entropy. Returns the mean loss. (Self-training's step; co-training's pixel view.)"""
    syn_images, syn_labels = synthetic
    half = max(1, opts.batch_size // 2)
    augment = TrainAugment(model.cfg.aug, model.cfg.data.image_size).to(model.device)  # the model's training one
    model.train()
    losses = []
    order = torch.randperm(len(idx), generator=gen)
    for step in range(steps_of(len(idx), half, opts.epochs)):
        at = (step * half) % len(idx)
        real = order[at : at + half]
        if len(real) < half:  # a new pass over the pseudo-labelled images
            order = torch.randperm(len(idx), generator=gen)
            real = torch.cat([real, order[: half - len(real)]])
        syn = torch.randint(len(syn_labels), (half,), generator=gen)
        x = torch.cat([torch.from_numpy(images[idx[real.numpy()]]), torch.from_numpy(syn_images[syn.numpy()])])
        y = torch.cat([torch.from_numpy(labels[real.numpy()]), torch.from_numpy(syn_labels[syn.numpy()])])
        loss = classification_loss(model(augment(x.to(model.device))), y.to(model.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def adapt(model, images: np.ndarray, opts: Options, monitor: Monitor, synthetic=None) -> None:
    if synthetic is None:
        raise DataError("self-train mixes the pseudo-labelled images with labelled synthetic ones: give --synthetic SPEC")
    gen = torch.Generator().manual_seed(opts.seed)
    opt = optimizer([p for p in model.parameters() if p.requires_grad], opts)
    for r in range(1, opts.rounds + 1):
        n_classes = monitor.probs.shape[1]
        k = math.ceil(opts.share * r / opts.rounds * len(images) / n_classes)
        idx, labels = pseudo_labels(monitor.probs, k)
        confidence = float(monitor.probs.max(1)[idx].mean())
        loss = fine_tune(model, opt, gen, images, idx, labels, synthetic, opts)
        monitor.round(model, f"round {r}/{opts.rounds}", ce_loss=loss, k_per_class=k,
                      n_pseudo=int(len(idx)), pseudo_confidence=confidence,
                      pseudo_histogram=histogram(labels, n_classes))
