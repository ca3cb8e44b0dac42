"""The one definition of byel's scores, used by evaluation, the benchmarks and fine-tuning's
model selection alike.

macro-F1 is the unweighted mean of the per-class F1 scores, always over all the model's classes
(the six emotions, or seven with neutral); a class with no true and no predicted image (F1 = 0/0)
counts as 0 — scikit-learn's ``f1_score(labels=range(6), average="macro", zero_division=0)``
(range(7) for a 7-class model). (torchmetrics' macro average
instead drops such a class and averages over fewer, so a report's macro-F1 could disagree
with the mean of its own per-class column.)"""

from __future__ import annotations

import numpy as np
import torch

from byel.classes import NUM_CLASSES, class_names

METRIC_DEFINITION = (
    "macro_f1: unweighted mean of the per-class F1 over all the model's classes (listed in 'classes'); a class "
    "with no true and no predicted image scores 0 (= sklearn f1_score(labels=range(len(classes)), "
    "average='macro', zero_division=0)). "
    "accuracy: share of images whose arg-max class is their label. "
    "confusion_matrix: rows = true class, columns = predicted class, in the order of 'classes'."
)


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, n: int = NUM_CLASSES) -> torch.Tensor:
    """(n, n) int64 counts of n classes: rows = true class, columns = predicted class."""
    idx = labels.long().flatten() * n + preds.long().flatten()
    return torch.bincount(idx, minlength=n**2).reshape(n, n)


def per_class_f1(cm: torch.Tensor) -> torch.Tensor:
    """F1 of each class from a confusion matrix: 2TP / (2TP + FP + FN), 0 where that is 0/0."""
    cm = cm.double()
    tp, denom = cm.diagonal(), cm.sum(0) + cm.sum(1)  # row + column sum = 2TP + FN + FP
    return torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))


def macro_f1(cm: torch.Tensor) -> torch.Tensor:
    """Mean of the per-class F1 scores of all classes (see the module docstring)."""
    return per_class_f1(cm).mean()


def scores(probs: np.ndarray, labels: np.ndarray) -> dict:
    """macro-F1, accuracy, per-class F1 and the confusion matrix of class scores (N, C), C = 6
    or 7 (byel.classes.class_names; probabilities or logits: the arg-max is the prediction)
    against labels (N,)."""
    probs = np.asarray(probs)
    classes = class_names(probs.shape[-1] if probs.ndim == 2 else NUM_CLASSES)
    preds = torch.from_numpy(probs).argmax(-1) if len(probs) else torch.zeros(0, dtype=torch.long)
    cm = confusion_matrix(preds, torch.from_numpy(np.asarray(labels, np.int64)), len(classes))
    n = int(cm.sum())
    return {
        "macro_f1": float(macro_f1(cm)),
        "accuracy": float(cm.diagonal().sum()) / n if n else 0.0,
        "per_class_f1": {c: float(v) for c, v in zip(classes, per_class_f1(cm))},
        "confusion_matrix": cm.tolist(),
    }


def __getattr__(name: str):
    """``MacroF1`` is defined on first use: torchmetrics (and what it imports) is for training
    only, and the scores above are read by every prediction."""
    if name == "MacroF1":
        globals()["MacroF1"] = cls = _macro_f1_metric()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _macro_f1_metric() -> type:
    from torchmetrics import Metric

    class MacroF1(Metric):
        """macro-F1 as defined above, for Lightning: accumulates a confusion matrix (summed over
        DDP ranks) from logits and labels."""

        full_state_update = False

        def __init__(self, n: int = NUM_CLASSES):
            super().__init__()
            self.n = n
            self.add_state("cm", torch.zeros(n, n, dtype=torch.long), dist_reduce_fx="sum")

        def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
            self.cm += confusion_matrix(logits.argmax(-1), labels, self.n).to(self.cm.device)

        def compute(self) -> torch.Tensor:
            return macro_f1(self.cm).float()

    MacroF1.__module__ = __name__
    return MacroF1
