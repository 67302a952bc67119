"""What every benchmark script writes besides its own numbers: when, where, on what."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from edgekd.bench.machine import machine_facts


def machine() -> dict[str, Any]:
    """Date, platform, CPU count, torch threads and accelerator of this run, plus :func:`machine_facts`
    (CPU model, ISA flags, governor/frequency, runtime versions)."""
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.platform(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "machine_facts": machine_facts()}


RUNTIMES_BUNDLE = Path(__file__).resolve().parent / "results" / "runtimes_work" / "bundle"


def bundle_files(root: str | Path, keys: list[str], script: str) -> dict[str, Path]:
    """The paths of the files ``keys`` (``pte/int8/executorch``, ...) of the bundle in ``root``, in order.

    Exits with a message naming ``script`` and the fix when ``root`` is no bundle or lacks a key.
    """
    from edgekd.bundle import Bundle

    folder = Path(root)
    if not (folder / "edgekd.json").is_file():
        raise SystemExit(f"{script}: {folder} is not a bundle (no edgekd.json); run benchmarks/runtimes.py "
                         "first or pass --bundle")
    known = {f.key: folder / f.path for f in Bundle.load(folder).files}
    missing = [k for k in keys if k not in known]
    if missing:
        raise SystemExit(f"{script}: {folder} has no {missing}; it has {', '.join(known)}")
    return {k: known[k] for k in keys}


def write_results(path: str | Path, benchmark: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` plus :func:`machine` facts as indented JSON to ``path``; print where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": benchmark, **machine(), **payload}, indent=2, default=str) + "\n")
    print(f"\nwrote {out}")
    return out


def side_by_side(files: dict[str, Path], out_dir: Path, *, rounds: int, runs: int, threads: int = 1,
                 warmup: int = 20) -> dict[str, dict[str, Any]]:
    """Latency and peak memory of every file, measured in ``rounds`` interleaved rounds (A, B, C, A, B, C, …).

    Files measured minutes apart see different background load; interleaving spreads it over all of
    them. Per file: the median and the minimum over the rounds of p50 and peak memory, and every round's
    value. On a shared VM the per-round p50 is often bimodal (a round lands in a slow phase or not), so
    compare the minima: the least disturbed measurement of each file.
    """
    import statistics

    from edgekd.bench.harness import benchmark

    seen: dict[str, dict[str, list[float]]] = {k: {"p50_ms": [], "peak_mem_mb": []} for k in files}
    for i in range(rounds):
        for key, path in files.items():
            (b,) = benchmark(path, "local", warmup=warmup, runs=runs, threads=threads, progress=False,
                             out_dir=out_dir / f"round{i}" / key.replace("/", "_").replace(" ", "_"))
            if b.latency_ms is not None:
                seen[key]["p50_ms"].append(b.latency_ms.p50)
            if b.peak_mem_mb is not None:
                seen[key]["peak_mem_mb"].append(b.peak_mem_mb)
    return {key: {**{k: statistics.median(v) if v else None for k, v in s.items()},
                  **{f"{k}_min": min(v) if v else None for k, v in s.items()},
                  **{f"{k}_rounds": v for k, v in s.items()}} for key, s in seen.items()}
