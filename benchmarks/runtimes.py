"""Runtime comparison: one student, batch 1, eager PyTorch vs ExecuTorch vs TFLite, side by side.

Trains (or reuses) a resnet8x4 student on the embedded MNIST-5k, exports it to every runtime edgekd
supports -- ``.pt2`` (the eager baseline: a torch.export program run by torch), ExecuTorch ``.pte``
fp32/int8 (XNNPACK), TFLite fp32/int8 from litert-torch and from onnx2tf -- and runs every file through
the same harness and runner, one after another in one process tree, at each thread count. It also
measures this CPU's fp32 matmul rate at each thread count and prints each latency beside its
roofline (model FLOPs / measured rate).

    python benchmarks/runtimes.py                 # full: threads 1 and 2, 200 runs, 3 interleaved rounds
    python benchmarks/runtimes.py --quick         # a smoke run

Each thread count is measured in ``--rounds`` rounds over every file, the file order reversed in every
other round, so files measured a minute apart share the machine's background load; a row's p50 is the
median of its rounds' p50s (each round's value is kept, and the load average before and after).
Writes ``benchmarks/results/runtimes.json`` and prints a table; the figures go to RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

HERE = Path(__file__).resolve().parent


def matmul_gflops(threads: int, n: int = 2048, reps: int = 10) -> float:
    """This CPU's sustained fp32 rate (GFLOP/s) on an n×n matmul at ``threads`` threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(2):
            a @ b
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        dt = (time.perf_counter() - t0) / reps
    finally:
        torch.set_num_threads(old)
    return 2 * n**3 / dt / 1e9


def main(argv: list[str] | None = None) -> int:
    from edgekd import data as D
    from edgekd import models as M
    from edgekd.bench.harness import benchmark
    from edgekd.convert import export
    from edgekd.distillation import train
    from edgekd.models import count_params, flops
    from edgekd.models.saved import load_model, save_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet8x4")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all files per thread count")
    ap.add_argument("--eval-samples", type=int, default=1000)
    ap.add_argument("--work", default=str(HERE / "results" / "runtimes_work"), help="scratch folder")
    ap.add_argument("--out", default=str(HERE / "results" / "runtimes.json"))
    ap.add_argument("--cpus", default=None,
                    help="pin every runner to these CPUs (e.g. 0,1); '' for no pinning (default)")
    ap.add_argument("--reuse-bundle", action="store_true", help="reuse the bundle a previous run exported")
    ap.add_argument("--quick", action="store_true", help="1 epoch on 1,200 images, 20 runs")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.runs, args.warmup, args.eval_samples, args.rounds = 1, 20, 3, 200, 1
    threads = [int(t) for t in args.threads.split(",")]
    work = Path(args.work)

    splits = D.load("mnist5k", seed=0, limit=1200 if args.quick else None)
    kw = {"num_classes": splits.num_classes, "in_channels": splits.in_channels}
    ckpt = work / f"{args.model}_e{args.epochs}{'_quick' if args.quick else ''}.pt"
    if ckpt.exists():
        model, _ = load_model(ckpt)
        print(f"reusing trained {args.model} from {ckpt}")
    else:
        print(f"training {args.model} for {args.epochs} epochs on mnist5k")
        torch.manual_seed(0)
        model = train(M.create(args.model, **kw), splits, epochs=args.epochs, out_dir=work / "train").model
        save_model(model, ckpt, args.model, **kw)
    model.eval()

    x_test, y_test = D.as_tensors(splits.test)
    x1 = x_test[:1]
    mflops = flops(model, tuple(x1.shape)) / 1e6
    calib = D.calibration_sample(splits.train, n=128, seed=0)
    if args.reuse_bundle and (work / "bundle" / "edgekd.json").exists():
        from edgekd.bundle import Bundle

        bundle = Bundle.load(work / "bundle")
        print(f"reusing the exported bundle in {bundle.root}")
    else:
        print("exporting: pt2 (eager baseline), pte fp32/int8, tflite fp32/int8 x {litert-torch, onnx2tf}")
        bundle = export(model, (x1,), formats=("pt2", "pte", "tflite"), precision=("fp32", "int8"),
                        calibration=calib, out_dir=work / "bundle", model_name=args.model,
                        tflite_converter=("litert-torch", "onnx2tf"), parity_data=(x_test[:200], y_test[:200]),
                        labels=list(splits.labels))

    eval_data = (x_test[: args.eval_samples].numpy(), y_test[: args.eval_samples].numpy())
    keys = [f.key for f in bundle.files]
    load_avg = {"before": os.getloadavg()}
    rows = []
    for t in threads:
        rate = matmul_gflops(t)
        roof_ms = mflops / 1e3 / rate * 1e3
        rounds: dict[str, list] = {k: [] for k in keys}
        for i in range(args.rounds):
            order = keys if i % 2 == 0 else keys[::-1]
            for r in benchmark(bundle, target="local", warmup=args.warmup, runs=args.runs, threads=t, files=order,
                               eval_data=eval_data if i == 0 else None, out_dir=work / f"bench_t{t}_r{i}",
                               cpus=args.cpus or None):
                rounds[r.key].append(r)
        p50s = {k: [r.latency_ms.p50 for r in rs if r.latency_ms] for k, rs in rounds.items()}
        eager = statistics.median(p50s["pt2/fp32/torch"]) if p50s.get("pt2/fp32/torch") else None
        for key in keys:
            first, p50 = rounds[key][0], (statistics.median(p50s[key]) if p50s[key] else None)
            rows.append({
                "threads": t, "key": key, "format": first.format, "precision": first.precision,
                "converter": first.converter, "kb": round(first.bytes / 1024, 1), "accuracy": first.accuracy,
                "p50_ms": p50, "p50_ms_rounds": p50s[key], "p50_ms_min": min(p50s[key]) if p50s[key] else None,
                "p90_ms": statistics.median(r.latency_ms.p90 for r in rounds[key] if r.latency_ms) if p50 else None,
                "p99_ms": statistics.median(r.latency_ms.p99 for r in rounds[key] if r.latency_ms) if p50 else None,
                "load_ms": first.load_ms, "peak_mem_mb": first.peak_mem_mb,
                "speedup_vs_eager": (eager / p50) if (eager and p50) else None,
                "roofline_ms": roof_ms, "pct_of_roofline": (roof_ms / p50 * 100) if p50 else None,
                "matmul_gflops": rate, "error": next((r.error for r in rounds[key] if r.error), None),
            })
    load_avg["after"] = os.getloadavg()
    by = {(r["threads"], r["key"]): r["p50_ms"] for r in rows}
    fp32_pte_over_tflite = {t: by[(t, "pte/fp32/executorch")] / by[(t, "tflite/fp32/litert-torch")]
                            for t in threads if by.get((t, "pte/fp32/executorch")) and by.get((t, "tflite/fp32/litert-torch"))}

    hdr = f"{'thr':>3} {'runtime':30s} {'KB':>8} {'acc %':>6} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} " \
          f"{'x eager':>7} {'roof ms':>7} {'% roof':>6} {'peak MB':>7}"
    print(f"\n{args.model}: {count_params(model) / 1e6:.2f} M params, {mflops:.1f} MFLOP per 1x{tuple(x1.shape[1:])}")
    print(hdr)
    print("-" * len(hdr))

    def f(v: float | None, fmt: str) -> str:
        return format(v, fmt) if v is not None else "-"

    for r in rows:
        print(f"{r['threads']:>3} {r['key']:30s} {r['kb']:8.1f} {f(r['accuracy'] and 100 * r['accuracy'], '6.2f')} "
              f"{f(r['p50_ms'], '7.3f')} {f(r['p90_ms'], '7.3f')} {f(r['p99_ms'], '7.3f')} "
              f"{f(r['speedup_vs_eager'], '7.2f')} {r['roofline_ms']:7.3f} {f(r['pct_of_roofline'], '6.1f')} "
              f"{f(r['peak_mem_mb'], '7.1f')}" + (f"  ERROR {r['error']}" if r["error"] else ""))
    print("fp32 .pte p50 / fp32 .tflite (litert-torch) p50: " +
          ", ".join(f"{t} thread(s) {v:.2f}x" for t, v in fp32_pte_over_tflite.items()) +
          f"; load average {load_avg['before'][0]:.1f} -> {load_avg['after'][0]:.1f}")
    write_results(args.out, "runtimes", {
        "model": args.model, "params": count_params(model), "mflops": mflops, "quick": args.quick, "runs": args.runs,
        "warmup": args.warmup, "rounds": args.rounds, "eval_samples": args.eval_samples, "cpus": args.cpus,
        "load_avg": load_avg, "fp32_pte_over_tflite": fp32_pte_over_tflite, "rows": rows,
        "files": {f.key: f.extra for f in bundle.files}, "bundle_extra": bundle.extra})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
