r"""Direct feature alignment for online peers: DML plus an L1 pull toward the peer's feature map.

The baseline AFD is measured against ("direct alignment", its Table 1 "L1"): instead of a
discriminator judging whether maps are distributed alike, each network's map at ``layer`` is
pulled straight to its peer's (held constant for its update), with the cyclic peer
:math:`k-1 \bmod K`:

.. math::

    L_k = L_{CE}(p_k, y) + \frac{T^2}{K-1}\sum_{j\ne k}\mathrm{KL}(p^T_j \| p^T_k)
          + \lambda\, \tfrac{1}{CHW}\big\lVert F_k - \mathrm{sg}(F_{k-1}) \big\rVert_1

Paper: Chung, Park, Kim, Kwak, "Feature-map-level Online Adversarial Knowledge Distillation",
ICML 2020, https://arxiv.org/abs/2002.01775 (Sec. 4, the L1 / L2 direct-alignment ablation).
Use: ``distill(None, [a, b], data, method="feat_l1", feat_l1_layer="layer3")``.
"""

from __future__ import annotations

import torch

from edgekd.distillation.methods import DistillLoss, StepContext, linear_ramp, register_method
from edgekd.distillation.strategies.online import PEER_FEATURES, mutual_kl, peers_ce
from edgekd.errors import ConfigError


@register_method("feat_l1")
class FeatureL1Loss(DistillLoss):
    """Online L1 feature alignment (formula above), summed over networks.

    ``warmup`` (an extension, off by default) ramps both peer terms (KL and L1) in linearly over that
    many epochs, so peers trained from scratch do not align to each other's random early maps.

    Options: ``feat_l1_layer="stage:-1"`` (default: the deepest contract stage, ``layer3`` of a CIFAR ResNet), ``feat_l1_T=3.0``, ``feat_l1_weight=1.0`` (:math:`\\lambda`),
    ``feat_l1_ce=1.0``, ``feat_l1_warmup=0``.
    """

    needs_teacher = False
    strategy = "online"

    def __init__(self, layer: str = "stage:-1", T: float = 3.0, weight: float = 1.0, ce: float = 1.0,
                 warmup: int = 0) -> None:
        super().__init__()
        if not T > 0 or min(weight, ce, warmup) < 0:
            raise ConfigError(f"feat_l1 T={T} must be > 0 and weight={weight}, ce={ce}, warmup={warmup} >= 0",
                              stage="distill/feat_l1", hint="pass e.g. feat_l1_T=3.0 feat_l1_weight=1.0")
        self.layer, self.T, self.weight, self.ce, self.warmup = layer, float(T), float(weight), float(ce), int(warmup)
        self.student_taps = (layer,)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        maps = [feats[self.layer] for feats in ctx.student_features[PEER_FEATURES]]
        if len({tuple(m.shape) for m in maps}) != 1:
            raise ConfigError(f"feat_l1 needs maps of one shape at {self.layer!r}; peers give "
                              f"{sorted({tuple(m.shape[1:]) for m in maps})}", stage="distill/feat_l1",
                              hint="pick feat_l1_layer= a stage every peer shares, e.g. 'layer3'")
        align = sum(((m - maps[k - 1].detach()).abs().mean() for k, m in enumerate(maps)),
                    ctx.student_logits.new_zeros(()))
        ramp = linear_ramp(ctx.epoch, self.warmup)
        return (self.ce * peers_ce(ctx.student_logits, ctx.targets)
                + ramp * (mutual_kl(ctx.student_logits, self.T) + self.weight * align))
