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
lists them; :func:`make_strategy` picks the strategy a method's terms ask for.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from edgekd.distillation.cache import TeacherCache
from edgekd.distillation.methods import Objective
from edgekd.distillation.strategies.afd import AFDLoss
from edgekd.distillation.strategies.base import STAGE, Strategy, kinds, only_kind
from edgekd.distillation.strategies.ensemble import EnsembleKDLoss, EnsembleTeacher
from edgekd.distillation.strategies.feature_l1 import FeatureL1Loss
from edgekd.distillation.strategies.offline import OfflineStrategy
from edgekd.distillation.strategies.online import DMLLoss, OnlineStrategy
from edgekd.distillation.strategies.progressive import ProgressiveStrategy
from edgekd.distillation.strategies.residual import ResDistillLoss, ResidualStrategy
from edgekd.distillation.strategies.self_distill import SelfDistillLoss, SelfStrategy
from edgekd.errors import ConfigError

__all__ = ["AFDLoss", "DMLLoss", "EnsembleKDLoss", "EnsembleTeacher", "FeatureL1Loss", "OfflineStrategy", "OnlineStrategy",
           "ProgressiveStrategy", "ResDistillLoss", "ResidualStrategy", "SelfDistillLoss", "SelfStrategy",
           "Strategy", "make_strategy"]


def make_strategy(objective: Objective, student: nn.Module | Sequence[nn.Module],
                  teacher: nn.Module | None = None, cache: bool | TeacherCache | None = None) -> Strategy:
    """The strategy ``objective`` asks for: online for ``dml``/``afd``/``feat_l1``, self for ``self``, residual for
    ``resdistill``, progressive for ``pkkd``, else offline."""
    kind = kinds(objective)
    if len(kind) > 1:
        only_kind(objective, sorted(kind - {"offline"})[0])
    many = isinstance(student, Sequence) and not isinstance(student, nn.Module)
    if kind == {"online"}:
        if not many or len(student) < 2:  # type: ignore[arg-type]
            raise ConfigError(f"online method {objective.spec!r} trains two or more networks together; "
                              "got one", stage=STAGE,
                              hint="pass a list of peers: distill(None, [net1, net2], data, method='dml')")
        return OnlineStrategy(list(student), objective)  # type: ignore[arg-type]
    if many:
        raise ConfigError(f"method {objective.spec!r} trains one student; got {len(student)} networks",  # type: ignore[arg-type]
                          stage=STAGE, hint="pass one student, or an online method ('dml', 'afd') for peers")
    if kind == {"self"}:
        return SelfStrategy(student, objective)  # type: ignore[arg-type]
    if kind == {"residual"}:
        return ResidualStrategy(student, teacher, objective)  # type: ignore[arg-type]
    if kind == {"progressive"}:
        return ProgressiveStrategy(student, teacher, objective)  # type: ignore[arg-type]
    return OfflineStrategy(student, objective, teacher, cache=cache)  # type: ignore[arg-type]
