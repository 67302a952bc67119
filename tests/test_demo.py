"""End to end: `edgekd demo --quick` trains, distils, exports 8 files, benchmarks them, prints a table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


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
    page = (out / "report" / "index.html").read_text()  # the demo writes the report of both students' runs
    assert "<h2>Compared</h2>" in page and "src='pareto.png'" in page and (out / "report" / "latency.png").exists()
    assert "status" in r.stdout and "8/8 files ok" in r.stdout
