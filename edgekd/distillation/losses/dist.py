"""DIST: match the teacher's class-probability *correlations*, per sample and per class, not the values."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgekd.distillation.losses.logit_std import LogitLoss
from edgekd.distillation.methods import StepContext, register_method
from edgekd.errors import ConfigError

EPS = 1e-8


def pearson_distance(a: torch.Tensor, b: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Mean over rows of :math:`1 - \\rho(a_i, b_i)`, the Pearson correlation of each row pair
    (the official code's cosine of the centred rows, with ``eps`` added to the product of norms)."""
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    rho = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)
    return 1.0 - rho.mean()


@register_method("dist")
class DISTLoss(LogitLoss):
    r"""DIST: inter-class and intra-class Pearson relations of softened probabilities.

    .. math::

        Y^{s} = \mathrm{softmax}(s / \tau),\quad Y^{t} = \mathrm{softmax}(t / \tau)\quad (B \times C)

        L_{inter} = \frac1B \sum_{i=1}^{B} \big(1 - \rho(Y^{s}_{i,:}, Y^{t}_{i,:})\big),\qquad
        L_{intra} = \frac1C \sum_{j=1}^{C} \big(1 - \rho(Y^{s}_{:,j}, Y^{t}_{:,j})\big)

        L_{DIST} = \tau^2 \big(\beta\, L_{inter} + \gamma\, L_{intra}\big)

    with :math:`\rho` the Pearson correlation. A student only has to rank and spread its classes
    (and its batch) the way the teacher does — shift and scale of its probabilities are free —
    which the paper argues suits a much stronger teacher better than KL's exact match. It needs no
    labels (unlabelled transfer-set images count fully).

    Paper: Huang, You, Wang, Qian, Xu, "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022,
    https://arxiv.org/abs/2205.10536; code: https://github.com/hunto/DIST_KD (``DIST`` in
    ``image_classification_sota/lib/models/losses/dist_kd.py``). As the code: :math:`\rho` is the cosine
    of the centred vectors with :math:`\epsilon = 10^{-8}` added to the product of norms, and the loss is
    multiplied by :math:`\tau^2`. Defaults are the code's (β = γ = τ = 1, its ImageNet setting); ports of
    its CIFAR-100 setting use β = γ = 2, τ = 4 (``"ce + dist:2", dist_T=4``).

    Args:
        T: temperature :math:`\tau > 0`.
        beta: inter-class (per-sample) weight >= 0.
        gamma: intra-class (per-class, across the batch) weight >= 0.
        std: logit standardization first (:mod:`~edgekd.distillation.losses.logit_std`).

    Options: ``dist_T=4, dist_beta=1, dist_gamma=1``, ``dist_std=True``; use as ``"ce + dist:2"``.
    """

    def __init__(self, T: float = 1.0, beta: float = 1.0, gamma: float = 1.0, std: bool = False) -> None:
        super().__init__(std)
        if not T > 0 or beta < 0 or gamma < 0:
            raise ConfigError(f"dist needs T > 0 and beta, gamma >= 0; got T={T}, beta={beta}, gamma={gamma}",
                              stage="distill/dist", hint="pass e.g. dist_T=4, dist_beta=1, dist_gamma=1")
        self.T, self.beta, self.gamma = float(T), float(beta), float(gamma)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        s, t = self.logits(ctx, "dist")
        y_s, y_t = F.softmax(s / self.T, dim=1), F.softmax(t / self.T, dim=1)
        inter = pearson_distance(y_s, y_t)
        intra = pearson_distance(y_s.T, y_t.T)
        return self.T**2 * (self.beta * inter + self.gamma * intra)
