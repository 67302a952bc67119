"""Relational knowledge distillation: match pairwise distances and triplet angles of embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from edgekd.distillation.adapters import flat, tap_pairs, tapped
from edgekd.distillation.methods import DistillLoss, StepContext, register_method
from edgekd.errors import ConfigError

STAGE = "distill/rkd"


def distances(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Pairwise Euclidean distances of the rows of ``e`` (N, D) -> (N, N), zero diagonal, safe grads."""
    sq = e.pow(2).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * e @ e.t()).clamp(min=eps).sqrt()
    return d * (1 - torch.eye(len(e), device=e.device, dtype=e.dtype))


def angles(e: torch.Tensor) -> torch.Tensor:
    """Cosines of the angle at ``e_j`` in every triplet ``(e_i, e_j, e_k)``: (N, N, N), flattened."""
    diff = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)
    return torch.bmm(diff, diff.transpose(1, 2)).reshape(-1)


def _normalised_distances(e: torch.Tensor) -> torch.Tensor:
    d = distances(e)
    return d / d[d > 0].mean().clamp(min=1e-12)


@register_method("rkd")
class RKDLoss(DistillLoss):
    r"""RKD-D and RKD-A on an embedding (default: the ``embedding`` tap, the pooled feature the classifier reads), Huber-matched.

    .. math::

        \psi_D(t_i, t_j) = \frac{\|t_i - t_j\|_2}{\mu},\quad
        \mu = \mathrm{mean}_{i \ne j}\|t_i - t_j\|_2,\qquad
        \psi_A(t_i, t_j, t_k) = \Big\langle \tfrac{t_i - t_j}{\|t_i - t_j\|_2},
                                           \tfrac{t_k - t_j}{\|t_k - t_j\|_2} \Big\rangle

        L_{RKD} = w_D \,\ell_\delta(\psi_D^{s}, \psi_D^{t}) + w_A \,\ell_\delta(\psi_A^{s}, \psi_A^{t})

    with :math:`\ell_\delta` the Huber (smooth-L1, δ = 1) loss averaged over all pairs (N²) and
    triplets (N³) of the batch, each net's distances normalised by its own mean. Only relations are
    compared, so widths may differ without an adapter.

    Paper: Park, Kim, Lu, Cho, "Relational Knowledge Distillation", CVPR 2019,
    https://arxiv.org/abs/1904.05068. The paper's weights are λ_D = 1, λ_A = 2; the defaults here
    are RepDistiller's CIFAR ones (w_D = 25, w_A = 50, https://github.com/HobbitLong/RepDistiller).

    Args:
        student_taps / teacher_taps: one module path each (default ``["embedding"]``).
        distance_weight: :math:`w_D \ge 0`.
        angle_weight: :math:`w_A \ge 0`.

    Options: ``rkd_distance_weight=25, rkd_angle_weight=50, rkd_student_taps=["pool"]``.
    """

    needs_teacher = True

    def __init__(self, student_taps: Sequence[str] | str | None = None,
                 teacher_taps: Sequence[str] | str | None = None, distance_weight: float = 25.0,
                 angle_weight: float = 50.0) -> None:
        super().__init__()
        if distance_weight < 0 or angle_weight < 0:
            raise ConfigError(f"rkd weights must be >= 0, got distance_weight={distance_weight}, "
                              f"angle_weight={angle_weight}", stage=STAGE,
                              hint="pass rkd_distance_weight=25, rkd_angle_weight=50")
        self.student_taps, self.teacher_taps = tap_pairs("rkd", student_taps, teacher_taps, ("embedding",))
        self.distance_weight, self.angle_weight = float(distance_weight), float(angle_weight)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        total = ctx.student_logits.new_zeros(())
        for s_path, t_path in zip(self.student_taps, self.teacher_taps, strict=True):
            s = flat(tapped(ctx, "student", s_path, "rkd"))
            with torch.no_grad():
                t = flat(tapped(ctx, "teacher", t_path, "rkd"))
                t_d, t_a = _normalised_distances(t), angles(t)
            total = total + self.distance_weight * F.smooth_l1_loss(_normalised_distances(s), t_d)
            total = total + self.angle_weight * F.smooth_l1_loss(angles(s), t_a)
        return total
