"""The Python runner vs the native C++ runner on the same bundle, side by side in interleaved rounds.

Issue 16's goals for ``runtimes/cpp`` (the native runner): p50 within 3% of the Python runner's (the
runtime dominates; the runner must add nothing), peak memory below the Python runner's (no
interpreter, no numpy), identical accuracy. Memory is reported twice: ``added MB`` is the protocol's
``peak_mem_mb`` (VmHWM at the end minus VmHWM after the runtime loaded: what load and inference add,
the runtime's own doing in both runners) and ``proc MB`` the process's whole high-water mark
(baseline + added), which is what the device must hold and what the memory goal compares. Every round runs every file once through each runner
(``edgekd.benchmark(..., runner="python"|"native")``, one process per file), the order of the two
runners flipping every round (ABBA) so drift and a neighbour's load fall on both; ratios are taken
within a round and the median over rounds is reported, each round's value kept.

    python benchmarks/native_runner.py                       # threads 1, 5 rounds of 200 runs
    python benchmarks/native_runner.py --rounds 3 --runs 100 --threads 1,2

Uses the bundle ``benchmarks/runtimes.py`` exported when it exists (``--bundle``), else trains a
resnet8x4 for one epoch on the embedded MNIST-5k and exports ``.pte``/``.tflite`` fp32/int8 into
``--work``. Builds the native runner first (``runtimes/cpp/build.sh``, incremental). Writes
``benchmarks/results/native_runner.json`` (with ``machine_facts``) and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import RUNTIMES_BUNDLE, write_results  # noqa: E402

P50_TOLERANCE = 0.03  # issue 16: native p50 within 3% of the Python runner's
DEFAULT_FILES = ("pte/fp32/executorch", "pte/int8/executorch", "tflite/fp32/litert-torch", "tflite/int8/litert-torch")
RUNNERS = ("python", "native")


def build_native() -> Path:
    from edgekd.bench.native import find_native_runner, host_arch

    p = subprocess.run(["bash", str(HERE.parent / "runtimes" / "cpp" / "build.sh"), "--arch", host_arch(),
                        "--python", sys.executable], capture_output=True, text=True)
    exe = find_native_runner()
    if p.returncode != 0 or exe is None:
        raise SystemExit(f"native_runner: the native build failed:\n{p.stderr[-2000:]}")
    return exe


def make_bundle(work: Path, model_name: str, epochs: int) -> Path:
    """A small bundle of our own: ``model_name`` trained briefly, .pte and .tflite (litert-torch) fp32/int8."""
    import torch

    from edgekd import data as D
    from edgekd import models as M
    from edgekd.convert import export
    from edgekd.distillation import train

    folder = work / "bundle"
    if (folder / "edgekd.json").is_file():
        return folder
    splits = D.load("mnist5k", seed=0)
    kw = {"num_classes": splits.num_classes, "in_channels": splits.in_channels}
    print(f"training {model_name} for {epochs} epoch(s) on mnist5k, then exporting pte/tflite fp32/int8")
    torch.manual_seed(0)
    model = train(M.create(model_name, **kw), splits, epochs=epochs, out_dir=work / "train").model.eval()
    x_test, y_test = D.as_tensors(splits.test)
    export(model, (x_test[:1],), formats=("pte", "tflite"), precision=("fp32", "int8"),
           calibration=D.calibration_sample(splits.train, n=128, seed=0), out_dir=folder, model_name=model_name,
           tflite_converter=("litert-torch",), parity_data=(x_test[:100], y_test[:100]), labels=list(splits.labels))
    return folder


def eval_set(n: int) -> tuple[Any, Any]:
    from edgekd import data as D

    x, y = D.as_tensors(D.load("mnist5k", seed=0).test)
    return x[:n].numpy(), y[:n].numpy()


def measure(bundle: Path, key: str, runner: str, args: argparse.Namespace, threads: int, out_dir: Path,
            eval_npz: Path | None) -> dict[str, Any]:
    from edgekd.bench.harness import benchmark

    (r,) = benchmark(bundle, "local", warmup=args.warmup, runs=args.runs, threads=threads, files=[key],
                     eval_data=eval_npz, progress=False, out_dir=out_dir, cpus=args.cpus or None, runner=runner)
    if r.error or r.latency_ms is None or r.runner != runner:
        raise SystemExit(f"native_runner: {runner} runner failed on {key}: {r.error}")
    return {"p50_ms": r.latency_ms.p50, "p99_ms": r.latency_ms.p99, "load_ms": r.load_ms,
            "peak_mem_mb": r.peak_mem_mb, "baseline_mem_mb": r.baseline_mem_mb,
            "process_peak_mb": (r.baseline_mem_mb or 0.0) + (r.peak_mem_mb or 0.0), "accuracy": r.accuracy,
            "interpreter": r.interpreter}


def summarize(rounds: list[dict[str, dict[str, dict[str, Any]]]], keys: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        per = {run: {m: [rd[key][run][m] for rd in rounds] for m in ("p50_ms", "p99_ms", "load_ms", "peak_mem_mb",
                                                                    "baseline_mem_mb", "process_peak_mb", "accuracy")}
               for run in RUNNERS}
        ratios = [rd[key]["native"]["p50_ms"] / rd[key]["python"]["p50_ms"] for rd in rounds]
        row: dict[str, Any] = {run: {m: statistics.median(v) for m, v in per[run].items()} for run in RUNNERS}
        for run in RUNNERS:
            row[run]["rounds"] = per[run]
            row[run]["interpreter"] = rounds[0][key][run]["interpreter"]
        row["p50_ratio_native_over_python"] = statistics.median(ratios)
        row["p50_ratio_rounds"] = ratios
        row["p50_within_3pct"] = row["p50_ratio_native_over_python"] <= 1 + P50_TOLERANCE
        # the process's whole high-water mark (baseline + what load and runs add): what a device has to hold
        row["peak_mem_below"] = row["native"]["process_peak_mb"] < row["python"]["process_peak_mb"]
        row["added_mem_ratio_native_over_python"] = row["native"]["peak_mem_mb"] / row["python"]["peak_mem_mb"]
        row["accuracy_identical"] = per["native"]["accuracy"] == per["python"]["accuracy"]
        out[key] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=None, help=f"a bundle folder (default: {RUNTIMES_BUNDLE} if it exists, "
                                                   "else one exported into --work)")
    ap.add_argument("--files", default=",".join(DEFAULT_FILES), help="comma list of bundle file keys")
    ap.add_argument("--model", default="resnet8x4", help="the model trained for a bundle of our own")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--eval-samples", type=int, default=500)
    ap.add_argument("--cpus", default="", help="pin both runners to these CPUs (e.g. 0); default: no pinning")
    ap.add_argument("--work", default=str(HERE / "results" / "native_runner_work"), help="scratch folder")
    ap.add_argument("--out", default=str(HERE / "results" / "native_runner.json"))
    args = ap.parse_args(argv)

    import numpy as np

    from edgekd.bundle import Bundle

    exe = build_native()
    work = Path(args.work)
    bundle = Path(args.bundle) if args.bundle else (
        RUNTIMES_BUNDLE if (RUNTIMES_BUNDLE / "edgekd.json").is_file() else make_bundle(work, args.model, args.epochs))
    known = {f.key for f in Bundle.load(bundle).files}
    keys = [k for k in args.files.split(",") if k]
    missing = [k for k in keys if k not in known]
    if missing:
        raise SystemExit(f"native_runner: {bundle} has no {missing}; it has {', '.join(sorted(known))}")
    eval_npz = None
    if args.eval_samples:
        x, y = eval_set(args.eval_samples)
        eval_npz = work / "eval.npz"
        eval_npz.parent.mkdir(parents=True, exist_ok=True)
        np.savez(eval_npz, x=x.astype(np.float32), y=y.astype(np.int64))

    results: dict[str, Any] = {}
    for t in [int(v) for v in args.threads.split(",")]:
        rounds: list[dict[str, dict[str, dict[str, Any]]]] = []
        for i in range(args.rounds):
            order = RUNNERS if i % 2 == 0 else RUNNERS[::-1]  # ABBA
            rd: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in keys}
            for key in keys:
                for runner in order:
                    rd[key][runner] = measure(bundle, key, runner, args, t, work / f"t{t}_r{i}_{runner}", eval_npz)
            rounds.append(rd)
            print(f"threads {t} round {i + 1}/{args.rounds}: " + ", ".join(
                f"{k.split('/')[0]}/{k.split('/')[1]} {rd[k]['native']['p50_ms'] / rd[k]['python']['p50_ms']:.3f}"
                for k in keys))
        results[str(t)] = summarize(rounds, keys)

    hdr = (f"{'thr':>3} {'file':26s} {'runner':7s} {'p50 ms':>8} {'p99 ms':>8} {'load ms':>8} {'added MB':>8} "
           f"{'proc MB':>8} {'acc %':>6}  {'p50 n/py':>8} goals")
    print(f"\nbundle {bundle}; native runner {exe}\n{hdr}\n{'-' * len(hdr)}")
    for t, rows in results.items():
        for key, row in rows.items():
            for run in RUNNERS:
                v = row[run]
                goals = ""
                if run == "native":
                    goals = (f"{row['p50_ratio_native_over_python']:8.3f} "
                             f"p50{'<=' if row['p50_within_3pct'] else '>'}3% "
                             f"mem{'<' if row['peak_mem_below'] else '>='} "
                             f"acc{'==' if row['accuracy_identical'] else '!='}")
                acc = "-" if v["accuracy"] is None else f"{100 * v['accuracy']:6.2f}"
                print(f"{t:>3} {key:26s} {run:7s} {v['p50_ms']:8.4f} {v['p99_ms']:8.4f} {v['load_ms']:8.2f} "
                      f"{v['peak_mem_mb']:8.2f} {v['process_peak_mb']:8.1f} {acc:>6}  {goals}")
    write_results(args.out, "native_runner", {
        "bundle": str(bundle), "native_runner": str(exe), "files": keys, "rounds": args.rounds, "runs": args.runs,
        "warmup": args.warmup, "eval_samples": args.eval_samples, "cpus": args.cpus or None,
        "p50_tolerance": P50_TOLERANCE, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
