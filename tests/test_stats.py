"""Latency statistics: known values, agreement with numpy and with the device runner."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.bench.stats import (
    Spread,
    Stats,
    agreement,
    noise_band,
    noise_groups,
    robust_cv,
    trimmed_mean,
    verdict,
    windows,
)
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
    s = Spread.from_samples([9.5, 10.5] * 50)  # mean 10, population std 0.5: CV 5%; MAD 0.5: robust CV 7.4%
    assert s.cv == pytest.approx(0.05) and s.robust_cv == pytest.approx(1.4826 * 0.05)
    assert s.verdict == "noisy" and (s.min, s.max, s.n) == (9.5, 10.5, 100)
    assert s.duration_s == pytest.approx(1.0) and not s.mlperf_ok()
    assert robust_cv([9.0, 11.0] * 50) == pytest.approx(0.148, abs=1e-3)
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


def test_noise_band_is_the_range_of_the_round_p50s() -> None:
    assert noise_band({"p50s": [1.02, 0.98, 1.00]}) == (0.98, 1.02)
    assert noise_band({"p50s": [1.000, 1.001, 1.002]}) == pytest.approx((0.99099, 1.01101))  # at least +-1 %
    assert noise_band({"p50s": [1.000, 1.001, 1.002]}, resolution=0) == (1.0, 1.002)
    assert noise_band({"p50s": [1.0]}) is None and noise_band(None) is None  # one p50 says nothing about noise
    assert noise_band({"p50s": [1.0, float("nan")]}) is None


def test_noise_groups_join_overlapping_bands_only() -> None:
    bands = [(1.00, 1.02), (0.50, 0.52), (1.01, 1.05), (1.10, 1.12), None, (0.515, 0.53)]
    assert noise_groups(bands) == ["b", "a", "b", "c", None, "a"]
    assert noise_groups([(1.0, 1.01), (1.02, 1.03)]) == ["a", "b"]  # close, but the ranges do not meet
    assert noise_groups([]) == [] and noise_groups([None]) == [None]
    assert noise_groups([(float(i), i + 0.5) for i in range(28)])[26:] == ["aa", "ab"]


def test_equal_files_rarely_look_different() -> None:
    """Two equally fast files, 5 rounds each: disjoint ranges only when all five of one lie below all five of
    the other, 2 / C(10, 5) < 1 % of the time."""
    rng = np.random.default_rng(0)
    draws = rng.lognormal(0.0, 0.05, size=(4000, 2, 5))
    split = sum(noise_groups([(a.min(), a.max()), (b.min(), b.max())]) == ["a", "b"] or
                noise_groups([(a.min(), a.max()), (b.min(), b.max())]) == ["b", "a"] for a, b in draws)
    assert split / len(draws) == pytest.approx(2 / 252, abs=0.004)


def test_preempted_runs_do_not_make_a_steady_p50_unstable() -> None:
    """A 0.05 ms model, 1 run in 200 preempted for a 4 ms tick: CV ~110 %, the p50 and the bulk do not move."""
    rng = np.random.default_rng(0)
    a = rng.normal(0.05, 0.0005, size=20000)
    a[::200] = 4.0
    s = Spread.from_samples(a.tolist())
    assert s.cv > 1.0 and s.robust_cv < 0.02 and s.verdict == "stable"
    bimodal = Spread.from_samples([0.05] * 500 + [0.1] * 500)  # half the runs twice as slow: not a steady p50
    assert bimodal.verdict == "unstable"
