"""NKD: the target class matched as in CE, the non-target classes as a *normalised* distribution."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgekd.distillation.losses.dkd import non_target
from edgekd.distillation.losses.logit_std import LogitLoss, target_or_teacher_top
from edgekd.distillation.methods import StepContext, register_method
from edgekd.errors import ConfigError


@register_method("nkd")
class NKDLoss(LogitLoss):
    r"""Normalized KD: a target term plus a temperature-softened KL-like term over the non-target classes.

    .. math::

        L_{NKD} = -\frac1N \sum_i \mathcal T_{i,y_i} \log \mathcal S_{i,y_i}
                  \;-\; \gamma\,\lambda^2\, \frac1N \sum_i \sum_{k \ne y_i}
                  \mathcal N(\mathcal T^{\lambda}_{i})_k \,\log \mathcal N(\mathcal S^{\lambda}_{i})_k

    with :math:`\mathcal T = \mathrm{softmax}(t)`, :math:`\mathcal S = \mathrm{softmax}(s)` at temperature 1
    for the target term, and :math:`\mathcal N(\cdot^{\lambda})` the softmax at temperature :math:`\lambda`
    over the non-target logits only (the non-target probabilities renormalised to sum to 1, so the
    teacher's confidence in the target no longer shrinks them, as it does inside KD). The first term
    is the label's cross-entropy weighted by the teacher's target probability; compose with the
    label term itself: ``"ce + nkd"``.

    Paper: Yang, Zeng, Li, Zhang, Yuan, Li, "From Knowledge Distillation to Self-Knowledge
    Distillation: A Unified Approach with Normalized Loss and Customized Soft Labels", ICCV 2023,
    https://arxiv.org/abs/2303.13005; code: https://github.com/yzd-v/cls_KD (``NKDLoss`` in
    ``mmcls/models/dis_losses/nkd.py``), which this follows term by term (the non-target part as the
    negative cross-entropy :math:`-\sum \mathcal N(\mathcal T)\log\mathcal N(\mathcal S)`, i.e. KL plus
    the teacher's entropy, which has no gradient). Defaults are the code's ImageNet ones (λ = 1, γ = 1.5).

    Samples without a label (``y = -1``, a transfer set) use the teacher's top class as their target
    (an extension, as ``dkd`` does; the paper always has labels).

    Args:
        T: the non-target temperature :math:`\lambda > 0`.
        gamma: non-target weight :math:`\gamma \ge 0`.
        std: logit standardization of both logits first (:mod:`~edgekd.distillation.losses.logit_std`).

    Options: ``nkd_T=1, nkd_gamma=1.5``, ``nkd_std=True``; use as ``"ce + nkd"``.
    """

    def __init__(self, T: float = 1.0, gamma: float = 1.5, std: bool = False) -> None:
        super().__init__(std)
        if not T > 0 or gamma < 0:
            raise ConfigError(f"nkd needs T > 0 and gamma >= 0; got T={T}, gamma={gamma}", stage="distill/nkd",
                              hint="pass e.g. nkd_T=1, nkd_gamma=1.5")
        self.T, self.gamma = float(T), float(gamma)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        s, t = self.logits(ctx, "nkd")
        y = target_or_teacher_top(ctx.targets, t)
        gt = F.one_hot(y, s.shape[1]).bool()
        target = -(F.softmax(t, 1)[gt] * F.log_softmax(s, 1)[gt]).mean()
        p_t = F.softmax(non_target(t, gt) / self.T, 1)
        log_p_s = F.log_softmax(non_target(s, gt) / self.T, 1)
        return target - self.gamma * self.T**2 * (p_t * log_p_s).sum(1).mean()
