"""Cross-entropy with the ground-truth labels: the supervised term of every recipe."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgekd.distillation.methods import DistillLoss, StepContext, register_method
from edgekd.errors import ConfigError


@register_method("ce")
class CrossEntropyLoss(DistillLoss):
    r"""Cross-entropy of the student's logits :math:`s` against labels :math:`y`, optionally smoothed.

    .. math::

        L_{CE} = -\frac{1}{N}\sum_{i=1}^{N} \sum_{k=1}^{K} q_{ik} \log \mathrm{softmax}(s_i)_k,
        \qquad q_{ik} = (1-\varepsilon)\,[k = y_i] + \varepsilon / K

    Samples whose label is negative (``-1``: unlabelled, as :class:`~edgekd.data.core.WithIndices`
    marks them) are left out and the mean is over the labelled ones (0 when a batch has none): a
    train split of a few labelled images among many unlabelled ones is Hinton et al.'s *transfer
    set*, where the KD term sees every image and this term only the labelled ones.

    When a loss asks for augmented views of the batch (MLKD's strong view, ``ctx.views``), the
    student is trained on them too and this term is summed over the batch and each view, all with
    the batch's labels — as MLKD's code adds the cross-entropy of its weak and strong views.

    Label smoothing (:math:`\varepsilon`): Szegedy, Vanhoucke, Ioffe, Shlens, Wojna, "Rethinking
    the Inception Architecture for Computer Vision", CVPR 2016, https://arxiv.org/abs/1512.00567.

    Args:
        label_smoothing: :math:`\varepsilon \in [0, 1)`; 0 gives plain cross-entropy.

    Options: ``ce_label_smoothing=0.1``.
    """

    needs_teacher = False

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"ce label_smoothing={label_smoothing} is outside [0, 1)", stage="distill/ce",
                              hint="pass ce_label_smoothing=0.1 or leave it at 0")
        self.label_smoothing = float(label_smoothing)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        loss = labelled_ce(ctx.student_logits, ctx.targets, self.label_smoothing)
        for s_view, _ in ctx.views.values():
            loss = loss + labelled_ce(s_view, ctx.targets, self.label_smoothing)
        return loss


def labelled_ce(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over the samples whose label is >= 0 (mean over them; 0 when there is none).

    Every loss with a label term calls this, so a transfer set (unlabelled images marked ``-1``)
    trains any method: the label terms see the labelled images, the distillation terms all of them.
    """
    labelled = targets >= 0
    if not bool(labelled.all()):
        if not bool(labelled.any()):
            return logits.sum() * 0.0  # keeps the graph (and the dtype) for a batch of unlabelled images
        logits, targets = logits[labelled], targets[labelled]
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
