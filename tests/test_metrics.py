"""byel.metrics: one macro-F1 over the six classes everywhere, equal to scikit-learn's
f1_score(labels=range(6), average="macro", zero_division=0), also when a class is absent."""

import numpy as np
import pytest
import torch

from byel.classes import CLASSES
from byel.config import Config
from byel.evaluate import scores as evaluate_scores
from byel.methods.finetune import FineTune
from byel.metrics import MacroF1, scores

skm = pytest.importorskip("sklearn.metrics")


def _one_hot(preds: np.ndarray) -> np.ndarray:
    return np.eye(6, dtype=np.float32)[preds]


def _reference(labels, preds):
    return (skm.f1_score(labels, preds, labels=range(6), average="macro", zero_division=0),
            skm.accuracy_score(labels, preds),
            skm.f1_score(labels, preds, labels=range(6), average=None, zero_division=0),
            skm.confusion_matrix(labels, preds, labels=range(6)))


@pytest.mark.parametrize("absent", [(), (5,), (0, 3)])
def test_scores_equal_sklearn_including_absent_classes(absent):
    rng = np.random.default_rng(len(absent))
    present = [c for c in range(6) if c not in absent]
    labels = rng.choice(present, 200)
    preds = np.where(rng.random(200) < 0.5, labels, rng.choice(present, 200))
    s = scores(_one_hot(preds), labels)
    f1, acc, per, cm = _reference(labels, preds)
    assert s["macro_f1"] == pytest.approx(f1, abs=1e-12) and s["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert [s["per_class_f1"][c] for c in CLASSES] == pytest.approx(per, abs=1e-12)
    assert s["confusion_matrix"] == cm.tolist()
    # one definition: macro-F1 is the mean of the six per-class values in the same report
    assert s["macro_f1"] == pytest.approx(np.mean(list(s["per_class_f1"].values())), abs=1e-12)
    assert evaluate_scores is scores  # byel.evaluate reports through the same function


def test_absent_class_counts_as_zero():
    labels, preds = np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1])  # classes 2..5 never seen
    s = scores(_one_hot(preds), labels)
    assert s["per_class_f1"]["fear"] == 0.0 and s["macro_f1"] == pytest.approx(2 / 6)


def test_finetune_validation_uses_the_same_macro_f1():
    """FineTune's model selection (val/macro_f1) computes the same number as the reports."""
    model = FineTune(Config().to_dict())
    assert isinstance(model.val_f1, MacroF1)
    rng = np.random.default_rng(0)
    labels = rng.choice([0, 1, 2, 4], 90)  # 3 and 5 absent
    preds = np.where(rng.random(90) < 0.6, labels, rng.choice([0, 1, 2, 4], 90))
    for s in range(0, 90, 32):  # batch by batch, as in validation
        model.val_f1.update(torch.from_numpy(_one_hot(preds[s : s + 32])), torch.from_numpy(labels[s : s + 32]))
    f1 = skm.f1_score(labels, preds, labels=range(6), average="macro", zero_division=0)
    assert float(model.val_f1.compute()) == pytest.approx(f1, abs=1e-6)
