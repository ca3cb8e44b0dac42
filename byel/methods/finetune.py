"""Stage 2: backbone (from a stage-1 checkpoint) + Dropout(0.3) → Linear(d, C), C the run's
classes (data.classes: 6, or 7 with neutral), CE, Adam by default (finetune.optimizer).
Model selection by validation macro-F1 (torchmetrics)."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from byel.classes import class_names
from byel.data.augment import EvalTransform
from byel.losses import classification_loss
from byel.metrics import MacroF1
from byel.methods.base import ByelModule
from byel.optim import build_optimizer


class FineTune(ByelModule):
    kind = "finetune"

    def __init__(self, config: dict):
        super().__init__(config)
        self.classes = class_names(self.cfg.data.classes)  # the outputs' names, in order
        n = len(self.classes)
        self.head = nn.Sequential(nn.Dropout(self.cfg.finetune.dropout), nn.Linear(self.backbone.out_dim, n))
        self.preprocess = EvalTransform(self.cfg.aug, self.cfg.data.image_size)
        self.val_f1 = MacroF1(n)  # byel.metrics: the same macro-F1 as every report
        self.val_acc = MulticlassAccuracy(n, average="micro")
        # finetune.head geometry | fused: a face-geometry head (byel.classifier), fitted before
        # training and never by the optimiser, and the fusion weight chosen after it
        self.head_kind = self.cfg.finetune.head
        self.fusion: dict = {}  # how the weight was chosen (checkpoint metadata)
        if self.head_kind != "pixels":
            from byel.faces import GeometryHead

            self.geometry = GeometryHead(n_classes=n).requires_grad_(False)
            self.register_buffer("fusion_weight", torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for already-preprocessed (normalised) images."""
        return self.head(self.backbone(x))

    @torch.inference_mode()
    def predict_images(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities for raw uint8 images (N, H, W, 3); call under eval()."""
        return self(self.preprocess(images.to(self.device))).softmax(-1)

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
