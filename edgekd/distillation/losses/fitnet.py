"""FitNets: the student's intermediate features, through a regressor, regress the teacher's (hints)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.distillation.adapters import adapter, require_setup, spatial_pairs, tap_pairs
from edgekd.distillation.methods import DistillLoss, StepContext, register_method


@register_method("fitnet")
class FitNetLoss(DistillLoss):
    r"""FitNet hint loss: mean squared error between regressed student and teacher features.

    .. math::

        L_{HT} = \frac{1}{|H|} \sum_{(g, h) \in H} \frac{1}{N C H W}
                 \big\| r_h(u_g(x)) - v_h(x) \big\|_2^2

    for each pair of student tap :math:`u_g` and teacher tap :math:`v_h` (default ``stage:-2`` of
    both, from its family contract; ``layer2`` of a CIFAR ResNet), with a trainable regressor :math:`r_h` (a 1×1 conv, optionally with BatchNorm, from the
    student's width to the teacher's; built at setup). Maps of different resolution are average-
    pooled to the smaller grid first.

    Paper: Romero, Ballas, Kahou, Chassang, Gatta, Bengio, "FitNets: Hints for Thin Deep Nets",
    ICLR 2015, https://arxiv.org/abs/1412.6550. The paper's ½‖·‖² (summed) and its separate
    hint-only pre-training stage differ from the common single-stage recipe of RepDistiller
    (https://github.com/HobbitLong/RepDistiller, ``HintLoss``: element-wise mean, trained jointly;
    its regressor is conv+BN+ReLU). This is the single-stage recipe; ``bn=True`` adds the BN.

    Args:
        student_taps: module paths in the student (default ``["stage:-2"]``: the second deepest stage).
        teacher_taps: module paths in the teacher, paired one to one (default: the student's).
        bn: add BatchNorm after each 1×1 regressor conv.

    Options: ``fitnet_student_taps=["layer2"]``, ``fitnet_teacher_taps=["layer2"]``, ``fitnet_bn=True``.
    """

    needs_teacher = True

    def __init__(self, student_taps: Sequence[str] | str | None = None,
                 teacher_taps: Sequence[str] | str | None = None, bn: bool = False) -> None:
        super().__init__()
        self.student_taps, self.teacher_taps = tap_pairs("fitnet", student_taps, teacher_taps, ("stage:-2",))
        self.bn = bool(bn)
        self.regressors = nn.ModuleList()

    def _pairs(self, ctx: StepContext) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return spatial_pairs(ctx, self.student_taps, self.teacher_taps, "fitnet")

    def setup(self, ctx: StepContext, num_train: int) -> None:
        self.regressors = nn.ModuleList(adapter(s.shape, t.shape, bn=self.bn) for s, t in self._pairs(ctx))

    def forward(self, ctx: StepContext) -> torch.Tensor:
        require_setup(self.regressors, len(self.student_taps), "fitnet")
        losses = [F.mse_loss(reg(s), t) for reg, (s, t) in zip(self.regressors, self._pairs(ctx), strict=True)]
        return torch.stack(losses).mean()
