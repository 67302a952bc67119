"""Per-operator tables from the native runner's ``--profile`` dump, stored beside a run's results.

For a ``.pte`` file the native runner writes an ETDump (every inference of the run: first, warm-up,
timed and eval runs); :func:`etdump_op_table` reads it on the host with ``executorch.devtools`` and
sums, per operator name, the median time of each of its instances: one inference's time per operator.
The table is written to ``RUN_DIR/profiles/<file stem>__<threads>t.ops.json`` and the result's
``profile`` field holds that path relative to ``RUN_DIR``; ``edgekd report`` shows the top operators.

Where a delegate reports no per-operator events, its whole call is one ``DELEGATE_CALL`` row (one
blob) and the table's ``note`` says so; XNNPACK in the executorch wheel does report its operators.
``.tflite`` files get no table: libLiteRt.so exports a profiler (``LiteRtCompiledModelGetProfiler``,
``LiteRtGetProfilerEvents``), but it only records when enabled through LiteRT's runtime options, whose
payload the wheel ships no header for; the native runner does not guess at it (runtimes/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

PROFILES = "profiles"
_WRAPPERS = {"Method::execute", "Method::init", "Program::load_method", "OPERATOR_CALL"}


def profile_stem(model: str | Path, threads: int) -> str:
    """``RUN_DIR/profiles/<this>.ops.json`` (and ``.etdump``): the file's stem and its thread count."""
    return f"{Path(model).stem}__{threads}t"


def op_table(events: list[tuple[str, bool, list[float]]]) -> dict[str, Any]:
    """The operator table of ETDump events ``(name, delegated, ms per run)`` (see the module docstring)."""
    rows: dict[str, dict[str, Any]] = {}
    total = None
    has_delegated_ops = any(d for _, d, _ in events)
    for name, delegated, samples in events:
        if not samples:
            continue
        if name == "Method::execute":
            total = float(np.median(samples))
        if name in _WRAPPERS or (name == "DELEGATE_CALL" and has_delegated_ops):
            continue
        base = name.split(" #")[0]
        row = rows.setdefault(base, {"name": base, "count": 0, "total_ms": 0.0, "delegated": delegated})
        row["count"] += 1
        row["total_ms"] += float(np.median(samples))
    ops = sorted(rows.values(), key=lambda r: -r["total_ms"])
    for r in ops:
        r["mean_ms"] = r["total_ms"] / r["count"]
        r["pct"] = 100.0 * r["total_ms"] / total if total else None
    note = None
    if not has_delegated_ops and any(r["name"] == "DELEGATE_CALL" for r in ops):
        note = "the delegate reports no per-operator events: each DELEGATE_CALL row is a whole delegated subgraph"
    return {"source": "etdump", "total_ms": total, "ops": ops, "note": note}


def etdump_op_table(dump: str | Path) -> dict[str, Any]:
    """Read an ETDump file (``executorch.devtools``) into :func:`op_table`'s table."""
    from edgekd.convert.executorch import etdump_events

    return op_table(etdump_events(Path(dump)))


def store_op_table(run_dir: Path, model: str | Path, threads: int, dump: Path) -> str:
    """Turn the dump into ``profiles/<stem>__<threads>t.ops.json``; return that path relative to ``run_dir``."""
    table = etdump_op_table(dump)
    out = run_dir / PROFILES / f"{profile_stem(model, threads)}.ops.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=1))
    return str(out.relative_to(run_dir))
