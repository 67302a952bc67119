"""ReviewKD: each teacher stage is matched by a fusion of the student's same and deeper stages (knowledge review)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.distillation.adapters import POOLED, POOLED_NAMES, STAGES, require_setup, tap_pairs, tapped
from edgekd.distillation.methods import DistillLoss, StepContext, linear_ramp, register_method
from edgekd.distillation.taps import PRERELU, _split
from edgekd.errors import ConfigError

STAGE = "distill/reviewkd"
PYRAMID = (4, 2, 1)  # the pooled grids of the hierarchical context loss
MAX_MID = 512


class ABF(nn.Module):
    """Attention-based fusion: the student's stage (1×1 conv + BN to ``mid`` channels), blended pixel-wise
    with the fused deeper stages (upsampled) by two sigmoid attention maps, resized to the teacher's grid,
    then a 3×3 conv + BN to the teacher's width. Returns ``(output, fused)``; ``fused`` feeds the next,
    shallower stage."""

    def __init__(self, in_channels: int, mid: int, out_channels: int, fuse: bool) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid))
        self.conv2 = nn.Sequential(nn.Conv2d(mid, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels))
        self.att = nn.Sequential(nn.Conv2d(2 * mid, 2, 1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(self, x: torch.Tensor, deeper: torch.Tensor | None, out_size: Sequence[int]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv1(x)
        if self.att is not None and deeper is not None:
            deeper = F.interpolate(deeper, size=x.shape[-2:], mode="nearest")
            z = self.att(torch.cat([x, deeper], dim=1))
            x = x * z[:, 0:1] + deeper * z[:, 1:2]
        if tuple(x.shape[-2:]) != tuple(out_size):
            x = F.interpolate(x, size=tuple(out_size), mode="nearest")
        return self.conv2(x), x


def hcl(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Hierarchical context loss of one stage: MSE on the full map and on 4×4, 2×2, 1×1 average-pooled
    maps (those smaller than the map), weighted 1, 1/2, 1/4, 1/8 and normalised by the weights' sum."""
    loss, weight, total = F.mse_loss(f_s, f_t), 1.0, 1.0
    for level in PYRAMID:
        if level >= f_s.shape[2]:
            continue
        weight /= 2.0
        loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(f_s, level), F.adaptive_avg_pool2d(f_t, level))
        total += weight
    return loss / total


def _map(x: torch.Tensor) -> torch.Tensor:
    """A pooled N×C embedding as an N×C×1×1 map; maps as they are."""
    return x.reshape(*x.shape[:2], 1, 1) if x.dim() == 2 else x


@register_method("reviewkd")
class ReviewKDLoss(DistillLoss):
    r"""ReviewKD: a shallow teacher stage is supervised by the student's same stage fused with all deeper ones.

    .. math::

        F_n = \mathcal{M}_n(S_n),\qquad F_i = \mathcal{M}_i\big(\mathrm{ABF}_i(S_i, F_{i+1})\big),\ i < n

        L_{RKD} = \min\!\big(\tfrac{e+1}{W}, 1\big) \sum_{i=1}^{n} \mathrm{HCL}(F_i, T_i),\qquad
        \mathrm{HCL}(F, T) = \frac{\sum_{l} w_l\, \mathrm{MSE}(P_l(F), P_l(T))}{\sum_l w_l}

    over tapped stages :math:`i = 1..n` (shallow to deep; default the three deepest stages of each net's
    contract, ``stage:-3..-1``, and its pooled ``embedding``: ``layer1..3`` and ``pool`` of a CIFAR ResNet;
    :data:`~edgekd.distillation.adapters.STAGES`), student features :math:`S_i`,
    teacher features :math:`T_i` (pre-ReLU, ``@prerelu``, as the paper's code taps the teacher), ABF the
    attention-based fusion (:class:`ABF`: two sigmoid maps blend the student's stage with the fused
    deeper ones), :math:`\mathcal M_i` its 3×3 conv + BN to the teacher's width, :math:`P_l` average
    pooling to the full grid and to 4×4, 2×2, 1×1 (grids smaller than the map) with weights 1, ½, ¼, ⅛,
    :math:`e` the 0-based epoch and :math:`W` the warm-up. The fusion modules are trained with the
    student and discarded with the loss; the student itself is unchanged.

    Paper: Chen, Liu, Zhao, Jia, "Distilling Knowledge via Knowledge Review", CVPR 2021,
    https://arxiv.org/abs/2104.09044; code: https://github.com/dvlab-research/ReviewKD (``ABF``,
    ``ReviewKD`` and ``hcl`` in ``CIFAR-100/model/reviewkd.py``), which this follows: the middle width is
    ``min(512, width of the deepest student tap)``, fused maps and outputs are resized by nearest
    neighbour, the teacher's stages are pre-ReLU and the student's post-ReLU, weight 1 with a 20-epoch
    linear warm-up (the CIFAR code's ramp starts at 0 in its first epoch; this one, as mdistiller's, at 1/W).

    Args:
        student_taps: student stages, shallow to deep (default ``stage:-3, stage:-2, stage:-1, embedding``).
        teacher_taps: paired teacher stages (default: the student's, ``@prerelu`` for the maps when
            ``teacher_preact``).
        teacher_preact: tap the teacher's stages before their last ReLU (the paper's code).
        warmup: epochs of linear ramp (0 turns it off).

    Options: ``reviewkd_warmup=20``, ``reviewkd_teacher_preact=False`` (teachers whose stages do not end in
    a ReLU, e.g. MobileNet's linear bottlenecks); use as ``"ce + reviewkd:1"``.
    """

    def __init__(self, student_taps: Sequence[str] | str | None = None,
                 teacher_taps: Sequence[str] | str | None = None, teacher_preact: bool = True,
                 warmup: int = 20) -> None:
        super().__init__()
        if warmup < 0:
            raise ConfigError(f"reviewkd warmup={warmup} must be >= 0", stage=STAGE, hint="pass reviewkd_warmup=20")
        default = (*STAGES, POOLED)
        self.student_taps, teacher = tap_pairs("reviewkd", student_taps, teacher_taps, default)
        if teacher_taps is None and teacher_preact:
            teacher = tuple(t if t in POOLED_NAMES or _split(t)[1] else t + PRERELU for t in teacher)  # no 2nd suffix
        self.teacher_taps = teacher
        self.warmup = int(warmup)
        self.abfs = nn.ModuleList()

    def _features(self, ctx: StepContext) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        s = [_map(tapped(ctx, "student", p, "reviewkd")) for p in self.student_taps]
        t = [_map(tapped(ctx, "teacher", p, "reviewkd")) for p in self.teacher_taps]
        bad = [(p, tuple(f.shape)) for p, f in zip(self.student_taps + self.teacher_taps, s + t, strict=True)
               if f.dim() != 4]
        if bad:
            raise ConfigError(f"reviewkd needs N×C×H×W maps (or pooled N×C vectors); got {bad}", stage=STAGE,
                              hint="tap convolutional stages, e.g. reviewkd_student_taps=['layer1','layer2','layer3','pool']")
        return s, t

    def setup(self, ctx: StepContext, num_train: int) -> None:
        s, t = self._features(ctx)
        mid = min(MAX_MID, s[-1].shape[1])
        self.abfs = nn.ModuleList(ABF(f_s.shape[1], mid, f_t.shape[1], fuse=i < len(s) - 1)
                                  for i, (f_s, f_t) in enumerate(zip(s, t, strict=True)))

    def forward(self, ctx: StepContext) -> torch.Tensor:
        require_setup(self.abfs, len(self.student_taps), "reviewkd")
        s, t = self._features(ctx)
        total, deeper = ctx.student_logits.new_zeros(()), None
        for i in reversed(range(len(s))):
            out, deeper = self.abfs[i](s[i], deeper, t[i].shape[-2:])
            total = total + hcl(out, t[i])
        return linear_ramp(ctx.epoch, self.warmup) * total
