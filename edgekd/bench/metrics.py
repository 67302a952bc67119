"""The metrics table: every figure a benchmark result yields, declared once.

Each :class:`Metric` names the figure (as ``--require`` writes it), its unit, which way is better, what it
means and how it is read from a :class:`~edgekd.bench.results.BenchResult` (latency figures come from the
statistics the result derives from its raw samples, :class:`~edgekd.bench.stats.Stats` and
:class:`~edgekd.bench.stats.Spread`), and the column it fills in the text report (header, number format,
scale). The gate (``--require``), the report's columns, ``edgekd list metrics`` and the CLI help read this
table; a new figure is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.bench.results import BenchResult


@dataclass(frozen=True)
class Metric:
    """One row of the table (see the module docstring)."""

    name: str  # as --require writes it: p50_ms
    unit: str  # ms, MB, KB or fraction
    better: str  # "lower" or "higher"
    meaning: str
    value: Callable[[BenchResult], Any]  # None where the result has no such figure
    column: str | None = None  # its header in the text report (None: not a column)
    fmt: str = ".3f"  # the column's number format
    scale: float = 1.0  # the column shows value * scale (a fraction as %)

    def cell(self, r: BenchResult) -> Any:
        """The value as its report column shows it (scaled), None where there is none."""
        v = self.value(r)
        return None if v is None else v * self.scale if self.scale != 1.0 else v


def _lat(stat: str) -> Callable[[BenchResult], float | None]:
    return lambda r: getattr(r.latency_ms, stat) if r.latency_ms else None


def _spread(stat: str) -> Callable[[BenchResult], float | None]:
    return lambda r: getattr(r.spread, stat) if r.spread else None


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", "fraction", "higher", "top-1 accuracy, a fraction in [0, 1]", lambda r: r.accuracy,
           "acc %", ".2f", 100.0),
    Metric("p50_ms", "ms", "lower", "median latency, ms", _lat("p50"), "p50 ms"),
    Metric("p90_ms", "ms", "lower", "ms", _lat("p90"), "p90 ms"),
    Metric("p99_ms", "ms", "lower", "ms", _lat("p99"), "p99 ms"),
    Metric("mean_ms", "ms", "lower", "ms", _lat("mean")),
    Metric("max_ms", "ms", "lower", "ms", _lat("max"), "max ms"),
    Metric("trimmed_mean_ms", "ms", "lower", "mean of the middle 80%, ms", _spread("trimmed_mean"), "trim ms"),
    Metric("cv", "fraction", "lower", "std / mean, a fraction", _spread("cv"), "cv %", ".2f", 100.0),
    Metric("load_ms", "ms", "lower", "cold load, ms", lambda r: r.load_ms, "load ms", ".2f"),
    Metric("warm_load_ms", "ms", "lower", "warm load, ms", lambda r: r.warm_load_ms, "warm ms", ".2f"),
    Metric("first_ms", "ms", "lower", "first inference, ms", lambda r: r.first_inference_ms, "first ms"),
    Metric("peak_mem_mb", "MB", "lower", "MB", lambda r: r.peak_mem_mb, "peak MB", ".1f"),
    Metric("size_kb", "KB", "lower", "file size, KB", lambda r: r.bytes / 1024 if r.bytes else None),
)}
