"""Backbones written from scratch (no torchvision): ResNet-18/50 and a small CPU-friendly net.

Every backbone maps (N, 3, H, W) images to (N, out_dim) global-average-pooled features and
exposes `out_dim`. `create_backbone(name)` is the one entry point; `register_backbone` adds more.
Each architecture keeps its own default width (ResNets 64, smallnet 32): `width=None` (or 0)
means that default, so a ResNet-50 is the standard 23.5 M-parameter, 2048-d network.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from byel.choices import BACKBONES


def register_backbone(name: str):
    """Decorator: a builder of a backbone under a new name (``@register_backbone("mynet")``)."""
    return BACKBONES.register(name)


def check_backbone(name: str) -> None:
    """Raise a ConfigError naming the valid backbones if `name` is not one of them."""
    BACKBONES.check(name)


def create_backbone(name: str, width: int | None = None, **kwargs) -> nn.Module:
    """`width` None or 0: the architecture's own default. Options a backbone does not take are
    an error (a TypeError from the builder), never silently dropped."""
    if width:
        kwargs["width"] = width
    return BACKBONES.create(name, **kwargs)


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """ResNet (He et al. 2016). `small_input=True` swaps the 7×7/2 stem + max-pool for a 3×3/1
    stem, the usual choice for images of 64 px or less (48 px faces would shrink to 1×1 otherwise)."""

    def __init__(self, block, layers: list[int], small_input: bool = False, width: int = 64):
        super().__init__()
        if small_input:
            self.stem = conv_bn(3, width, 3, 1)
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        stages, cin = [], width
        for i, n in enumerate(layers):
            w = width * 2**i
            blocks = []
            for j in range(n):
                blocks.append(block(cin, w, stride=2 if (j == 0 and i > 0) else 1))
                cin = w * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_dim = cin
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Zero-init the last BN of each residual branch: each block starts as the identity,
        # which trains faster and more stably from scratch (Goyal et al. 2017).
        for m in self.modules():
            last_bn = getattr(m, "bn3", None) if isinstance(m, Bottleneck) else getattr(m, "bn2", None)
            if isinstance(m, (BasicBlock, Bottleneck)) and last_bn is not None:
                nn.init.zeros_(last_bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.stages(self.stem(x)), 1), 1)


class SmallNet(nn.Module):
    """A small CPU-friendly ResNet-style net: a strided 3×3 stem (÷2) and four stages of one
    basic block, widths w, 2w, 4w, 8w, downsampling ×2 from the second stage. With w=32 it has
    ~1.2 M parameters and ~35 M multiply-adds per 48 px image (a 48 px face ends as 3×3×256),
    so BYEL pre-training runs on a laptop CPU."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.stem = conv_bn(3, width, 3, 2)
        widths = [width, 2 * width, 4 * width, 8 * width]
        stages, cin = [], width
        for i, w in enumerate(widths):
            stages.append(BasicBlock(cin, w, stride=1 if i == 0 else 2))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.out_dim = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.stages(self.stem(x)), 1), 1)


def resnet18(small_input: bool = False, width: int = 64) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], small_input=small_input, width=width)


def resnet50(small_input: bool = False, width: int = 64) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], small_input=small_input, width=width)


def smallnet(width: int = 32, small_input: bool = True) -> SmallNet:
    # SmallNet's strided 3×3 stem is already made for small images: model.small_input (a ResNet
    # stem option, True by default) is accepted so every backbone takes the same config keys.
    return SmallNet(width=width)


def folded_copy(module: nn.Module) -> nn.Module:
    """An eval-mode copy of ``module`` for inference: each BatchNorm2d that follows a Conv2d (in a
    ``conv_bn`` or shortcut Sequential, and a block's convN / bnN) folded into that convolution
    (the same function up to float rounding, one pass over the activations fewer), and its
    weights in channels-last memory format (faster CPU convolutions for small images). Not for
    training nor for batch-norm adaptation: the folded batch norms are gone."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    with torch.no_grad():
        out = copy.deepcopy(module).eval()
        for mod in list(out.modules()):
            if isinstance(mod, nn.Sequential):
                names = list(mod._modules)
                for a, b in zip(names, names[1:]):
                    if isinstance(mod._modules[a], nn.Conv2d) and isinstance(mod._modules[b], nn.BatchNorm2d):
                        mod._modules[a] = fuse_conv_bn_eval(mod._modules[a], mod._modules[b])
                        mod._modules[b] = nn.Identity()
            for i in (1, 2, 3):
                conv, bn = getattr(mod, f"conv{i}", None), getattr(mod, f"bn{i}", None)
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    setattr(mod, f"conv{i}", fuse_conv_bn_eval(conv, bn))
                    setattr(mod, f"bn{i}", nn.Identity())
        return out.to(memory_format=torch.channels_last)
