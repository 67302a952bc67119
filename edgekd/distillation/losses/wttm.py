"""WTTM: the student at temperature 1 matches a power-transformed teacher, each sample weighted by its smoothness."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgekd.distillation.losses.logit_std import LogitLoss
from edgekd.distillation.methods import StepContext, register_method
from edgekd.errors import ConfigError


@register_method("wttm")
class WTTMLoss(LogitLoss):
    r"""Weighted transformed teacher matching.

    .. math::

        p^{t} = \mathrm{softmax}(t),\qquad U_\gamma(p^{t}) = \sum_k (p^{t}_k)^{\gamma},\qquad
        \hat p^{t} = \frac{(p^{t})^{\gamma}}{U_\gamma(p^{t})}

        L_{WTTM} = \frac1N \sum_i U_\gamma(p^{t}_i)\; \mathrm{KL}\big(\hat p^{t}_i \,\|\, \mathrm{softmax}(s_i)\big)

    The power transform :math:`\hat p^t` is the teacher at temperature :math:`1/\gamma`; unlike KD
    the student stays at temperature 1 (no :math:`T^2`), which the paper shows adds a Rényi-entropy
    regulariser on the student (TTM). The sample-adaptive weight :math:`U_\gamma` (between 1 and
    :math:`K^{1-\gamma}` for :math:`\gamma < 1`) is larger where the teacher is less confident, so
    smoother, more informative targets count more (WTTM). No labels are used.

    Paper: Zheng, Yang, "Knowledge Distillation Based on Transformed Teacher Matching", ICLR 2024,
    https://arxiv.org/abs/2402.11148; code: https://github.com/zkxufo/TTM (``WTTM`` in
    ``distiller_zoo/wttm.py``), which this follows: batch mean of :math:`U_\gamma \cdot \mathrm{KL}`,
    computed here in log space (:math:`\gamma \log p^t - \log U_\gamma`) so a confident teacher's tiny
    probabilities do not underflow. The loss weight β is the term's weight (the code's ``-b``; its
    CIFAR-100 runs use γ in 0.1–0.5 and β of the order of 1–50): ``"ce + wttm:4", wttm_gamma=0.2``.

    Args:
        gamma: power-transform exponent in (0, 1] (``--ttm_l`` in the code); 1 is KD at T = 1 weighted by 1.
        std: logit standardization of both logits first (:mod:`~edgekd.distillation.losses.logit_std`).

    Options: ``wttm_gamma=0.2``, ``wttm_std=True``; use as ``"ce + wttm:4"``.
    """

    def __init__(self, gamma: float = 0.2, std: bool = False) -> None:
        super().__init__(std)
        if not 0 < gamma <= 1:
            raise ConfigError(f"wttm gamma={gamma} must be in (0, 1]", stage="distill/wttm",
                              hint="pass e.g. wttm_gamma=0.2 (the teacher at temperature 1/gamma)")
        self.gamma = float(gamma)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        s, t = self.logits(ctx, "wttm")
        powered = self.gamma * F.log_softmax(t, 1)  # log (p^t)^gamma
        log_u = torch.logsumexp(powered, 1, keepdim=True)  # log U_gamma
        log_q = powered - log_u
        kl = (log_q.exp() * (log_q - F.log_softmax(s, 1))).sum(1)
        return (log_u.squeeze(1).exp() * kl).mean()
