"""Similarity-preserving distillation: match the batch's pairwise-similarity (Gram) matrices."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from edgekd.distillation.adapters import flat, tap_pairs, tapped
from edgekd.distillation.methods import DistillLoss, StepContext, register_method


def similarity(feat: torch.Tensor) -> torch.Tensor:
    """Row-L2-normalised Gram matrix of the flattened features: (N, ...) -> (N, N)."""
    f = flat(feat)
    return F.normalize(f @ f.t(), p=2, dim=1)


@register_method("sp")
class SPLoss(DistillLoss):
    r"""SP: squared Frobenius distance of row-normalised batch similarity matrices, over :math:`b^2`.

    .. math::

        \tilde G = Q Q^\top,\; Q \in \mathbb{R}^{b \times D} \text{ (flattened features)},\qquad
        G_{[i,:]} = \tilde G_{[i,:]} / \|\tilde G_{[i,:]}\|_2

        L_{SP} = \frac{1}{b^2} \sum_{(l, l')} \big\| G^{(l)}_T - G^{(l')}_S \big\|_F^2

    summed over tap pairs :math:`(l, l')`. The :math:`b \times b` matrices do not depend on the
    feature width, so teacher and student widths may differ without an adapter.

    Paper: Tung, Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019,
    https://arxiv.org/abs/1907.09682 (code as in RepDistiller's ``Similarity``,
    https://github.com/HobbitLong/RepDistiller). The paper taps the last stage's activation map
    (``sp_student_taps=["layer3"]``); the default here is the pooled embedding (``embedding``: ``pool`` of the zoo), which
    exists in every edgekd model and is cheaper but coarser (spatially averaged first). RepDistiller
    weighs it by 3000 on CIFAR: compose as ``"ce + sp:3000"``.

    Args:
        student_taps / teacher_taps: module paths, paired (default ``["embedding"]``).

    Options: ``sp_student_taps=["layer3"]``.
    """

    needs_teacher = True

    def __init__(self, student_taps: Sequence[str] | str | None = None,
                 teacher_taps: Sequence[str] | str | None = None) -> None:
        super().__init__()
        self.student_taps, self.teacher_taps = tap_pairs("sp", student_taps, teacher_taps, ("embedding",))

    def forward(self, ctx: StepContext) -> torch.Tensor:
        total = ctx.student_logits.new_zeros(())
        for s_path, t_path in zip(self.student_taps, self.teacher_taps, strict=True):
            g_s = similarity(tapped(ctx, "student", s_path, "sp"))
            g_t = similarity(tapped(ctx, "teacher", t_path, "sp"))
            total = total + (g_t - g_s).pow(2).sum() / g_s.shape[0] ** 2
        return total
