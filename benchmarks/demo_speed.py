"""``edgekd demo``, run whole N times: does the same network come out at the same speed, and how long does it take?

The demo exports two students of the same architecture (one distilled, one trained alone) to four
files each and measures all eight in interleaved rounds. The two students' files must come out
level: their p50s within 5 % of each other (``TOLERANCE``) and their noise bands overlapping.
This script runs ``edgekd demo`` (a fresh process, a fresh output folder) ``--times`` times, one
after the other, and records per run and per file the two students' p50s, their ranges and their
difference, the demo's wall time, the KD verdict, and the load average before and after each run.

    flock /tmp/edgekd-timing.lock nice -n -5 python benchmarks/demo_speed.py          # twice, default demo
    python benchmarks/demo_speed.py --times 1 --quick                                 # a smoke run

Writes ``benchmarks/results/demo_speed.json`` (with ``machine_facts``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import write_results  # noqa: E402

TOLERANCE = 5.0  # percent: the same network's two files must agree this well in p50


def run_once(out: Path, quick: bool) -> dict[str, Any]:
    """One whole ``edgekd demo`` in its own process; its summary plus wall time and load."""
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    argv = [sys.executable, "-m", "edgekd.cli", "demo", "--no-progress", "--out", str(out)] + (["--quick"] if quick else [])
    p = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"demo_speed: edgekd demo failed (exit {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    kd = summary["kd_vs_alone"]
    pairs = summary["speed_pairs"]
    return {"wall_s": round(wall, 1), "demo_wall_s": summary["wall_s"], "load_avg_before": load_before,
            "load_avg_after": os.getloadavg(), "teacher_acc": summary["teacher"]["test_acc"],
            "kd": {k: kd[k] for k in ("runs", "margins", "mean_margin", "spread", "wins", "won")},
            "pairs": pairs, "max_abs_diff_pct": max(abs(p["diff_pct"]) for p in pairs),
            "all_same_within_noise": all(p["same"] for p in pairs),
            "unstable": [f"{r['model_name']} {r['key']}" for r in summary["results"]
                         if r.get("spread") and r["spread"]["verdict"] == "unstable"],
            "bench": [{"model": r["model_name"], "key": r["key"], "p50_ms": r["latency_ms"]["p50"],
                       "p50s_ms": r["repeat"]["p50s"], "cv": r["spread"]["cv"], "runs": r["runs"]}
                      for r in summary["results"] if r.get("latency_ms")],
            "stdout_tail": p.stdout[-4000:]}


def table(runs: list[dict[str, Any]]) -> str:
    lines = ["| run | file | KD p50 ms (range) | alone p50 ms (range) | KD vs alone | same within noise | wall |",
             "|---|---|---|---|---:|---|---:|"]
    for i, run in enumerate(runs, 1):
        for p in run["pairs"]:
            a, b = p["kd_band_ms"], p["alone_band_ms"]
            lines.append(f"| {i} | {p['key']} | {p['kd_p50_ms']:.4f} ({a[0]:.4f}–{a[1]:.4f}) | {p['alone_p50_ms']:.4f} "
                         f"({b[0]:.4f}–{b[1]:.4f}) | {p['diff_pct']:+.1f} % | {'yes' if p['same'] else 'NO'} | "
                         f"{run['wall_s']:.0f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--times", type=int, default=2, help="whole demo runs, one after the other")
    ap.add_argument("--quick", action="store_true", help="edgekd demo --quick (a smoke run; not a figure)")
    ap.add_argument("--work", default=None, help="where the demo folders go (default: a temporary folder)")
    ap.add_argument("--out", default=str(HERE / "results" / "demo_speed.json"))
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="demo_speed_"))
    runs: list[dict[str, Any]] = []
    for i in range(args.times):
        runs.append(run_once(work / f"demo{i + 1}", args.quick))
        print(f"run {i + 1}: {runs[-1]['wall_s']:.0f} s wall, largest KD-vs-alone p50 difference "
              f"{runs[-1]['max_abs_diff_pct']:.1f} %, load {runs[-1]['load_avg_before'][0]:.2f} -> "
              f"{runs[-1]['load_avg_after'][0]:.2f}", flush=True)
        write_results(args.out, "demo_speed", {"command": " ".join(["python", "benchmarks/demo_speed.py", *(argv or sys.argv[1:])]),
                                               "quick": args.quick, "tolerance_pct": TOLERANCE, "runs": runs})
    print(table(runs))
    ok = all(r["max_abs_diff_pct"] <= TOLERANCE and r["all_same_within_noise"] and not r["unstable"] for r in runs)
    print(f"every file within {TOLERANCE:g} %, same within noise, no row unstable: {'yes' if ok else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
