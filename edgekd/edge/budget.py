"""Budgets: the user states a limit, edgekd finds the width or pruning ratio that meets it.

::

    b = parse_budget("latency_ms=0.5")                      # or "params=40k", "bytes=64KB"
    table = LatencyTable.measure([prune(m, r) for r in (0, .5, .8)], (x,), calibration=calib)
    r = fit_budget(lambda ratio: prune(m, ratio), b, cost_fn(b, x.shape, table))
    r.value, r.cost, r.margin                               # chosen ratio, its cost, (limit-cost)/limit

Costs:

- ``params``: ``count_params`` of the (pruned) float model;
- ``bytes``: the int8 weight bytes predicted by :func:`int8_bytes` (1 byte per conv/linear weight,
  4 per output channel for the int32 bias and the per-channel scale). A real ``.pte`` adds a few
  KB of program; :func:`verify` measures the real file;
- ``latency_ms``: p50 predicted by a :class:`LatencyTable` — a per-layer-kind cost table
  ``t = t_0 + Σ_layers c_kind · MFLOPs_layer`` (kinds: conv, dwconv, linear) whose coefficients
  are fitted by non-negative least squares to harness measurements (:func:`edgekd.benchmark` on
  real exported files) of a few variants of the same family. :func:`verify` measures the chosen
  model with the harness and reports the measured margin beside the predicted one.

The search is bisection on a knob the cost is monotone in (more pruning → fewer params, bytes,
FLOPs): it returns the least-pruned (or widest) model that meets the budget, to ``tol``.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.errors import ConfigError

STAGE = "edge/budget"
KINDS = ("params", "bytes", "latency_ms")
_UNITS: dict[str, dict[str, float]] = {  # per kind: unit suffix (lower case) -> multiplier
    "params": {"": 1.0, "k": 1e3, "m": 1e6},
    "bytes": {"": 1.0, "k": 1e3, "m": 1e6, "kb": 1024.0, "mb": 1024.0**2, "kib": 1024.0, "mib": 1024.0**2},
    "latency_ms": {"": 1.0, "ms": 1.0},
}
_TIME = {"s": 1e3, "sec": 1e3, "us": 1e-3, "µs": 1e-3, "ns": 1e-6}  # other time units, to suggest the ms value


@dataclass(frozen=True)
class Budget:
    """A limit on one cost: ``kind`` in ``params``, ``bytes``, ``latency_ms``."""

    kind: str
    limit: float

    def margin(self, cost: float) -> float:
        """``(limit - cost) / limit``: ≥ 0 when the budget holds (0.1 = 10 % headroom)."""
        return (self.limit - cost) / self.limit


def parse_budget(text: str) -> Budget:
    """``"latency_ms=2.5"``, ``"params=50k"``, ``"bytes=100KB"`` → :class:`Budget`; each kind takes its own units."""
    m = re.fullmatch(r"\s*(\w+)\s*=\s*((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Zµ]*)\s*", text or "")
    if not m or m.group(1) not in KINDS:
        raise ConfigError(f"cannot read budget {text!r}", stage=STAGE,
                          hint="write KIND=VALUE with KIND one of params, bytes, latency_ms, "
                          "e.g. latency_ms=2.5, params=50k, bytes=100KB")
    kind, value, unit = m.group(1), float(m.group(2)), m.group(3)
    units = _UNITS[kind]
    if unit.lower() not in units:
        known = ", ".join(u for u in units if u) or "none"
        suggest = (f"; {value:g} {unit} is latency_ms={value * _TIME[unit.lower()]:g}"
                   if kind == "latency_ms" and unit.lower() in _TIME else "")
        raise ConfigError(f"unknown unit {unit!r} in budget {text!r}: {kind} takes {known} (or no unit)", stage=STAGE,
                          hint=f"write the number in {kind}'s units{suggest}, e.g. "
                          + {"latency_ms": "latency_ms=2.5", "params": "params=50k", "bytes": "bytes=100KB"}[kind])
    limit = value * units[unit.lower()]
    if limit <= 0:
        raise ConfigError(f"budget {text!r} must be > 0", stage=STAGE)
    return Budget(kind, limit)


def layer_flops(model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
    """FLOPs (2·MACs) of one forward pass, split by layer kind: ``conv``, ``dwconv``, ``linear``."""
    from edgekd.models.complexity import flops

    kinds: dict[str, float] = {"conv": 0.0, "dwconv": 0.0, "linear": 0.0}
    shapes: dict[nn.Module, tuple[int, ...]] = {}

    def record(mod: nn.Module, inp: tuple[torch.Tensor, ...], _out: Any) -> None:
        shapes[mod] = tuple(inp[0].shape)

    handles = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(tuple(input_shape)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for m, shape in shapes.items():  # each leaf through the shared FLOP counter
        kind = "linear" if isinstance(m, nn.Linear) else ("dwconv" if m.groups > 1 else "conv")
        kinds[kind] += flops(m, shape)
    return kinds


def int8_bytes(model: nn.Module) -> int:
    """Predicted int8 weight bytes: 1 per conv/linear weight, 4 per output channel (bias, scale)."""
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            total += m.weight.numel() + 8 * m.weight.shape[0]
    return total


def measure_latency_ms(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], *, calibration: Any = None,
                       fmt: str = "pte", precision: str = "fp32", runs: int = 30, warmup: int = 5,
                       threads: int = 1, out_dir: str | Path | None = None) -> float:
    """p50 latency (ms) of ``model`` exported to ``fmt``/``precision``, measured by the bench harness."""
    from edgekd.bench.harness import benchmark
    from edgekd.convert import export
    from edgekd.errors import BenchError

    with tempfile.TemporaryDirectory(prefix="edgekd_budget_") as tmp:
        root = Path(out_dir) if out_dir is not None else Path(tmp)
        bundle = export(model, example_inputs, formats=(fmt,), precision=(precision,), calibration=calibration,
                        out_dir=root / "bundle", check_parity=False, progress=False)
        (r,) = benchmark(bundle, "local", warmup=warmup, runs=runs, threads=threads, out_dir=root / "bench",
                         progress=False)
    if r.latency_ms is None:
        raise BenchError(f"the harness measured no latency for {fmt}/{precision}: {r.error}", stage=STAGE,
                         hint="run edgekd bench on the exported bundle to see the runner's error")
    return r.latency_ms.p50


@dataclass
class LatencyTable:
    """``t = overhead_ms + Σ_kind ms_per_mflop[kind] · MFLOPs[kind]``, fitted to harness samples.

    ``samples`` keeps the raw measurements (``flops`` by kind and ``p50_ms``) the fit came from.
    """

    overhead_ms: float
    ms_per_mflop: dict[str, float]
    input_shape: tuple[int, ...]
    samples: list[dict[str, Any]] = field(default_factory=list)
    setting: dict[str, Any] = field(default_factory=dict)

    def predict(self, model: nn.Module) -> float:
        f = layer_flops(model, self.input_shape)
        return self.overhead_ms + sum(self.ms_per_mflop.get(k, 0.0) * v / 1e6 for k, v in f.items())

    @classmethod
    def fit(cls, samples: Sequence[dict[str, Any]], input_shape: Sequence[int],
            setting: dict[str, Any] | None = None) -> LatencyTable:
        """Non-negative least squares of ``p50_ms`` on ``[1, MFLOPs_conv, MFLOPs_dwconv, MFLOPs_linear]``."""
        from scipy.optimize import nnls

        if len(samples) < 2:
            raise ConfigError(f"a latency table needs >= 2 measured models, got {len(samples)}", stage=STAGE,
                              hint="measure the model at two or more pruning ratios / widths")
        kinds = ("conv", "dwconv", "linear")
        a = np.array([[1.0, *[s["flops"][k] / 1e6 for k in kinds]] for s in samples])
        b = np.array([s["p50_ms"] for s in samples])
        coef, _ = nnls(a, b)
        return cls(float(coef[0]), dict(zip(kinds, map(float, coef[1:]), strict=True)), tuple(input_shape),
                   list(samples), dict(setting or {}))

    @classmethod
    def measure(cls, models: Sequence[nn.Module], example_inputs: tuple[torch.Tensor, ...], *,
                calibration: Any = None, fmt: str = "pte", precision: str = "fp32", runs: int = 30,
                threads: int = 1) -> LatencyTable:
        """Export and time each model with the harness, then :meth:`fit` the table."""
        shape = tuple(example_inputs[0].shape)
        samples = [{"flops": layer_flops(m, shape),
                    "p50_ms": measure_latency_ms(m, example_inputs, calibration=calibration, fmt=fmt,
                                                 precision=precision, runs=runs, threads=threads)}
                   for m in models]
        return cls.fit(samples, shape, {"format": fmt, "precision": precision, "threads": threads, "runs": runs})


def cost_fn(budget: Budget, table: LatencyTable | None = None) -> Callable[[nn.Module], float]:
    """The cost a budget limits, as a function of a model (latency needs a :class:`LatencyTable`)."""
    from edgekd.models.complexity import count_params

    if budget.kind == "params":
        return lambda m: float(count_params(m))
    if budget.kind == "bytes":
        return lambda m: float(int8_bytes(m))
    if table is None:
        raise ConfigError("a latency budget needs a latency table (or a measure function)", stage=STAGE,
                          hint="build one with LatencyTable.measure([...models...], example_inputs)")
    return table.predict


@dataclass
class BudgetResult:
    """The chosen knob value, its cost and margin, and every (value, cost) the search tried."""

    budget: Budget
    knob: str
    value: float
    cost: float
    margin: float
    evaluations: list[tuple[float, float]]
    measured_cost: float | None = None
    measured_margin: float | None = None

    @property
    def ok(self) -> bool:
        return self.margin >= 0 and (self.measured_margin is None or self.measured_margin >= 0)


def fit_budget(make: Callable[[float], nn.Module], budget: Budget, cost: Callable[[nn.Module], float], *,
               lo: float = 0.0, hi: float = 0.95, shrinks: bool = True, tol: float = 0.01,
               knob: str = "ratio") -> BudgetResult:
    """Bisection on ``knob`` in ``[lo, hi]`` for the largest model with ``cost ≤ budget.limit``.

    ``shrinks=True``: the model gets smaller as the knob grows (a pruning ratio), so the smallest
    feasible knob is returned; ``False``: it grows (a width), so the largest feasible one.
    """
    evals: list[tuple[float, float]] = []

    def c(v: float) -> float:
        evals.append((v, cost(make(v))))
        return evals[-1][1]

    small, big = (hi, lo) if shrinks else (lo, hi)
    if c(small) > budget.limit:
        raise ConfigError(f"even {knob}={small:g} costs {evals[-1][1]:.4g} {budget.kind} > the budget "
                          f"{budget.limit:.4g}", stage=STAGE,
                          hint=f"raise the {budget.kind} budget or start from a smaller model family")
    best, best_cost = small, evals[-1][1]
    if c(big) <= budget.limit:
        best, best_cost = big, evals[-1][1]
    else:
        feasible, infeasible = small, big
        while abs(feasible - infeasible) > tol:
            mid = (feasible + infeasible) / 2
            if c(mid) <= budget.limit:
                feasible, best_cost = mid, evals[-1][1]
            else:
                infeasible = mid
        best = feasible
    return BudgetResult(budget, knob, float(best), float(best_cost), budget.margin(best_cost), evals)


def verify(result: BudgetResult, model: nn.Module, measure: Callable[[nn.Module], float]) -> BudgetResult:
    """Measure the chosen ``model`` for real (e.g. :func:`measure_latency_ms`); fill the measured margin."""
    cost = float(measure(model))
    result.measured_cost, result.measured_margin = cost, result.budget.margin(cost)
    return result
