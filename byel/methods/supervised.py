"""The supervised baseline: backbone + linear head, cross-entropy only, on the same data,
augmentations and budget as the self-supervised methods (both views, so each step sees as
many augmented images as BYEL does). Its held-out score is its own linear head's."""

from __future__ import annotations

from torch import nn

from byel.losses import classification_loss
from byel.methods.base import PretrainMethod


class Supervised(PretrainMethod):
    def __init__(self, config: dict):
        super().__init__(config)
        self.head = nn.Linear(self.backbone.out_dim, self.cfg.data.classes)

    def heldout_logits(self, x):
        return self.head(self.backbone(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = [self.head(self.backbone(self.augment(x))) for _ in range(2)]
        loss = (classification_loss(logits[0], y) + classification_loss(logits[1], y))
        acc = (logits[0].argmax(1) == y).float().mean()
        self.log_dict({"train/loss": loss, "train/ce": loss, "train/acc": acc}, prog_bar=False)
        self.log("loss", loss, prog_bar=True, logger=False)
        return self.guard(loss)
