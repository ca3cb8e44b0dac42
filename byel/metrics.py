"""The one definition of byel's scores, used by evaluation, the benchmarks and fine-tuning's
model selection alike.

macro-F1 is the unweighted mean of the six per-class F1 scores, always over all six classes;
a class with no true and no predicted image (F1 = 0/0) counts as 0 — scikit-learn's
``f1_score(labels=range(6), average="macro", zero_division=0)``. (torchmetrics' macro average
instead drops such a class and averages over fewer, so a report's macro-F1 could disagree
with the mean of its own per-class column.)"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric

from byel.classes import CLASSES, NUM_CLASSES

METRIC_DEFINITION = (
    "macro_f1: unweighted mean of the per-class F1 over all six classes; a class with no true and no "
    "predicted image scores 0 (= sklearn f1_score(labels=range(6), average='macro', zero_division=0)). "
    "accuracy: share of images whose arg-max class is their label. "
    "confusion_matrix: rows = true class, columns = predicted class, in the order of 'classes'."
)


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(6, 6) int64 counts: rows = true class, columns = predicted class."""
    idx = labels.long().flatten() * NUM_CLASSES + preds.long().flatten()
    return torch.bincount(idx, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def per_class_f1(cm: torch.Tensor) -> torch.Tensor:
    """F1 of each class from a confusion matrix: 2TP / (2TP + FP + FN), 0 where that is 0/0."""
    cm = cm.double()
    tp, denom = cm.diagonal(), cm.sum(0) + cm.sum(1)  # row + column sum = 2TP + FN + FP
    return torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))


def macro_f1(cm: torch.Tensor) -> torch.Tensor:
    """Mean of the six per-class F1 scores (see the module docstring)."""
    return per_class_f1(cm).mean()


def scores(probs: np.ndarray, labels: np.ndarray) -> dict:
    """macro-F1, accuracy, per-class F1 and the confusion matrix of class scores (N, 6)
    (probabilities or logits: the arg-max is the prediction) against labels (N,)."""
    preds = torch.from_numpy(np.asarray(probs)).argmax(-1) if len(probs) else torch.zeros(0, dtype=torch.long)
    cm = confusion_matrix(preds, torch.from_numpy(np.asarray(labels, np.int64)))
    n = int(cm.sum())
    return {
        "macro_f1": float(macro_f1(cm)),
        "accuracy": float(cm.diagonal().sum()) / n if n else 0.0,
        "per_class_f1": {c: float(v) for c, v in zip(CLASSES, per_class_f1(cm))},
        "confusion_matrix": cm.tolist(),
    }


class MacroF1(Metric):
    """macro-F1 as defined above, for Lightning: accumulates a confusion matrix (summed over
    DDP ranks) from logits and labels."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("cm", torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.cm += confusion_matrix(logits.argmax(-1), labels).to(self.cm.device)

    def compute(self) -> torch.Tensor:
        return macro_f1(self.cm).float()
