"""Issue 30: the fp32 ``.pte`` vs ``.tflite`` rule, its warnings in ``edgekd bench`` / ``edgekd report``, and
what the export records (the check on the export host, the XNNPACK graph each ``.pte`` lowers to).

Nothing here asserts a time: the rule is tested on given numbers, the export check on its bookkeeping.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgekd.bench.report import speed_warnings, write_summary
from edgekd.bench.results import BenchResult
from edgekd.bench.stats import Spread, Stats
from edgekd.convert.speed import MIN_GAP_MS, SLOW_RATIO, slow_pte_note


@pytest.mark.parametrize(("pte_ms", "tflite_ms", "slow"), [
    (7.93, 2.88, True),  # issue 30: AVX2-only Zen 3, 1 thread
    (4.12, 1.66, True),  # the same, 2 threads
    (2.50, 2.68, False),  # AVX-512: the .pte is on a par
    (SLOW_RATIO * 2.0 - 0.01, 2.0, False),  # just under the ratio
    (SLOW_RATIO * 2.0, 2.0, True),
    (0.09, 0.03, False),  # 3x, but a tiny model: 0.06 ms is per-call overhead, not kernels
    (0.03 + MIN_GAP_MS, 0.03, True),
])
def test_slow_pte_rule(pte_ms: float, tflite_ms: float, slow: bool) -> None:
    note = slow_pte_note(pte_ms, tflite_ms, "on box")
    assert (note is not None) == slow
    if slow:
        assert note is not None
        assert f"{pte_ms / tflite_ms:.1f}x" in note and "on box" in note and "ship fp32 as .tflite" in note


def _row(fmt: str, prec: str, conv: str, p50: float, *, target: str = "local", threads: int = 1,
         error: str | None = None) -> BenchResult:
    samples = [p50 * f for f in (0.98, 1.0, 1.0, 1.02, 1.05)]
    return BenchResult(target=target, model=f"/b/m_{prec}_{conv}.{fmt}", model_name="m", key=f"{fmt}/{prec}/{conv}",
                       format=fmt, precision=prec, converter=conv, bytes=1024, threads=threads, error=error,
                       latency_samples_ms=[] if error else samples,
                       latency_ms=None if error else Stats.from_samples(samples),
                       spread=None if error else Spread.from_samples(samples),
                       machine={"cpu_model": "AMD EPYC 7R13", "isa": {"avx2": True, "avx512f": False}})


def test_bench_warns_per_target_and_thread_count_against_the_fastest_tflite(tmp_path: Path) -> None:
    rows = [
        _row("pte", "fp32", "executorch", 7.9), _row("tflite", "fp32", "litert-torch", 2.9),
        _row("tflite", "fp32", "onnx2tf", 3.1), _row("pte", "int8", "executorch", 2.8),
        _row("tflite", "int8", "litert-torch", 0.9),  # int8 is not judged by this rule
        _row("pte", "fp32", "executorch", 4.1, threads=2), _row("tflite", "fp32", "litert-torch", 3.5, threads=2),
        _row("pte", "fp32", "executorch", 9.0, target="ssh://pi@board"),  # no .tflite measured there
    ]
    warnings = speed_warnings(rows)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("m: ") and "2.7x" in warnings[0] and "on local (AMD EPYC 7R13), 1 thread" in warnings[0]
    summary = write_summary(rows, tmp_path / "summary.json").read_text()
    assert "ship fp32 as .tflite" in summary
    # a .tflite that failed on the device is no reference
    assert speed_warnings([rows[0], _row("tflite", "fp32", "litert-torch", 2.9, error="boom")]) == []


def test_report_page_shows_the_warning(tmp_path: Path) -> None:
    from edgekd.bench.html_report import write_html_report
    from edgekd.bench.results import append_result

    run = tmp_path / "run"
    run.mkdir()
    for r in (_row("pte", "fp32", "executorch", 7.9), _row("tflite", "fp32", "litert-torch", 2.9)):
        append_result(run / "results.jsonl", r)
    page = write_html_report(run).read_text()
    assert "the fp32 .pte takes 2.7x the time of the fp32 .tflite beside it on local" in page


class ConvNet(nn.Module):
    """conv-bn-relu (1 input channel), a strided conv-bn-relu with a 1x1 projection added, mean, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16)
        self.proj = nn.Conv2d(8, 16, 1, stride=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.c2(x)) + self.proj(x))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def fp32_bundle(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from edgekd.convert import export

    torch.manual_seed(0)
    model = ConvNet().eval()
    x = torch.randn(40, 1, 12, 12)
    return export(model, (x[:1],), formats=("pte", "tflite"), precision=("fp32",), parity_data=x,
                  out_dir=tmp_path_factory.mktemp("fp32"), progress=False)


def test_export_records_the_host_check_of_the_fp32_pte_against_the_tflite(fp32_bundle) -> None:  # type: ignore[no-untyped-def]
    from edgekd.bundle import Bundle

    check = Bundle.load(fp32_bundle.root).extra["fp32_pte_vs_tflite"]  # survives the manifest round trip
    assert check["pte"] == "model_fp32.pte" and check["tflite"] == "model_fp32.tflite", check
    assert "error" not in check, check
    assert check["pte_ms"] > 0 and check["tflite_ms"] > 0 and check["calls"] >= 2 and check["threads"] >= 1
    assert check["ratio"] == pytest.approx(check["pte_ms"] / check["tflite_ms"])
    # the recorded note is the rule applied to the recorded medians, whatever this machine measured
    assert (check["note"] is None) == (slow_pte_note(check["pte_ms"], check["tflite_ms"], "x") is None)


def test_each_convolution_reaches_xnnpack_as_one_convolution_node(fp32_bundle) -> None:  # type: ignore[no-untyped-def]
    """What the AVX2 analysis relies on: the export leaves nothing to improve in the graph. Every conv is one
    XNNPACK convolution (batch norm folded, ReLU fused, no copies), in one partition, with the two layout
    transposes at its edges only; the fp32 gap is inside XNNPACK's convolution kernel."""
    cov = fp32_bundle.file("pte/fp32/executorch").extra["partition"]
    nodes = cov["xnnpack_nodes"]
    assert cov["partitions"] == 1 and cov["non_delegated_ops"] == 0, cov
    assert nodes.get("XNNConv2d", 0) + nodes.get("XNNDepthwiseConv2d", 0) == 3, nodes  # c1 (1 input channel), c2, proj
    assert nodes.get("XNNStaticTranspose", 0) <= 2, nodes
    assert not {"XNNCopy", "XNNBatchNorm", "XNNClamp", "XNNStaticSlice"} & set(nodes), nodes


def test_no_check_without_a_fp32_tflite_beside_the_pte(tmp_path: Path) -> None:
    from edgekd.convert import export

    torch.manual_seed(0)
    model, x = ConvNet().eval(), torch.randn(8, 1, 12, 12)
    only_pte = export(model, (x[:1],), formats=("pte",), precision=("fp32",), parity_data=x,
                      out_dir=tmp_path / "a", progress=False)
    assert "fp32_pte_vs_tflite" not in only_pte.extra
