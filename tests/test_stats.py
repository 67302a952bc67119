"""Latency statistics: known values, agreement with numpy and with the device runner."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.bench.stats import Spread, Stats, agreement, trimmed_mean, verdict, windows
from edgekd.errors import BenchError


def test_known_samples() -> None:
    s = Stats.from_samples([float(v) for v in range(1, 11)])  # 1..10
    assert (s.p50, s.p90, s.p99) == pytest.approx((5.5, 9.1, 9.91))  # linear interpolation
    assert s.mean == 5.5 and s.min == 1.0 and s.max == 10.0
    assert s.std == pytest.approx(np.sqrt(8.25))  # population std, not the sample std (3.03)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_and_the_runner(runner_module, seed: int) -> None:
    samples = np.random.default_rng(seed).lognormal(0.0, 0.5, size=37).tolist()
    s = Stats.from_samples(samples)
    assert s.p90 == pytest.approx(np.percentile(samples, 90)) and s.std == pytest.approx(np.std(samples))
    assert s.to_dict() == runner_module.summarize(samples)  # bit-identical: same method on both sides


def test_round_trip_and_single_sample() -> None:
    s = Stats.from_samples([2.5])
    assert s.p99 == s.min == s.max == 2.5 and s.std == 0.0
    assert Stats.from_dict(s.to_dict()) == s


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")]])
def test_rejects_empty_or_non_finite(bad: list[float]) -> None:
    with pytest.raises(BenchError, match="bench/stats"):
        Stats.from_samples(bad)


def test_trimmed_mean_drops_a_tenth_at_each_end() -> None:
    a = [float(v) for v in range(1, 11)] + [1000.0] * 0
    assert trimmed_mean(a) == pytest.approx(5.5)  # drops 1 and 10: mean of 2..9
    spiky = [1.0] * 18 + [100.0, 200.0]  # two outliers in 20: both dropped (2 per end)
    assert trimmed_mean(spiky) == 1.0 and np.mean(spiky) > 15
    assert trimmed_mean([3.0, 4.0]) == 3.5  # floor(0.2) = 0 dropped
    with pytest.raises(BenchError, match="trimmed"):
        trimmed_mean([])


def test_spread_cv_verdict_and_mlperf_minimum() -> None:
    s = Spread.from_samples([9.0, 11.0] * 50)  # mean 10, population std 1: CV 10%
    assert s.cv == pytest.approx(0.10) and s.verdict == "noisy" and (s.min, s.max, s.n) == (9.0, 11.0, 100)
    assert s.duration_s == pytest.approx(1.0) and not s.mlperf_ok()
    assert verdict(0.05) == "stable" and verdict(0.0501) == "noisy" and verdict(0.1001) == "unstable"
    assert Spread.from_samples([60.0] * 1024).mlperf_ok()  # 1024 queries over 61.4 s
    assert not Spread.from_samples([50.0] * 1024).mlperf_ok()  # 51.2 s: too short


def test_agreement_within_five_percent() -> None:
    ok = agreement([1.00, 1.02, 1.04, 0.99, 1.01])
    assert ok.agree and ok.spread == pytest.approx(0.05 / 1.01)
    bad = agreement([1.0, 1.0, 1.06])
    assert not bad.agree and bad.spread == pytest.approx(0.06)
    with pytest.raises(BenchError):
        agreement([])


def test_windows_cut_back_to_back_samples_by_time() -> None:
    w = windows([400.0] * 10, 1.0)  # 0.4 s each: windows end at 1.2, 2.0, 3.2, 4.0 s
    assert [round(t, 2) for t, _ in w] == [1.2, 2.0, 3.2, 4.0] and [len(c) for _, c in w] == [3, 2, 3, 2]
    long = windows([2500.0, 100.0], 1.0)  # one sample longer than two windows does not leave them empty
    assert [len(c) for _, c in long] == [1, 1]
    with pytest.raises(BenchError):
        windows([1.0], 0)
