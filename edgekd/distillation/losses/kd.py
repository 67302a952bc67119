"""Vanilla knowledge distillation: match the teacher's temperature-softened class probabilities."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgekd.distillation.losses.logit_std import LogitLoss
from edgekd.distillation.methods import StepContext, register_method
from edgekd.errors import ConfigError


@register_method("kd")
class KDLoss(LogitLoss):
    r"""Hinton KD: KL divergence between softened teacher and student distributions.

    .. math::

        L_{KD} = T^2 \cdot \frac{1}{N} \sum_{i=1}^{N}
                 \mathrm{KL}\big(\mathrm{softmax}(t_i/T) \,\|\, \mathrm{softmax}(s_i/T)\big)

    with student logits :math:`s`, teacher logits :math:`t` and temperature :math:`T` ("batchmean":
    summed over classes, averaged over the batch). The :math:`T^2` factor keeps the gradient scale
    comparable to cross-entropy as :math:`T` changes.

    Paper: Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", NIPS 2014 Deep
    Learning Workshop, https://arxiv.org/abs/1503.02531.

    Args:
        T: temperature > 0 (default 4, the usual value on CIFAR benchmarks; 2 with ``std``, the logit-
            standardization paper's base temperature for z-scored logits).
        std: logit standardization (:mod:`~edgekd.distillation.losses.logit_std`): z-score both logits first.

    Options: ``kd_T=4.0``, ``kd_std=True`` (or ``"kd(ls)"``); compose with labels as ``"ce:0.1 + kd:0.9"``.
    """

    def __init__(self, T: float | None = None, std: bool = False) -> None:
        super().__init__(std)
        T = (2.0 if std else 4.0) if T is None else T
        if not T > 0:
            raise ConfigError(f"kd temperature T={T} must be > 0", stage="distill/kd", hint="pass kd_T=4.0")
        self.T = float(T)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        s, t = self.logits(ctx, "kd")
        return kd_kl(s, t, self.T)


def kd_kl(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """:math:`T^2` · batch mean of KL(softmax(t/T) ‖ softmax(s/T)) (Hinton's term; MLKD sums it over temperatures)."""
    log_p_s = F.log_softmax(s / T, dim=1)
    log_p_t = F.log_softmax(t / T, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * T**2
