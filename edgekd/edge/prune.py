"""Structured channel pruning with physical surgery: a genuinely smaller dense model, not masks.

Channels are ranked inside the *groups* of :mod:`edgekd.models.channels` (sets of channels one
conv + BN produces and other layers consume, never tied by a residual add), and cut there by its
surgery (:func:`~edgekd.models.channels.apply`), so every shortcut stays consistent.

Importance of channel :math:`c` (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017,
https://arxiv.org/abs/1608.08710; Liu et al., "Learning Efficient Convolutional Networks through
Network Slimming", ICCV 2017, https://arxiv.org/abs/1708.06519)::

    l1: s_c = Σ_{i,k,l} |W_{c,i,k,l}|        (the producing conv's filter)
    bn: s_c = |γ_c|                         (the producing BatchNorm's scale)

``prune(model, 0.5)`` keeps the ``round((1 - ratio) · C)`` highest-scoring channels of each group
(uniform ratio) and returns a new dense ``nn.Module`` that exports with ``torch.export``.
``masked(model, plan)`` is the same cut as a full-size model whose pruned channels are zeroed
(BN scale and shift of the producers), so its outputs equal the pruned model's before fine-tuning.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn

from edgekd.errors import ConfigError
from edgekd.models.channels import (
    ChannelGroup,
    PrunePlan,
    apply,
    channel_groups,
    channels_of,
    check_plan,
    shrink_to,
)

__all__ = ["ChannelGroup", "PrunePlan", "apply", "channel_groups", "channel_importance", "channels_of", "masked",
           "plan", "prune", "prune_to", "shrink_to"]

STAGE = "edge/prune"

Importance = Literal["l1", "bn"]


def channel_importance(model: nn.Module, importance: Importance = "l1") -> dict[str, torch.Tensor]:
    """Score per channel of every group (higher = more important); see the module docstring."""
    modules = dict(model.named_modules())
    scores: dict[str, torch.Tensor] = {}
    for g in channel_groups(model):
        if importance not in ("l1", "bn"):
            raise ConfigError(f"unknown importance {importance!r}; known: bn, l1", stage=STAGE,
                              hint="pass importance='l1' or 'bn'")
        per = [modules[conv].weight.detach().abs().sum(dim=(1, 2, 3)) if importance == "l1"
               else modules[bn].weight.detach().abs() for conv, bn in g.producers]
        scores[g.name] = torch.stack(per).sum(0).float()
    return scores


def plan(model: nn.Module, ratio: float, importance: Importance = "l1", *, round_to: int = 1,
         min_channels: int = 1, counts: dict[str, int] | None = None) -> PrunePlan:
    """Choose the channels to keep: the top ``round((1 - ratio)·C)`` of each group by importance.

    ``round_to`` rounds the kept count to a multiple (e.g. 8 for SIMD-friendly widths). ``counts``
    gives the kept count of each group instead (``ratio`` is then only recorded).
    """
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"prune ratio {ratio} must be in [0, 1)", stage=STAGE,
                          hint="pass the fraction of inner channels to remove, e.g. 0.5")
    if round_to < 1 or min_channels < 1:
        raise ConfigError(f"round_to={round_to} and min_channels={min_channels} must be >= 1", stage=STAGE)
    keep, original = {}, {}
    for name, s in channel_importance(model, importance).items():
        c = s.numel()
        k = int(round(c * (1.0 - ratio) / round_to)) * round_to if counts is None else counts.get(name, -1)
        if counts is not None and not 1 <= k <= c:
            raise ConfigError(f"cannot keep {k} of the {c} channels of group {name!r}", stage=STAGE,
                              hint="give every group a count between 1 and its current width (channels_of)")
        k = min(c, max(min_channels, k))
        top = torch.topk(s, k, largest=True, sorted=False).indices  # ties: any consistent choice
        keep[name], original[name] = sorted(int(i) for i in top), c
    return PrunePlan(keep=keep, original=original, ratio=float(ratio), importance=importance)


def masked(model: nn.Module, p: PrunePlan) -> nn.Module:
    """The same cut as :func:`apply` at full size: pruned channels have zero BN scale and shift.

    Every group's producer (and depthwise) BN outputs exactly 0 on pruned channels, the following
    ReLU/ReLU6 keeps 0, so consumers see no contribution: the outputs equal ``apply(model, p)``'s.
    """
    groups = check_plan(model, p)
    out = copy.deepcopy(model)
    modules = dict(out.named_modules())
    for g in groups:
        mask = torch.zeros(p.original[g.name], dtype=torch.bool)
        mask[p.keep[g.name]] = True
        for _, bn in (*g.producers, *g.depthwise):
            with torch.no_grad():
                modules[bn].weight[~mask] = 0.0
                modules[bn].bias[~mask] = 0.0
    return out


def prune(model: nn.Module, ratio: float, importance: Importance = "l1", *, round_to: int = 1) -> nn.Module:
    """``apply(model, plan(model, ratio, importance))``: a smaller dense copy of ``model``."""
    return apply(model, plan(model, ratio, importance, round_to=round_to))


def prune_to(model: nn.Module, counts: dict[str, int], importance: Importance = "l1") -> nn.Module:
    """A smaller dense copy of ``model`` keeping the ``counts[group]`` most important channels of each group.

    The step of gradual pruning: cut a partly pruned model to the next widths of a schedule.
    """
    full = channels_of(model)
    if set(counts) != set(full):
        raise ConfigError(f"counts name groups {sorted(counts)}, the model has {sorted(full)}", stage=STAGE,
                          hint="build counts from channels_of(model) of the same architecture")
    ratio = 1.0 - sum(counts.values()) / max(sum(full.values()), 1)
    return apply(model, plan(model, ratio, importance, counts=counts))
