"""What a training strategy is: which networks train, with which optimisers, and one step's losses.

The :class:`~edgekd.distillation.trainer.Trainer` owns the loop (seeding, loaders, optimisers,
schedules, gradient all-reduce under DDP, eval, checkpoints, resume); a :class:`Strategy` owns
"how models train together" at one step. A step returns an ordered list of ``(groups, loss)``;
for each, the trainer zeroes the groups' optimisers, runs one backward, all-reduces and steps
them, in that order (AFD: each network, then the discriminators), so no strategy copies the loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn
from torch.utils.data import Dataset

from edgekd.data.core import DataSplits
from edgekd.distillation.cache import TeacherCache
from edgekd.distillation.methods import Objective
from edgekd.errors import ConfigError
from edgekd.eval.classification import evaluate
from edgekd.registry import Registry

STAGE = "distill/strategy"
Losses = list[tuple[str | tuple[str, ...], torch.Tensor]]  # (optimiser group(s), loss), run in order
ParamGroups = dict[str, tuple[list[nn.Parameter], float]]  # group -> (params, lr multiplier)
Networks = nn.Module | Sequence[nn.Module]  # one student, or the peers of an online method


class Strategy:
    """Base class. Subclasses set ``kind`` and implement the hooks below.

    ``score`` names the validation metric (a key of :meth:`validate`'s row, higher is better) the
    trainer keeps the best epoch by. :meth:`train_mode` and :meth:`validate` exist so a strategy whose
    networks are not plain modules (a PT2E graph: :mod:`edgekd.edge.qat`) or whose data has no labels
    (sentence encoders: :mod:`edgekd.distillation.text`) runs in the same loop.
    """

    kind: ClassVar[str] = "offline"
    score: ClassVar[str] = "val_acc"

    def __init__(self, objective: Objective) -> None:
        self.objective = objective

    @classmethod
    def build(cls, objective: Objective, student: Networks, teacher: nn.Module | None,
              cache: bool | TeacherCache | None) -> Strategy:
        """This strategy for ``distill()``'s arguments (:func:`~edgekd.distillation.strategies.make_strategy`)."""
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        """Every trained module by name (checkpointed, moved to the device, synced under DDP)."""
        raise NotImplementedError

    def eval_models(self) -> dict[str, nn.Module]:
        """The models evaluated on val after each epoch; the first one is "the" model."""
        raise NotImplementedError

    def enter(self, stack: ExitStack, device: str, train: Dataset) -> None:
        """Install taps / freeze teachers / fill caches for the run; undo them through ``stack``."""

    def setup(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], data: DataSplits) -> None:
        """Probe one batch (no grad): check class counts, let losses build their adapters."""

    def param_groups(self) -> ParamGroups:
        """Trainable parameters by optimiser group (default: one group for everything)."""
        params = [p for m in self.modules().values() for p in m.parameters() if p.requires_grad]
        return {"main": (params, 1.0)}

    def train_mode(self, train: bool) -> None:
        """Put every trained module in train (or eval) mode."""
        for m in self.modules().values():
            m.train(train)

    def validate(self, data: Any, device: str) -> dict[str, float]:
        """Val accuracy/loss of each eval model; ``val_acc`` is the best of them."""
        evals = {k: evaluate(m, data.val, device=device) for k, m in self.eval_models().items()}
        if len(evals) == 1:
            (only,) = evals.values()
            return {"val_acc": only["acc"], "val_loss": only["loss"]}
        row = {f"val_{m}_{k}": v for k, r in evals.items() for m, v in r.items()}
        top = max(evals.values(), key=lambda r: r["acc"])
        return {"val_acc": top["acc"], "val_loss": top["loss"], **row}

    def step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, epoch: int, step: int
             ) -> tuple[Losses, dict[str, torch.Tensor]]:
        """One batch: the losses to minimise (per group, in order) and detached terms to log."""
        raise NotImplementedError


def check_classes(who: str, logits: torch.Tensor | None, data: DataSplits) -> None:
    """Raise when a network's output width is not the data set's number of classes."""
    if logits is not None and logits.shape[-1] != data.num_classes:
        raise ConfigError(f"{who} outputs {logits.shape[-1]} classes but {data.name} has {data.num_classes}",
                          stage=STAGE, hint=f"create it with num_classes={data.num_classes}")


def freeze(model: nn.Module, device: str) -> tuple[bool, list[bool]]:
    """Put ``model`` in eval mode without gradients; return what :func:`restore` needs."""
    state = (model.training, [p.requires_grad for p in model.parameters()])
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return state


def restore(model: nn.Module, state: tuple[bool, list[bool]]) -> None:
    """Undo :func:`freeze`."""
    model.train(state[0])
    for p, flag in zip(model.parameters(), state[1], strict=True):
        p.requires_grad_(flag)


S = TypeVar("S", bound=type[Strategy])
STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def register_strategy(cls: S) -> S:
    """Class decorator: register a :class:`Strategy` under its ``kind`` (what a loss's ``strategy`` names)."""
    return STRATEGIES.register(cls.kind)(cls)  # type: ignore[return-value]


def kinds(objective: Objective) -> set[str]:
    """The strategy kinds the objective's terms ask for (``"offline"`` for plain losses)."""
    return {loss.strategy for loss in objective.losses.values()}


def one_network(objective: Objective, student: Networks) -> nn.Module:
    """``student`` when it is one network; a clear error when a method that trains one got several."""
    if isinstance(student, Sequence) and not isinstance(student, nn.Module):
        raise ConfigError(f"method {objective.spec!r} trains one student; got {len(student)} networks",
                          stage=STAGE, hint="pass one student, or an online method ('dml', 'afd') for peers")
    return student


def only_kind(objective: Objective, kind: str, allowed: Sequence[str] = ()) -> None:
    """Raise unless every term of ``objective`` is of ``kind`` (or named in ``allowed``)."""
    bad = [n for n, loss in objective.losses.items() if loss.strategy != kind and n not in allowed]
    if bad:
        raise ConfigError(f"method {objective.spec!r} mixes {kind} training with {', '.join(bad)}",
                          stage=STAGE, hint=f"'{kind}' methods are complete recipes (CE included); "
                                            "use them alone, e.g. method='dml'")


def detached(parts: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Detach every logged term."""
    return {k: v.detach() for k, v in parts.items()}
