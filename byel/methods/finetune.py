"""Stage 2: backbone (from a stage-1 checkpoint) + Dropout(0.3) → Linear(d, C), C the run's
classes (data.classes: 6, or 7 with neutral), CE, Adam by default (finetune.optimizer).
Model selection by validation macro-F1 (torchmetrics)."""

from __future__ import annotations

from torchmetrics.classification import MulticlassAccuracy

from byel.losses import classification_loss
from byel.metrics import MacroF1
from byel.methods.base import ByelModule
from byel.methods.classifier import Classifier
from byel.optim import build_optimizer


class FineTune(ByelModule, Classifier):
    """The Lightning module that trains a Classifier (byel.methods.classifier): the same parts and
    state_dict keys, plus the training augmentation, the loss, the optimiser and the validation
    metrics."""

    kind = "finetune"

    def __init__(self, config: dict):
        super().__init__(config)  # ByelModule: cfg, backbone, augment (Classifier gets no config)
        self.build_classifier()  # classes, head, preprocess, the geometry head (Classifier)
        n = len(self.classes)
        self.val_f1 = MacroF1(n)  # byel.metrics: the same macro-F1 as every report
        self.val_acc = MulticlassAccuracy(n, average="micro")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.fusion:
            checkpoint["byel"]["fusion"] = self.fusion

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.fusion = dict(checkpoint.get("byel", {}).get("fusion") or {})

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(self.augment(x))
        loss = classification_loss(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", (logits.argmax(1) == y).float().mean())
        return self.guard(loss)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(self.preprocess(x))
        self.val_f1.update(logits, y)
        self.val_acc.update(logits, y)

    def on_validation_epoch_end(self):
        self.log("val/macro_f1", self.val_f1.compute(), prog_bar=True, sync_dist=True)
        self.log("val/acc", self.val_acc.compute(), sync_dist=True)
        self.val_f1.reset()
        self.val_acc.reset()

    def configure_optimizers(self):
        f = self.cfg.finetune
        # no weight decay on biases and BatchNorm parameters; momentum (sgd, lars) from optim
        return build_optimizer(self, f.optimizer, f.lr, f.weight_decay, self.cfg.optim.momentum)
