r"""Residual distillation: a shortcut-free plain CNN trains jointly with its ResNet twin.

The plain student :math:`S` and the ResNet teacher :math:`T` share a stage layout (stem,
``layer1``..``layer3``, ``pool``/``fc``). Besides the student's own logits :math:`s` and the
teacher's :math:`t`, each routed student stage output :math:`S_{\le r}(x)` is run through the
teacher's *later* stages, giving logits :math:`z_r = T_{>r}(S_{\le r}(x))`. Their losses reach
the student's early layers through the teacher's shortcuts, which is what lets a deep plain net
train:

.. math::

    L_S = L_{CE}(s, y) + \alpha\,T^2\mathrm{KL}(p_t^T \| p_s^T)
          + \frac{\beta}{|R|}\sum_{r\in R}\big[L_{CE}(z_r, y) + T^2\mathrm{KL}(p_t^T \| p_{z_r}^T)\big]
          + \gamma\,L_{feat}

(teacher probabilities detached). The feature term :math:`L_{feat}` is by default
:math:`\lVert f_S - \mathrm{sg}(f_T) \rVert_2^2 / d` on the final pooled features :math:`f_S, f_T`;
``resdistill_feat_kind="margin"`` uses the authors' code's term instead, Heo et al.'s margin loss
(:mod:`edgekd.distillation.losses.ofd`) between the last stage's pre-ReLU outputs (student through a
1×1 conv + BN connector). The default departs from the paper on evidence: on Fashion-MNIST
(``benchmarks/arch_kd.py --ablation``, ResNet-32 → plain-32, one seed) the margin term cost
1.5 points against the MSE, with and without the fade. Two phases: for the first
``freeze_epochs`` the teacher is frozen (eval mode, no updates; gradients still pass through it);
afterwards it trains jointly, in its own optimiser group, on its own :math:`L_{CE}(t, y)` only.
The routed passes :math:`T_{>r}` always run the teacher in eval mode with its parameters out of
the graph: gradients reach the student through the teacher's later stages, but the student's
losses never update the teacher and routed student features never enter its batch-norm
statistics (as in the authors' code, where the teacher is "only updated by its own loss").
Only the plain student is evaluated and exported.

Paper: Li, Zhang, Wang, Liu, Tan, Lin, Zhang, Feng, Zhang, "Residual Distillation: Towards
Portable Deep Neural Networks without Shortcuts", NeurIPS 2020, https://arxiv.org/abs/2003.06074.
Code: https://github.com/leoozy/JointRD_Neurips2020 (``process/multikd_train.py``, stage
``JOINT``). The paper fades the routed branches out over training (its code weights the routed
terms by a cosine from 1 to ``dc`` over 60 epochs): ``resdistill_fade_epochs=E`` with
``resdistill_fade_to=dc`` does that, β·w(e) with
:math:`w(e) = dc + (1 - dc)\,\tfrac12\big(1 + \cos(\pi \min(e, E)/E)\big)` at epoch ``e``
(counted from 0); the default ``E = 0`` keeps β constant. ``resdistill_route=0`` turns routing
off, which makes this plain KD + feature loss, for ablation. With ``feat_kind="margin"``, the margin
is measured on the teacher's features, not derived from its batch norm (see ``ofd``).

Use: ``distill(resnet20_trained, models.create("resnet20_plain"), data, method="resdistill",
resdistill_freeze_epochs=1)``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from edgekd.data.core import DataSplits
from edgekd.distillation.cache import TeacherCache
from edgekd.distillation.losses.ofd import OFDLoss
from edgekd.distillation.methods import DistillLoss, Objective, StepContext, register_method
from edgekd.distillation.strategies.base import (
    Losses,
    Networks,
    ParamGroups,
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

STAGE = "distill/resdistill"
ROUTED = "routed"  # ctx.student_features[ROUTED]: list of routed logits z_r
FEATURES = "pool"  # tap path of the final pooled features on both networks (feat_kind="mse")
FEAT_KINDS = ("margin", "mse")


def kd_term(student: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    """:math:`T^2 \\mathrm{KL}(\\mathrm{softmax}(t/T) \\| \\mathrm{softmax}(s/T))`, teacher detached."""
    return F.kl_div(F.log_softmax(student / T, 1), F.log_softmax(teacher.detach() / T, 1),
                    reduction="batchmean", log_target=True) * T**2


@register_method("resdistill")
class ResDistillLoss(DistillLoss):
    """Residual distillation (formula above). Options: ``resdistill_T=4.0``, ``resdistill_kd=1.0``
    (α), ``resdistill_route=1.0`` (β), ``resdistill_feat=1.0`` (γ), ``resdistill_freeze_epochs=1``,
    ``resdistill_routes=("layer1", "layer2")``, ``resdistill_stages=("layer1", "layer2", "layer3")``,
    ``resdistill_teacher_lr=1.0`` (teacher lr multiplier in the joint phase), ``resdistill_fade_epochs=0``
    and ``resdistill_fade_to=0.0`` (cosine fade of β, module docstring), ``resdistill_feat_kind="mse"``
    (pooled features) or ``"margin"`` (pre-ReLU, the authors' code)."""

    needs_teacher = True
    strategy = "residual"

    def __init__(self, T: float = 4.0, kd: float = 1.0, route: float = 1.0, feat: float = 1.0,
                 freeze_epochs: int = 1, routes: Sequence[str] = ("layer1", "layer2"),
                 stages: Sequence[str] = ("layer1", "layer2", "layer3"), teacher_lr: float = 1.0,
                 fade_epochs: float = 0.0, fade_to: float = 0.0, feat_kind: str = "mse") -> None:
        super().__init__()
        if feat_kind not in FEAT_KINDS:
            raise ConfigError(f"resdistill feat_kind={feat_kind!r} is not one of {list(FEAT_KINDS)}", stage=STAGE,
                              hint="resdistill_feat_kind='margin' (pre-ReLU, the paper's code) or 'mse' (pooled features)")
        if not T > 0 or min(kd, route, feat, teacher_lr, fade_epochs) < 0 or freeze_epochs < 0:
            raise ConfigError(f"resdistill T={T} must be > 0 and kd, route, feat, teacher_lr, freeze_epochs, "
                              "fade_epochs >= 0", stage=STAGE, hint="e.g. resdistill_T=4.0 resdistill_freeze_epochs=1")
        if not 0.0 <= fade_to <= 1.0:
            raise ConfigError(f"resdistill fade_to={fade_to} must be in [0, 1] (the routed weight's final share)",
                              stage=STAGE, hint="e.g. resdistill_fade_to=0.0 to fade routing out completely")
        self.fade_epochs, self.fade_to = float(fade_epochs), float(fade_to)
        bad = [r for r in routes if r not in stages[:-1]]
        if bad:
            raise ConfigError(f"resdistill routes {bad} are not stages before the last of {list(stages)}",
                              stage=STAGE, hint=f"route a subset of {list(stages[:-1])}")
        self.T, self.kd, self.route, self.feat = float(T), float(kd), float(route), float(feat)
        self.freeze_epochs, self.teacher_lr = int(freeze_epochs), float(teacher_lr)
        self.routes, self.stages = tuple(routes), tuple(stages)
        self.feat_kind = feat_kind
        self.feat_tap = f"{self.stages[-1]}@prerelu" if feat_kind == "margin" else FEATURES
        self.margin = OFDLoss(self.feat_tap) if feat_kind == "margin" else None
        self.student_taps = (*self.routes, self.feat_tap)
        self.teacher_taps = (self.feat_tap,)

    def setup(self, ctx: StepContext, num_train: int) -> None:
        if self.margin is not None:
            self.margin.setup(ctx, num_train)

    def route_weight(self, epoch: int) -> float:
        """β at ``epoch``: constant, or cosine-faded from β to β·fade_to over ``fade_epochs``."""
        if self.fade_epochs <= 0:
            return self.route
        c = 0.5 * (1.0 + math.cos(math.pi * min(epoch, self.fade_epochs) / self.fade_epochs))
        return self.route * (self.fade_to + (1.0 - self.fade_to) * c)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        s, t, y = ctx.student_logits, ctx.teacher_logits, ctx.targets
        if t is None:
            raise ConfigError("resdistill needs teacher logits", stage=STAGE, hint="pass the ResNet teacher")
        loss = F.cross_entropy(s, y) + self.kd * kd_term(s, t, self.T)
        routed = ctx.student_features.get(ROUTED, [])
        beta = self.route_weight(ctx.epoch)
        if routed and beta > 0:
            loss = loss + beta * sum((F.cross_entropy(z, y) + kd_term(z, t, self.T) for z in routed),
                                     s.new_zeros(())) / len(routed)
        if self.feat > 0 and self.margin is not None:
            loss = loss + self.feat * self.margin(ctx)
        elif self.feat > 0:
            f_s = torch.flatten(ctx.student_features[FEATURES], 1)
            f_t = torch.flatten(ctx.teacher_features[FEATURES], 1).detach()
            loss = loss + self.feat * F.mse_loss(f_s, f_t)
        return loss


def run_from(teacher: nn.Module, h: torch.Tensor, stages: Sequence[str]) -> torch.Tensor:
    """The teacher's ``stages`` then ``pool``, flatten and ``fc`` applied to feature map ``h``."""
    for name in stages:
        h = getattr(teacher, name)(h)
    return teacher.fc(torch.flatten(teacher.pool(h), 1))


@contextmanager
def routing(teacher: nn.Module) -> Iterator[None]:
    """The teacher as a fixed function for routed passes: eval mode (running batch-norm statistics,
    left untouched) and parameters out of the autograd graph (inputs still get gradients).
    Restores mode and ``requires_grad`` on exit."""
    state = freeze(teacher, str(next(teacher.parameters()).device))
    try:
        yield
    finally:
        restore(teacher, state)


@register_strategy
class ResidualStrategy(Strategy):
    """Plain student + ResNet teacher trained together (module docstring). The teacher is a copy:
    ``strategy.teacher`` holds the jointly trained one, the caller's stays as it was."""

    kind = "residual"

    @classmethod
    def build(cls, objective: Objective, student: Networks, teacher: nn.Module | None,
              cache: bool | TeacherCache | None) -> Strategy:
        return cls(one_network(objective, student), teacher, objective)

    def __init__(self, student: nn.Module, teacher: nn.Module | None, objective: Objective) -> None:
        super().__init__(objective)
        only_kind(objective, self.kind)
        if teacher is None:
            raise ConfigError("resdistill needs the ResNet teacher the plain student is the twin of",
                              stage=STAGE, hint="distill(models.create('resnet20'), models.create('resnet20_plain'), ...)")
        (self.loss,) = objective.losses.values()
        for who, net in (("student", student), ("teacher", teacher)):
            missing = [m for m in (*self.loss.stages, "pool", "fc") if not hasattr(net, m)]
            if missing:
                raise ConfigError(f"resdistill {who} {type(net).__name__} has no stage {', '.join(missing)}",
                                  stage=STAGE, hint="use a ResNet and its *_plain twin, or pass resdistill_stages=")
        self.student, self.teacher = student, copy.deepcopy(teacher)
        self.s_taps: Taps | None = None
        self.t_taps: Taps | None = None

    def modules(self) -> dict[str, nn.Module]:
        return {"student": self.student, "teacher": self.teacher, "objective": self.objective}

    def eval_models(self) -> dict[str, nn.Module]:
        return {"student": self.student}

    def enter(self, stack: ExitStack, device: str, train: Dataset) -> None:
        self.s_taps = stack.enter_context(Taps(self.student, self.objective.student_taps))
        self.t_taps = stack.enter_context(Taps(self.teacher, self.objective.teacher_taps))
        stack.callback(restore, self.teacher, (self.teacher.training, [p.requires_grad for p in self.teacher.parameters()]))

    def frozen(self, epoch: int) -> bool:
        return epoch < self.loss.freeze_epochs

    def context(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, epoch: int, step: int) -> StepContext:
        """Student, teacher, and the teacher's later stages on each routed student stage."""
        s_taps, t_taps = self.s_taps, self.t_taps
        if s_taps is None or t_taps is None:
            raise ConfigError("ResidualStrategy.context ran outside the trainer", stage=STAGE,
                              hint="run it through Trainer.fit(), which calls enter() first")
        s = self.student(x)
        feats = dict(s_taps.outputs)
        t = self.teacher(x)
        t_feats = dict(t_taps.outputs)
        stages = list(self.loss.stages)
        with routing(self.teacher):
            routed = [run_from(self.teacher, feats[r], stages[stages.index(r) + 1:]) for r in self.loss.routes]
        return StepContext(student_logits=s, teacher_logits=t, targets=y, indices=idx,
                           student_features={**feats, ROUTED: routed}, teacher_features=t_feats,
                           epoch=epoch, step=step, inputs=x)

    def setup(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], data: DataSplits) -> None:
        self.student.eval(), self.teacher.eval()
        with torch.no_grad():
            try:
                ctx = self.context(*batch, epoch=0, step=0)
            except RuntimeError as e:
                raise ConfigError(f"routing student stages {self.loss.routes} into the teacher failed: "
                                  f"{str(e).splitlines()[0]}", stage=STAGE,
                                  hint="the student must be the teacher's twin (same stage widths)") from None
        self.student.train(), self.teacher.train()
        check_classes("student", ctx.student_logits, data)
        check_classes("teacher", ctx.teacher_logits, data)
        f_s, f_t = ctx.student_features[self.loss.feat_tap], ctx.teacher_features[self.loss.feat_tap]
        if f_s.shape != f_t.shape:
            raise ConfigError(f"resdistill feature shapes differ: student {tuple(f_s.shape)}, teacher {tuple(f_t.shape)}",
                              stage=STAGE, hint="use twins of one width, or resdistill_feat=0")
        self.objective.setup(ctx, len(data.train))  # type: ignore[arg-type]

    def param_groups(self) -> ParamGroups:
        return {"student": (list(self.student.parameters()) + list(self.objective.parameters()), 1.0),
                "teacher": (list(self.teacher.parameters()), self.loss.teacher_lr)}

    def step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, epoch: int, step: int
             ) -> tuple[Losses, dict[str, torch.Tensor]]:
        frozen = self.frozen(epoch)
        if frozen:
            freeze(self.teacher, str(x.device))
        else:
            for p in self.teacher.parameters():
                p.requires_grad_(True)
        ctx = self.context(x, y, idx, epoch, step)
        total, parts = self.objective(ctx)
        if frozen:
            return [("student", total)], parts
        t_ce = F.cross_entropy(ctx.teacher_logits, y)  # type: ignore[arg-type]
        parts["teacher_ce"] = t_ce.detach()
        return [(("student", "teacher"), total + t_ce)], parts
