"""Attention transfer: match the spatial attention maps (channel-pooled activations) of both nets."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from edgekd.distillation.adapters import STAGES, flat, match_spatial, tap_pairs, tapped
from edgekd.distillation.methods import DistillLoss, StepContext, linear_ramp, register_method
from edgekd.errors import ConfigError

STAGE = "distill/at"
MODES = ("code", "paper")
POOLS = ("features", "attention")


@register_method("at")
class ATLoss(DistillLoss):
    r"""Activation-based attention transfer, summed over tapped stages.

    .. math::

        Q(A) = \frac{\mathrm{vec}\big(\frac1C\sum_{c} |A_c|^{p}\big)}
                    {\big\|\mathrm{vec}\big(\frac1C\sum_{c} |A_c|^{p}\big)\big\|_2}

        \text{code: } L_{AT} = \sum_j \frac{1}{N\,H_jW_j} \sum_{i} \big\|Q(S_{ij}) - Q(T_{ij})\big\|_2^2
        \qquad
        \text{paper: } L_{AT} = \sum_j \frac{1}{N} \sum_{i} \big\|Q(S_{ij}) - Q(T_{ij})\big\|_2

    over stages :math:`j` (default the three deepest of each net's contract, ``stage:-3..-1``: ``layer1..3`` of a
    CIFAR ResNet) and samples :math:`i`.
    Attention maps need no width adapter (channels are averaged). Maps of different resolution
    meet on the smaller grid: by default (``pool="features"``) the larger *feature map* is
    average-pooled first and its attention computed after, as RepDistiller's ``Attention.at_loss``
    does (``adaptive_avg_pool2d(f, (H, H))`` then ``f.pow(p).mean(1)``), so the numbers match the
    reference implementation whose weights (β = 1000) are quoted. ``pool="attention"`` pools the
    attention map instead (the mean of :math:`|A|^p` over each cell, not :math:`|\cdot|^p` of the
    mean): it keeps every activation's energy, including fine detail that cancels in a pooled
    feature map, and was edgekd's behaviour before; the two agree when resolutions are equal.

    Paper: Zagoruyko, Komodakis, "Paying More Attention to Attention: Improving the Performance of
    Convolutional Neural Networks via Attention Transfer", ICLR 2017,
    https://arxiv.org/abs/1612.03928; code: https://github.com/szagoruyko/attention-transfer and
    RepDistiller's ``Attention``. The paper writes the un-squared p-norm of the difference; both
    codes use the mean of its square (``mode="code"``, the default) with weight β = 1000, so
    compose it as ``"ce + at:1000"``. ``mode="paper"`` takes the per-sample L2 norm instead.

    Args:
        student_taps: module paths in the student (default ``["stage:-3", "stage:-2", "stage:-1"]``).
        teacher_taps: paired module paths in the teacher (default: the student's).
        p: exponent of the activations (2 in the paper).
        mode: ``"code"`` or ``"paper"`` (see above).
        pool: ``"features"`` (default, RepDistiller) or ``"attention"``: what is pooled when the
            two maps' resolutions differ (see above).
        warmup: epochs of linear ramp of the term (an extension, 0 = off as in the paper; see
            :func:`~edgekd.distillation.methods.linear_ramp`): a strong β pulls a fresh student's maps
            toward the teacher's before its labels have shaped them.

    Options: ``at_student_taps=[...]``, ``at_p=2``, ``at_mode="paper"``, ``at_pool="attention"``, ``at_warmup=1``.
    """

    needs_teacher = True

    def __init__(self, student_taps: Sequence[str] | str | None = None,
                 teacher_taps: Sequence[str] | str | None = None, p: float = 2.0, mode: str = "code",
                 pool: str = "features", warmup: int = 0) -> None:
        super().__init__()
        if mode not in MODES or pool not in POOLS or not p > 0 or warmup < 0:
            raise ConfigError(f"at mode={mode!r}, pool={pool!r}, p={p}, warmup={warmup}: mode must be one of "
                              f"{', '.join(MODES)}, pool one of {', '.join(POOLS)}, p > 0 and warmup >= 0", stage=STAGE,
                              hint="pass at_mode='code' (or 'paper'), at_pool='features' (or 'attention'), at_p=2 "
                                   "and at_warmup=0 (epochs)")
        self.student_taps, self.teacher_taps = tap_pairs("at", student_taps, teacher_taps, STAGES)
        self.p, self.mode, self.pool, self.warmup = float(p), mode, pool, int(warmup)

    def attention(self, feat: torch.Tensor) -> torch.Tensor:
        """Channel-mean of ``|A|^p``: (N, C, H, W) -> (N, 1, H, W), not yet normalised."""
        if feat.dim() != 4:
            raise ConfigError(f"at needs N×C×H×W feature maps, got shape {tuple(feat.shape)}", stage=STAGE,
                              hint="tap convolutional stages, e.g. at_student_taps=['layer1','layer2','layer3']")
        return feat.abs().pow(self.p).mean(1, keepdim=True)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        total = ctx.student_logits.new_zeros(())
        for s_path, t_path in zip(self.student_taps, self.teacher_taps, strict=True):
            f_s, f_t = tapped(ctx, "student", s_path, "at"), tapped(ctx, "teacher", t_path, "at")
            if self.pool == "features":
                f_s, f_t = match_spatial(f_s, f_t)
                a_s, a_t = self.attention(f_s), self.attention(f_t)
            else:
                a_s, a_t = match_spatial(self.attention(f_s), self.attention(f_t))
            diff = F.normalize(flat(a_s), dim=1) - F.normalize(flat(a_t), dim=1)
            total = total + (diff.pow(2).mean() if self.mode == "code" else diff.norm(dim=1).mean())
        return linear_ramp(ctx.epoch, self.warmup) * total
