"""Offline distillation: a frozen teacher (or ensemble) guides one student; plain training without one.

.. math::  \\theta_S^* = \\arg\\min_{\\theta_S} \\sum_m w_m L_m(S_{\\theta_S}(x), T(x), y)

The teacher is frozen for the run (eval mode, no gradients, restored afterwards). Its logits and
tapped features come from a :class:`~edgekd.distillation.cache.TeacherCache` when the train inputs are
fixed tensors (no random augmentation): ``cache=None`` (the default) caches when the cache fits in
``DEFAULT_MAX_BYTES``, ``True`` insists (in RAM up to half the available memory,
:func:`~edgekd.distillation.cache.memory_limit`; beyond it in memory-mapped files on disk, up to half the
free space), ``False`` runs the teacher every step, and a
:class:`TeacherCache` is reused (and widened to the taps this run needs).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from edgekd.data.core import DataSplits
from edgekd.distillation.cache import (
    DEFAULT_MAX_BYTES,
    TeacherCache,
    cache_bytes,
    cacheable,
    disk_limit,
    memory_limit,
)
from edgekd.distillation.methods import Objective, StepContext
from edgekd.distillation.strategies.base import (
    STAGE,
    Losses,
    Networks,
    Strategy,
    check_classes,
    freeze,
    one_network,
    only_kind,
    register_strategy,
    restore,
)
from edgekd.distillation.taps import Taps
from edgekd.errors import ConfigError


@register_strategy
class OfflineStrategy(Strategy):
    """``student`` learns from the objective, reading a frozen ``teacher`` when the objective needs one."""

    kind = "offline"
    method_kind: ClassVar[str] = "offline"  # the loss kind it runs (subclasses that only change the networks keep it)

    @classmethod
    def build(cls, objective: Objective, student: Networks, teacher: nn.Module | None,
              cache: bool | TeacherCache | None) -> Strategy:
        return cls(one_network(objective, student), objective, teacher, cache=cache)

    def __init__(self, student: nn.Module, objective: Objective, teacher: nn.Module | None = None,
                 cache: bool | TeacherCache | None = None) -> None:
        super().__init__(objective)
        only_kind(objective, self.method_kind)
        if objective.needs_teacher and teacher is None:
            raise ConfigError(f"method {objective.spec!r} needs a teacher, none given", stage=STAGE,
                              hint="pass a trained teacher, or use method='ce' (see edgekd.distillation.train)")
        self.student = student
        self.teacher = teacher if objective.needs_teacher else None
        self.cache_option = cache
        self.cache: TeacherCache | None = None
        self.s_taps: Taps | None = None
        self.t_taps: Taps | None = None

    def modules(self) -> dict[str, nn.Module]:
        return {"student": self.student, "objective": self.objective}

    def eval_models(self) -> dict[str, nn.Module]:
        return {"student": self.student}

    def student_mode(self, train: bool) -> None:
        """Train/eval mode of the student alone (the probe batch runs it in eval mode)."""
        self.student.train(train)

    def train_mode(self, train: bool) -> None:
        self.student_mode(train)
        self.objective.train(train)

    def enter(self, stack: ExitStack, device: str, train: Dataset) -> None:
        self.s_taps = stack.enter_context(Taps(self.student, self.objective.student_taps))
        self.enter_teacher(stack, device, train)

    def enter_teacher(self, stack: ExitStack, device: str, train: Dataset) -> None:
        """Freeze the teacher for the run and cache its outputs, or tap it to run live each step."""
        if self.teacher is None:
            return
        stack.callback(restore, self.teacher, freeze(self.teacher, device))
        self.cache = self._cache(self.teacher, device, train)
        if self.cache is None:
            self.t_taps = stack.enter_context(Taps(self.teacher, self.objective.teacher_taps))

    def _cache(self, teacher: nn.Module, device: str, train: Dataset) -> TeacherCache | None:
        opt, taps = self.cache_option, self.objective.teacher_taps
        if opt is False:
            return None
        if not cacheable(train):
            if opt is None:
                return None
            raise ConfigError(f"cannot cache the teacher for {self.objective.spec!r}: the train data is a "
                              f"{type(train).__name__}, not fixed tensors", stage="distill/cache",
                              hint="pass cache_teacher=False (or None to decide)")
        if isinstance(opt, TeacherCache):
            return opt.ensure(teacher, train, taps)
        need = cache_bytes(teacher, train, taps, device)
        if opt is None:
            return TeacherCache(teacher, train, taps=taps, device=device) if need <= DEFAULT_MAX_BYTES else None
        if need <= memory_limit():
            return TeacherCache(teacher, train, taps=taps, device=device)
        # an explicit request beyond the RAM goes to memory-mapped files, or is refused cleanly (ConfigError)
        return TeacherCache(teacher, train, taps=taps, device=device, storage="disk", max_bytes=disk_limit())

    def teacher_outputs(self, x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor | None, dict[str, Any]]:
        """The teacher's logits and tapped features for one batch: from the cache by index, or run live."""
        if self.teacher is None:
            return None, {}
        if self.cache is not None:
            return self.cache[idx], self.cache.features(idx, self.objective.teacher_taps)
        with torch.no_grad():
            t_logits = self.teacher(x)
        return t_logits, dict(self.t_taps.outputs) if self.t_taps else {}

    def context(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, epoch: int, step: int) -> StepContext:
        """Run the student (and teacher or cache) on one batch, then on each augmented view the losses read."""
        t_logits, t_feats = self.teacher_outputs(x, idx)
        s_logits = self.student(x)
        ctx = StepContext(student_logits=s_logits, teacher_logits=t_logits, targets=y, indices=idx,
                          student_features=dict(self.s_taps.outputs) if self.s_taps else {},
                          teacher_features=t_feats, epoch=epoch, step=step, inputs=x)
        for name in self.objective.views:
            ctx.views[name] = self.view_outputs(name, x)
        return ctx

    def view_outputs(self, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The student's and the teacher's logits on view ``name`` of the batch (:data:`~edgekd.data.augment.VIEWS`).
        The teacher runs live: its cache holds only the plain batch."""
        from edgekd.data.augment import VIEWS

        x_view = VIEWS.get(name)(x)
        if self.teacher is None:
            return self.student(x_view), None
        with torch.no_grad():
            t_view = self.teacher(x_view)
        return self.student(x_view), t_view

    def setup(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], data: DataSplits) -> None:
        self.student_mode(False)
        with torch.no_grad():
            ctx = self.context(*batch, epoch=0, step=0)
        self.student_mode(True)
        check_classes("student", ctx.student_logits, data)
        check_classes("teacher", ctx.teacher_logits, data)
        self.objective.setup(ctx, len(data.train))  # type: ignore[arg-type]

    def step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, epoch: int, step: int
             ) -> tuple[Losses, dict[str, torch.Tensor]]:
        total, parts = self.objective(self.context(x, y, idx, epoch, step))
        return [("main", total)], parts
