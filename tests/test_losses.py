"""The BYEL losses against hand-computed values."""

import math

import pytest
import torch

from byel.losses import byol_loss, classification_loss, emotion_vector_subtraction, orthogonality_loss
from byel.models import EmotionClassifier


def test_byol_loss_hand_values():
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    z = torch.tensor([[0.0, 1.0], [2.0, 0.0], [1.0, 0.0]])
    # per row: 2 − 2·0 = 2; 2 − 2·1 = 0; 2 − 2/√2 = 2 − √2
    assert byol_loss(p, z).item() == pytest.approx((2 + 0 + 2 - math.sqrt(2)) / 3, abs=1e-6)


def test_byol_loss_stops_gradient_into_target():
    p = torch.randn(4, 8, requires_grad=True)
    z = torch.randn(4, 8, requires_grad=True)
    byol_loss(p, z).backward()
    assert p.grad is not None and z.grad is None


def test_orthogonality_loss_hand_values():
    assert orthogonality_loss(torch.eye(3)[:, :2]).item() == pytest.approx(0.0)
    # W^T W = [[1, 1], [1, 1]] → |I − WᵀW| = [[0, 1], [1, 0]] → 2
    assert orthogonality_loss(torch.tensor([[1.0, 1.0], [0.0, 0.0]])).item() == pytest.approx(2.0)
    # W = 2·I → |I − 4I| summed over the 2×2 diagonal = 6
    assert orthogonality_loss(2 * torch.eye(2)).item() == pytest.approx(6.0)


def test_evs_hand_values():
    p = torch.tensor([[3.0, 4.0]])  # ‖p‖ = 5
    W = torch.eye(2)
    out = emotion_vector_subtraction(p, W, torch.tensor([0]))
    assert out.tolist() == [[-2.0, 4.0]]
    out = emotion_vector_subtraction(p, W, torch.tensor([1]), scale=0.5)
    assert out.tolist() == [[3.0, 1.5]]


def test_evs_lowers_cosine_with_label_vector():
    torch.manual_seed(0)
    W = torch.nn.functional.normalize(torch.randn(16, 6), dim=0)  # unit-norm columns
    p = torch.randn(64, 16)
    y = torch.randint(0, 6, (64,))
    before = torch.cosine_similarity(p, W[:, y].T, dim=-1)
    after = torch.cosine_similarity(emotion_vector_subtraction(p, W, y), W[:, y].T, dim=-1)
    assert (after < before).all()
    # For a unit w, cos after = −sqrt((1 − cos before) / 2): the label direction is removed.
    assert torch.allclose(after, -torch.sqrt((1 - before) / 2), atol=1e-5)


def test_classifier_logits_shape_and_gradients():
    clf = EmotionClassifier(16, 6)
    assert torch.allclose(clf.W.T @ clf.W, torch.eye(6), atol=1e-5)  # orthogonal init
    p = torch.randn(8, 16, requires_grad=True)
    logits = clf(p)
    assert logits.shape == (8, 6)
    classification_loss(logits, torch.arange(8) % 6).backward()
    assert clf.W.grad.abs().sum() > 0 and p.grad.abs().sum() > 0 and clf.bn.weight.grad is not None
