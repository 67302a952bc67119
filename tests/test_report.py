"""``edgekd report`` and ``edgekd bench`` with several targets, from the CLI, on real runs."""

# ruff: noqa: F811  (pytest fixtures imported from standins.fixtures are re-bound as arguments)
from __future__ import annotations

import json
from pathlib import Path

from standins.fixtures import adb_server, adbd  # noqa: F401
from test_harness import _bundle

from edgekd.bench.html_report import pareto_front
from edgekd.cli import main


def test_pareto_front() -> None:
    pts = [(1.0, 90.0), (2.0, 95.0), (1.5, 80.0), (3.0, 94.0), (0.5, 70.0)]
    assert pareto_front(pts) == [4, 0, 1]


def test_bench_two_targets_resume_and_report(tiny_models, adbd, tmp_path: Path, capsys) -> None:
    root = _bundle(tmp_path / "bundle", {
        "tiny.tflite": (tiny_models.tflite.read_bytes(), "tflite", "fp32", "litert-torch"),
        "tiny_int8.tflite": (tiny_models.tflite_int8.read_bytes(), "tflite", "int8", "litert-torch")}).root
    run = tmp_path / "run"
    adb = adbd.url(workdir=str(tmp_path / "w"))
    argv = ["bench", str(root), "--target", "local", "--target", adb, "--runs", "3", "--warmup", "0",
            "--threads", "1", "--eval-data", str(tiny_models.eval), "--no-progress"]
    assert main([*argv, "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "== local" in out and f"== {adb.split('?')[0]}" in out
    lines = (run / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4
    (run / "results.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])  # cut off mid-line
    assert main([*argv, "--resume", str(run)]) == 0
    rows = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()[:3] +
            (run / "results.jsonl").read_text().splitlines()[4:]]
    assert len(rows) == 4 and all(r["error"] is None for r in rows)  # only the lost row ran again

    assert main(["report", str(run)]) == 0
    index = run / "report" / "index.html"
    page = index.read_text()
    pngs = sorted(p.name for p in index.parent.glob("*.png"))
    assert pngs == ["latency_tinycnn.png", "pareto.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in index.parent.glob("*.png"))
    assert "src='pareto.png'" in page and "http" not in page and "tinycnn" in page
    assert main(["report", str(tmp_path / "empty")]) == 2
