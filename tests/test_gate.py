"""``--require``: parsing (clear errors) and the check over results, and the CLI's exit code."""

from __future__ import annotations

import pytest

from edgekd.bench.gate import GATE_EXIT, Requirement, check, parse_require
from edgekd.bench.results import BenchResult
from edgekd.bench.stats import Spread, Stats
from edgekd.errors import ConfigError


def _row(name: str, p50: float, acc: float | None, error: str | None = None, error_type: str | None = None
         ) -> BenchResult:
    samples = [p50] * 5
    return BenchResult(target="local", model=f"/b/{name}", model_name="m", key="pte/int8/executorch", format="pte",
                       precision="int8", converter="executorch", bytes=2048, accuracy=acc, error=error,
                       error_type=error_type, latency_samples_ms=[] if error else samples,
                       latency_ms=None if error else Stats.from_samples(samples),
                       spread=None if error else Spread.from_samples(samples))


def test_parse_terms() -> None:
    assert parse_require("accuracy>=0.97, p50_ms<=2") == [Requirement("accuracy", ">=", 0.97),
                                                          Requirement("p50_ms", "<=", 2.0)]
    assert parse_require("cv<0.05,size_kb<=1e3") == [Requirement("cv", "<", 0.05), Requirement("size_kb", "<=", 1000)]


@pytest.mark.parametrize(("spec", "words"), [
    ("", "holds no requirement"),
    ("accuracy=>0.97", "cannot read 'accuracy=>0.97'"),
    ("speed<=2", "unknown metric 'speed'"),
    ("accuracy>=97", "fraction in [0, 1]"),
    ("p50_ms<=fast", "cannot read"),
])
def test_parse_errors_name_the_term(spec: str, words: str) -> None:
    with pytest.raises(ConfigError, match="bench/gate") as e:
        parse_require(spec)
    assert words in str(e.value)


def test_check_names_file_metric_value_and_limit() -> None:
    rows = [_row("good.pte", 1.5, 0.98), _row("slow.pte", 2.5, 0.99), _row("dumb.pte", 1.0, 0.90),
            _row("noacc.pte", 1.0, None), _row("broken.pte", 0, None, "bench/local: broken.pte: corrupt", "corrupt_model")]
    misses = check(rows, parse_require("accuracy>=0.97,p50_ms<=2"))
    text = [str(m) for m in misses]
    assert not any("good.pte" in t for t in text)
    assert "slow.pte [pte/int8/executorch] @ local: p50_ms = 2.5, required <= 2" in text
    assert "dumb.pte [pte/int8/executorch] @ local: accuracy = 0.9, required >= 0.97" in text
    assert any("noacc.pte" in t and "no value" in t and "--eval-data" in t for t in text)
    assert sum("broken.pte" in t and "failed on device" in t for t in text) == 2  # misses both requirements


def test_cli_gate_exit_codes(tiny_models, tmp_path, capsys) -> None:
    from edgekd.cli import main

    argv = ["bench", str(tiny_models.tflite), "--runs", "3", "--warmup", "0", "--threads", "1", "--no-progress",
            "--eval-data", str(tiny_models.eval)]
    assert main([*argv, "--out", str(tmp_path / "a"), "--require", "accuracy>=0.0,p50_ms<=10000"]) == 0
    assert "all 1 files meet" in capsys.readouterr().out
    assert main([*argv, "--out", str(tmp_path / "b"), "--require", "p50_ms<=0.000001"]) == GATE_EXIT
    err = capsys.readouterr().err
    assert "requirement missed: tiny.tflite" in err and "p50_ms" in err and "required <= 1e-06" in err
    assert main([*argv, "--out", str(tmp_path / "c"), "--require", "latency<=2"]) == 2  # bad spec: before any run
    assert "unknown metric 'latency'" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_one_metrics_table_feeds_the_gate_the_report_and_the_help() -> None:
    from edgekd.bench.metrics import METRICS
    from edgekd.bench.report import COLUMNS, format_table
    from edgekd.cli import build_parser

    r = _row("a.pte", 1.25, 0.5)
    for m in METRICS.values():
        assert m.better in ("lower", "higher") and m.unit in ("ms", "MB", "KB", "fraction"), m.name
        assert parse_require(f"{m.name}>=0")[0].metric == m.name  # the gate takes every metric
        if m.column:  # the report shows it, scaled, with the gate's own value
            v = m.value(r)
            assert COLUMNS[m.column][0](r) == (None if v is None else v * m.scale), m.name
    assert METRICS["accuracy"].better == "higher" and METRICS["p50_ms"].value(r) == 1.25
    table = format_table([r], columns=("p50 ms", "acc %"))
    assert "1.250" in table and "50.00" in table
    bench = build_parser()._subparsers._group_actions[0].choices["bench"].format_help()
    assert all(name in bench.replace("\n", " ").replace("  ", " ") for name in METRICS)
