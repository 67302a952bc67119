"""The barest timing loop for one model file: load it as the device runner does, then time only ``invoke()``.

The device runner (``runtimes/python/edgekd_runner.py``) times ``backend.run(x)`` per sample: for
TFLite ``set_tensor`` + ``invoke`` + ``get_tensor``, for ExecuTorch a torch tensor from numpy +
``Method.call`` + ``.numpy()``. This script loads the file through the runner's own backend classes
(same thread pool setup, same input adaptation), sets the input once, and times just the runtime's
call: ``Interpreter.invoke()`` for ``.tflite``, ``Method.execute()`` for ``.pte`` (``.pt2``: the module
call). ``benchmarks/investigations/runtime_overhead.py`` compares the two side by side; ``benchmarks/investigations/xnnpack_kernels.py`` runs
it under ``perf record``.

    python benchmarks/investigations/bare_loop.py --model m.pte --threads 1 --warmup 20 --runs 300 [--inputs x.npz]
    python benchmarks/investigations/bare_loop.py --model m.tflite --threads 1 --seconds 6 --ready   # for perf -p PID
    python benchmarks/investigations/bare_loop.py --model a.pte --model b.tflite --threads 2 --runs 4000 --block 100
    python benchmarks/investigations/bare_loop.py --model a.pte --isa avx2          # XNNPACK's AVX2 kernels on an AVX-512 host

Prints one JSON line on stdout: file, runtime, threads, p50_ms (+ the runner's other summaries) and
the samples. ``--call both`` alternates blocks of ``invoke()`` and of the runner's ``run(x)`` in one
process and adds ``run_over_invoke`` (median over blocks of the two p50s' ratio): what the runner's
per-sample work costs, free of the between-process noise of a shared machine. Several ``--model``
files are timed the same way in one process (``files``: each one's summary and ``ratio_to_first``,
the median over rounds of its block p50 over the first file's). With ``--ready`` it first prints ``{"event": "ready", "pid": ...}`` after the warm-up
and waits one second, so a profiler can attach to the timed loop only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RUNNER = Path(__file__).resolve().parents[2] / "runtimes" / "python" / "edgekd_runner.py"


def load_runner() -> Any:
    """Import the device runner module from runtimes/python (it is a script, not part of edgekd)."""
    spec = importlib.util.spec_from_file_location("edgekd_runner", RUNNER)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def invoke_fn(backend: Any, feed: np.ndarray) -> Any:
    """The runtime's own call with the input already in place (no copies, no output conversion)."""
    if backend.runtime == "executorch":
        backend.method.set_inputs([backend.torch.from_numpy(feed)])
        return backend.method.execute
    if backend.runtime == "tflite":
        backend.interp.set_tensor(backend.in_index, feed)
        return backend.interp.invoke
    return lambda: backend.run(feed)


def time_calls(call: Any, n: int, deadline: float | None = None) -> list[float]:
    """``n`` timed calls (ms each); with a ``deadline``, stop there (perf_counter seconds)."""
    out: list[float] = []
    for _ in range(n):
        if deadline is not None and time.perf_counter() >= deadline:
            break
        t0 = time.perf_counter_ns()
        call()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def load(runner: Any, model: Path, threads: int, inputs: str | None) -> tuple[Any, np.ndarray]:
    """Load ``model`` through the runner's backend and adapt the input as the runner does."""
    backend = runner.BACKENDS[model.suffix]()
    backend.load(model, threads)
    if inputs:
        with np.load(inputs) as data:
            x = data["x"]
        return backend, runner.to_model_input(x, backend.input, runner.choose_layout(x.shape, backend.input, "auto"))
    return backend, np.zeros([s or 1 for s in backend.input.shape], backend.input.dtype)


def alternate(calls: dict[str, Any], runs: int, block: int, deadline: float | None
              ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Time every call in blocks, cycling through them (the order flips every round) until each has
    ``runs`` samples or the deadline passes. Returns the samples and, per call, each round's
    p50 divided by the first call's p50 in that round."""
    names = list(calls)
    samples: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names[1:]}
    rnd = 0
    while (min(len(v) for v in samples.values()) < runs) if deadline is None else (time.perf_counter() < deadline):
        p50s = {}
        for name in (names if rnd % 2 == 0 else names[::-1]):
            n = max(min(block, runs - len(samples[name])), 1) if deadline is None else block
            got = time_calls(calls[name], n, deadline)
            if not got:
                break
            samples[name] += got
            p50s[name] = float(np.median(got))
        if len(p50s) == len(names):
            for name in names[1:]:
                ratios[name].append(p50s[name] / p50s[names[0]])
        rnd += 1
    return samples, ratios


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, action="append",
                    help="model file; give it more than once to time several files in one process, side by side")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=None, help="time for this long instead of --runs")
    ap.add_argument("--inputs", default=None, help=".npz with x: logical float32 NCHW input (default: zeros)")
    ap.add_argument("--cpus", default=None, help="pin to these CPUs first (e.g. 0,1)")
    ap.add_argument("--isa", choices=("native", "avx2"), default="native",
                    help="avx2: make both runtimes' XNNPACK pick the kernels of an AVX2-only CPU "
                    "(benchmarks/xnnpack_avx2.py); must be given before anything loads")
    ap.add_argument("--ready", action="store_true", help="print a ready line with the pid after warm-up")
    ap.add_argument("--call", choices=("invoke", "run", "both", "timed", "both-timed"), default="invoke",
                    help="time the runtime's own call (invoke), the runner's per-sample run(x) as the harness "
                    "timed it before 2026-12-04 (run: set input, call, read output), the runner's timed loop now "
                    "(timed: backend.timed_call), or invoke against run / timed in alternating blocks in this one "
                    "process (both / both-timed)")
    ap.add_argument("--block", type=int, default=200,
                    help="calls per block when alternating (--call both, or several --model)")
    args = ap.parse_args(argv)
    if len(args.model) > 1 and args.call != "invoke":
        ap.error("several --model files are timed with --call invoke only")

    if args.isa == "avx2":
        from xnnpack_avx2 import mask_to_avx2

        mask_to_avx2()
    runner = load_runner()
    out_fd = os.dup(1)
    os.dup2(2, 1)  # native libraries print on fd 1; keep stdout for JSON

    def emit(obj: dict[str, Any]) -> None:
        os.write(out_fd, (json.dumps(obj) + "\n").encode())

    runner.pin_cpus(args.cpus)
    loaded = [(Path(m), *load(runner, Path(m), args.threads, args.inputs)) for m in args.model]
    if len(loaded) > 1:
        calls = {str(path): invoke_fn(backend, feed) for path, backend, feed in loaded}
    else:
        _, backend, feed = loaded[0]
        both = {"invoke": invoke_fn(backend, feed), "run": lambda: backend.run(feed)}
        if args.call in ("timed", "both-timed"):  # the runner's timed loop: backend.timed_call(feed)
            both = {"invoke": invoke_fn(backend, feed), "timed": backend.timed_call(feed)}
        calls = both if args.call in ("both", "both-timed") else {args.call: both[args.call]}
    for call in calls.values():
        for _ in range(args.warmup):
            call()
    if args.ready:
        emit({"event": "ready", "pid": os.getpid()})
        time.sleep(1.0)
    deadline = time.perf_counter() + args.seconds if args.seconds else None
    block = args.block if len(calls) > 1 else 1 << 30
    samples, ratios = alternate(calls, args.runs, block, deadline)

    result: dict[str, Any] = {"event": "result", "threads": args.threads, "loop": args.call,
                              "runs": min(len(v) for v in samples.values())}
    if len(loaded) == 1:
        path, backend, _ = loaded[0]
        result.update({"model": str(path), "runtime": backend.runtime, "runtime_version": backend.version})
    for name, v in samples.items():
        summary = {f"{k}_ms": x for k, x in runner.summarize(v).items()}
        if len(samples) == 1:
            result.update({**summary, "latency_samples_ms": v})
        elif len(loaded) == 1:
            result.update({f"{name}_{k}": x for k, x in summary.items()})
            result[f"{name}_samples_ms"] = v
        else:
            backend = next(b for p, b, _ in loaded if str(p) == name)
            result.setdefault("files", {})[name] = {
                "runtime": backend.runtime, "runtime_version": backend.version, **summary,
                "ratio_to_first": float(np.median(ratios[name])) if ratios.get(name) else 1.0,
                "ratio_to_first_rounds": ratios.get(name, [])}
    for name in ("run", "timed"):
        if ratios.get(name):
            result[f"{name}_over_invoke"] = float(np.median(ratios[name]))
            result[f"{name}_over_invoke_blocks"] = ratios[name]
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
