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
    r = subprocess.run([sys.executable, "-m", "edgekd.cli", "demo", "--quick", "--no-progress", "--out", str(out),
                        "--timing-lock", str(tmp_path / "timing.lock")],
                       capture_output=True, text=True, timeout=1800)  # ~3 min idle; 15+ min at load average 15
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
    # ... which opens with what the demo is about, above the benchmark: teacher, KD vs alone per seed with the
    # margin and spread, both students' validation curves
    about = page[:page.index("<h2>Devices</h2>")]
    assert "What this demo shows" in about and f"{100 * summary['teacher']['test_acc']:.2f}%" in about
    for run, m in zip(kd["runs"], kd["margins"], strict=True):
        assert f"<td>{run['seed']}</td><td>{100 * run['alone']:.2f}</td><td>{100 * run['kd']:.2f}</td>" in about
        assert f"{m:+.2f}</td>" in about
    assert f"Mean margin <b>{kd['mean_margin']:+.2f}</b>" in about and f"seed spread {kd['spread']:.2f}" in about
    assert "data:image/png;base64," in about
    for seed in ("0", "1"):  # validation curves of both students, from their training history
        curves = kd["val_curves"][seed]
        assert len(curves["alone"]) >= 1 and len(curves["kd"]) >= 1
        assert all(0 <= acc <= 1 for _, acc in curves["alone"] + curves["kd"])
    # every file measured in interleaved rounds: a noise band per row, noise groups, the two students compared
    assert all(len(res["repeat"]["p50s"]) == 3 for res in results)
    assert "p50 range ms" in r.stdout and "same as" in r.stdout and "same architecture, same speed?" in r.stdout
    pairs = summary["speed_pairs"]
    assert sorted(p["key"] for p in pairs) == sorted({res["key"] for res in results}) and len(pairs) == 4
    for p in pairs:
        lo_kd, hi_kd = p["kd_band_ms"]
        lo_al, hi_al = p["alone_band_ms"]
        assert p["same"] == (lo_kd <= hi_al and lo_al <= hi_kd)
        assert p["key"] in about and ("same within noise" in about or "differ beyond noise" in about)
    assert "p50 range" in page[page.index("<h2>Results</h2>"):]
    # wall and CPU seconds per stage (the benchmark stage under the timing lock, nobody else queued on it)
    stages = summary["stages"]
    assert list(stages) == ["teacher", "students", "export", "bench", "report"]
    assert all(st["wall_s"] > 0 and st["cpu_s"] >= 0 for st in stages.values())
    assert stages["bench"]["lock_wait_s"] < 5 and stages["bench"]["cpu_s"] > 0  # the runners' CPU is counted
    assert summary["cpu_s"] == pytest.approx(sum(st["cpu_s"] for st in stages.values()), abs=0.2)
    assert sum(st["wall_s"] for st in stages.values()) <= summary["wall_s"] + 1
    assert len(summary["bench_load_avg"]["before"]) == 3 and len(summary["bench_load_avg"]["after"]) == 3
    assert f"({summary['cpu_s']:.0f} CPU-seconds)" in r.stdout
