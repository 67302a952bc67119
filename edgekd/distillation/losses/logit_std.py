r"""Logit standardization: z-score each sample's logits before a distillation softmax (the ``(ls)`` modifier).

.. math::

    \mathcal{Z}(z) = \frac{z - \bar z}{\epsilon + \sigma(z)},\qquad
    \bar z = \frac1K\sum_k z_k,\quad \sigma(z) = \sqrt{\tfrac{1}{K-1}\textstyle\sum_k (z_k - \bar z)^2}

applied to the student's and the teacher's logits alike, per sample, before the loss's own
temperature: KD becomes :math:`T^2\,\mathrm{KL}(\mathrm{softmax}(\mathcal Z(t)/T)\,\|\,\mathrm{softmax}(\mathcal Z(s)/T))`.
The student then has to match the teacher's logit *relations* (their order and relative gaps), not
their range: a teacher with huge, confident logits and a small student no longer fight over the
scale, and each sample effectively gets its own temperature :math:`T\sigma(z)`.

Paper: Sun, Ren, Li, Wang, Cao, "Logit Standardization in Knowledge Distillation", CVPR 2024,
https://arxiv.org/abs/2403.01427; code: https://github.com/sunshangquan/logit-standardization-KD
(``normalize`` in ``mdistiller/distillers/KD.py``). Where they differ, this follows the code: the
standard deviation is torch's default, *unbiased* one (:math:`K-1`; the paper writes the population
one), with :math:`\epsilon = 10^{-7}` added to it. The paper's CIFAR-100 recipe is a base temperature
of 2 and a KD weight of 9 (``"ce + kd:9(ls)", kd_T=2``). The code applies it to the KL terms of KD,
DKD and MLKD (not to MLKD's class/batch correlation terms); edgekd offers it on every logit loss.

It is not a loss of its own but an option of every logit loss (``kd``, ``dkd``, ``dist``, ``mlkd``,
``nkd``, ``wttm``, ``ensemble``, ``dml``): ``std=True`` (``kd_std=True``), or the registered
modifier ``(ls)`` in a method string (``"ce + kd:9(ls)"``). Those losses derive from
:class:`LogitLoss`, which owns the option and the check that a teacher's logits exist.
"""

from __future__ import annotations

import torch

from edgekd.distillation.methods import DistillLoss, StepContext, register_modifier
from edgekd.errors import ConfigError

EPS = 1e-7
LS = register_modifier("ls", "std", True, doc="logit standardization (Sun et al., CVPR 2024)")


def standardize(z: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """:math:`\\mathcal Z(z)` over the last dimension (classes): zero mean, unit (unbiased) std per sample."""
    return (z - z.mean(-1, keepdim=True)) / (eps + z.std(-1, keepdim=True))


class LogitLoss(DistillLoss):
    """Base of the losses on the teacher's logits: the ``std`` option (logit standardization)."""

    needs_teacher = True

    def __init__(self, std: bool = False) -> None:
        super().__init__()
        self.std = bool(std)

    def z(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` standardized when ``std`` is on, else as they are."""
        return standardize(logits) if self.std else logits

    def teacher(self, ctx: StepContext, method: str) -> torch.Tensor:
        """The teacher's logits of ``ctx``, detached (as they are), or a clear error when there is no teacher."""
        if ctx.teacher_logits is None:
            raise ConfigError(f"{method} needs teacher logits but no teacher was given", stage=f"distill/{method}",
                              hint="pass a teacher to distill(), or use method='ce'")
        return ctx.teacher_logits.detach()

    def logits(self, ctx: StepContext, method: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's and the (detached) teacher's logits of ``ctx``, standardized when ``std`` is on."""
        return self.z(ctx.student_logits), self.z(self.teacher(ctx, method))


def target_or_teacher_top(targets: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """The labels, with the teacher's top class standing in for unlabelled samples (``y = -1``, a transfer set)."""
    if bool((targets < 0).any()):
        return torch.where(targets >= 0, targets, teacher_logits.argmax(1))
    return targets
