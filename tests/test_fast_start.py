"""The inference path starts fast: ``byel.load()`` (and so ``byel predict`` and ``byel serve``)
builds the plain torch Classifier and imports no Lightning nor any other training library; the
Lightning FineTune that trains it is the same module, so checkpoints load both ways."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from byel import classifier
from byel.checkpoint import load_checkpoint
from byel.config import load_config
from byel.methods import Classifier, FineTune

ROOT = Path(__file__).resolve().parent.parent
TRAINING_ONLY = ("lightning", "pytorch_lightning", "torchmetrics", "kornia", "matplotlib", "scipy", "sklearn")


def test_load_imports_no_training_library():
    code = ("import sys, byel; model = byel.load(); "
            f"print(' '.join(sorted({{k.split('.')[0] for k in sys.modules}} & set({TRAINING_ONLY!r}))) or 'none'); "
            "print('lightning.pytorch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded, pytorch = done.stdout.split()[-2:]
    assert (loaded, pytorch) == ("none", "False"), done.stdout


@pytest.mark.parametrize("head", ["pixels", "fused"])
def test_classifier_and_finetune_are_one_model(head):
    """The same parts and state_dict keys (shapes too): FineTune is a Classifier."""
    cfg = load_config("smoke", {"finetune.head": head}).to_dict()
    plain, lightning = Classifier(cfg), FineTune(cfg)
    assert isinstance(lightning, Classifier)
    a, b = plain.state_dict(), lightning.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)
    assert plain.classes == lightning.classes and plain.head_kind == lightning.head_kind == head


def _agree(ckpt: dict) -> None:
    """The checkpoint loads strictly into both; they give the same probabilities."""
    plain = Classifier(ckpt["byel"]["config"])
    plain.load_state_dict(ckpt["state_dict"])
    lightning = FineTune(ckpt["byel"]["config"])
    lightning.load_state_dict(ckpt["state_dict"])
    size = plain.cfg.data.image_size
    images = torch.randint(0, 256, (3, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(plain.eval().predict_images(images), lightning.eval().predict_images(images))


def test_shipped_model_loads_both_ways():
    ckpt = load_checkpoint(classifier.default_checkpoint(), kinds=("finetune",))
    _agree(ckpt)
    model = classifier.load()
    assert type(model) is Classifier and not model.training


def test_a_trained_checkpoint_loads_both_ways(smoke_model):
    """A checkpoint the Lightning FineTune wrote (trained, with its Trainer) loads into the
    Classifier that byel.classifier.load builds, and back into FineTune."""
    _agree(load_checkpoint(smoke_model.finetuned, kinds=("finetune",)))
