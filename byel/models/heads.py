"""Heads: the BYOL projector/predictor MLP and BYEL's emotion classifier."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Sequential):
    """Linear → BatchNorm1d → ReLU → Linear: BYOL's projector g and predictor q."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__(
            nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )


class EmotionClassifier(nn.Module):
    """Logits = BatchNorm1d(p · W) with W (dim × classes) orthogonally initialised.

    Column W[:, c] is the emotion vector of class c, used by Emotion Vector Subtraction.
    """

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.W = nn.Parameter(torch.empty(dim, num_classes))
        nn.init.orthogonal_(self.W)
        self.bn = nn.BatchNorm1d(num_classes)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return self.bn(p @ self.W)
