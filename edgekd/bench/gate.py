"""``--require accuracy>=0.97,p50_ms<=2``: a CI gate over benchmark results.

:func:`parse_require` turns the spec into :class:`Requirement` objects (a bad spec is a
:class:`~edgekd.errors.ConfigError` naming the bad part and the known metrics);
:func:`check` lists every (file, metric) that misses its limit. A file that failed (to export or
on the device) misses every requirement: it has no value to compare.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgekd.bench.metrics import METRICS
from edgekd.bench.results import BenchResult
from edgekd.errors import ConfigError

__all__ = ["GATE_EXIT", "METRICS", "Miss", "Requirement", "check", "parse_require"]
OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, ">": operator.gt,
                                                   "<": operator.lt, "==": operator.eq}
_TERM = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
GATE_EXIT = 3  # `edgekd bench --require ...` exits with this when a file misses a requirement


@dataclass(frozen=True)
class Requirement:
    metric: str
    op: str
    limit: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.limit:g}"

    def holds(self, value: float) -> bool:
        return OPS[self.op](value, self.limit)


@dataclass(frozen=True)
class Miss:
    """One file that misses one requirement (``value`` None: the file has no such value)."""

    file: str
    requirement: Requirement
    value: float | None
    reason: str = ""

    def __str__(self) -> str:
        r = self.requirement
        got = "no value" if self.value is None else f"{self.value:.4g}"
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.file}: {r.metric} = {got}, required {r.op} {r.limit:g}{why}"


def parse_require(spec: str) -> list[Requirement]:
    """``"accuracy>=0.97,p50_ms<=2"`` -> requirements; a bad term is a ConfigError saying which and why."""
    terms = [t for t in spec.split(",") if t.strip()]
    if not terms:
        raise ConfigError(f"--require {spec!r} holds no requirement", stage="bench/gate",
                          hint="write METRIC>=VALUE terms joined by commas, e.g. accuracy>=0.97,p50_ms<=2")
    out = []
    for term in terms:
        m = _TERM.match(term)
        if not m:
            raise ConfigError(f"--require: cannot read {term.strip()!r} as METRIC OP NUMBER", stage="bench/gate",
                              hint=f"use one of {', '.join(OPS)} between a metric and a number, e.g. p50_ms<=2")
        metric, op, value = m.group(1).lower(), m.group(2), float(m.group(3))
        if metric not in METRICS:
            raise ConfigError(f"--require: unknown metric {metric!r} in {term.strip()!r}", stage="bench/gate",
                              hint=f"known metrics: {', '.join(METRICS)}")
        if metric == "accuracy" and value > 1:
            raise ConfigError(f"--require: accuracy is a fraction in [0, 1], got {value:g}", stage="bench/gate",
                              hint=f"write accuracy{op}{value / 100:g} for {value:g}%")
        out.append(Requirement(metric, op, value))
    return out


def check(results: Sequence[BenchResult], requirements: Sequence[Requirement]) -> list[Miss]:
    """Every (file, requirement) the results miss, in result order."""
    misses = []
    for r in results:
        name = f"{Path(r.model).name} [{r.key}] @ {r.target.split('?')[0]}"
        for req in requirements:
            if not r.ok:
                misses.append(Miss(name, req, None, r.status))
                continue
            value = METRICS[req.metric].value(r)
            if value is None:
                misses.append(Miss(name, req, None, "not measured: pass --eval-data for accuracy"
                                   if req.metric == "accuracy" else "not measured"))
            elif not req.holds(float(value)):
                misses.append(Miss(name, req, float(value)))
    return misses
