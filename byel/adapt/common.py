"""What the adaptation methods share: their options, shuffled batches, the entropy, BatchNorm in
train mode, and the monitor that ends each round (AdaBN statistics on the unlabelled images, the
predicted-class histogram, the collapse guard)."""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from byel.adapt.adabn import adapt_batchnorm, bn_layers
from byel.classes import NUM_CLASSES, class_names
from byel.classifier import predict_probs
from byel.errors import ByelError


class CollapseError(ByelError):
    """The predictions on the unlabelled images collapsed onto one class."""


@dataclass
class Options:
    """Settings of one adaptation. None: the method's default (DEFAULTS)."""

    epochs: int | None = None  # passes over the unlabelled images (per round for self-train)
    rounds: int | None = None  # self-train, co-train: pseudo-labelling rounds
    lr: float | None = None
    optimizer: str | None = None  # adam | sgd
    batch_size: int | None = None
    share: float | None = None  # self-train, co-train: pseudo-labelled fraction of the images in the last round
    max_class_share: float = 0.9  # collapse: one class predicted for more than this fraction
    views: int | None = None  # co-train: 2 (pixels, geometry) or 3 (+ activations); None: all the model has
    seed: int | None = None  # None: 0 (byel adapt: the checkpoint's seed)

    def resolved(self, method: str) -> Options:
        d = {k: v for k, v in asdict(self).items() if v is not None}
        return Options(**{"seed": 0, **DEFAULTS.get(method, {}), **d})

    def record(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


# Per method: the papers' optimisers at our scale (a few passes; the BN-affine-only TENT takes a
# larger step than the whole-backbone SHOT-IM).
DEFAULTS = {
    "adabn": dict(batch_size=256),
    "tent": dict(epochs=1, lr=1e-3, optimizer="adam", batch_size=128),
    "shot-im": dict(epochs=2, lr=1e-4, optimizer="adam", batch_size=64),
    "self-train": dict(epochs=1, rounds=2, lr=1e-4, optimizer="adam", batch_size=128, share=0.5),
    "co-train": dict(epochs=1, rounds=2, lr=1e-4, optimizer="adam", batch_size=128, share=0.5),
    "prior": {}, "prior-em": {},  # nothing to train (byel.adapt.prior)
}


def say(msg: str) -> None:
    print(f"[byel adapt] {msg}", file=sys.stderr, flush=True)


def prepare(model: nn.Module, images: np.ndarray) -> torch.Tensor:
    """uint8 images (N, H, W, 3) → the model's normalised input on its device."""
    return model.preprocess(torch.from_numpy(np.ascontiguousarray(images)).to(model.device))


def batches(n: int, batch_size: int, generator: torch.Generator):
    """Shuffled index batches over n images; a last batch of one is dropped (BatchNorm in train
    mode needs two)."""
    order = torch.randperm(n, generator=generator)
    for s in range(0, n, batch_size):
        idx = order[s : s + batch_size]
        if len(idx) >= 2:
            yield idx.numpy()


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) along the last axis."""
    return -(probs * probs.clamp_min(1e-8).log()).sum(-1)


def bn_train_mode(model: nn.Module) -> nn.Module:
    """Everything in eval mode (dropout off) except BatchNorm, which normalises with the batch's
    own statistics, as TENT and SHOT adapt."""
    model.eval()
    for bn in bn_layers(model):
        bn.train()
    return model


def optimizer(params, opts: Options) -> torch.optim.Optimizer:
    if opts.optimizer == "sgd":
        return torch.optim.SGD(params, lr=opts.lr, momentum=0.9)
    return torch.optim.Adam(params, lr=opts.lr)


def histogram(labels: np.ndarray, n: int = NUM_CLASSES) -> dict[str, int]:
    """Images per class of n classes (7: with neutral)."""
    return {c: int(k) for c, k in zip(class_names(n), np.bincount(labels, minlength=n))}


class Monitor:
    """Ends each round of a method: the model's deployed form (its AdaBN statistics on the
    unlabelled images), its class probabilities on them, the predicted-class histogram (said on
    stderr and kept in `rounds`) and the collapse guard. Round 0 is AdaBN itself."""

    def __init__(self, name: str, images: np.ndarray, opts: Options, progress: bool = False, verbose: bool = True):
        self.name, self.images, self.opts, self.progress, self.verbose = name, images, opts, progress, verbose
        self.rounds: list[dict] = []
        self.extra: dict = {}  # what a method adds to the adaptation's record (co-train: the landmarker)
        self.adapted: nn.Module | None = None
        self.probs: np.ndarray | None = None

    def round(self, model: nn.Module, what: str = "round", **extra) -> nn.Module:
        self.adapted = adapt_batchnorm(model, self.images, progress=self.progress)
        self.probs = predict_probs(self.adapted, self.images)
        self.record(self.probs, "AdaBN (BatchNorm statistics only)" if not self.rounds else what, **extra)
        return self.adapted

    def record(self, probs: np.ndarray, what: str, check: bool = True, **extra) -> dict:
        """One round's record of class probabilities on the images: said, kept, and (`check`)
        checked for a collapse (a method that changes no weight, byel.adapt.prior, records its
        rounds so; the model's own predictions before it are not its collapse)."""
        hist = histogram(probs.argmax(1), probs.shape[1])
        i = len(self.rounds)
        record = {"round": i, "what": what, "mean_entropy": float(entropy(torch.from_numpy(probs)).mean()),
                  **extra, "histogram": hist}
        self.rounds.append(record)
        parts = [f"{k} {v:.4g}" for k, v in extra.items() if isinstance(v, float)]
        if self.verbose:
            say(f"{self.name} {record['what']}: " + ", ".join(parts + [f"mean entropy {record['mean_entropy']:.3f}"])
                + "; predicted " + " ".join(f"{c} {n}" for c, n in hist.items()))
        top = max(hist, key=hist.get)
        if check and hist[top] > self.opts.max_class_share * len(self.images):
            raise CollapseError(
                f"{self.name} stopped: the predictions collapsed onto one class ({top}: {hist[top]} of "
                f"{len(self.images)} images after {record['what']}; limit {self.opts.max_class_share:g}, "
                "--max-class-share); no checkpoint written — "
                + ("try --method prior" if self.name == "prior-em" else "try a lower --lr or fewer --epochs"))
        return record


def steps_of(n: int, batch_size: int, epochs: int) -> int:
    return epochs * max(1, math.ceil(n / batch_size))
