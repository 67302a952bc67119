r"""Online distillation: K peer networks train together from scratch and teach each other (DML).

Deep Mutual Learning. Each peer :math:`k` minimises its cross-entropy plus the mean KL divergence
from every other peer's current prediction (held constant for its update):

.. math::

    L_k = L_{CE}(p_k, y) + \frac{1}{K-1} \sum_{j \ne k} T^2\,\mathrm{KL}\big(p_j^T \,\|\, p_k^T\big),
    \qquad p^T = \mathrm{softmax}(z / T)

The trainer minimises :math:`\sum_k L_k` with one optimiser per peer; as each :math:`L_k` only
reaches peer :math:`k`'s weights (the others' predictions are detached), this equals K separate
updates. Peers are updated simultaneously from the same forward pass (the paper's code updates
them in turn, re-running the forward pass; with small learning rates the two agree closely).

Paper: Zhang, Xiang, Hospedales, Lu, "Deep Mutual Learning", CVPR 2018,
https://arxiv.org/abs/1706.00384. Use: ``distill(None, [net1, net2], data, method="dml")``;
the result's ``models`` holds every peer.
"""

from __future__ import annotations

from contextlib import ExitStack

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from edgekd.data.core import DataSplits
from edgekd.distillation.cache import TeacherCache
from edgekd.distillation.losses.ce import labelled_ce
from edgekd.distillation.losses.logit_std import standardize
from edgekd.distillation.methods import DistillLoss, Objective, StepContext, linear_ramp, register_method
from edgekd.distillation.strategies.base import (
    STAGE,
    Losses,
    Networks,
    ParamGroups,
    Strategy,
    check_classes,
    only_kind,
    register_strategy,
)
from edgekd.distillation.taps import Taps
from edgekd.errors import ConfigError

PEER_FEATURES = "peers"  # ctx.student_features[PEER_FEATURES][k] = peer k's tapped outputs


def mutual_kl(logits: torch.Tensor, T: float) -> torch.Tensor:
    """:math:`\\sum_k \\frac{1}{K-1}\\sum_{j\\ne k} T^2 KL(p_j \\| p_k)` for stacked logits (K, N, C)."""
    K = logits.shape[0]
    log_p = F.log_softmax(logits / T, dim=-1)
    total = logits.new_zeros(())
    for k in range(K):
        for j in range(K):
            if j != k:
                total = total + F.kl_div(log_p[k], log_p[j].detach(), reduction="batchmean", log_target=True)
    return total * T**2 / (K - 1)


def peers_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over peers of each peer's cross-entropy (on the labelled samples: ``-1`` marks none)."""
    return sum((labelled_ce(z, targets) for z in logits), logits.new_zeros(()))


@register_method("dml")
class DMLLoss(DistillLoss):
    """Deep Mutual Learning (formula above), summed over peers.

    Two extensions, off by default: ``warmup`` ramps the mutual term in linearly over that many epochs
    (:func:`~edgekd.distillation.methods.linear_ramp`), so peers trained from scratch do not pull each
    other toward their first, random predictions; ``std`` z-scores each peer's logits first (logit
    standardization, :mod:`~edgekd.distillation.losses.logit_std`).

    Options: ``dml_T=1.0``, ``dml_ce=1.0``, ``dml_warmup=0``, ``dml_std=False``.
    """

    needs_teacher = False
    strategy = "online"

    def __init__(self, T: float = 1.0, ce: float = 1.0, warmup: int = 0, std: bool = False) -> None:
        super().__init__()
        if not T > 0 or ce < 0 or warmup < 0:
            raise ConfigError(f"dml T={T} must be > 0 and ce={ce}, warmup={warmup} >= 0", stage="distill/dml",
                              hint="pass dml_T=1.0 (the paper's), dml_ce=1.0, dml_warmup=0")
        self.T, self.ce, self.warmup, self.std = float(T), float(ce), int(warmup), bool(std)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        z = standardize(ctx.student_logits) if self.std else ctx.student_logits
        return (self.ce * peers_ce(ctx.student_logits, ctx.targets)
                + linear_ramp(ctx.epoch, self.warmup) * mutual_kl(z, self.T))


@register_strategy
class OnlineStrategy(Strategy):
    """Peers trained together: each has its own optimiser (``net0``...); loss-owned modules (AFD's
    discriminators) get the groups their loss declares in ``param_groups()``."""

    kind = "online"

    @classmethod
    def build(cls, objective: Objective, student: Networks, teacher: nn.Module | None,
              cache: bool | TeacherCache | None) -> Strategy:
        if isinstance(student, nn.Module) or len(student) < 2:
            raise ConfigError(f"online method {objective.spec!r} trains two or more networks together; "
                              "got one", stage=STAGE,
                              hint="pass a list of peers: distill(None, [net1, net2], data, method='dml')")
        return cls(list(student), objective)

    def __init__(self, peers: list[nn.Module], objective: Objective) -> None:
        super().__init__(objective)
        only_kind(objective, self.kind)
        self.peers = nn.ModuleList(peers)
        self.taps: list[Taps] = []

    def modules(self) -> dict[str, nn.Module]:
        return {"peers": self.peers, "objective": self.objective}

    def eval_models(self) -> dict[str, nn.Module]:
        return {f"net{k}": p for k, p in enumerate(self.peers)}

    def enter(self, stack: ExitStack, device: str, train: Dataset) -> None:
        self.taps = [stack.enter_context(Taps(p, self.objective.student_taps)) for p in self.peers]

    def context(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, epoch: int, step: int) -> StepContext:
        """Every peer's logits stacked (K, N, C); tapped features per peer under ``"peers"``."""
        logits = torch.stack([p(x) for p in self.peers])
        return StepContext(student_logits=logits, teacher_logits=None, targets=y, indices=idx,
                           student_features={PEER_FEATURES: [dict(t.outputs) for t in self.taps]},
                           epoch=epoch, step=step, inputs=x)

    def setup(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], data: DataSplits) -> None:
        self.peers.eval()
        with torch.no_grad():
            ctx = self.context(*batch, epoch=0, step=0)
        self.peers.train()
        for k, z in enumerate(ctx.student_logits):
            check_classes(f"peer {k}", z, data)
        self.objective.setup(ctx, len(data.train))  # type: ignore[arg-type]

    def _loss_groups(self) -> ParamGroups:
        groups: ParamGroups = {}
        for loss in self.objective.losses.values():
            groups.update(getattr(loss, "param_groups", dict)())
        return groups

    def param_groups(self) -> ParamGroups:
        groups: ParamGroups = {f"net{k}": (list(p.parameters()), 1.0) for k, p in enumerate(self.peers)}
        owned = self._loss_groups()
        claimed = {id(p) for params, _ in owned.values() for p in params}
        rest = [p for p in self.objective.parameters() if id(p) not in claimed and p.requires_grad]
        if rest:
            groups["objective"] = (rest, 1.0)
        return {**groups, **owned}

    def step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, epoch: int, step: int
             ) -> tuple[Losses, dict[str, torch.Tensor]]:
        ctx = self.context(x, y, idx, epoch, step)
        total, parts = self.objective(ctx)
        owned = self._loss_groups()
        nets = tuple(k for k in self.param_groups() if k not in owned)
        losses: Losses = [(nets, total)]
        for name, loss in self.objective.losses.items():
            if hasattr(loss, "discriminator_loss"):
                d = loss.discriminator_loss(ctx)
                losses.append((tuple(loss.param_groups()), d))
                parts[f"{name}_disc"] = d.detach()
        return losses, parts
