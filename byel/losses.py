"""BYEL's losses as pure functions (no module state), each unit-tested against hand-computed values."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """ℓ(p, z) = 2 − 2·cos(p, z), averaged over the batch. `z` is the target: no gradient."""
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=-1)).mean()


def orthogonality_loss(W: torch.Tensor) -> torch.Tensor:
    """L_orth = Σ_jk |I − WᵀW|_jk for W of shape (dim, classes): keeps emotion vectors orthonormal."""
    eye = torch.eye(W.shape[1], device=W.device, dtype=W.dtype)
    return (eye - W.T @ W).abs().sum()


def emotion_vector_subtraction(p: torch.Tensor, W: torch.Tensor, y: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """EVS: p̃ = p − scale·‖p‖₂·W[:, y]. Removes the label's emotion direction from each
    online prediction so the BYOL alignment works on what is left (identity, pose, ...).
    `scale` is 1 in the paper; it is exposed for ablations."""
    return p - scale * p.norm(dim=-1, keepdim=True) * W[:, y].T


def classification_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)
