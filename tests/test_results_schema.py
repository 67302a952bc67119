"""results.jsonl written by another edgekd version stays readable, and unreadable lines are counted, not hidden.

The "previous schema" line is what edgekd wrote before the statistics/measuring-modes change (git: the
``BenchResult`` of ``edgekd/bench/results.py`` before commit ae1aada): no ``runner``, ``warm_load_ms``, ``spread``,
``min_duration_s``, ``status``. The "newer" line stands for a later edgekd: a field this version does not know,
statistics with more keys than today's dataclasses (today's loader dropped such a line with a TypeError).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgekd.bench.results import RESULTS, BenchResult, load_results
from edgekd.bench.stats import Spread, Stats
from edgekd.cli import main

SAMPLES = [0.1412, 0.1389, 0.1401, 0.1456, 0.1398, 0.1523, 0.1391, 0.1402, 0.1387, 0.1410]

PREVIOUS = {  # edgekd before ae1aada: latency_ms of 7 keys and the samples; no spread, runner, warm load
    "target": "local", "model": "/home/me/bundle/model_int8.tflite", "model_name": "resnet8",
    "key": "tflite/int8/litert-torch", "format": "tflite", "precision": "int8", "converter": "litert-torch",
    "bytes": 98312, "runtime": "tflite", "runtime_version": "2.3.0", "interpreter": "ai_edge_litert.interpreter",
    "threads": 2, "warmup": 10, "runs": 10, "load_ms": 3.21, "first_inference_ms": 0.402,
    "latency_ms": {"p50": 0.14015, "p90": 0.14627, "p99": 0.15170, "mean": 0.14169, "std": 0.00394,
                   "min": 0.1387, "max": 0.1523},
    "latency_samples_ms": SAMPLES, "peak_mem_mb": 1.9, "baseline_mem_mb": 61.2, "accuracy": 0.947,
    "eval_samples": 1000, "machine": {"hostname": "box", "machine": "x86_64", "python": "3.11.7", "cpu_count": 2},
    "input": {"shape": [1, 1, 28, 28], "dtype": "int8", "layout": "NCHW"}, "error": None, "error_type": None,
    "exit_code": 0, "created": "2026-11-20T10:04:31",
}


def _newer() -> dict:
    row = dict(PREVIOUS, model="/home/me/bundle/model_fp32.pte", key="pte/fp32/executorch", format="pte",
               precision="fp32", converter="executorch", runtime="executorch", runner="native", warm_load_ms=1.1)
    row["latency_ms"] = {**row["latency_ms"], "p95": 0.149}  # a statistic this version does not have
    row["spread"] = {"n": 10, "trimmed_mean": 0.14, "cv": 0.03, "verdict": "stable", "min": 0.1387, "max": 0.1523,
                     "duration_s": 0.0014, "mad": 0.0007}
    row["energy_mj"] = 0.42  # a field this version does not know
    row["status"] = "ok"
    return row


def _write(path: Path, lines: list[str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / RESULTS).write_text("".join(f"{line}\n" for line in lines))
    return path


def test_old_and_newer_lines_load_and_the_unreadable_ones_are_counted_with_why(tmp_path: Path) -> None:
    no_samples = dict(PREVIOUS, model="/home/me/bundle/b.tflite", latency_samples_ms=[],
                      latency_ms={"p50": 0.2, "p90": 0.3})  # stats cut short, nothing to recompute them from
    failed = {k: v for k, v in PREVIOUS.items() if k not in ("latency_ms", "latency_samples_ms")}
    failed.update(model="/home/me/bundle/c.pte", error="bench/local: c.pte: corrupt", error_type="corrupt_model",
                  exit_code=3)
    lines = [json.dumps(PREVIOUS), json.dumps(_newer()), json.dumps(no_samples), json.dumps(failed),
             json.dumps(PREVIOUS)[:200], json.dumps([1, 2, 3]), json.dumps({"target": "local", "runs": 3})]
    run = _write(tmp_path / "run", lines)
    rows = load_results(run / RESULTS)
    assert [Path(r.model).name for r in rows] == ["model_int8.tflite", "model_fp32.pte", "b.tflite", "c.pte"]
    old, new, short, bad = rows
    assert old.latency_ms == Stats.from_samples(SAMPLES) and old.spread == Spread.from_samples(SAMPLES)
    assert old.latency_ms.p50 == pytest.approx(float(np.median(SAMPLES)))
    assert (old.runner, old.warm_load_ms, old.min_duration_s, old.extra_fields) == (None, None, 0.0, {})
    assert new.latency_ms == Stats.from_samples(SAMPLES)  # recomputed from the samples, whatever keys were stored
    assert new.spread == Spread.from_samples(SAMPLES)
    assert new.extra_fields == {"energy_mj": 0.42} and new.runner == "native" and new.warm_load_ms == 1.1
    assert new.to_dict()["energy_mj"] == 0.42  # kept aside, written back as it was
    assert BenchResult.from_dict(json.loads(json.dumps(new.to_dict()))) == new
    assert short.ok and short.latency_ms is None and short.spread is None  # read, with what could not be known
    assert not bad.ok and bad.error_type == "corrupt_model" and bad.status == "failed on device"
    assert rows.skipped == [(5, "not JSON (cut off by an interruption?)"), (6, "not a JSON object but a list"),
                            (7, "no 'model' field")]
    assert rows.describe() == (f"3 of 7 lines of {run / RESULTS} could not be read: 1 not JSON (cut off by an "
                               "interruption?) (line 5); 1 not a JSON object but a list (line 6); 1 no 'model' field "
                               "(line 7)")


def test_edgekd_report_shows_an_older_run_and_says_what_it_could_not_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _write(tmp_path / "old_run", [json.dumps(PREVIOUS), json.dumps(_newer()), '{"target": "local", "mod'])
    assert main(["report", str(run)]) == 0
    err = capsys.readouterr().err
    assert f"note: 1 of 3 lines of {run / RESULTS} could not be read: 1 not JSON" in err
    page = (run / "report" / "index.html").read_text()
    assert "2 results, 2 ok, 0 failed" in page and "tflite/int8" in page and "pte/fp32" in page
