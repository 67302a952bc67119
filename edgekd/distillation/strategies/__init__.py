"""Training strategies: how networks train together. One short module per strategy.

- :mod:`.offline` — frozen teacher (or :class:`~.ensemble.EnsembleTeacher`) → one student.
- :mod:`.ensemble` — several teachers, weighted-average soft targets and features (``ensemble``).
- :mod:`.online` — DML: K peers, each CE + mean KL to the others (``dml``).
- :mod:`.afd` — AFD: peers with mutual KL and per-network feature-map discriminators (``afd``).
- :mod:`.feature_l1` — AFD's baseline: DML plus a direct L1 pull to the peer's map (``feat_l1``).
- :mod:`.self_distill` — Be Your Own Teacher: early exits learn from the deepest (``self``).
- :mod:`.residual` — plain CNN + ResNet twin trained jointly, stages routed (``resdistill``).
- :mod:`.progressive` — AdderNet + CNN twin trained from scratch together (``pkkd``).

The method names register in the same registry as the losses, so :func:`edgekd.distillation.methods`
lists them. Each strategy registers in :data:`STRATEGIES` under its ``kind``; a loss names the kind it
needs (``DistillLoss.strategy``) and :func:`make_strategy` looks it up there. Two more strategies run
in the same Trainer without a method selecting them: :class:`~edgekd.distillation.text.TextStrategy`
(sentence encoders, :func:`~edgekd.distillation.text.distill_text`) and
:class:`~edgekd.edge.qat.QATStrategy` (KD into a fake-quantized graph, :func:`~edgekd.edge.qat.distill_qat`).
"""

from __future__ import annotations

from torch import nn

from edgekd.distillation.cache import TeacherCache
from edgekd.distillation.methods import Objective
from edgekd.distillation.strategies.afd import AFDLoss
from edgekd.distillation.strategies.base import (
    STRATEGIES,
    Networks,
    Strategy,
    kinds,
    only_kind,
    register_strategy,
)
from edgekd.distillation.strategies.ensemble import EnsembleKDLoss, EnsembleTeacher
from edgekd.distillation.strategies.feature_l1 import FeatureL1Loss
from edgekd.distillation.strategies.offline import OfflineStrategy
from edgekd.distillation.strategies.online import DMLLoss, OnlineStrategy
from edgekd.distillation.strategies.progressive import ProgressiveStrategy
from edgekd.distillation.strategies.residual import ResDistillLoss, ResidualStrategy
from edgekd.distillation.strategies.self_distill import SelfDistillLoss, SelfStrategy
from edgekd.registry import import_modules

import_modules(__name__, __path__)  # a new strategy module registers itself without an import here

__all__ = ["AFDLoss", "DMLLoss", "EnsembleKDLoss", "EnsembleTeacher", "FeatureL1Loss", "OfflineStrategy", "OnlineStrategy",
           "ProgressiveStrategy", "ResDistillLoss", "ResidualStrategy", "SelfDistillLoss", "SelfStrategy",
           "STRATEGIES", "Strategy", "make_strategy", "register_strategy"]


def make_strategy(objective: Objective, student: Networks, teacher: nn.Module | None = None,
                  cache: bool | TeacherCache | None = None) -> Strategy:
    """The strategy the objective's terms ask for (each loss's ``strategy``: a key of :data:`STRATEGIES`,
    ``"offline"`` for plain losses); the kinds of one objective may not mix."""
    kind = kinds(objective)
    if len(kind) > 1:
        only_kind(objective, sorted(kind - {"offline"})[0])
    (name,) = kind
    return STRATEGIES.get(name).build(objective, student, teacher, cache)
