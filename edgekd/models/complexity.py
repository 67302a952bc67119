"""Model size and cost: parameter count and FLOPs (2 × multiply-accumulates of conv and linear)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass on a batch of ``input_shape`` (e.g. ``(1, 1, 28, 28)``).

    Counts 2 × MACs of every ``Conv2d`` and ``Linear`` (bias, BN, activations and pooling are
    ignored: a few percent at most), by forward hooks on a zero input, in eval mode, without
    changing the model.
    """
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += 2 * out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += 2 * out.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        x = torch.zeros(tuple(input_shape), device=param.device if param is not None else "cpu")
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total
