"""Edge-aware objectives: distil, quantize and prune together, under a size or latency budget.

- :mod:`edgekd.edge.qat`: KD + QAT (PT2E fake quant, features as extra graph outputs); lowered to int8
  .pte/.tflite by :mod:`edgekd.convert.qat`
- :mod:`edgekd.edge.prune`: structured channel pruning (L1 / BN scale) with physical surgery
- :mod:`edgekd.edge.budget`: params / bytes / latency budgets and the width or ratio that meets them
- :mod:`edgekd.edge.pipeline`: the joint pipeline and the sequential baseline

``edgekd.edge.prune`` stays the module (``from edgekd.edge.prune import prune, plan, apply``).
"""

from __future__ import annotations

from edgekd.edge.budget import Budget, BudgetResult, LatencyTable, fit_budget, parse_budget
from edgekd.edge.pipeline import (
    EdgeOptions,
    PipelineResult,
    gradual_stage,
    joint,
    parse_edge_options,
    ptq_only,
    sequential,
)
from edgekd.edge.prune import PrunePlan, channel_groups, channel_importance, masked, prune_to
from edgekd.edge.qat import QATResult, distill_qat

__all__ = [
    "Budget", "BudgetResult", "EdgeOptions", "LatencyTable", "PipelineResult", "PrunePlan", "QATResult",
    "channel_groups", "channel_importance", "distill_qat", "fit_budget", "gradual_stage", "joint",
    "masked", "parse_budget", "parse_edge_options", "prune_to", "ptq_only", "sequential",
]
