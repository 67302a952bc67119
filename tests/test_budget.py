"""Budgets: parsing, bisection that respects the limit, latency table from real harness runs."""

from __future__ import annotations

import pytest
import torch

from edgekd.edge.budget import Budget, LatencyTable, cost_fn, fit_budget, int8_bytes, parse_budget, verify
from edgekd.edge.pipeline import parse_edge_options
from edgekd.edge.prune import prune
from edgekd.errors import ConfigError
from edgekd.models import count_params, create


@pytest.mark.parametrize(("text", "kind", "limit"), [
    ("latency_ms=2.5", "latency_ms", 2.5), ("params=50k", "params", 50_000), ("bytes=64KB", "bytes", 65_536),
    ("params=1.5M", "params", 1.5e6), (" bytes = 1000 ", "bytes", 1000), ("latency_ms=1e+06", "latency_ms", 1e6),
    ("latency_ms=2.5E-1ms", "latency_ms", 0.25),
])
def test_parse(text: str, kind: str, limit: float) -> None:
    assert parse_budget(text) == Budget(kind, limit)


@pytest.mark.parametrize("text", ["latency=2", "params=", "params=5q", "flops=1", "params=0", "latency_ms=5us",
                                  "latency_ms=2KB", "bytes=3ms", "params=1.2.3", "bytes=."])
def test_parse_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="budget"):
        parse_budget(text)


def test_a_time_unit_on_latency_says_the_value_in_ms() -> None:
    with pytest.raises(ConfigError) as e:
        parse_budget("latency_ms=5us")
    assert "latency_ms=0.005" in str(e.value.hint)


def test_cli_options() -> None:
    o = parse_edge_options(qat=True, budget="latency_ms=1.5")
    assert o.qat and o.budget == Budget("latency_ms", 1.5) and o.prune is None
    with pytest.raises(ConfigError, match="both set the pruning ratio"):
        parse_edge_options(prune=0.5, budget="params=10k")


@pytest.mark.parametrize(("kind", "limit"), [("params", 40_000), ("params", 20_000), ("bytes", 30_000)])
def test_ratio_search_respects_budget_and_is_tight(kind: str, limit: float) -> None:
    m = create("resnet8", num_classes=10, in_channels=1)
    b = Budget(kind, limit)
    cost = cost_fn(b)
    r = fit_budget(lambda v: prune(m, v), b, cost, tol=0.01)
    assert r.cost <= limit and r.margin >= 0 and r.cost == cost(prune(m, r.value))
    assert cost(prune(m, max(0.0, r.value - 0.02))) > limit  # a little less pruning breaks the budget
    assert r.evaluations and all(v == r.value or c > limit or v > r.value for v, c in r.evaluations)


def test_width_search_and_infeasible() -> None:
    from edgekd.models.mobilenet import MobileNetV2

    b = Budget("params", 100_000)
    r = fit_budget(lambda w: MobileNetV2(w, in_channels=1, head_channels=256), b, cost_fn(b),
                   lo=0.1, hi=1.0, shrinks=False, tol=0.05)
    assert count_params(MobileNetV2(r.value, in_channels=1, head_channels=256)) <= 100_000 < \
        count_params(MobileNetV2(min(1.0, r.value + 0.05), in_channels=1, head_channels=256))
    with pytest.raises(ConfigError, match="raise the params budget"):
        fit_budget(lambda v: prune(create("resnet8"), v), Budget("params", 100), cost_fn(Budget("params", 100)))


def test_int8_bytes_counts_weights() -> None:
    assert int8_bytes(torch.nn.Conv2d(4, 8, 3, bias=False)) == 8 * 4 * 9 + 64


def test_latency_table_from_harness_predicts_and_verifies() -> None:
    torch.manual_seed(0)
    m = create("resnet14", num_classes=10, in_channels=1).eval()
    ex = (torch.randn(1, 1, 16, 16),)
    table = LatencyTable.measure([prune(m, 0.0), prune(m, 0.8)], ex, runs=40)
    assert len(table.samples) == 2 and all(s["p50_ms"] > 0 for s in table.samples)
    full, small = table.predict(prune(m, 0.0)), table.predict(prune(m, 0.8))
    assert small < full
    b = Budget("latency_ms", (full + small) / 2)
    r = fit_budget(lambda v: prune(m, v), b, cost_fn(b, table), tol=0.02)
    assert 0.0 < r.value < 0.8 and r.cost <= b.limit
    from edgekd.edge.budget import measure_latency_ms

    verify(r, prune(m, r.value), lambda mm: measure_latency_ms(mm, ex, runs=40))
    assert r.measured_cost is not None and r.measured_cost > 0 and r.measured_margin is not None
    with pytest.raises(ConfigError, match="latency table"):
        cost_fn(b)
