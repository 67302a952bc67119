"""Which channels of a model can be cut, and the surgery that cuts them: a smaller dense copy.

A *group* is a set of channels that one conv (+BN) produces and other layers consume, so removing
a channel removes a filter, its BN entries and the matching input slices of every consumer. Only
channels *not* tied by a residual add are grouped, which keeps every shortcut consistent:

- CIFAR ResNets and their ``_plain`` twins: the inner channels of each ``BasicBlock``
  (``conv1``/``bn1`` out → ``conv2`` in);
- MobileNetV2: the expanded (hidden) channels of every inverted residual with an expansion conv
  (``conv.0`` out → depthwise ``conv.1`` → ``conv.2`` in) and the ``head`` channels (→ ``fc`` in).

:func:`apply` performs a :class:`PrunePlan`; :func:`channels_of` / :func:`shrink_to` record and
rebuild the widths of a cut model (what :mod:`edgekd.models.saved` stores in a checkpoint).
*Which* channels to keep is :mod:`edgekd.edge.prune`'s business (importance, ratios, budgets).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from edgekd.errors import ConfigError

STAGE = "models/channels"


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


def check_plan(model: nn.Module, p: PrunePlan) -> list[ChannelGroup]:
    groups = channel_groups(model)
    names = {g.name for g in groups}
    if set(p.keep) != names:
        raise ConfigError(f"the prune plan names groups {sorted(set(p.keep) ^ names)} that do not match "
                          f"this {type(model).__name__}", stage=STAGE,
                          hint="build the plan with edgekd.edge.prune.plan(model, ...) from this same model")
    return groups


def apply(model: nn.Module, p: PrunePlan) -> nn.Module:
    """Physically remove the channels ``p`` drops; returns a new dense model (``model`` unchanged)."""
    groups = check_plan(model, p)
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
