"""Latency statistics: known values, agreement with numpy and with the device runner."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.bench.stats import Stats
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
