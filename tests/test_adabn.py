"""AdaBN (byel.adapt): every BatchNorm layer's statistics are the exact moments of its input over
the whole adaptation set, with the earlier layers already adapted — whatever the image order."""

import numpy as np
import pytest
import torch
from torch import nn

from byel.adapt import adapt_batchnorm


class TinyNet(nn.Module):
    """conv → BN → ReLU → conv → BN → pool → linear → BN1d, on float images (N, 3, 8, 8)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 5, 3, padding=1), nn.BatchNorm2d(5)
        self.fc, self.bn3 = nn.Linear(5, 6), nn.BatchNorm1d(6)
        self.preprocess = nn.Identity()  # the images are already model inputs

    @property
    def device(self):
        return next(self.parameters()).device

    def forward(self, x):
        x = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return self.bn3(self.fc(x.mean((2, 3))))


def _two_classes(n=64):
    """Class-sorted images whose classes differ in brightness: the between-class variance is
    what per-batch averaging over class-sorted batches loses."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (n, 3, 8, 8)).astype(np.float32)
    x[n // 2 :] += 3.0
    return x


@torch.no_grad()
def test_statistics_are_the_moments_of_the_whole_set():
    net, images = TinyNet(), _two_classes()
    adapted = adapt_batchnorm(net, images, batch_size=16)
    x = torch.from_numpy(images)

    def check(bn, inp):  # per channel over images and positions; population variance
        flat = inp.transpose(0, 1).reshape(inp.shape[1], -1).double()
        assert torch.allclose(bn.running_mean.double(), flat.mean(1), atol=1e-5)
        assert torch.allclose(bn.running_var.double(), flat.var(1, unbiased=False), atol=1e-5)

    a = adapted
    h1 = a.conv1(x)
    check(a.bn1, h1)
    h2 = a.conv2(torch.relu(a.bn1(h1)))  # bn1 already adapted
    check(a.bn2, h2)
    check(a.bn3, a.fc(a.bn2(h2).mean((2, 3))))
    assert not a.training
    # weights untouched, the original model untouched
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), adapted.parameters()))
    assert torch.equal(net.bn1.running_mean, torch.zeros(4)) and torch.equal(net.bn1.running_var, torch.ones(4))


@pytest.mark.parametrize("batch_size", [16, 64])
def test_same_result_whatever_the_order(batch_size):
    net, images = TinyNet(), _two_classes()
    shuffled = images[np.random.default_rng(1).permutation(len(images))]
    a = adapt_batchnorm(net, images, batch_size=batch_size)  # class-sorted
    b = adapt_batchnorm(net, shuffled, batch_size=batch_size)
    c = adapt_batchnorm(net, images, batch_size=len(images))  # one batch: the whole set
    for name in ("bn1", "bn2", "bn3"):
        for stat in ("running_mean", "running_var"):
            ref = getattr(getattr(c, name), stat)
            for m in (a, b):
                assert torch.allclose(getattr(getattr(m, name), stat), ref, atol=1e-5), (name, stat)


def test_no_images_is_an_error():
    from byel.errors import DataError

    with pytest.raises(DataError):
        adapt_batchnorm(TinyNet(), np.zeros((0, 3, 8, 8), np.float32))
