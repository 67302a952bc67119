"""Why the demo's two students (the same network) once came out at different speeds, and what fixes it.

Takes the two bundles an ``edgekd demo`` run exported (``DEMO/bundles/student_kd`` and
``student_alone``: the same architecture, different weights) and measures all eight files under
several settings, each setting side by side for both students:

- ``old``: what the demo did: 2 threads, 10 warm-up runs, 100 timed runs, a zero input, one student's
  four files after the other's, each file once; repeated ``--reps`` times to see how far a file's p50
  moves between identical measurements;
- ``old-1t``: the same with 1 thread;
- ``long-2t``: 2 threads, 200 warm-up runs, at least ``--min-duration`` s of timed runs, a real test
  image, both students' files in ``--rounds`` interleaved rounds;
- ``new``: the same with 1 thread (the demo's settings now).

For each setting and file: the two students' p50s and their difference, each file's p50 range over
repetitions/rounds, the median CV and robust CV, and the wall time the setting took.

    flock /tmp/edgekd-timing.lock nice -n -5 python benchmarks/investigations/demo_noise.py --demo edgekd-demo

Writes ``benchmarks/results/demo_noise.json`` (with ``machine_facts``) and prints a table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parents[1]  # benchmarks/: _common.py and results/
sys.path.insert(0, str(BENCH))
from _common import write_results  # noqa: E402

SETTINGS = {  # name -> (threads, warmup, runs, min_duration, real input, interleaved)
    "old": (2, 10, 100, 0.0, False, False),
    "old-1t": (1, 10, 100, 0.0, False, False),
    "long-2t": (2, 200, 100, None, True, True),
    "new": (1, 200, 100, None, True, True),
}


def measure(name: str, bundles: list[Path], x: np.ndarray, reps: int, min_duration: float, work: Path
            ) -> dict[str, Any]:
    from edgekd.bench.harness import benchmark

    threads, warmup, runs, min_d, real, interleaved = SETTINGS[name]
    min_d = min_duration if min_d is None else min_d
    kw = dict(warmup=warmup, runs=runs, threads=threads, min_duration=min_d, progress=False, print_table=False,
              inputs=x if real else None)
    load0, t0 = os.getloadavg(), time.perf_counter()
    p50s: dict[tuple[str, str], list[float]] = {}
    rows = []
    if interleaved:
        rows = benchmark(bundles, repeat=reps, out_dir=work / name, **kw)
        for r in rows:
            p50s[r.model_name, r.key] = list(r.repeat["p50s"])
    else:
        for i in range(reps):  # each repetition: one bundle's files, then the other's, each once
            for b in bundles:
                for r in benchmark(b, out_dir=work / f"{name}_{i}", **kw):
                    p50s.setdefault((r.model_name, r.key), []).append(r.latency_ms.p50)
                    rows.append(r)
    wall = time.perf_counter() - t0
    files = []
    for key in dict.fromkeys(k for _, k in p50s):
        kd, alone = p50s[("student_kd", key)], p50s[("student_alone", key)]
        m_kd, m_alone = statistics.median(kd), statistics.median(alone)
        files.append({"key": key, "kd_p50s": kd, "alone_p50s": alone, "kd_p50": m_kd, "alone_p50": m_alone,
                      "diff_pct": 100 * (m_kd - m_alone) / min(m_kd, m_alone),
                      "kd_range_pct": 100 * (max(kd) - min(kd)) / m_kd,
                      "alone_range_pct": 100 * (max(alone) - min(alone)) / m_alone})
    cvs = [r.spread.cv for r in rows if r.spread]
    rcvs = [r.spread.robust_cv for r in rows if r.spread and r.spread.robust_cv is not None]
    return {"setting": name, "threads": threads, "warmup": warmup, "runs": runs, "min_duration_s": min_d,
            "real_input": real, "interleaved": interleaved, "reps": reps, "wall_s": round(wall, 1),
            "load_avg_before": load0, "load_avg_after": os.getloadavg(), "median_cv": statistics.median(cvs),
            "median_robust_cv": statistics.median(rcvs) if rcvs else None,
            "unstable_rows": sum(r.spread.verdict == "unstable" for r in rows if r.spread), "n_rows": len(rows),
            "files": files}


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| setting | file | KD p50 ms | alone p50 ms | KD vs alone | p50 range over reps, KD / alone | "
             "median CV / robust CV | unstable rows | wall s |", "|---|---|---:|---:|---:|---|---|---:|---:|"]
    for s in results:
        for f in s["files"]:
            rcv = "-" if s["median_robust_cv"] is None else f"{100 * s['median_robust_cv']:.1f} %"
            lines.append(f"| {s['setting']} | {f['key']} | {f['kd_p50']:.4f} | {f['alone_p50']:.4f} | "
                         f"{f['diff_pct']:+.1f} % | {f['kd_range_pct']:.1f} % / {f['alone_range_pct']:.1f} % | "
                         f"{100 * s['median_cv']:.0f} % / {rcv} | {s['unstable_rows']}/{s['n_rows']} | {s['wall_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", required=True, help="an edgekd demo output folder (holds bundles/student_kd, ...)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of {', '.join(SETTINGS)}")
    ap.add_argument("--reps", type=int, default=5, help="repetitions (old) or interleaved rounds (long-2t, new)")
    ap.add_argument("--min-duration", type=float, default=0.5)
    ap.add_argument("--out", default=str(BENCH / "results" / "demo_noise.json"))
    args = ap.parse_args(argv)
    demo = Path(args.demo)
    bundles = [demo / "bundles" / "student_kd", demo / "bundles" / "student_alone"]
    missing = [b for b in bundles if not (b / "edgekd.json").is_file()]
    if missing:
        raise SystemExit(f"demo_noise: no bundle at {missing[0]}; run `edgekd demo --out {demo}` first")
    from edgekd import data as D

    splits = D.load("mnist5k", seed=0)
    x, _ = D.as_tensors(splits.test)
    work = Path(tempfile.mkdtemp(prefix="demo_noise_"))
    results: list[dict[str, Any]] = []
    for name in args.settings.split(","):
        results.append(measure(name, bundles, x[:1].numpy(), args.reps, args.min_duration, work))
        print(f"{name}: {results[-1]['wall_s']:.0f} s", flush=True)
        write_results(args.out, "demo_noise", {"command": " ".join(["python", "benchmarks/investigations/demo_noise.py",
                                                                     *(argv or sys.argv[1:])]),
                                               "demo": str(demo), "settings": results})
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
