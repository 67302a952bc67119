"""Which channels of a model can be cut, and the surgery that cuts them: a smaller dense copy.

A *group* is a set of channels that one conv (+BN) produces and other layers consume, so removing
a channel removes a filter, its BN entries and the matching input slices of every consumer. Only
channels *not* tied by a residual add are grouped, which keeps every shortcut consistent:

- CIFAR ResNets and their ``_plain`` twins, torchvision's ResNets: the inner channels of each block
  (``conv1``/``bn1`` out → ``conv2`` in; a bottleneck also ``conv2``/``bn2`` → ``conv3``);
- MobileNetV2 (the zoo's and torchvision's): the expanded (hidden) channels of every inverted
  residual with an expansion conv (expand out → depthwise → project in) and the head channels
  (→ classifier in).

Which groups a model has is its family's declaration (``Family.prune`` in
:mod:`edgekd.models.contract`, written beside the family with :func:`inner_block_groups` /
:func:`inverted_residual_groups`); families whose channels are tied across blocks (squeeze-excitation,
channel shuffle, grouped convolutions) declare themselves not prunable and say why.

:func:`apply` performs a :class:`PrunePlan`; :func:`channels_of` / :func:`shrink_to` record and
rebuild the widths of a cut model (what :mod:`edgekd.models.saved` stores in a checkpoint).
*Which* channels to keep is :mod:`edgekd.edge.prune`'s business (importance, ratios, budgets).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from edgekd.errors import ConfigError
from edgekd.models.contract import families, family_of

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
    """The prunable groups of ``model``, as its family declares them (:mod:`edgekd.models.contract`)."""
    fam = family_of(model)
    if fam is None or fam.prune is None:
        why = (f"family {fam.name} cannot be pruned: {fam.prune_note}" if fam is not None
               else f"{type(model).__name__} belongs to no registered model family")
        prunable = sorted(f.name for f in families() if f.prune is not None)
        raise ConfigError(f"no channel-pruning rules for {type(model).__name__} ({why})", stage=STAGE,
                          hint=f"prune a model of a prunable family ({', '.join(prunable)}; `edgekd list models` "
                               "shows which), or register a Family with prune=... for this class")
    return list(fam.prune(model))


def inner_block_groups(model: nn.Module, block_types: tuple[type, ...], chains: list[tuple[str, str, str]],
                       ) -> list[ChannelGroup]:
    """Groups of every block of ``block_types``: for each ``(conv, bn, consumer)`` chain (paths relative
    to the block), the channels ``conv``/``bn`` produce and ``consumer`` reads. Blocks whose modules
    do not exist (a missing expansion conv) are skipped."""
    groups: list[ChannelGroup] = []
    for name, m in model.named_modules():
        if not isinstance(m, block_types):
            continue
        sub = dict(m.named_modules())
        for i, (conv, bn, consumer) in enumerate(chains):
            if conv in sub and bn in sub and consumer in sub:
                suffix = f"#{i}" if len(chains) > 1 else ""
                groups.append(ChannelGroup(f"{name}{suffix}", ((f"{name}.{conv}", f"{name}.{bn}"),),
                                           (f"{name}.{consumer}",)))
    return groups


def inverted_residual_groups(model: nn.Module, block_type: type, expand: str, depthwise: str, project: str,
                             head: tuple[str, str, str, str] | None,
                             has_expand: Callable[[nn.Module], bool] | None = None) -> list[ChannelGroup]:
    """MobileNetV2-style groups: the hidden channels of each inverted residual with an expansion conv
    (``expand`` (conv, bn) → ``depthwise`` (conv, bn) → ``project`` conv input, paths relative to the
    block, each ``"conv|bn"``), and the ``head`` ``(group name, conv, bn, classifier)`` channels.
    ``has_expand(block)`` says whether a block has the expansion conv (default: always)."""
    groups: list[ChannelGroup] = []
    e_conv, e_bn = expand.split("|")
    d_conv, d_bn = depthwise.split("|")
    for name, m in model.named_modules():
        if isinstance(m, block_type) and (has_expand is None or has_expand(m)):
            groups.append(ChannelGroup(name, ((f"{name}.{e_conv}", f"{name}.{e_bn}"),), (f"{name}.{project}",),
                                       ((f"{name}.{d_conv}", f"{name}.{d_bn}"),)))
    if head is not None:
        groups.append(ChannelGroup(head[0], ((head[1], head[2]),), (head[3],)))
    return groups


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
