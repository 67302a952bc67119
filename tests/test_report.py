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
    assert pngs == ["latency.png", "pareto.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in index.parent.glob("*.png"))
    assert "src='pareto.png'" in page and "http" not in page and "tinycnn" in page
    assert main(["report", str(tmp_path / "empty")]) == 2


def _fake_run(run: Path, scale: float, with_ops: bool) -> None:
    """A run folder with measured rows (fixed samples), a failed-to-export row and an op table."""
    import numpy as np

    from edgekd.bench.results import BenchResult, append_result
    from edgekd.bench.stats import Spread, Stats

    run.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for fmt, prec, conv, lat, acc, kb in (("pte", "fp32", "executorch", 1.2, 0.981, 330),
                                          ("pte", "int8", "executorch", 0.45, 0.978, 95),
                                          ("tflite", "int8", "litert-torch", 0.40, 0.979, 92)):
        s = rng.lognormal(np.log(lat * scale), 0.03, 200).tolist()
        append_result(run / "results.jsonl", BenchResult(
            target="local", model=f"/b/m_{prec}_{conv}.{fmt}", model_name="m", key=f"{fmt}/{prec}/{conv}", format=fmt,
            precision=prec, converter=conv, bytes=kb * 1024, threads=2, runs=200, load_ms=5.0, warm_load_ms=1.0,
            latency_samples_ms=s, latency_ms=Stats.from_samples(s), spread=Spread.from_samples(s), accuracy=acc,
            machine={"cpu_model": "Test CPU 9000", "arch": "x86_64", "isa": {"avx2": True, "avx512_vnni": False}}))
    append_result(run / "results.jsonl", BenchResult(
        target="local", model="/b/m_fp16.tflite", model_name="m", key="tflite/fp16/litert-torch", format="tflite",
        precision="fp16", converter="litert-torch", bytes=0, error="export: m_fp16.tflite: simulated", error_type="export"))
    if with_ops:
        (run / "profiles").mkdir()
        (run / "profiles" / "m_int8_executorch__2t.ops.json").write_text(json.dumps(
            {"source": "etdump", "ops": [{"name": f"op_{i}", "count": 1, "total_ms": 1.0 / (i + 1)} for i in range(12)]}))


def test_report_page_has_every_part_and_compares_runs(tmp_path: Path) -> None:
    from edgekd.bench.html_report import write_html_report

    _fake_run(tmp_path / "run1", 1.0, with_ops=True)
    _fake_run(tmp_path / "run2", 1.5, with_ops=False)
    page = write_html_report(tmp_path / "run1").read_text()
    for part in ("<h2>Devices</h2>", "Test CPU 9000", "avx2", "<h2>Results</h2>", "failed to export", "simulated",
                 "stability", "src='pareto.png'", "src='latency.png'", "top ops", "op_0", "top 10 of 12 ops", "source: etdump"):
        assert part in page, part
    assert "op_10" not in page and "<h2>Compared</h2>" not in page and "Sustained" not in page

    assert main(["report", str(tmp_path / "run1"), str(tmp_path / "run2"), "--out", str(tmp_path / "both")]) == 0
    both = (tmp_path / "both" / "index.html").read_text()
    assert "<h2>Compared</h2>" in both and "run1 @ local" in both and "run2 @ local" in both
    assert "×1.50" in both  # run2 is 1.5x slower on every file (same fixed samples, scaled)
    assert both.count("Test CPU 9000") == 1  # identical device facts are shown once, naming both runs
    assert (tmp_path / "both" / "pareto.png").stat().st_size > 5000
