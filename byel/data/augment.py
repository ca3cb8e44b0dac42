"""Per-sample augmentation with kornia, run on whatever device the batch lives on.

The public reference code drew one crop/flip/jitter for the whole batch; here every image in
the batch gets its own random draw (kornia's default `same_on_batch=False`), and the two BYOL
views are two independent calls.
"""

from __future__ import annotations

import torch
from torch import nn

from byel.config import AugConfig


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) or (N, 3, H, W) → float (N, 3, H, W) in [0, 1]."""
    if images.ndim == 4 and images.shape[-1] == 3 and images.shape[1] != 3:
        images = images.permute(0, 3, 1, 2)
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


class Normalize(nn.Module):
    """Mean/std normalisation stored as buffers, so it follows the module to any device."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class PerImageStandardize(nn.Module):
    """Each image to zero mean and unit variance over its pixels: removes global brightness and
    contrast, a large part of the low-level gap between rendered and camera faces."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        return (x - mean) / (std + 1e-3)


class PerImageEqualize(nn.Module):
    """Histogram equalisation of each image and channel (the classic FER pre-processing, as
    OpenCV's equalizeHist on 256 levels), scaled to zero mean and unit variance: every image,
    rendered or photographed, gets the same flat intensity histogram, so only the spatial pattern
    of light and dark is left to learn from. Each level maps to the middle of its step in the
    cumulative histogram, so flat regions stay flat. Histogram + gather (no sort): exports to ONNX."""

    LEVELS = 256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = (x.clamp(0, 1) * (self.LEVELS - 1)).round().long().flatten(2)
        hist = torch.zeros(q.shape[0], q.shape[1], self.LEVELS, dtype=x.dtype, device=x.device)
        hist = hist.scatter_add(-1, q, torch.ones_like(q, dtype=x.dtype))
        mid_cdf = (hist.cumsum(-1) - 0.5 * hist) / q.shape[-1]  # mid-rank of each level, in (0, 1)
        return ((mid_cdf.gather(-1, q) - 0.5) * 12.0 ** 0.5).view_as(x)  # uniform(0,1) has std 1/sqrt(12)


def normalizer(cfg: AugConfig) -> nn.Module:
    if cfg.normalize == "per-image":
        return PerImageStandardize()
    if cfg.normalize == "equalize":
        return PerImageEqualize()
    return Normalize(cfg.mean, cfg.std)


class TrainAugment(nn.Module):
    """The paper's augmentation: RandomResizedCrop, flip, ColorJitter (p 0.3), grayscale (p 0.2),
    Gaussian blur (p 0.2), then normalisation. Input uint8 or [0, 1] float; output normalised."""

    def __init__(self, cfg: AugConfig, size: int):
        import kornia.augmentation as K  # late: training only; prediction needs EvalTransform alone

        super().__init__()
        b, c, s, h = cfg.jitter
        k = max(3, (size // 10) | 1)  # odd kernel ≈ 10 % of the image, as in SimCLR/BYOL
        self.augment = nn.Sequential(
            K.RandomResizedCrop((size, size), scale=tuple(cfg.crop_scale)),
            K.RandomHorizontalFlip(p=cfg.flip_p),
            K.ColorJitter(b, c, s, h, p=cfg.jitter_p),
            K.RandomGrayscale(p=cfg.grayscale_p),
            K.RandomGaussianBlur((k, k), (0.1, 2.0), p=cfg.blur_p),
        )
        self.normalize = normalizer(cfg)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.augment(to_float(images)))


class EvalTransform(nn.Module):
    """Evaluation: resize (if needed) and normalise — no randomness."""

    def __init__(self, cfg: AugConfig, size: int):
        super().__init__()
        self.size = size
        self.normalize = normalizer(cfg)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = to_float(images)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return self.normalize(x)
