"""Is the fp32 ``.pte`` much slower than the fp32 ``.tflite`` beside it? One rule, two places.

The executorch 1.5 wheels build XNNPACK with GCC 13, LiteRT builds it with clang 18. On x86 CPUs with
AVX2 + FMA but no AVX-512 (Zen 2/3; Intel Haswell to Comet Lake, Alder Lake on), XNNPACK runs every
fp32 convolution in the C micro-kernel ``xnn_f32_igemm_minmax_ukernel_5x16__fma3_broadcast_prfm``; GCC's
build of it keeps one of its ten accumulators on the stack (a load, an FMA and a store every step of
the inner loop), so a fp32 ``.pte`` takes ~2.5x the time of the same model in TFLite there, however it
is exported (benchmarks/RESULTS.md, "fp32 .pte on AVX2-only x86"). AVX-512 x86 and the aarch64 cores
that run XNNPACK's hand-written assembly are not affected; int8 is not affected.

:func:`slow_pte_note` is the rule: the fp32 ``.pte`` takes at least :data:`SLOW_RATIO` times the
fp32 ``.tflite``'s time and at least :data:`MIN_GAP_MS` more. ``edgekd export`` applies it on the
export host (:func:`host_check`: the two files in alternating blocks of calls, same thread count)
and records the result in ``edgekd.json`` (``extra["fp32_pte_vs_tflite"]``); ``edgekd bench`` and
``edgekd report`` apply it to what each target measured (:func:`edgekd.bench.report.speed_warnings`).
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.extras import requires

SLOW_RATIO = 1.5  # fp32 .pte time / fp32 .tflite time at which users are told to ship .tflite
MIN_GAP_MS = 0.1  # and at least this much slower per inference (tiny models: per-call overhead only)
RESULTS_SECTION = "benchmarks/RESULTS.md, 'fp32 .pte on AVX2-only x86'"


def slow_pte_note(pte_ms: float, tflite_ms: float, where: str) -> str | None:
    """The warning for a fp32 ``.pte`` that takes ``pte_ms`` where the fp32 ``.tflite`` takes ``tflite_ms``
    (both per inference, measured the same way, ``where``), or ``None`` when it is not much slower."""
    if tflite_ms <= 0 or pte_ms / tflite_ms < SLOW_RATIO or pte_ms - tflite_ms < MIN_GAP_MS:
        return None
    return (f"the fp32 .pte takes {pte_ms / tflite_ms:.1f}x the time of the fp32 .tflite beside it {where} "
            f"({pte_ms:.3f} vs {tflite_ms:.3f} ms per inference): ship fp32 as .tflite for this CPU, or the "
            f"int8 .pte; on x86 CPUs with AVX2 but no AVX-512 the executorch wheel's fp32 convolution kernel "
            f"is the cause, and no export option avoids it ({RESULTS_SECTION})")


def _ms_per_call(run: Callable[[np.ndarray], Any], x: np.ndarray, n: int) -> list[float]:
    """``n`` calls of ``run(x)``, each timed by the wall clock (ms)."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        run(x)
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def host_check(pte: Path, tflite: Path, tflite_layout: str | None, x: np.ndarray, *,
               budget_s: float = 1.0, block: int = 5) -> dict[str, Any]:
    """Time the fp32 ``pte`` and ``tflite`` files on this host in alternating blocks of ``block`` calls
    (one call for models slower than 50 ms) on the one input ``x`` (NCHW float32, batch as exported) until
    ~``budget_s`` seconds are spent (at least two blocks each), both at ExecuTorch's thread-pool size (its pool is process-wide and is left alone;
    LiteRT gets the same number of threads). Returns ``{"pte_ms", "tflite_ms", "ratio", "threads",
    "calls", "host", "note"}``: the medians of the per-call times, and the :func:`slow_pte_note`
    (``None`` when the ``.pte`` is not much slower). A busy machine slows both alike (the blocks
    alternate), so it can hide a gap but not invent one.
    """
    from edgekd.convert.executorch import pte_runner
    from edgekd.convert.tflite import tflite_runner

    with requires("executorch"):
        from executorch.extension.pybindings import _C

    threads = max(int(_C._threadpool_get_thread_count()), 1)
    x = np.ascontiguousarray(x, dtype=np.float32)
    runs = {"pte": pte_runner(pte)[0], "tflite": tflite_runner(tflite, tflite_layout, threads=threads)[0]}
    samples: dict[str, list[float]] = {k: [] for k in runs}
    first = max(_ms_per_call(run, x, 1)[0] for run in runs.values())  # first call: weight packing, allocation
    block = block if first < 50 else 1
    deadline = time.perf_counter() + budget_s
    rounds = 0
    while rounds < 2 or time.perf_counter() < deadline:
        for k in (("pte", "tflite") if rounds % 2 == 0 else ("tflite", "pte")):
            samples[k] += _ms_per_call(runs[k], x, block)
        rounds += 1
    pte_ms, tflite_ms = statistics.median(samples["pte"]), statistics.median(samples["tflite"])
    where = f"on this host ({platform.machine()}, {threads} thread{'s' * (threads > 1)})"
    return {"pte_ms": pte_ms, "tflite_ms": tflite_ms, "ratio": pte_ms / tflite_ms if tflite_ms else None,
            "threads": threads, "calls": len(samples["pte"]), "host": platform.machine(),
            "note": slow_pte_note(pte_ms, tflite_ms, where)}
