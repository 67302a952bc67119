"""Overhaul of feature distillation (OFD): pre-ReLU features, a margin ReLU on the teacher, partial L2."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edgekd.distillation.adapters import adapter, require_setup, spatial_pairs, tap_pairs
from edgekd.distillation.methods import DistillLoss, StepContext, register_method
from edgekd.errors import ConfigError


def negative_mean(t: torch.Tensor) -> torch.Tensor:
    """Per channel of an (N, C, ...) tensor, the mean of its negative entries (0 where none is)."""
    x = t.detach().transpose(0, 1).reshape(t.shape[1], -1)
    count = (x < 0).sum(1)
    return torch.where(count > 0, x.clamp(max=0).sum(1) / count.clamp(min=1), torch.zeros_like(x[:, 0]))


def margin_relu(t: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """:math:`\\sigma_m(t) = \\max(t, m)` with one margin per channel (dim 1)."""
    return torch.maximum(t, margin.view(1, -1, *([1] * (t.dim() - 2))))


def partial_l2(s: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of :math:`(s - t)^2` over every element except where :math:`s \\le t \\le 0`."""
    skip = (s <= target) & (target <= 0)
    return (s - target).pow(2).masked_fill(skip, 0.0).mean()


@register_method("ofd")
class OFDLoss(DistillLoss):
    r"""Heo et al.'s feature distillation on pre-ReLU features with a margin ReLU and a partial L2.

    .. math::

        L_{OFD} = \frac{1}{|H|}\sum_{(g,h)\in H} \frac{1}{NCHW}\sum_i
            \begin{cases} 0 & s_i \le t_i \le 0 \\ (t_i - s_i)^2 & \text{otherwise} \end{cases},
        \qquad t = \max\big(v_h(x), m\big),\; s = r_h(u_g(x))

    with pre-ReLU teacher features :math:`v_h`, student pre-ReLU features :math:`u_g` through a
    trainable connector :math:`r_h` (1×1 conv + BatchNorm, as in the paper), and per-channel margin
    :math:`m_c = E[v_c \mid v_c < 0]`: a student response below a negative teacher response is
    not penalised, since the ReLU erases both. Taps default to ``stage:-1@prerelu`` (``layer3@prerelu`` of a CIFAR ResNet; see
    :mod:`edgekd.distillation.taps`): the last block's output before its ReLU.

    Paper: Heo, Kim, Yun, Park, Kwak, Choi, "A Comprehensive Overhaul of Feature Distillation",
    ICCV 2019, https://arxiv.org/abs/1904.01866. Deviations: the paper computes :math:`m_c` in closed
    form from the affine parameters of the batch norm before the ReLU (a Gaussian assumption);
    here it is measured: the mean of the teacher's negative responses on the probe batch, then a
    running average over training batches (``ofd_momentum``), which stays right after a residual
    add and for a teacher that trains jointly. The paper sums the distance and divides by the batch
    size and 1000; here it is the element-wise mean (weights then do not depend on map size:
    the paper's scale is the mean × C·H·W / 1000). The paper's distillation position before the
    last ReLU of *each* stage is ``ofd_student_taps=["layer1@prerelu", "layer2@prerelu", "layer3@prerelu"]``.

    Options: ``ofd_student_taps``, ``ofd_teacher_taps`` (default: the student's), ``ofd_momentum=0.9``.
    """

    needs_teacher = True

    def __init__(self, student_taps: Sequence[str] | str | None = None,
                 teacher_taps: Sequence[str] | str | None = None, momentum: float = 0.9) -> None:
        super().__init__()
        self.student_taps, self.teacher_taps = tap_pairs("ofd", student_taps, teacher_taps, ("stage:-1@prerelu",))
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"ofd momentum={momentum} must be in [0, 1)", stage="distill/ofd",
                              hint="e.g. ofd_momentum=0.9 (0 = each batch's own margin)")
        self.momentum = float(momentum)
        self.connectors = nn.ModuleList()

    def _pairs(self, ctx: StepContext) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return spatial_pairs(ctx, self.student_taps, self.teacher_taps, "ofd")

    def setup(self, ctx: StepContext, num_train: int) -> None:
        pairs = self._pairs(ctx)
        for s, t in pairs:
            if s.dim() != 4 or t.dim() != 4:
                raise ConfigError(f"ofd needs N×C×H×W feature maps, got student {tuple(s.shape)} and teacher "
                                  f"{tuple(t.shape)}", stage="distill/ofd", hint="tap a conv stage, e.g. 'layer3@prerelu'")
        self.connectors = nn.ModuleList(adapter(s.shape, t.shape, bn=True) for s, _ in pairs)
        for i, (_, t) in enumerate(pairs):
            self.register_buffer(f"margin{i}", negative_mean(t))

    def margins(self) -> list[torch.Tensor]:
        """The current per-channel margin of each teacher tap."""
        return [getattr(self, f"margin{i}") for i in range(len(self.teacher_taps))]

    def forward(self, ctx: StepContext) -> torch.Tensor:
        require_setup(self.connectors, len(self.student_taps), "ofd")
        losses = []
        for i, (conn, (s, t)) in enumerate(zip(self.connectors, self._pairs(ctx), strict=True)):
            m = getattr(self, f"margin{i}")
            if self.training and torch.is_grad_enabled():
                m.mul_(self.momentum).add_((1.0 - self.momentum) * negative_mean(t))
            losses.append(partial_l2(conn(s), margin_relu(t, m)))
        return torch.stack(losses).mean()
