"""A classifier on face geometry: standardised features, one linear layer (multinomial logistic
regression), fitted on synthetic faces. A torch module, so checkpoints, fusion with the pixel
CNN and ONNX export treat it like any other head.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from byel.classes import NUM_CLASSES
from byel.errors import DataError
from byel.faces.activations import activation_features
from byel.faces.features import N_FEATURES, features


class GeometryHead(nn.Module):
    """(N, 1008) geometry features -> (N, C) class logits (C = 6, or 7 with neutral): (x - mean) / std, then linear."""

    def __init__(self, n_features: int = N_FEATURES, n_classes: int = NUM_CLASSES):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.std)

    @torch.no_grad()
    def probs(self, feats: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C) of feature rows; NaN rows (no mesh) give NaN rows."""
        x = torch.as_tensor(np.asarray(feats, np.float32), device=self.mean.device)
        p = torch.softmax(self(torch.nan_to_num(x)), -1)
        p[~torch.isfinite(x).all(1)] = float("nan")
        return p.cpu().numpy()


def fit_geometry_head(feats: np.ndarray, labels: np.ndarray, c: float = 0.05, max_iter: int = 2000,
                      n_classes: int = NUM_CLASSES) -> GeometryHead:
    """Logistic regression as scikit-learn's ``LogisticRegression(C=c, class_weight="balanced")``
    fits it on standardised features: minimise sum_i w_i CE_i + |W|^2 / (2c) (bias free), w_i =
    n / (k n_class) over the k classes present, full-batch L-BFGS run to convergence (a looser
    tolerance moved FER2013 macro-F1 by 0.0005). Rows with NaN (no mesh) are left out."""
    x = np.asarray(feats, np.float64)
    y = np.asarray(labels, np.int64)
    keep = np.isfinite(x).all(1)
    x, y = x[keep], y[keep]
    if len(np.unique(y)) < 2:
        raise ValueError("a geometry head needs faces of at least two classes with a mesh")
    head = GeometryHead(x.shape[1], n_classes)
    mean, std = x.mean(0), x.std(0)
    std[std < 1e-12] = 1.0
    counts = np.bincount(y, minlength=head.linear.out_features)
    present = counts > 0
    class_w = np.where(present, len(y) / (present.sum() * np.maximum(counts, 1)), 0.0)
    xt = torch.as_tensor((x - mean) / std)
    yt = torch.as_tensor(y)
    sw = torch.as_tensor(class_w[y])
    lin = nn.Linear(x.shape[1], head.linear.out_features).double()
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1, max_iter=max_iter, tolerance_grad=1e-9,
                            tolerance_change=1e-10, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        ce = nn.functional.cross_entropy(lin(xt), yt, reduction="none")
        loss = ((sw * ce).sum() + (lin.weight ** 2).sum() / (2 * c)) / len(yt)  # / n: same minimum
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small full-batch problem: extra threads only spin (8 ms per dot product)
    try:
        opt.step(closure)
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        head.mean.copy_(torch.as_tensor(mean))
        head.std.copy_(torch.as_tensor(std))
        head.linear.weight.copy_(lin.weight)
        head.linear.bias.copy_(lin.bias)
        head.linear.bias[~torch.as_tensor(present)] = -1e4  # never predict a class never seen
    return head


def fit(images: np.ndarray, labels: np.ndarray, key: str | None = None, progress: bool = False,
        n_classes: int = 6) -> GeometryHead:
    """A geometry head of n_classes outputs fitted on labelled synthetic faces (those with a mesh)."""
    feats, found, _ = features(images, key, progress)
    try:
        return fit_geometry_head(feats, labels, n_classes=n_classes)
    except ValueError as e:  # too few faces with a mesh
        raise DataError(f"cannot fit the face-geometry head: {e} (a mesh was found on {int(found.sum())} "
                        f"of {len(found)} synthetic faces; faces of 96 px or more help)") from None


def fit_activations(images: np.ndarray, labels: np.ndarray, key: str | None = None, progress: bool = False,
                    n_classes: int = 6) -> GeometryHead:
    """A head on the landmark model's activation map (byel.faces.activations; every face has one,
    mesh or not), fitted as the geometry head is, on all the labelled synthetic faces."""
    feats, _ = activation_features(images, key=key, progress=progress)
    try:
        return fit_geometry_head(feats, labels, n_classes=n_classes)
    except ValueError as e:
        raise DataError(f"cannot fit the activation head: {e}") from None
