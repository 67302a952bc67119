"""Latency summary statistics derived from raw samples.

The percentile method (numpy's default linear interpolation) and the population standard
deviation match ``runtimes/python/edgekd_runner.py`` exactly, so a summary the device printed
and one recomputed here from its raw samples agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgekd.errors import BenchError


@dataclass(frozen=True)
class Stats:
    """Summary of latency samples, all in milliseconds."""

    p50: float
    p90: float
    p99: float
    mean: float
    std: float  # population std (ddof=0)
    min: float
    max: float

    @staticmethod
    def from_samples(samples_ms: Sequence[float]) -> Stats:
        """Summarise raw samples; the caller keeps the samples themselves."""
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0 or not np.all(np.isfinite(a)):
            raise BenchError(f"cannot summarise {a.size} latency samples (empty or not finite)",
                             stage="bench/stats", hint="run at least one timed inference (runs >= 1)")
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        return Stats(p50=float(p50), p90=float(p90), p99=float(p99), mean=float(a.mean()),
                     std=float(a.std()), min=float(a.min()), max=float(a.max()))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Stats:
        return Stats(**{k: float(d[k]) for k in ("p50", "p90", "p99", "mean", "std", "min", "max")})
