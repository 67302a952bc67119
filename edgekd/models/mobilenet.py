"""MobileNetV2-style students with CIFAR-style strides (28×28 and 32×32 inputs keep spatial size).

Paper:
    Sandler, Howard, Zhu, Zhmoginov, Chen. "MobileNetV2: Inverted Residuals and Linear
    Bottlenecks". CVPR 2018. https://arxiv.org/abs/1801.04381

As in the CIFAR variant of Tian et al. (CRD, ICLR 2020, https://arxiv.org/abs/1910.10699) the stem
and the second stage keep stride 1, so a 28×28 input ends at 4×4 instead of 1×1. Only conv, BN,
ReLU6, add, average pooling and linear ops: friendly to XNNPACK and TFLite. Convs keep PyTorch's
default init and the last BN of every shortcut block starts at zero (Goyal et al., 2017,
https://arxiv.org/abs/1706.02677): with Kaiming init this depth barely trained in a few epochs.

Module names for feature taps: ``stem``, ``layer1``..``layer7`` (one per bottleneck stage),
``head`` (the last 1×1 conv), ``pool``, ``fc``.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.errors import ConfigError
from edgekd.models._registry import register_model
from edgekd.models.contract import Family, Knob, named, register_family

# (expansion t, output channels c, repeats n, first stride s), as in the paper's Table 2.
_STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
           (6, 320, 1, 1))


def _divisible(v: float, d: int = 8) -> int:
    """Round channels to a multiple of ``d`` without dropping more than 10% (the paper's rule)."""
    out = max(d, int(v + d / 2) // d * d)
    return out + d if out < 0.9 * v else out


def _conv_bn(inp: int, out: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(inp, out, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(out)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1×1 expand → 3×3 depthwise → linear 1×1 project; identity shortcut when shapes match."""

    def __init__(self, inp: int, out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = inp * expand
        layers = [_conv_bn(inp, hidden, 1)] if expand != 1 else []
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), _conv_bn(hidden, out, 1, act=False)]
        self.conv = nn.Sequential(*layers)
        self.use_shortcut = stride == 1 and inp == out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_shortcut else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 with width multiplier ``width`` and a ``head_channels``-wide last 1×1 conv."""

    def __init__(self, width: float = 1.0, num_classes: int = 10, in_channels: int = 3,
                 head_channels: int = 1280) -> None:
        super().__init__()
        inp = _divisible(32 * width)
        self.stem = _conv_bn(in_channels, inp, 3)
        for i, (t, c, n, s) in enumerate(_STAGES):
            out = _divisible(c * width)
            blocks = [InvertedResidual(inp if j == 0 else out, out, s if j == 0 else 1, t) for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inp = out
        self.num_features = _divisible(head_channels * width) if width > 1.0 else head_channels
        self.head = _conv_bn(inp, self.num_features, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)
        for m in self.modules():  # start each shortcut block as identity: deep nets train faster
            if isinstance(m, InvertedResidual) and m.use_shortcut:
                nn.init.zeros_(m.conv[-1][1].weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features before ``fc``: (N, ``num_features``)."""
        x = self.stem(x)
        for i in range(len(_STAGES)):
            x = getattr(self, f"layer{i + 1}")(x)
        return torch.flatten(self.pool(self.head(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def _mobilenetv2(width: float, num_classes: int, in_channels: int, head_channels: int) -> MobileNetV2:
    return MobileNetV2(width, num_classes=num_classes, in_channels=in_channels, head_channels=head_channels)


@register_model
def mobilenetv2(num_classes: int = 10, in_channels: int = 3, width: float = 1.0, head_channels: int | None = None
                ) -> MobileNetV2:
    """Any width multiplier (the family's knob, :mod:`edgekd.fit` searches over it); the head is 320 wide
    below width 0.5 and 1280 from there on, as in the named variants below (``head_channels`` overrides)."""
    if width <= 0:
        raise ConfigError(f"MobileNetV2 width multiplier must be > 0, got {width}", stage="models",
                          hint="e.g. width=0.5")
    head = head_channels if head_channels is not None else (320 if width < 0.5 else 1280)
    return _mobilenetv2(width, num_classes, in_channels, head_channels=head)


@register_model
def mobilenetv2_x0_25(num_classes: int = 10, in_channels: int = 3) -> MobileNetV2:
    """A very small student: width 0.25 and a 320-wide head."""
    return _mobilenetv2(0.25, num_classes, in_channels, head_channels=320)


@register_model
def mobilenetv2_x0_5(num_classes: int = 10, in_channels: int = 3) -> MobileNetV2:
    """Width 0.5 (RepDistiller's ``MobileNetV2`` "half" student)."""
    return _mobilenetv2(0.5, num_classes, in_channels, head_channels=1280)


@register_model
def mobilenetv2_x1_0(num_classes: int = 10, in_channels: int = 3) -> MobileNetV2:
    return _mobilenetv2(1.0, num_classes, in_channels, head_channels=1280)


# -- the family's contract (edgekd.models.contract) -------------------------------------------------
def _prune_groups(model: nn.Module) -> list:
    from edgekd.models.channels import inverted_residual_groups

    return inverted_residual_groups(model, InvertedResidual, "conv.0.0|conv.0.1", "conv.1.0|conv.1.1", "conv.2.0",
                                    head=("head", "head.0", "head.1", "fc"), has_expand=lambda b: len(b.conv) == 3)


register_family(Family(
    name="zoo:mobilenetv2_cifar", classes=(f"{__name__}.MobileNetV2",), module=__name__,
    candidates=named(*(f"layer{i + 1}" for i in range(len(_STAGES)))), embedding="pool",
    stem="stem.0", classifier="fc", input_size=32, prune=_prune_groups,
    knobs=(Knob("width", kwarg="width", values=(0.25, 0.5, 1.0),
                variants={0.25: "mobilenetv2_x0_25", 0.5: "mobilenetv2_x0_5", 1.0: "mobilenetv2_x1_0"}),
           Knob("resolution", values=(28, 32))),
))
