r"""AdderNets: convolutions whose multiply-accumulate is replaced by an L1 distance.

An adder layer with filters :math:`F \in \mathbb{R}^{O \times C \times k \times k}` computes, for
every output position, the negative L1 distance between the input patch and each filter:

.. math::

    Y(m, n, t) = -\sum_{i, j, c} \big| X(m+i, n+j, c) - F(i, j, c, t) \big|

Training uses the paper's modified gradients instead of the true (sign) ones:

.. math::

    \frac{\partial Y}{\partial F} = X - F \quad\text{(full precision)}, \qquad
    \frac{\partial Y}{\partial X} = \mathrm{HT}(F - X) \quad\text{(HardTanh: clipped to } [-1, 1])

and an adaptive learning rate per layer, :math:`\Delta F_l \leftarrow \eta \sqrt{k_l}\,
\Delta F_l / \lVert \Delta F_l \rVert_2` with :math:`k_l` the number of elements of :math:`F_l`
and :math:`\eta = 0.2` (:func:`adaptive_lr` installs it as gradient hooks; the strategy applies it).
Batch norm follows every adder layer.

Paper: Chen, Wang, Xu, Shi, Xu, Xu, Tian, "AdderNet: Do We Really Need Multiplications in Deep
Learning?", CVPR 2020, https://arxiv.org/abs/1912.13200. Kernel-based distillation into them
(PKKD): :mod:`edgekd.distillation.losses.pkkd`.

Two forward formulations compute the same numbers. Eager training and evaluation run
fused (``torch.compile``) or chunked kernels on the same patches inside
:class:`AdderFunction`. Under ``torch.export`` (so in every .pte/.tflite, and PT2E int8) the layer
is written with standard ops only: patches by a fixed one-hot depthwise convolution, then
``sub``, ``abs`` and ``sum`` — what ExecuTorch and LiteRT can run, with no multiply-free kernel.

Models: ``resnet8_adder`` ... ``resnet56_adder`` are the CIFAR ResNets of
:mod:`edgekd.models.resnet` with every convolution inside ``layer1``..``layer3`` (projections
included) an :class:`Adder2d`; the stem conv and the classifier stay full precision, as in the
paper. Module paths equal the CNN's, so ``resnet20`` is the same-shape teacher of ``resnet20_adder``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from edgekd.errors import ConfigError
from edgekd.models._registry import register_model
from edgekd.models.contract import Family, Knob, named, register_family
from edgekd.models.resnet import _BASE, ResNet, _resnet

_CHUNK = 1 << 23  # elements of the (n, O, K, L) block the eager kernels work in


def _distance_eager(cols: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    w = weight.unsqueeze(0).expand(cols.shape[0], -1, -1)
    return -torch.cdist(cols.transpose(1, 2).contiguous(), w.contiguous(), p=1).transpose(1, 2)


def _input_grad_eager(cols: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    step = max(1, _CHUNK // (weight.numel() * cols.shape[2]))
    out = torch.empty_like(cols)
    for s in range(0, cols.shape[0], step):
        diff = (weight[None, :, :, None] - cols[s:s + step, None]).clamp_(-1.0, 1.0)
        out[s:s + step] = (diff * grad[s:s + step, :, None, :]).sum(1)
    return out


def _distance_fused(cols: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return -(cols[:, None] - weight[None, :, :, None]).abs().sum(2)


def _input_grad_fused(cols: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return ((weight[None, :, :, None] - cols[:, None]).clamp(-1.0, 1.0) * grad[:, :, None, :]).sum(1)


@functools.cache
def _compiled() -> tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]:
    """The fused kernels compiled by Inductor once per process (needs a C++ compiler): ~20x faster
    on CPU than the eager ones, which materialise (n, O, K, L) blocks."""
    return (torch.compile(_distance_fused, dynamic=True, fullgraph=True),
            torch.compile(_input_grad_fused, dynamic=True, fullgraph=True))


class AdderFunction(torch.autograd.Function):
    """``cols`` (N, K, L) patches, ``weight`` (O, K) → (N, O, L) negative L1 distances, with the
    full-precision filter gradient and the HardTanh-clipped input gradient (module docstring).
    ``fused=True`` runs both through :func:`torch.compile` kernels, else eager chunked ones."""

    @staticmethod
    def forward(ctx: Any, cols: torch.Tensor, weight: torch.Tensor, fused: bool = False) -> torch.Tensor:
        ctx.save_for_backward(cols, weight)
        ctx.fused = fused
        return (_compiled()[0] if fused else _distance_eager)(cols, weight)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        cols, weight = ctx.saved_tensors
        grad_cols = grad_w = None
        if ctx.needs_input_grad[1]:  # sum_{n,l} G[n,o,l] (X[n,k,l] - W[o,k])
            grad_w = torch.einsum("nol,nkl->ok", grad, cols) - weight * grad.sum((0, 2)).unsqueeze(1)
        if ctx.needs_input_grad[0]:  # sum_o G[n,o,l] clamp(W[o,k] - X[n,k,l], -1, 1)
            grad_cols = (_compiled()[1] if ctx.fused else _input_grad_eager)(cols, weight, grad.contiguous())
        return grad_cols, grad_w, None


def adder_reference(x: torch.Tensor, weight: torch.Tensor, patches: torch.Tensor, stride: int,
                    padding: int) -> torch.Tensor:
    """The adder layer in standard ops (the export formulation): one-hot depthwise conv → patches
    (N, K, H', W'), then ``-|patches - W|`` summed over K. ``patches`` is :func:`patch_kernel`."""
    n_out = weight.shape[0]
    cols = F.conv2d(x, patches, stride=stride, padding=padding, groups=x.shape[1])
    n, k, h, w = cols.shape
    diff = cols.reshape(n, 1, k, h * w) - weight.reshape(1, n_out, k, 1)
    return -diff.abs().sum(2).reshape(n, n_out, h, w)


def patch_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """One-hot depthwise kernel (C·k·k, 1, k, k) whose output matches ``F.unfold``'s (c, i, j) order."""
    kk = kernel_size * kernel_size
    eye = torch.eye(kk).reshape(kk, 1, kernel_size, kernel_size)
    return eye.repeat(channels, 1, 1, 1)


class Adder2d(nn.Module):
    """Adder "convolution" (no bias, no groups): ``-Σ|X - W|`` over each k×k×C patch.

    ``fused`` (default) trains with Inductor-compiled kernels (compiled on first use, ~5-20 s);
    ``fused=False`` uses eager chunked ones (no compiler needed, ~10-20x slower on CPU)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 0, fused: bool = True) -> None:
        super().__init__()
        if min(in_channels, out_channels, kernel_size, stride) < 1 or padding < 0:
            raise ConfigError(f"Adder2d({in_channels}, {out_channels}, k={kernel_size}, stride={stride}, "
                              f"padding={padding}) has a non-positive size", stage="models/adder",
                              hint="pass channels, kernel_size, stride >= 1 and padding >= 0")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.fused = fused
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.register_buffer("patches", patch_kernel(in_channels, kernel_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_exporting():
            return adder_reference(x, self.weight, self.patches, self.stride, self.padding)
        cols = F.conv2d(x, self.patches, stride=self.stride, padding=self.padding, groups=x.shape[1])
        n, k, h, w = cols.shape
        out = AdderFunction.apply(cols.reshape(n, k, h * w), self.weight.reshape(self.out_channels, -1),
                                  self.fused)
        return out.reshape(n, self.out_channels, h, w)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


def adaptive_grad(grad: torch.Tensor, eta: float = 0.2) -> torch.Tensor:
    """The paper's adaptive learning-rate scaling of one layer's gradient: η·√k·g / ‖g‖₂."""
    return grad * (eta * math.sqrt(grad.numel()) / grad.norm().clamp_min(1e-12))


def adaptive_lr(model: nn.Module, eta: float = 0.2) -> list[RemovableHandle]:
    """Hook :func:`adaptive_grad` onto every :class:`Adder2d` weight of ``model``; remove the
    returned handles to undo. Raises when ``model`` has no adder layer.

    The hooks live on these parameter tensors: train this very module (``Trainer(model, ...)``);
    ``distill()``/``train()`` train a deep copy, which has no hooks (they warn). Method ``pkkd``
    installs them on the copy itself (``pkkd_eta``)."""
    if not eta > 0:
        raise ConfigError(f"adaptive lr eta={eta} must be > 0", stage="models/adder", hint="pass eta=0.2 (paper)")
    scale: Callable[[torch.Tensor], torch.Tensor] = partial(adaptive_grad, eta=eta)
    handles = [m.weight.register_hook(scale) for m in model.modules() if isinstance(m, Adder2d)]
    if not handles:
        raise ConfigError(f"{type(model).__name__} has no Adder2d layer to scale", stage="models/adder",
                          hint="use an AdderNet student, e.g. models.create('resnet20_adder')")
    return handles


def adderize(model: nn.Module, within: tuple[str, ...] = ("layer1", "layer2", "layer3")) -> nn.Module:
    """Replace, in place, every ``nn.Conv2d`` under the ``within`` children with an :class:`Adder2d`
    of the same shape (biasless, ungrouped, undilated convs only); returns ``model``."""
    for root in within:
        parent = getattr(model, root)
        for path, conv in list(parent.named_modules()):
            if not isinstance(conv, nn.Conv2d):
                continue
            if conv.bias is not None or conv.groups != 1 or conv.dilation != (1, 1) \
                    or conv.kernel_size[0] != conv.kernel_size[1] or conv.stride[0] != conv.stride[1]:
                raise ConfigError(f"{root}.{path} ({conv}) has no Adder2d equivalent", stage="models/adder",
                                  hint="adderize square, biasless, ungrouped convolutions only")
            owner, _, name = f"{root}.{path}".rpartition(".")
            setattr(model.get_submodule(owner), name,
                    Adder2d(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0],
                            int(conv.padding[0])))  # type: ignore[arg-type]
    return model


def _adder_resnet(depth: int, num_classes: int, in_channels: int) -> ResNet:
    return adderize(_resnet(depth, _BASE, num_classes, in_channels, plain=False))  # type: ignore[return-value]


@register_model
def resnet8_adder(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet-8 with adder layers in every block (teacher twin: ``resnet8``)."""
    return _adder_resnet(8, num_classes, in_channels)


@register_model
def resnet14_adder(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _adder_resnet(14, num_classes, in_channels)


@register_model
def resnet20_adder(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """ResNet-20 AdderNet, the paper's CIFAR model (teacher twin: ``resnet20``)."""
    return _adder_resnet(20, num_classes, in_channels)


@register_model
def resnet32_adder(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _adder_resnet(32, num_classes, in_channels)


@register_model
def resnet56_adder(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return _adder_resnet(56, num_classes, in_channels)


register_family(Family(
    name="zoo:resnet_adder", classes=("edgekd.models.resnet.ResNet",), module=__name__,
    match=lambda m: any(isinstance(x, Adder2d) for x in m.modules()),
    candidates=named("layer1", "layer2", "layer3"), embedding="pool", stem="conv1", classifier="fc",
    input_size=32, prune_note="adder layers are L1-distance filters; channel surgery cuts nn.Conv2d only",
    knobs=(Knob("depth", variants={8: "resnet8_adder", 14: "resnet14_adder", 20: "resnet20_adder",
                                   32: "resnet32_adder", 56: "resnet56_adder"}),),
))
