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


# -- what MLPerf Mobile / benchmark_model users look at beyond percentiles --------------------------
TRIM = 0.10  # trimmed mean drops this fraction at each end: the middle 80%
STABLE_CV = 0.05  # robust CV at most this: "stable" (a figure worth quoting)
NOISY_CV = 0.10  # above STABLE_CV up to this: "noisy"; above it: "unstable"
MAD_TO_STD = 1.4826  # MAD x this = the std of a normal distribution with that MAD
AGREE = 0.05  # --repeat: the p50s agree when (max - min) / median is at most this
MLPERF_MIN_QUERIES = 1024  # MLPerf Mobile single-stream: at least this many queries ...
MLPERF_MIN_DURATION_S = 60.0  # ... and at least this many seconds, for a publishable figure


def trimmed_mean(samples_ms: Sequence[float], trim: float = TRIM) -> float:
    """Mean of the samples left after dropping ``floor(n * trim)`` of the smallest and of the largest."""
    a = np.sort(np.asarray(samples_ms, dtype=np.float64))
    if a.size == 0 or not 0 <= trim < 0.5:
        raise BenchError(f"cannot take a {trim:.0%}-trimmed mean of {a.size} samples", stage="bench/stats",
                         hint="pass at least one sample and 0 <= trim < 0.5")
    k = int(np.floor(a.size * trim))
    return float(a[k:a.size - k].mean())


def verdict(cv: float) -> str:
    """``stable`` (<= 5%), ``noisy`` (<= 10%) or ``unstable``: how far a p50 from these runs can be trusted.

    Pass the robust CV (:func:`robust_cv`): the p50 is the bulk's, and the plain CV of a sub-millisecond
    model is the tail's (one run in 200 preempted for a 4 ms scheduler tick turns a 0.05 ms model's CV
    into ~100 % while its p50 does not move)."""
    return "stable" if cv <= STABLE_CV else "noisy" if cv <= NOISY_CV else "unstable"


def robust_cv(samples_ms: Sequence[float]) -> float:
    """1.4826 x the median absolute deviation over the median: the CV of the bulk of the runs.

    Equal to std / mean for normally distributed samples; a few far outliers (preemptions, interrupts)
    leave it where it is. A bimodal run (half the runs twice as slow) still scores high."""
    a = np.asarray(samples_ms, dtype=np.float64)
    med = float(np.median(a))
    return MAD_TO_STD * float(np.median(np.abs(a - med))) / med if med > 0 else 0.0


@dataclass(frozen=True)
class Spread:
    """How much the samples of one run scatter: the figures benchmark_model and MLPerf users expect."""

    n: int
    trimmed_mean: float  # mean of the middle 80% (ms)
    cv: float  # coefficient of variation: population std / mean (the tail's doing, on sub-millisecond models)
    verdict: str  # stable / noisy / unstable from robust_cv (see STABLE_CV, NOISY_CV)
    min: float
    max: float
    duration_s: float  # sum of the timed samples
    robust_cv: float | None = None  # 1.4826 MAD / median (None in rows written before it existed)

    @staticmethod
    def from_samples(samples_ms: Sequence[float]) -> Spread:
        s = Stats.from_samples(samples_ms)  # validates: non-empty, finite
        cv = s.std / s.mean if s.mean > 0 else 0.0
        rcv = robust_cv(samples_ms)
        return Spread(n=len(samples_ms), trimmed_mean=trimmed_mean(samples_ms), cv=float(cv), verdict=verdict(rcv),
                      min=s.min, max=s.max, duration_s=float(np.sum(samples_ms)) / 1e3, robust_cv=rcv)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def mlperf_ok(self) -> bool:
        """At least 1024 queries over at least 60 s: MLPerf Mobile's minimum for a publishable figure."""
        return self.n >= MLPERF_MIN_QUERIES and self.duration_s >= MLPERF_MIN_DURATION_S


@dataclass(frozen=True)
class Agreement:
    """Whether repeated runs of one file give the same p50 (``edgekd bench --repeat N``)."""

    p50s: tuple[float, ...]
    spread: float  # (max - min) / median of the p50s
    agree: bool  # spread <= tolerance
    tolerance: float = AGREE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def agreement(p50s: Sequence[float], tolerance: float = AGREE) -> Agreement:
    """The p50s of repeated runs agree when their range is at most ``tolerance`` of their median."""
    a = np.asarray(p50s, dtype=np.float64)
    if a.size == 0 or not np.all(np.isfinite(a)) or np.median(a) <= 0:
        raise BenchError(f"cannot compare {a.size} p50s {list(p50s)}", stage="bench/stats",
                         hint="repeat a run that measured at least once (--repeat 2 or more)")
    spread = float((a.max() - a.min()) / np.median(a))
    return Agreement(tuple(float(v) for v in a), spread, spread <= tolerance, tolerance)


# -- noise bands: which differences between files are real --------------------------------------------
RESOLUTION = 0.01  # a noise band is at least +-1 % of the p50: one machine does not reproduce finer differences


def noise_band(repeat: dict[str, Any] | None, resolution: float = RESOLUTION) -> tuple[float, float] | None:
    """The noise band of a file's p50: the range (min, max) of the p50s of its ``--repeat`` rounds,
    widened to at least ``resolution`` (1 %) either side of their median.

    With N rounds measured interleaved with the other files, the range covers the median of the
    round p50s' distribution with probability 1 - 2 * 0.5**N (94 % at N = 5), whatever that
    distribution is. The floor keeps a sub-percent difference between two quiet files from being
    called real: the same file measured on another day, after a reboot or with another memory
    layout moves by more than that. None for a file measured once (one p50 says nothing about its
    own noise).
    """
    p50s = [float(v) for v in (repeat or {}).get("p50s") or []]
    if len(p50s) < 2 or not all(np.isfinite(p50s)):
        return None
    mid = float(np.median(p50s))
    return min(min(p50s), mid * (1 - resolution)), max(max(p50s), mid * (1 + resolution))


def noise_groups(bands: Sequence[tuple[float, float] | None]) -> list[str | None]:
    """Label each band with a group letter; files in one group are the same speed within noise.

    Two files whose bands (:func:`noise_band`) overlap cannot be told apart by these measurements:
    if two files are equally fast, their round p50s are exchangeable, and with N rounds each their
    ranges miss each other with probability only 2 / C(2N, N) (under 1 % at N = 5). Groups are the
    connected runs of overlapping bands, lettered from the fastest (``a``); a file without a band
    gets None.
    """
    order = sorted((i for i, b in enumerate(bands) if b is not None), key=lambda i: bands[i])  # type: ignore[index]
    labels: list[str | None] = [None] * len(bands)
    group, hi = -1, -np.inf
    for i in order:
        lo_i, hi_i = bands[i]  # type: ignore[misc]
        if lo_i > hi:
            group += 1
            hi = hi_i
        else:
            hi = max(hi, hi_i)
        labels[i] = _letters(group)
    return labels


def _letters(n: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa, ...: group names that never run out."""
    out = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(ord("a") + r) + out
    return out


def windows(samples_ms: Sequence[float], seconds: float) -> list[tuple[float, list[float]]]:
    """Cut back-to-back samples into windows of ``seconds`` of timed work: ``[(end_s, samples), ...]``.

    The runner times its runs back to back, so the running sum of the samples is the time since the
    timed loop began (to within the loop's own few microseconds per run).
    """
    if seconds <= 0:
        raise BenchError(f"window length {seconds} s must be > 0", stage="bench/stats", hint="e.g. --interval 10")
    out: list[tuple[float, list[float]]] = []
    t, end, cur = 0.0, seconds, []
    for s in samples_ms:
        t += s / 1e3
        cur.append(float(s))
        if t >= end:
            out.append((t, cur))
            cur = []
            while end <= t:
                end += seconds
    if cur:
        out.append((t, cur))
    return out
