"""The one result type of every training entry point: :class:`DistillResult`.

``distill()`` (image classification, online peers, early exits), text distillation, KD + QAT and the
edge pipelines (KD → prune → KD + QAT / fine-tune + PTQ) all return it. What a run did not produce stays
at its default: ``int8_model``/``prepared`` are None without quantization, ``ratio`` 0.0 without pruning,
``stages`` holds one history per stage of a multi-stage run (``{"kd": [...], "qat": [...]}``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    import torch

    from edgekd.distillation.methods import Objective


@dataclass
class DistillResult:
    """A trained student, how it got there and how it scores.

    - ``model``: the float student (weights of the last epoch) — a module whose forward returns logits
      (after QAT: the fake-quantized graph's logits, :class:`edgekd.convert.qat.Logits`);
    - ``history``: one row per epoch (a multi-stage run: every stage's rows in order, each with ``stage``);
      ``stages``: the same rows by stage;
    - ``metrics``: ``val_acc``, ``val_loss``, ``test_acc``, ``test_loss`` (last epoch), ``best_val_acc`` and
      ``best_epoch`` where validation ran; text runs: val/test agreement with the teacher
      (``val_cosine``, ``test_topk_overlap``, …); pipelines: ``kd_fp32_acc``, ``fp32_acc``, ``int8_acc``;
    - ``checkpoint`` / ``best_path``: the trainer's checkpoint and the best-val weights when ``out_dir`` was given;
    - ``method`` / ``objective``: the composed objective (its spec and the module, with trained adapters);
    - ``models``: every trained network when peers trained together (online methods);
    - ``prepared``: the fake-quant PT2E graph after QAT (lower it with :func:`edgekd.convert.qat.write_int8`
      or ``edgekd.export(..., qat=prepared)``), ``taps`` its extra feature outputs;
    - ``int8_model``: a converted PT2E int8 module (a pipeline's end product, runs in PyTorch);
    - ``ratio``: the channel-pruning ratio applied, ``budget`` the budget search behind it;
    - ``name``: which recipe produced it (``"distill"``, ``"text"``, ``"qat"``, ``"joint"``, ``"sequential"``,
      ``"ptq_only"``).
    """

    model: nn.Module
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    checkpoint: Path | None = None
    best_path: Path | None = None
    method: str = ""
    objective: Objective | None = field(default=None, repr=False)
    models: list[nn.Module] = field(default_factory=list, repr=False)
    prepared: torch.fx.GraphModule | None = field(default=None, repr=False)
    taps: list[str] = field(default_factory=list)
    int8_model: nn.Module | None = field(default=None, repr=False)
    ratio: float = 0.0
    budget: Any = None  # an edgekd.edge.BudgetResult when a budget chose the ratio (edge sits above this layer)
    stages: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    name: str = "distill"

    @property
    def float_model(self) -> nn.Module:
        """The float student (``model``), by the name the pipelines use beside ``int8_model``."""
        return self.model


def staged(stages: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every stage's epoch rows in order, each marked with its ``stage``."""
    return [{**row, "stage": name} for name, rows in stages.items() for row in rows]
