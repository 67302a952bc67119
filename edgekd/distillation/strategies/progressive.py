r"""Progressive distillation (PKKD): a CNN teacher trains from scratch alongside an AdderNet student.

Each step: the teacher minimises :math:`L_{CE}(t, y)` in its own optimiser group; the student
(and the loss's 1×1 transforms) minimise the PKKD loss of :mod:`edgekd.distillation.losses.pkkd`
against the teacher's *current*, detached logits and kernel features. Both go in one backward
(their graphs only meet at detached tensors). The student's adder weights get the AdderNet
adaptive learning-rate scaling (:func:`edgekd.models.adder.adaptive_lr`, η = ``pkkd_eta``) for
the run. The teacher is a copy: ``strategy.teacher`` holds the trained one.

Paper: Xu et al., "Kernel Based Progressive Distillation for Adder Neural Networks", NeurIPS 2020,
https://arxiv.org/abs/2009.13044. Use: ``distill(models.create("resnet20"),
models.create("resnet20_adder"), data, method="pkkd", optimizer="sgd")`` (the adaptive scaling
assumes SGD; Adam renormalises gradients itself).
"""

from __future__ import annotations

import copy
from contextlib import ExitStack
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from edgekd.data.core import DataSplits
from edgekd.distillation.cache import TeacherCache
from edgekd.distillation.losses.pkkd import PKKDLoss
from edgekd.distillation.methods import Objective, StepContext
from edgekd.distillation.strategies.base import (
    Losses,
    Networks,
    ParamGroups,
    Strategy,
    check_classes,
    one_network,
    only_kind,
    register_strategy,
)
from edgekd.errors import ConfigError
from edgekd.models.adder import adaptive_lr

STAGE = "distill/pkkd"


class IOTaps:
    """Forward hooks that keep ``(input, output, module)`` of named modules; ``close()`` removes them."""

    def __init__(self, model: nn.Module, paths: tuple[str, ...]) -> None:
        self.records: dict[str, tuple[torch.Tensor, torch.Tensor, nn.Module]] = {}
        self._handles = [model.get_submodule(p).register_forward_hook(self._hook(p)) for p in paths]

    def _hook(self, path: str) -> Any:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            self.records[path] = (inputs[0], output, module)
        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


@register_strategy
class ProgressiveStrategy(Strategy):
    """AdderNet student + same-shape CNN teacher trained together (module docstring)."""

    kind = "progressive"

    @classmethod
    def build(cls, objective: Objective, student: Networks, teacher: nn.Module | None,
              cache: bool | TeacherCache | None) -> Strategy:
        return cls(one_network(objective, student), teacher, objective)

    def __init__(self, student: nn.Module, teacher: nn.Module | None, objective: Objective) -> None:
        super().__init__(objective)
        only_kind(objective, self.kind)
        if teacher is None:
            raise ConfigError("pkkd needs a CNN teacher of the student's shape (it trains alongside)",
                              stage=STAGE, hint="distill(models.create('resnet20'), models.create('resnet20_adder'), ...)")
        (loss,) = objective.losses.values()
        if not isinstance(loss, PKKDLoss):
            raise ConfigError(f"progressive strategy runs pkkd, not {objective.spec!r}", stage=STAGE, hint="method='pkkd'")
        loss.bind(student)
        missing = [p for p in loss.layers if p not in dict(teacher.named_modules())]
        if missing:
            raise ConfigError(f"pkkd teacher {type(teacher).__name__} has no layer {', '.join(missing)}",
                              stage=STAGE, hint="use the CNN twin of the AdderNet (same module paths)")
        self.loss, self.student, self.teacher = loss, student, copy.deepcopy(teacher)
        self.s_taps: IOTaps | None = None
        self.t_taps: IOTaps | None = None

    def modules(self) -> dict[str, nn.Module]:
        return {"student": self.student, "teacher": self.teacher, "objective": self.objective}

    def eval_models(self) -> dict[str, nn.Module]:
        return {"student": self.student}

    def enter(self, stack: ExitStack, device: str, train: Dataset) -> None:
        self.s_taps, self.t_taps = IOTaps(self.student, self.loss.layers), IOTaps(self.teacher, self.loss.layers)
        stack.callback(self.s_taps.close)
        stack.callback(self.t_taps.close)
        if self.loss.eta > 0:
            for h in adaptive_lr(self.student, self.loss.eta):
                stack.callback(h.remove)

    def context(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, epoch: int, step: int) -> StepContext:
        s_taps, t_taps = self.s_taps, self.t_taps
        if s_taps is None or t_taps is None:
            raise ConfigError("ProgressiveStrategy.context ran outside the trainer", stage=STAGE,
                              hint="run it through Trainer.fit(), which calls enter() first")
        s, t = self.student(x), self.teacher(x)
        return StepContext(student_logits=s, teacher_logits=t, targets=y, indices=idx,
                           student_features=dict(s_taps.records), teacher_features=dict(t_taps.records),
                           epoch=epoch, step=step, inputs=x)

    def setup(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], data: DataSplits) -> None:
        self.student.eval(), self.teacher.eval()
        with torch.no_grad():
            ctx = self.context(*batch, epoch=0, step=0)
        self.student.train(), self.teacher.train()
        check_classes("student", ctx.student_logits, data)
        check_classes("teacher", ctx.teacher_logits, data)
        self.objective.setup(ctx, len(data.train))  # type: ignore[arg-type]

    def param_groups(self) -> ParamGroups:
        return {"student": (list(self.student.parameters()) + list(self.objective.parameters()), 1.0),
                "teacher": (list(self.teacher.parameters()), 1.0)}

    def step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, epoch: int, step: int
             ) -> tuple[Losses, dict[str, torch.Tensor]]:
        ctx = self.context(x, y, idx, epoch, step)
        total, parts = self.objective(ctx)
        t_ce = F.cross_entropy(ctx.teacher_logits, y)  # type: ignore[arg-type]
        parts["teacher_ce"] = t_ce.detach()
        return [(("student", "teacher"), total + t_ce)], parts
