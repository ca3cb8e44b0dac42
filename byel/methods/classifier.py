"""The fine-tuned model itself, as a plain torch module: backbone → Dropout → Linear(d, C), the
evaluation preprocessing, and (``finetune.head`` geometry | fused) the geometry head with its
fusion weight. No Lightning: byel.classifier builds this for prediction (``byel.load``,
``byel predict``, ``byel serve`` start without importing Lightning), and the Lightning
``byel.methods.FineTune`` that trains it inherits it, so both have the same parts, the same
state_dict keys and read the same checkpoints."""

from __future__ import annotations

import torch
from torch import nn

from byel.classes import class_names
from byel.config import Config, from_dict
from byel.data.augment import EvalTransform
from byel.models import create_backbone


def backbone_from_config(cfg: Config) -> nn.Module:
    m = cfg.model
    return create_backbone(m.backbone, width=m.width or None, small_input=m.small_input)


class Classifier(nn.Module):
    """A fine-tuned byel model for inference. ``Classifier(config)`` builds it from a config dict
    (a checkpoint's ``byel.config``); FineTune builds the same parts on top of its Lightning base
    (``Classifier.__init__`` without a config, then ``build_classifier``)."""

    kind = "finetune"

    def __init__(self, config: dict | None = None):
        super().__init__()
        if config is not None:
            self.cfg = from_dict(config)
            self.backbone = backbone_from_config(self.cfg)
            self.build_classifier()

    def build_classifier(self) -> None:
        """The parts on top of ``self.backbone``, from ``self.cfg``."""
        self.classes = class_names(self.cfg.data.classes)  # the outputs' names, in order
        n = len(self.classes)
        self.head = nn.Sequential(nn.Dropout(self.cfg.finetune.dropout), nn.Linear(self.backbone.out_dim, n))
        self.preprocess = EvalTransform(self.cfg.aug, self.cfg.data.image_size)
        # finetune.head geometry | fused: a face-geometry head (byel.classifier), fitted before
        # training and never by the optimiser, and the fusion weight chosen after it
        self.head_kind = self.cfg.finetune.head
        self.fusion: dict = {}  # how the weight was chosen (checkpoint metadata)
        # finetune.no_mesh activations: a head on the landmark model's activation map stands in
        # for the geometry head on faces without a mesh (fitted like it; absent otherwise, so
        # older checkpoints keep their state_dict and their predictions)
        self.no_mesh = self.cfg.finetune.no_mesh if self.head_kind != "pixels" else "pixels"
        if self.head_kind != "pixels":
            from byel.faces import GeometryHead

            self.geometry = GeometryHead(n_classes=n).requires_grad_(False)
            self.register_buffer("fusion_weight", torch.tensor(1.0))
        if self.no_mesh == "activations":
            from byel.faces.activations import N_ACTIVATIONS

            self.activation_head = GeometryHead(N_ACTIVATIONS, n_classes=n).requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for already-preprocessed (normalised) images."""
        return self.head(self.backbone(x))

    @torch.inference_mode()
    def predict_images(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities for raw uint8 images (N, H, W, 3); call under eval()."""
        return self(self.preprocess(images.to(self.device))).softmax(-1)
