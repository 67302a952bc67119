"""End to end: `edgekd demo --quick` trains, distils, exports 8 files, benchmarks them, prints the tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.demo import DemoConfig, format_kd_table, kd_verdict


def test_kd_verdict_needs_every_seed_and_a_margin_above_the_spread() -> None:
    won = kd_verdict([0.85, 0.86, 0.84], [0.91, 0.92, 0.915])
    assert won["margins"] == pytest.approx([6.0, 6.0, 7.5]) and won["spread"] == pytest.approx(2.0)
    assert won["won"] and won["wins"] == 3
    one_lost = kd_verdict([0.85, 0.86, 0.84], [0.91, 0.85, 0.915])
    assert not one_lost["won"] and one_lost["wins"] == 2
    small = kd_verdict([0.85, 0.87, 0.84], [0.86, 0.875, 0.845])  # ahead everywhere, but inside the spread
    assert not small["won"] and small["wins"] == 3
    cfg = DemoConfig()
    steps = {"alone": 336, "kd": 330}
    assert "KD won on every seed (3/3)" in format_kd_table(cfg, 0.98, 3500, [
        {"seed": s, "alone": a, "kd": k} for s, a, k in zip((0, 1, 2), (0.85, 0.86, 0.84), (0.91, 0.92, 0.915),
                                                              strict=True)], won, steps)
    text = format_kd_table(cfg, 0.98, 3500, [{"seed": s, "alone": 0.85, "kd": 0.85} for s in (0, 1, 2)],
                           one_lost, steps)
    assert "KD did NOT win" in text and "ahead on 2/3 seeds" in text


def test_demo_quick(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "edgekd.cli", "demo", "--quick", "--no-progress", "--out", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    results = summary["results"]
    # 2 students x {pte, tflite} x {fp32, int8}
    assert len(results) == 8
    assert all(res["error"] is None for res in results)
    assert {(res["format"], res["precision"]) for res in results} == {
        (f, p) for f in ("pte", "tflite") for p in ("fp32", "int8")}
    for name in ("student_kd", "student_alone"):
        manifest = json.loads((out / "bundles" / name / "edgekd.json").read_text())
        assert len(manifest["files"]) == 4
        by_prec = {(res["format"], res["precision"]): res for res in results if res["model_name"] == name}
        for fmt in ("pte", "tflite"):
            fp32, int8 = by_prec[(fmt, "fp32")], by_prec[(fmt, "int8")]
            assert fp32["latency_ms"]["p50"] > 0 and fp32["peak_mem_mb"] >= 0
            # the runner's accuracy on the device agrees with eager within int8 noise
            assert abs(fp32["accuracy"] - int8["accuracy"]) <= 0.05
    # the table is printed with one row per file
    table_rows = [ln for ln in r.stdout.splitlines() if " pte " in f" {ln} " or " tflite " in f" {ln} "]
    assert len(table_rows) >= 8
    assert summary["teacher"]["test_acc"] > 0.5
    # the KD-vs-alone comparison: one row per seed, margins from the accuracies, the verdict printed
    kd = summary["kd_vs_alone"]
    assert [r["seed"] for r in kd["runs"]] == [0, 1]
    assert kd["margins"] == pytest.approx([100 * (r["kd"] - r["alone"]) for r in kd["runs"]])
    assert kd["won"] == (all(m > 0 for m in kd["margins"]) and kd["mean_margin"] > kd["spread"])
    assert ("KD won on every seed" in r.stdout) == kd["won"] and "mean margin" in r.stdout
    for run in kd["runs"]:
        assert f"{100 * run['alone']:.2f}" in r.stdout and f"{100 * run['kd']:.2f}" in r.stdout
    assert kd["labels"] == 100 and kd["transfer_images"] > kd["labels"]
    # the HTML report over both students' files (one run folder), and the status table
    page = (out / "bench" / "report" / "index.html").read_text()
    assert "student_kd" in page and "student_alone" in page
    assert "src='pareto.png'" in page and (out / "bench" / "report" / "latency.png").exists()
    assert "status" in r.stdout and "8/8 files ok" in r.stdout
