r"""Self-distillation ("Be Your Own Teacher"): early exits learn from the network's own deepest exit.

The student is wrapped in an :class:`~edgekd.models.exits.ExitModel` (heads at about 1/3 and 1/2
depth unless ``self_exits`` names blocks). With exit logits :math:`q_i`, deepest logits
:math:`q_C`, exit features :math:`F_i` and the deepest features :math:`F_C` (the classifier's
input), the loss is

.. math::

    L = (1-\alpha) L_{CE}(q_C, y) + \sum_{i < C} \Big[(1-\alpha) L_{CE}(q_i, y)
        + \alpha\, T^2 \mathrm{KL}\big(\mathrm{softmax}(q_C/T) \,\|\, \mathrm{softmax}(q_i/T)\big)
        + \lambda\, \tfrac{1}{N}\textstyle\sum_n \lVert F_{i,n} - F_{C,n} \rVert_2^2 \Big]

with the deepest exit's outputs detached (it is the teacher; only the labels train it). This is
the paper's sum over *all* classifiers :math:`i = 1..C` of :math:`(1-\alpha) L_{CE} + \alpha\,
\mathrm{KL} + \lambda\,\lVert\cdot\rVert^2` (for :math:`i = C` the last two vanish), as in the
authors' code (``(1 - loss_coefficient) * (loss + middle1_loss + ...)``): the deepest
cross-entropy is weighted :math:`1-\alpha` like the others (edgekd weighted it 1 before
2026-12-04). Two differences from that code, neither changing the gradient direction: its KD
term is the soft cross-entropy (KL plus the teacher's entropy, a constant), and its feature term
is summed over the batch where this one is averaged (so its λ is this λ divided by the batch size).
Defaults :math:`\alpha = 0.3`, :math:`T = 3`, :math:`\lambda = 0.03`, as commonly used with the
paper's CIFAR ResNets. Paper: Zhang, Song, Gao, Chen, Bao, Ma, "Be Your Own Teacher: Improve the
Performance of Convolutional Neural Networks via Self Distillation", ICCV 2019,
https://arxiv.org/abs/1905.08094. Use: ``distill(None, student, data, method="self")``; the
result's model is the ExitModel (``edgekd.models.exits.truncate`` cuts it at an exit).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.distillation.cache import TeacherCache
from edgekd.distillation.losses.ce import labelled_ce
from edgekd.distillation.methods import DistillLoss, Objective, StepContext, register_method
from edgekd.distillation.strategies.base import Networks, Strategy, one_network, register_strategy
from edgekd.distillation.strategies.offline import OfflineStrategy
from edgekd.errors import ConfigError
from edgekd.models.exits import FINAL, ExitModel, ExitOutputs

EXITS = "exits"  # ctx.student_features[EXITS]: the ExitOutputs of the step


@register_method("self")
class SelfDistillLoss(DistillLoss):
    """BYOT (formula above). Options: ``self_alpha=0.3``, ``self_T=3.0``, ``self_feat=0.03`` (λ),
    ``self_exits=["layer1.2", "layer2.1"]`` (dotted block paths; default ~N/3 and ~N/2)."""

    needs_teacher = False
    strategy = "self"

    def __init__(self, alpha: float = 0.3, T: float = 3.0, feat: float = 0.03,
                 exits: Sequence[str] | None = None) -> None:
        super().__init__()
        if not 0 <= alpha <= 1 or not T > 0 or feat < 0:
            raise ConfigError(f"self alpha={alpha} must be in [0, 1], T={T} > 0, feat={feat} >= 0",
                              stage="distill/self", hint="pass e.g. self_alpha=0.3 self_T=3 self_feat=0.03")
        self.alpha, self.T, self.feat = float(alpha), float(T), float(feat)
        self.exits = list(exits) if exits else None

    def forward(self, ctx: StepContext) -> torch.Tensor:
        out: ExitOutputs = ctx.student_features[EXITS]
        q_c = out.logits[FINAL]
        soft_c = F.log_softmax(q_c.detach() / self.T, dim=1)
        f_c = out.features[FINAL].detach()
        total = (1 - self.alpha) * labelled_ce(q_c, ctx.targets)
        for name, q in out.logits.items():
            if name == FINAL:
                continue
            kl = F.kl_div(F.log_softmax(q / self.T, dim=1), soft_c, reduction="batchmean", log_target=True)
            hint = (out.features[name] - f_c).pow(2).sum(1).mean()
            total = total + (1 - self.alpha) * labelled_ce(q, ctx.targets) + self.alpha * self.T**2 * kl \
                + self.feat * hint
        return total


@register_strategy
class SelfStrategy(OfflineStrategy):
    """Offline training without a teacher where the student's exits are read each step."""

    kind = "self"
    method_kind = "self"

    @classmethod
    def build(cls, objective: Objective, student: Networks, teacher: nn.Module | None,
              cache: bool | TeacherCache | None) -> Strategy:
        return cls(one_network(objective, student), objective)

    def __init__(self, student: nn.Module, objective: Objective) -> None:
        if not isinstance(student, ExitModel):
            exits = next((loss.exits for loss in objective.losses.values() if getattr(loss, "exits", None)), None)
            student = ExitModel(student, exits)
        super().__init__(student, objective)

    def context(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, epoch: int, step: int) -> StepContext:
        out = self.student.forward_exits(x)  # type: ignore[operator]
        return StepContext(student_logits=out.logits[FINAL], teacher_logits=None, targets=y, indices=idx,
                           student_features={EXITS: out}, epoch=epoch, step=step, inputs=x)
