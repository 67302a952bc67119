"""Decoupled knowledge distillation: KD split into a target-class and a non-target-class term."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgekd.distillation.losses.logit_std import LogitLoss, target_or_teacher_top
from edgekd.distillation.methods import StepContext, linear_ramp, register_method
from edgekd.errors import ConfigError

STAGE = "distill/dkd"


def _kl(log_p_t: torch.Tensor, log_p_s: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(p_t || p_s), both given as log-probabilities over dim 1."""
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean()


def _binary_log(z: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Log of the binary distribution (p_target, 1 - p_target) of softmax(z): (N, 2), stable."""
    lse_all = torch.logsumexp(z, dim=1)
    lse_other = torch.logsumexp(z.masked_fill(gt, float("-inf")), dim=1)
    return torch.stack([z[gt] - lse_all, lse_other - lse_all], dim=1)


def non_target(z: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Logits with the target column removed: (N, K-1)."""
    return z[~gt].view(z.shape[0], z.shape[1] - 1)


@register_method("dkd")
class DKDLoss(LogitLoss):
    r"""DKD: :math:`\alpha \cdot \mathrm{TCKD} + \beta \cdot \mathrm{NCKD}`, ramped in over ``warmup`` epochs.

    .. math::

        b = [p_{y}, 1 - p_{y}],\quad \hat p = \mathrm{softmax}(z_{\setminus y} / T)

        \mathrm{TCKD} = T^2\, \mathrm{KL}(b^{t} \,\|\, b^{s}),\qquad
        \mathrm{NCKD} = T^2\, \mathrm{KL}(\hat p^{t} \,\|\, \hat p^{s})

        L_{DKD} = \min\!\big(\tfrac{e+1}{W}, 1\big)\,(\alpha\,\mathrm{TCKD} + \beta\,\mathrm{NCKD})

    with :math:`p = \mathrm{softmax}(z/T)` over all classes, :math:`y` the label, :math:`z_{\setminus y}`
    the logits without the target class, KL averaged over the batch, :math:`e` the 0-based epoch
    and :math:`W` the warm-up length. Classic KD equals :math:`\mathrm{TCKD} + (1 - p^t_y)\,\mathrm{NCKD}`;
    DKD frees the NCKD weight from the teacher's confidence.

    Paper: Zhao, Cui, Song, Qiu, Liang, "Decoupled Knowledge Distillation", CVPR 2022,
    https://arxiv.org/abs/2203.08679; code: https://github.com/megvii-research/mdistiller. The
    paper's CIFAR-100 settings are the defaults (T=4, α=1, β=8, 20 warm-up epochs). The official
    code builds the non-target distribution by subtracting 1000 from the target logit; here the
    target column is removed exactly (the same value up to ~e^-1000). The code's epochs count from
    1, so its ramp is ``min(e/W, 1)`` with 1-based ``e``: the same as ours.

    Samples without a label (``y = -1``, a transfer set) split around the teacher's top class
    instead (an extension: the paper always has labels).

    Args:
        T: temperature > 0.
        alpha: TCKD weight >= 0.
        beta: NCKD weight >= 0.
        warmup: epochs of linear ramp (0 turns it off). Short runs want a short warm-up.
        std: logit standardization (:mod:`~edgekd.distillation.losses.logit_std`) before everything above,
            as the logit-standardization code does for DKD.

    Options: ``dkd_T=4, dkd_alpha=1, dkd_beta=8, dkd_warmup=20``, ``dkd_std=True`` (or ``"dkd(ls)"``);
    use as ``"ce + dkd"``.
    """

    def __init__(self, T: float = 4.0, alpha: float = 1.0, beta: float = 8.0, warmup: int = 20,
                 std: bool = False) -> None:
        super().__init__(std)
        if not T > 0 or alpha < 0 or beta < 0 or warmup < 0:
            raise ConfigError(f"dkd needs T > 0 and alpha, beta, warmup >= 0; got T={T}, alpha={alpha}, "
                              f"beta={beta}, warmup={warmup}", stage=STAGE,
                              hint="pass e.g. dkd_T=4, dkd_alpha=1, dkd_beta=8, dkd_warmup=20")
        self.T, self.alpha, self.beta, self.warmup = float(T), float(alpha), float(beta), int(warmup)

    def ramp(self, epoch: int) -> float:
        """The warm-up factor at 0-based ``epoch``."""
        return linear_ramp(epoch, self.warmup)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        s, t = self.logits(ctx, "dkd")
        s, t = s / self.T, t / self.T
        gt = F.one_hot(target_or_teacher_top(ctx.targets, t), s.shape[1]).bool()
        tckd = _kl(_binary_log(t, gt), _binary_log(s, gt))
        nckd = _kl(F.log_softmax(non_target(t, gt), 1), F.log_softmax(non_target(s, gt), 1))
        return self.ramp(ctx.epoch) * self.T**2 * (self.alpha * tckd + self.beta * nckd)
