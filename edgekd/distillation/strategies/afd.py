r"""AFD: online distillation with mutual KL plus feature-map discriminators, one per network.

Each network :math:`k` has a discriminator :math:`D_k` that learns to call its peer's feature map
:math:`F_{k-1}` real and its own :math:`F_k` fake; network :math:`k` learns to fool it, and so to
produce maps distributed like its peer's. With least-squares GAN objectives (LSGAN, as in the
authors' setup) and the cyclic peer :math:`k-1 \bmod K` the paper proposes for :math:`K > 2`:

.. math::

    L_{k} = L_{CE}(p_k, y) + \frac{T^2}{K-1}\sum_{j\ne k}\mathrm{KL}(p^T_j \| p^T_k)
            + \lambda\, \mathbb{E}\big[(D_k(F_k) - 1)^2\big]

    L_{D_k} = \mathbb{E}\big[(D_k(F_{k-1}) - 1)^2\big] + \mathbb{E}\big[D_k(F_k)^2\big]

The networks and the discriminators have separate optimisers; the discriminators step after the
networks on detached maps, at ``disc_lr`` times the base learning rate (lower, for stability).
Peers' maps at ``layer`` must share a shape (same family, e.g. two ResNets' ``layer3``).

Paper: Chung, Park, Kim, Kwak, "Feature-map-level Online Adversarial Knowledge Distillation",
ICML 2020, https://arxiv.org/abs/2002.01775. Use: ``distill(None, [a, b], data, method="afd",
afd_layer="layer3")``.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.distillation.methods import DistillLoss, StepContext, register_method
from edgekd.distillation.strategies.base import ParamGroups
from edgekd.distillation.strategies.online import PEER_FEATURES, mutual_kl, peers_ce
from edgekd.errors import ConfigError

STAGE = "distill/afd"


def discriminator(channels: int) -> nn.Sequential:
    """A small conv discriminator: feature map (N, C, H, W) -> one score per sample (N,)."""
    hidden = max(channels // 2, 8)
    return nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.LeakyReLU(0.2),
                         nn.Conv2d(hidden, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(0))


@register_method("afd")
class AFDLoss(DistillLoss):
    """AFD (formula above), summed over networks.

    Options: ``afd_layer="stage:-1"`` (the tap of the feature map: by default each peer's deepest contract
    stage, ``layer3`` of a CIFAR ResNet; any module path), ``afd_T=3.0``, ``afd_adv=1.0``
    (:math:`\\lambda`), ``afd_ce=1.0``, ``afd_disc_lr=0.1`` (discriminator lr multiplier).
    """

    needs_teacher = False
    strategy = "online"

    def __init__(self, layer: str = "stage:-1", T: float = 3.0, adv: float = 1.0, ce: float = 1.0,
                 disc_lr: float = 0.1) -> None:
        super().__init__()
        if not T > 0 or min(adv, ce) < 0 or not disc_lr > 0:
            raise ConfigError(f"afd T={T}, disc_lr={disc_lr} must be > 0 and adv={adv}, ce={ce} >= 0",
                              stage=STAGE, hint="pass e.g. afd_T=3.0 afd_adv=1.0 afd_disc_lr=0.1")
        self.layer, self.T, self.adv, self.ce, self.disc_lr = layer, float(T), float(adv), float(ce), float(disc_lr)
        self.student_taps = (layer,)
        self.discriminators = nn.ModuleList()

    def _maps(self, ctx: StepContext) -> list[torch.Tensor]:
        maps = [feats[self.layer] for feats in ctx.student_features[PEER_FEATURES]]
        shapes = {tuple(m.shape[1:]) for m in maps}
        if len(shapes) != 1 or len(next(iter(shapes))) != 3:
            raise ConfigError(f"afd needs (C, H, W) maps of one shape at {self.layer!r}; peers give {sorted(shapes)}",
                              stage=STAGE, hint="pick afd_layer= a conv stage every peer shares, e.g. 'layer3'")
        return maps

    def setup(self, ctx: StepContext, num_train: int) -> None:
        maps = self._maps(ctx)
        self.discriminators = nn.ModuleList(discriminator(maps[0].shape[1]) for _ in maps)

    def param_groups(self) -> ParamGroups:
        """The discriminators' own optimiser group, at ``disc_lr`` times the base lr."""
        return {"afd_disc": (list(self.discriminators.parameters()), self.disc_lr)}

    def forward(self, ctx: StepContext) -> torch.Tensor:
        maps = self._maps(ctx)
        fool = sum(((d(f) - 1).pow(2).mean() for d, f in zip(self.discriminators, maps, strict=True)),
                   ctx.student_logits.new_zeros(()))
        return (self.ce * peers_ce(ctx.student_logits, ctx.targets) + mutual_kl(ctx.student_logits, self.T)
                + self.adv * fool)

    def discriminator_loss(self, ctx: StepContext) -> torch.Tensor:
        """:math:`\\sum_k L_{D_k}` on detached maps (each network's peer is the previous one, cyclic)."""
        maps = [m.detach() for m in self._maps(ctx)]
        total = ctx.student_logits.new_zeros(())
        for k, d in enumerate(self.discriminators):
            total = total + (d(maps[k - 1]) - 1).pow(2).mean() + d(maps[k]).pow(2).mean()
        return total
