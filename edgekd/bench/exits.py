"""Latency of every early exit of a self-distilled model: cut, export and benchmark each one.

:func:`benchmark_exits` cuts an :class:`~edgekd.models.exits.ExitModel` at each exit
(:func:`~edgekd.models.exits.truncate`), exports the cut model to an fp32 ``.pte`` bundle under
``out_dir/<exit>/`` and measures it with the harness, so a device's cost of stopping early is
measured the same way as any other file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edgekd.bench.harness import benchmark
from edgekd.bench.results import BenchResult
from edgekd.models.exits import ExitModel, exit_key, truncate


def benchmark_exits(model: ExitModel, example_inputs: torch.Tensor, out_dir: str | Path, *,
                    target: str = "local", eval_data: Any = None, **bench_kw: Any) -> dict[str, list[BenchResult]]:
    """Export each exit to ``out_dir/<exit>/`` as fp32 ``.pte`` and benchmark it with the harness."""
    from edgekd.convert import export

    results = {}
    for name in model.names:
        bundle = export(truncate(model, name), (example_inputs,), formats=("pte",), precision=("fp32",),
                        out_dir=Path(out_dir) / exit_key(name), model_name=f"exit_{exit_key(name)}", progress=False)
        results[name] = benchmark(bundle, target, eval_data=eval_data, **bench_kw)
    return results
