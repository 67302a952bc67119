"""Harness vs bare loop, and ExecuTorch int8 vs TFLite int8, measured side by side in interleaved rounds.

Two questions about the same files, on the same machine, in the same minutes:

1. **Does the harness measure the runtime, not itself?** ``edgekd.benchmark(...)`` (the Python device
   runner: a torch tensor or ``set_tensor``/``get_tensor`` per sample) against ``benchmarks/investigations/bare_loop.py``
   (the runner's own loading, then only ``invoke()``/``execute()`` timed), each in its own process.
   Target: harness p50 within 2% of the bare loop's. On a loaded machine two processes differ by more
   than that by chance, so each round also runs ``bare_loop.py --call both``: the runner's ``run(x)``
   and ``invoke()`` in alternating blocks in ONE process (``run_over_invoke``), which isolates what
   the runner's per-sample work costs.
2. **Is ExecuTorch int8 within 1.2x of the best TFLite int8?** Bare loops and harness both.

Every round runs every file once through each loop; the order of the two loops flips every round
(ABBA), so drift and a neighbour's load fall on both. Ratios are taken within a round and the median
over rounds is reported, with each round's value kept. On a shared machine compare the ratios, not
the times.

    python benchmarks/investigations/runtime_overhead.py                      # threads 1,2; 7 rounds of 300 runs
    python benchmarks/investigations/runtime_overhead.py --threads 1 --rounds 3 --runs 100   # quicker

Reads the bundle ``benchmarks/runtimes.py`` exported (``--bundle``); writes
``benchmarks/results/runtime_overhead.json`` (with ``machine_facts``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent  # benchmarks/: _common.py and results/
sys.path.insert(0, str(BENCH))
from _common import RUNTIMES_BUNDLE, bundle_files  # noqa: E402

from edgekd.bench.machine import machine_facts  # noqa: E402

DEFAULT_FILES = ("pte/int8/executorch", "tflite/int8/litert-torch", "tflite/int8/onnx2tf", "pte/fp32/executorch",
                 "tflite/fp32/litert-torch")
HARNESS_TOLERANCE = 0.02  # issue 18: harness p50 within 2% of the bare loop
GAP_TARGET = 1.2  # the target: ExecuTorch int8 p50 within 1.2x of the best TFLite int8
IN_PROCESS_BLOCKS = 6  # blocks of --runs calls per loop in the in-process check


def bare_loop(path: Path, threads: int, warmup: int, runs: int, inputs: Path, cpus: str | None,
              call: str = "invoke") -> dict[str, Any]:
    """Run benchmarks/investigations/bare_loop.py in its own process and return its result line (``call="both"``:
    ``IN_PROCESS_BLOCKS`` alternating blocks of ``runs`` calls each way)."""
    argv = [sys.executable, str(HERE / "bare_loop.py"), "--model", str(path), "--threads", str(threads),
            "--warmup", str(warmup), "--inputs", str(inputs), "--call", call]
    argv += ["--runs", str(runs * IN_PROCESS_BLOCKS), "--block", str(runs)] if call == "both" else ["--runs", str(runs)]
    if cpus:
        argv += ["--cpus", cpus]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        raise SystemExit(f"runtime_overhead: bare loop failed on {path}: {p.stderr.strip()[-500:]}")
    return json.loads(lines[-1])


def harness_p50(bundle: Path, key: str, threads: int, warmup: int, runs: int, inputs: Path, cpus: str | None,
                out_dir: Path) -> float:
    from edgekd.bench.harness import benchmark

    (r,) = benchmark(bundle, "local", warmup=warmup, runs=runs, threads=threads, inputs=inputs, files=[key],
                     progress=False, out_dir=out_dir, cpus=cpus)
    if r.error or r.latency_ms is None:
        raise SystemExit(f"runtime_overhead: the harness failed on {key}: {r.error}")
    return float(r.latency_ms.p50)


def _median(v: list[float]) -> float | None:
    return statistics.median(v) if v else None


def summarize(rounds: list[dict[str, dict[str, float]]], keys: list[str]) -> dict[str, Any]:
    """Per file: median p50s and the median of per-round harness/bare ratios; the int8 gap per loop."""
    files = {}
    for k in keys:
        h = [r[k]["harness"] for r in rounds]
        b = [r[k]["bare"] for r in rounds]
        ratios = [x / y for x, y in zip(h, b, strict=True)]
        med = statistics.median(ratios)
        inproc = [r[k]["run_over_invoke"] for r in rounds if "run_over_invoke" in r[k]]
        files[k] = {"harness_p50_ms": _median(h), "bare_p50_ms": _median(b), "harness_over_bare": med,
                    "harness_over_bare_rounds": ratios, "harness_p50_ms_rounds": h, "bare_p50_ms_rounds": b,
                    "within_2pct": abs(med - 1) <= HARNESS_TOLERANCE,
                    "run_over_invoke_in_process": _median(inproc), "run_over_invoke_in_process_rounds": inproc}
    gap: dict[str, Any] = {}
    et = "pte/int8/executorch"
    tfl = [k for k in keys if k.startswith("tflite/int8/")]
    if et in keys and tfl:
        for loop in ("bare", "harness"):
            per_round = [r[et][loop] / min(r[t][loop] for t in tfl) for r in rounds]
            gap[loop] = {"et_int8_over_best_tflite_int8": statistics.median(per_round), "rounds": per_round,
                         "within_1_2x": statistics.median(per_round) <= GAP_TARGET}
    return {"files": files, "int8_gap": gap}


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from edgekd.bundle import Bundle

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=str(RUNTIMES_BUNDLE),
                    help="a bundle folder (default: the one benchmarks/runtimes.py exports)")
    ap.add_argument("--files", nargs="+", default=list(DEFAULT_FILES), help="file keys in the bundle")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--cpus", default=None, help="pin every process to these CPUs (e.g. 0,1)")
    ap.add_argument("--no-in-process", action="store_true",
                    help="skip the in-process check (runner's run(x) vs invoke() in alternating blocks)")
    ap.add_argument("--out", default=str(BENCH / "results" / "runtime_overhead.json"))
    args = ap.parse_args(argv)
    root = Path(args.bundle)
    known = bundle_files(root, args.files, "runtime_overhead")
    bundle = Bundle.load(root)
    work = Path(args.out).with_suffix("")
    work = work.parent / (work.name + "_work")
    work.mkdir(parents=True, exist_ok=True)
    inputs = work / "inputs.npz"  # one fixed, non-zero input for every loop (zeros could hide denormal costs)
    shape = bundle.inputs[0].shape if bundle.inputs else (1, 1, 28, 28)
    np.savez(inputs, x=np.random.default_rng(0).standard_normal(shape).astype(np.float32))

    result: dict[str, Any] = {"benchmark": "runtime_overhead", "machine_facts": machine_facts(), "bundle": str(root),
                              "rounds": args.rounds, "runs": args.runs, "warmup": args.warmup, "cpus": args.cpus,
                              "command": " ".join(["python", "benchmarks/investigations/runtime_overhead.py",
                                                   *(argv if argv is not None else sys.argv[1:])]),
                              "threads": {}}
    for t in (int(x) for x in args.threads.split(",")):
        rounds: list[dict[str, dict[str, float]]] = []
        for i in range(args.rounds):
            seen: dict[str, dict[str, float]] = {}
            for key in args.files:
                order = ("harness", "bare") if i % 2 == 0 else ("bare", "harness")
                seen[key] = {}
                for loop in order:
                    seen[key][loop] = (harness_p50(root, key, t, args.warmup, args.runs, inputs, args.cpus,
                                                   work / f"t{t}_r{i}_{key.replace('/', '_')}")
                                       if loop == "harness" else
                                       bare_loop(known[key], t, args.warmup, args.runs, inputs, args.cpus)["p50_ms"])
                if not args.no_in_process:
                    both = bare_loop(known[key], t, args.warmup, args.runs, inputs, args.cpus, call="both")
                    seen[key]["run_over_invoke"] = both["run_over_invoke"]
            rounds.append(seen)
            print(f"threads {t} round {i + 1}/{args.rounds}: " + "  ".join(
                f"{k} {v['harness']:.3f}/{v['bare']:.3f}" for k, v in seen.items()), flush=True)
        result["threads"][str(t)] = summarize(rounds, args.files)

    print(f"\n{'thr':>3} {'file':28s} {'harness p50':>11} {'bare p50':>9} {'harness/bare':>12}  within 2%"
          f"  {'run/invoke in-process':>21}")
    for t, s in result["threads"].items():
        for k, f in s["files"].items():
            inproc = f["run_over_invoke_in_process"]
            print(f"{t:>3} {k:28s} {f['harness_p50_ms']:11.3f} {f['bare_p50_ms']:9.3f} {f['harness_over_bare']:12.3f}"
                  f"  {'yes' if f['within_2pct'] else 'NO ':9s}  {'-' if inproc is None else format(inproc, '21.3f')}")
        for loop, g in s["int8_gap"].items():
            print(f"{t:>3} ExecuTorch int8 / best TFLite int8 ({loop} loop): {g['et_int8_over_best_tflite_int8']:.3f}"
                  f"  (target <= {GAP_TARGET}: {'yes' if g['within_1_2x'] else 'NO'})")
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
