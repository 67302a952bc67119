"""Early exits: auxiliary classifiers at ~N/3 and ~N/2 depth of any backbone, and truncation.

:class:`ExitModel` wraps a backbone (a ResNet, a MobileNet: any model whose stages are
``nn.Sequential`` stacks of blocks and whose classifier is its last ``nn.Linear``) and adds one
head per exit, at a block named by its dotted path (default: the blocks at about 1/3 and 1/2 of
the backbone's N blocks). ``forward`` is the backbone alone, so the wrapped model evaluates and
exports like the original; :meth:`ExitModel.forward_exits` returns every exit's logits and
features (forward hooks on the backbone, removed after each pass: its code is never edited). A head is a "bottleneck" 1×1 conv to
the classifier's width, BN, ReLU, global pooling (the exit's *feature*), then a linear classifier.

:func:`truncate` cuts the backbone after an exit's block (``torch.fx``) and appends the head:
a plain module that ``torch.export`` and :func:`edgekd.convert.export` take, so a device can run
the cheap shallow exit alone. :func:`exit_accuracy` reports each
exit's accuracy (eager); :func:`edgekd.bench.exits.benchmark_exits` its latency (exported ``.pte``
through the bench harness).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.fx
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edgekd.errors import ConfigError
from edgekd.models.contract import blocks, family_of

STAGE = "models/exits"
FINAL = "final"


def exit_blocks(model: nn.Module) -> list[str]:
    """Where exits may go, in depth order: the blocks the model's family declares (its contract), else
    every composite child of a top-level ``nn.Sequential`` stage (:func:`~edgekd.models.contract.blocks`)."""
    fam = family_of(model)
    if fam is not None and fam.exits is not None:
        return list(fam.exits(model))
    return blocks(model)


def default_exits(model: nn.Module) -> list[str]:
    """The blocks at about N/3 and N/2 depth (distinct; fewer when the backbone is very shallow)."""
    names = exit_blocks(model)
    if len(names) < 2:
        fam = family_of(model)
        why = f" ({fam.exits_note})" if fam is not None and fam.exits_note else ""
        raise ConfigError(f"{type(model).__name__} has {len(names)} blocks where an exit can go{why}; "
                          "cannot place exits automatically", stage=STAGE,
                          hint="name exit blocks by dotted path, e.g. ExitModel(m, exits=['layer1.0'])")
    n = len(names)
    picks = [names[max(round(n / 3), 1) - 1], names[min(max(round(n / 2), 1), n - 1) - 1]]
    return list(dict.fromkeys(picks))


def _classifier(model: nn.Module) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"{type(model).__name__} has no nn.Linear classifier", stage=STAGE,
                          hint="wrap a backbone that ends in an nn.Linear (e.g. models.create('resnet20'))")
    return linears[-1]


def _channels(block: nn.Module, path: str) -> int:
    for m in reversed(list(block.modules())):
        if isinstance(m, nn.BatchNorm2d):
            return m.num_features
        if isinstance(m, nn.Conv2d):
            return m.out_channels
    raise ConfigError(f"cannot tell the output channels of block {path!r} (no Conv2d/BatchNorm2d)", stage=STAGE,
                      hint="place exits on convolutional blocks")


class ExitHead(nn.Module):
    """Bottleneck (1×1 conv, BN, ReLU, global pool) to a feature of ``width``, then a linear classifier."""

    def __init__(self, channels: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


@dataclass
class ExitOutputs:
    """Logits and features of every exit (``"final"`` is the backbone's own classifier)."""

    logits: dict[str, torch.Tensor]
    features: dict[str, torch.Tensor]


class ExitModel(nn.Module):
    """``backbone`` plus early-exit heads at ``exits`` (dotted block paths; default :func:`default_exits`)."""

    def __init__(self, backbone: nn.Module, exits: Sequence[str] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.exits = list(exits) if exits else default_exits(backbone)
        modules = dict(backbone.named_modules())
        self.classifier_path, fc = _classifier(backbone)
        self.heads = nn.ModuleDict()
        for path in self.exits:
            if path not in modules or path == FINAL:
                raise ConfigError(f"exit {path!r} is not a module of {type(backbone).__name__}", stage=STAGE,
                                  hint=f"pick blocks by dotted path; blocks: {', '.join(exit_blocks(backbone))}")
            self.heads[exit_key(path)] = ExitHead(_channels(modules[path], path), fc.in_features, fc.out_features)

    @property
    def names(self) -> list[str]:
        """Exit names, shallow to deep, ending with ``"final"``."""
        return [*self.exits, FINAL]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward_exits(self, x: torch.Tensor) -> ExitOutputs:
        """One backbone pass; every exit's logits and pooled features (final: the classifier's input)."""
        modules = dict(self.backbone.named_modules())
        seen: dict[str, torch.Tensor] = {}
        handles = [modules[self.classifier_path].register_forward_pre_hook(
            lambda _m, args: seen.__setitem__(FINAL, args[0]))]
        for path in self.exits:
            handles.append(modules[path].register_forward_hook(
                lambda _m, _a, out, path=path: seen.__setitem__(path, out)))
        try:
            final = self.backbone(x)
        finally:
            for h in handles:
                h.remove()
        logits, feats = {}, {}
        for path in self.exits:
            head = self.heads[exit_key(path)]
            feats[path] = head.features(seen[path])
            logits[path] = head.fc(feats[path])
        logits[FINAL], feats[FINAL] = final, seen[FINAL].flatten(1)
        return ExitOutputs(logits=logits, features=feats)


def exit_key(path: str) -> str:
    return path.replace(".", "_")


class _CutTracer(torch.fx.Tracer):
    def __init__(self, leaf: str) -> None:
        super().__init__()
        self.leaf = leaf

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname == self.leaf or super().is_leaf_module(m, qualname)


class TruncatedExit(nn.Module):
    """The backbone up to an exit's block, then that exit's head: a standalone, exportable model."""

    def __init__(self, trunk: nn.Module, head: ExitHead, exit_name: str) -> None:
        super().__init__()
        self.trunk, self.head, self.exit_name = trunk, head, exit_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def truncate(model: ExitModel, exit_name: str) -> nn.Module:
    """A copy of ``model`` that stops at ``exit_name`` (``"final"``: the backbone), in eval mode."""
    if exit_name == FINAL:
        return copy.deepcopy(model.backbone).eval()
    if exit_name not in model.exits:
        raise ConfigError(f"no exit {exit_name!r}; exits: {', '.join(model.names)}", stage=STAGE,
                          hint="pass one of the model's exit names")
    backbone = copy.deepcopy(model.backbone)
    graph = _CutTracer(exit_name).trace(backbone)
    cut = next(n for n in graph.nodes if n.op == "call_module" and n.target == exit_name)
    for node in list(graph.nodes):
        if node.op == "output":
            graph.erase_node(node)
    graph.output(cut)
    trunk = torch.fx.GraphModule(backbone, graph)
    trunk.graph.eliminate_dead_code()
    trunk.delete_all_unused_submodules()
    trunk.recompile()
    head = copy.deepcopy(model.heads[exit_key(exit_name)])
    return TruncatedExit(trunk, head, exit_name).eval()


@torch.no_grad()
def exit_accuracy(model: ExitModel, dataset: Dataset, batch_size: int = 256) -> dict[str, float]:
    """Top-1 accuracy of every exit on ``dataset`` (eager, eval mode; the model's mode is restored)."""
    was_training = model.training
    model.eval()
    correct = dict.fromkeys(model.names, 0)
    n = 0
    for x, y, *_ in DataLoader(dataset, batch_size=batch_size):
        out = model.forward_exits(x)
        for name, z in out.logits.items():
            correct[name] += int((z.argmax(1) == y).sum())
        n += len(y)
    model.train(was_training)
    return {k: v / max(n, 1) for k, v in correct.items()}
