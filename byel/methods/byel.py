"""BYEL (Lee et al. 2022) and its ablations, on one code path.

For a labelled synthetic image x with class y and two per-sample augmented views v1, v2:
  p_i  = q(g(f(v_i)))                 online prediction
  z'_i = g'(f'(v_i))                  target projection (EMA network, no gradient)
  L = ℓ(EVS(p_1), z'_2) + ℓ(EVS(p_2), z'_1)  +  L_orth(W)  +  CE(BN(p_1·W), y) + CE(BN(p_2·W), y)
with ℓ(a, b) = 2 − 2·cos(a, b) and EVS(p) = p − ‖p‖·W[:, y].

`classifier=False` gives plain BYOL; `evs=False` gives BYOL + emotion classifier.

With unlabelled real images (`byel pretrain --unlabelled`), each step also gets a batch u of them:
its two views add ℓ(p_1^u, z'_2^u) + ℓ(p_2^u, z'_1^u) to the BYOL term, without EVS (no label);
the classifier, orthogonality and EVS terms stay on the labelled synthetic batch.
"""

from __future__ import annotations

import torch

from byel.losses import byol_loss, classification_loss, emotion_vector_subtraction, orthogonality_loss
from byel.methods.base import MomentumMethod
from byel.models import MLP, EmotionClassifier


class BYEL(MomentumMethod):
    momentum_pairs = (("backbone", "target_backbone"), ("projector", "target_projector"))

    def __init__(self, config: dict, classifier: bool = True, evs: bool = True):
        super().__init__(config)
        if evs and not classifier:
            raise ValueError("EVS needs the emotion classifier's vectors W")
        self.use_classifier, self.use_evs = classifier, evs
        m = self.cfg.model
        self.projector = MLP(self.backbone.out_dim, m.proj_hidden, m.proj_dim)
        self.predictor = MLP(m.proj_dim, m.pred_hidden, m.proj_dim)
        self.classifier = EmotionClassifier(m.proj_dim, self.cfg.data.classes) if classifier else None
        self.init_targets()

    def _views(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Online predictions and target projections of two augmented views of x, and the first
        view's backbone features."""
        views = (self.augment(x), self.augment(x))  # two independent per-sample draws
        preds, features = [], []
        for v in views:
            features.append(self.backbone(v))
            preds.append(self.predictor(self.projector(features[-1])))
        with torch.no_grad():
            targets = [self.target_projector(self.target_backbone(v)) for v in views]
        return preds, targets, features[0]

    def needs_probe(self) -> bool:
        return not self.use_classifier  # byol: a detached linear probe is scored instead

    def heldout_logits(self, x: torch.Tensor) -> torch.Tensor:
        """BN(p·W), p the online prediction (byel, byol-cls); byol: the detached probe's logits."""
        h = self.backbone(x)
        if self.classifier is None:
            return self.probe(h)
        return self.classifier(self.predictor(self.projector(h)))

    def training_step(self, batch, batch_idx):
        if isinstance(batch, dict):  # {"labelled": (x, y), "unlabelled": (u, -1s)}
            (x, y), u = batch["labelled"], batch["unlabelled"][0]
        else:
            (x, y), u = batch, None
        preds, targets, features = self._views(x)
        if self.probe is not None:  # its own step on detached features: nothing reaches the backbone
            self.probe.step(features, y)

        logs = {}
        loss = 0.0
        if self.use_classifier:
            W = self.classifier.W
            logits = [self.classifier(p) for p in preds]
            ce = classification_loss(logits[0], y) + classification_loss(logits[1], y)
            orth = orthogonality_loss(W)
            loss = loss + ce + orth
            logs.update({"train/ce": ce, "train/orth": orth, "train/acc": (logits[0].argmax(1) == y).float().mean()})
            if self.use_evs:
                preds = [emotion_vector_subtraction(p, W, y, self.cfg.method.evs_scale) for p in preds]
        byol = byol_loss(preds[0], targets[1]) + byol_loss(preds[1], targets[0])
        if u is not None:  # their own batch (own BatchNorm statistics), both views, BYOL only
            preds_u, targets_u, _ = self._views(u)
            byol_u = byol_loss(preds_u[0], targets_u[1]) + byol_loss(preds_u[1], targets_u[0])
            logs["train/byol_unlabelled"] = byol_u
            byol = byol + byol_u
        loss = loss + byol
        logs.update({"train/loss": loss, "train/byol": byol})
        self.log_dict(logs, prog_bar=False)
        self.log("loss", loss, prog_bar=True, logger=False)
        return self.guard(loss)
