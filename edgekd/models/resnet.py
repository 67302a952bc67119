"""CIFAR-style ResNets, as used across the distillation literature, and their plain twins.

Papers:
    He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition". CVPR 2016.
    https://arxiv.org/abs/1512.03385 (section 4.2: the 6n+2-layer CIFAR networks)

    Tian, Krishnan, Isola. "Contrastive Representation Distillation". ICLR 2020.
    https://arxiv.org/abs/1910.10699 — the RepDistiller benchmark whose variants (resnet8 ...
    resnet110, resnet8x4, resnet32x4: widths and depths) these follow, with 1×1-conv projection
    shortcuts where the shape changes.

    Li, Yang, Wang, Shao, Shen, Ding, Zhang. "Residual Distillation: Towards Portable Deep Neural
    Networks without Shortcuts". NeurIPS 2020. https://arxiv.org/abs/2003.06074 — the ``*_plain``
    twins: the same layers with every shortcut (and projection) removed.

Module names are stable for feature taps: ``conv1``, ``bn1``, ``layer1``..``layer3``, ``pool``,
``fc``. Pooling is adaptive, so 8×8, 28×28 and 32×32 inputs all work.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.errors import ConfigError
from edgekd.models._registry import register_model
from edgekd.models.contract import Family, Knob, named, register_family


def _conv3x3(inp: int, out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inp, out, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers; ``relu(f(x) + shortcut(x))``, or ``relu(f(x))`` when plain."""

    def __init__(self, inp: int, out: int, stride: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inp, out, stride)
        self.bn1 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(out, out)
        self.bn2 = nn.BatchNorm2d(out)
        self.shortcut = shortcut
        self.downsample: nn.Module | None = None
        if shortcut and (stride != 1 or inp != out):
            self.downsample = nn.Sequential(nn.Conv2d(inp, out, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if self.shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class ResNet(nn.Module):
    """A 3-stage CIFAR ResNet of ``depth = 6n + 2`` layers; ``widths`` = stem, stage 1, 2, 3."""

    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int = 10,
                 in_channels: int = 3, shortcut: bool = True) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = _conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        stages, inp = [], widths[0]
        for i, (out, stride) in enumerate(zip(widths[1:], (1, 2, 2), strict=True)):
            blocks = [BasicBlock(inp if j == 0 else out, out, stride if j == 0 else 1, shortcut)
                      for j in range(n)]
            stages.append(nn.Sequential(*blocks))
            setattr(self, f"layer{i + 1}", stages[-1])
            inp = out
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        self.num_features = widths[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features before ``fc``: (N, ``num_features``)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def _resnet(depth: int, widths: tuple[int, int, int, int], num_classes: int, in_channels: int,
            plain: bool) -> ResNet:
    return ResNet(depth, widths, num_classes=num_classes, in_channels=in_channels, shortcut=not plain)


_BASE = (16, 16, 32, 64)
_X4 = (32, 64, 128, 256)


@register_model
def resnet(num_classes: int = 10, in_channels: int = 3, depth: int = 8, width: float = 1.0,
           plain: bool = False) -> ResNet:
    """Any member of the family: ``depth = 6n + 2`` and a width multiplier on (16, 16, 32, 64) channels
    (``plain``: no shortcuts). The named variants below are points of it (``resnet8x0_5`` is
    ``depth=8, width=0.5``); :mod:`edgekd.fit` searches over these knobs."""
    if width <= 0:
        raise ConfigError(f"ResNet width multiplier must be > 0, got {width}", stage="models", hint="e.g. width=0.5")
    widths = tuple(max(1, round(w * width)) for w in _BASE)
    return _resnet(depth, widths, num_classes, in_channels, plain=plain)  # type: ignore[arg-type]


@register_model
def resnet_plain(num_classes: int = 10, in_channels: int = 3, depth: int = 8, width: float = 1.0) -> ResNet:
    """:func:`resnet` without shortcuts, at any depth and width (``resnet8_plain`` is ``depth=8``)."""
    return resnet(num_classes, in_channels, depth=depth, width=width, plain=True)


@register_model
def resnet8(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet-8 (78k params at 10 classes)."""
    return _resnet(8, _BASE, num_classes, in_channels, plain=False)


@register_model
def resnet14(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _resnet(14, _BASE, num_classes, in_channels, plain=False)


@register_model
def resnet20(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _resnet(20, _BASE, num_classes, in_channels, plain=False)


@register_model
def resnet32(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _resnet(32, _BASE, num_classes, in_channels, plain=False)


@register_model
def resnet44(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _resnet(44, _BASE, num_classes, in_channels, plain=False)


@register_model
def resnet56(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _resnet(56, _BASE, num_classes, in_channels, plain=False)


@register_model
def resnet110(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _resnet(110, _BASE, num_classes, in_channels, plain=False)


@register_model
def resnet8x4(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet-8 at 4× width: the usual teacher of the RepDistiller benchmark."""
    return _resnet(8, _X4, num_classes, in_channels, plain=False)


@register_model
def resnet8x0_5(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet-8 at half width (8, 8, 16, 32; about 20k parameters): a microcontroller-sized student,
    the one ``benchmarks/kd_methods.py`` distils into on 2 CPU cores."""
    return _resnet(8, tuple(w // 2 for w in _BASE), num_classes, in_channels, plain=False)  # type: ignore[arg-type]


@register_model
def resnet32x4(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _resnet(32, _X4, num_classes, in_channels, plain=False)


@register_model
def resnet8_plain(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _resnet(8, _BASE, num_classes, in_channels, plain=True)


@register_model
def resnet14_plain(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _resnet(14, _BASE, num_classes, in_channels, plain=True)


@register_model
def resnet20_plain(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _resnet(20, _BASE, num_classes, in_channels, plain=True)


@register_model
def resnet32_plain(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _resnet(32, _BASE, num_classes, in_channels, plain=True)


@register_model
def resnet44_plain(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _resnet(44, _BASE, num_classes, in_channels, plain=True)


@register_model
def resnet56_plain(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _resnet(56, _BASE, num_classes, in_channels, plain=True)


@register_model
def resnet110_plain(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _resnet(110, _BASE, num_classes, in_channels, plain=True)


@register_model
def resnet8x4_plain(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _resnet(8, _X4, num_classes, in_channels, plain=True)


@register_model
def resnet32x4_plain(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _resnet(32, _X4, num_classes, in_channels, plain=True)


# -- the family's contract (edgekd.models.contract) -------------------------------------------------
def _prune_groups(model: nn.Module) -> list:
    from edgekd.models.channels import inner_block_groups

    return inner_block_groups(model, (BasicBlock,), [("conv1", "bn1", "conv2")])


register_family(Family(
    name="zoo:resnet_cifar", classes=(f"{__name__}.ResNet",), module=__name__,
    candidates=named("layer1", "layer2", "layer3"), embedding="pool", stem="conv1", classifier="fc",
    input_size=32, prune=_prune_groups,
    knobs=(Knob("depth", kwarg="depth", values=(8, 14, 20),
                variants={8: "resnet8", 14: "resnet14", 20: "resnet20", 32: "resnet32", 44: "resnet44", 56: "resnet56",
                          110: "resnet110"}),
           Knob("width", kwarg="width", values=(0.25, 0.5, 1.0),
                variants={0.5: "resnet8x0_5", 1: "resnet8", 4: "resnet8x4"}),
           Knob("resolution", values=(8, 28, 32))),
))
