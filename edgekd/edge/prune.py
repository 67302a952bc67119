"""Structured channel pruning with physical surgery: a genuinely smaller dense model, not masks.

Channels are ranked inside *groups*: sets of channels that one conv (+BN) produces and other layers
consume, so removing a channel removes a filter, its BN entries and the matching input slices of
every consumer. Only channels *not* tied by a residual add are pruned, which keeps every shortcut
consistent without grouping across blocks:

- CIFAR ResNets and their ``_plain`` twins: the inner channels of each ``BasicBlock``
  (``conv1``/``bn1`` out → ``conv2`` in);
- MobileNetV2: the expanded (hidden) channels of every inverted residual with an expansion conv
  (``conv.0`` out → depthwise ``conv.1`` → ``conv.2`` in) and the ``head`` channels (→ ``fc`` in).

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
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from edgekd.errors import ConfigError

STAGE = "edge/prune"

Importance = Literal["l1", "bn"]


@dataclass(frozen=True)
class ChannelGroup:
    """Channels produced by ``producers`` (conv, bn), carried through ``depthwise`` (conv, bn)
    pairs, and read by ``consumers`` (conv or linear, along their input dimension)."""

    name: str
    producers: tuple[tuple[str, str], ...]
    consumers: tuple[str, ...]
    depthwise: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PrunePlan:
    """Which channels of each group to keep (sorted indices), and how they were chosen."""

    keep: dict[str, list[int]]
    original: dict[str, int]
    ratio: float
    importance: str

    def channels(self) -> dict[str, int]:
        """Kept channel count per group."""
        return {k: len(v) for k, v in self.keep.items()}


def channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """The prunable groups of a CIFAR ResNet (plain or not) or a MobileNetV2 (see module docstring)."""
    from edgekd.models.mobilenet import InvertedResidual, MobileNetV2
    from edgekd.models.resnet import BasicBlock, ResNet

    groups: list[ChannelGroup] = []
    if isinstance(model, ResNet):
        for name, m in model.named_modules():
            if isinstance(m, BasicBlock):
                groups.append(ChannelGroup(name, ((f"{name}.conv1", f"{name}.bn1"),), (f"{name}.conv2",)))
        return groups
    if isinstance(model, MobileNetV2):
        for name, m in model.named_modules():
            if isinstance(m, InvertedResidual) and len(m.conv) == 3:
                groups.append(ChannelGroup(name, ((f"{name}.conv.0.0", f"{name}.conv.0.1"),),
                                           (f"{name}.conv.2.0",), ((f"{name}.conv.1.0", f"{name}.conv.1.1"),)))
        groups.append(ChannelGroup("head", (("head.0", "head.1"),), ("fc",)))
        return groups
    raise ConfigError(f"no channel-pruning rules for {type(model).__name__}", stage=STAGE,
                      hint="prune a CIFAR ResNet (resnet*, resnet*_plain) or a MobileNetV2 from edgekd.models")


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


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _slice_conv(conv: nn.Conv2d, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> nn.Conv2d:
    w = conv.weight.detach()
    depthwise = conv.groups > 1
    if depthwise and (conv.groups != conv.in_channels or conv.groups != conv.out_channels):
        raise ConfigError(f"cannot prune a grouped conv with groups={conv.groups}", stage=STAGE,
                          hint="only depthwise (groups == channels) and dense convs are supported")
    if out_idx is not None:
        w = w[out_idx]
    if in_idx is not None and not depthwise:
        w = w[:, in_idx]
    out_c = w.shape[0]
    in_c = out_c if depthwise else w.shape[1]
    new = nn.Conv2d(in_c, out_c, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    groups=out_c if depthwise else 1, bias=conv.bias is not None,
                    padding_mode=conv.padding_mode)
    new.weight.data.copy_(w)
    if conv.bias is not None:
        new.bias.data.copy_(conv.bias.detach()[out_idx] if out_idx is not None else conv.bias.detach())
    return new.to(conv.weight.device)


def _slice_bn(bn: nn.BatchNorm2d, idx: torch.Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(idx), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                         track_running_stats=bn.track_running_stats)
    if bn.affine:
        new.weight.data.copy_(bn.weight.detach()[idx])
        new.bias.data.copy_(bn.bias.detach()[idx])
    if bn.track_running_stats:
        new.running_mean.copy_(bn.running_mean[idx])
        new.running_var.copy_(bn.running_var[idx])
        new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new.to(bn.running_mean.device if bn.running_mean is not None else "cpu")


def _slice_linear(fc: nn.Linear, in_idx: torch.Tensor) -> nn.Linear:
    new = nn.Linear(len(in_idx), fc.out_features, bias=fc.bias is not None)
    new.weight.data.copy_(fc.weight.detach()[:, in_idx])
    if fc.bias is not None:
        new.bias.data.copy_(fc.bias.detach())
    return new.to(fc.weight.device)


def _check_plan(model: nn.Module, p: PrunePlan) -> list[ChannelGroup]:
    groups = channel_groups(model)
    names = {g.name for g in groups}
    if set(p.keep) != names:
        raise ConfigError(f"the prune plan names groups {sorted(set(p.keep) ^ names)} that do not match "
                          f"this {type(model).__name__}", stage=STAGE,
                          hint="build the plan with edge.prune.plan(model, ...) from this same model")
    return groups


def apply(model: nn.Module, p: PrunePlan) -> nn.Module:
    """Physically remove the channels ``p`` drops; returns a new dense model (``model`` unchanged)."""
    groups = _check_plan(model, p)
    out = copy.deepcopy(model)
    modules = dict(out.named_modules())
    for g in groups:
        idx = torch.tensor(p.keep[g.name], dtype=torch.long)
        for conv, bn in (*g.producers, *g.depthwise):
            _set(out, conv, _slice_conv(modules[conv], idx, None))
            _set(out, bn, _slice_bn(modules[bn], idx))
        for c in g.consumers:
            m = modules[c]
            _set(out, c, _slice_linear(m, idx) if isinstance(m, nn.Linear) else _slice_conv(m, None, idx))
    if hasattr(out, "num_features") and isinstance(getattr(out, "fc", None), nn.Linear):
        out.num_features = out.fc.in_features  # type: ignore[assignment]
    return out


def masked(model: nn.Module, p: PrunePlan) -> nn.Module:
    """The same cut as :func:`apply` at full size: pruned channels have zero BN scale and shift.

    Every group's producer (and depthwise) BN outputs exactly 0 on pruned channels, the following
    ReLU/ReLU6 keeps 0, so consumers see no contribution: the outputs equal ``apply(model, p)``'s.
    """
    groups = _check_plan(model, p)
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


def channels_of(model: nn.Module) -> dict[str, int]:
    """Channel count of every prunable group of ``model`` (its producers' output channels)."""
    modules = dict(model.named_modules())
    return {g.name: modules[g.producers[0][0]].out_channels for g in channel_groups(model)}


def shrink_to(model: nn.Module, channels: dict[str, int]) -> nn.Module:
    """A copy of ``model`` with each group cut to ``channels[group]`` (the first ones): the structure
    of a pruned model, to load its saved weights into (see :mod:`edgekd.models.saved`)."""
    full = channels_of(model)
    bad = {k: v for k, v in channels.items() if k not in full or not 1 <= v <= full[k]}
    if bad or set(channels) != set(full):
        raise ConfigError(f"channel counts {bad or sorted(set(full) ^ set(channels))} do not fit this "
                          f"{type(model).__name__} (groups: {full})", stage=STAGE,
                          hint="the checkpoint was pruned from another architecture; re-save it with save_model")
    keep = {k: list(range(v)) for k, v in channels.items()}
    return apply(model, PrunePlan(keep=keep, original=full, ratio=0.0, importance="structure"))

