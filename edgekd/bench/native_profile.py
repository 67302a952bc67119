"""Per-operator tables from the native runner's ``--profile`` dump, stored beside a run's results.

The native runner profiles every inference of its run (first, warm-up, timed and eval runs):

* ``.pte``: an ETDump (ExecuTorch's event tracer), read on the host with ``executorch.devtools``
  (:func:`etdump_op_table`);
* ``.tflite``: LiteRT's own profiler (``enable_profiling`` in its runtime options), whose events the
  runner writes as JSON (:func:`litert_op_table`).

Per operator name the table sums the median time of each of its instances (one inference's time per
operator), sorted by time: ``{"source", "total_ms", "ops": [{"name", "count", "total_ms", "mean_ms",
"pct", "delegated"}], "note"}``. It is written to ``RUN_DIR/profiles/<stem>__<format>-<precision>-<converter>__<threads>t.ops.json``
(:func:`profile_stem`: one per file, so ``model_fp32.pte`` and ``model_fp32.tflite`` never share one) and the
result's ``profile`` holds that path relative to ``RUN_DIR``; ``edgekd report`` shows the top operators.
Where no table could be made (the Python runner ran the file, the runtime gave no events, the dump could
not be read or pulled back from the device) the result's ``profile_error`` says why. Where a delegate reports no per-operator events, its whole call is one row (one blob:
``DELEGATE_CALL`` in an ETDump, the delegate kernel in LiteRT's) and ``note`` says so; XNNPACK in both
wheels does report its operators.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.files import write_atomic
from edgekd.formats import suffix_rows

PROFILES = "profiles"
_WRAPPERS = {"Method::execute", "Method::init", "Program::load_method", "OPERATOR_CALL"}


def profile_stem(model: str | Path, key: str, threads: int) -> str:
    """``RUN_DIR/profiles/<this>.ops.json`` (and the dump): the file's stem, its key (format/precision/converter,
    ``/`` as ``-``) and the thread count, e.g. ``model_fp32__tflite-fp32-litert-torch__2t``."""
    return f"{Path(model).stem}__{key.replace('/', '-')}__{threads}t"


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


def litert_op_table(dump: str | Path) -> dict[str, Any]:
    """Read the native runner's LiteRT profiler events (JSON) into an operator table.

    Event types (tflite::Profiler::EventType): 1 default (``Invoke`` = one inference), 2 operator invoke,
    4 delegate-internal operator, 8 delegate operator profiled as an operator; the node index tells
    instances of one operator type apart."""
    events = json.loads(Path(dump).read_text())["events"]
    instances: dict[tuple[str, int, int], list[float]] = {}
    invokes = []
    for e in events:
        if e["type"] == 1 and e["tag"] == "Invoke":
            invokes.append(e["us"] / 1000.0)
        elif e["type"] in (2, 4, 8):
            instances.setdefault((e["tag"], e["type"], e["node"]), []).append(e["us"] / 1000.0)
    inside = any(t in (4, 8) for _, t, _ in instances)
    rows: dict[str, dict[str, Any]] = {}
    blob = False
    for (tag, kind, _node), samples in instances.items():
        is_delegate_kernel = kind == 2 and "delegate" in tag.lower()
        if is_delegate_kernel and inside:
            continue  # the delegate's own operators are listed: its kernel would count them twice
        blob = blob or is_delegate_kernel
        row = rows.setdefault(tag, {"name": tag, "count": 0, "total_ms": 0.0, "delegated": kind != 2 or is_delegate_kernel})
        row["count"] += 1
        row["total_ms"] += float(np.median(samples))
    total = float(np.median(invokes)) if invokes else None
    ops = sorted(rows.values(), key=lambda r: -r["total_ms"])
    for r in ops:
        r["mean_ms"] = r["total_ms"] / r["count"]
        r["pct"] = 100.0 * r["total_ms"] / total if total else None
    note = "the delegate reports no per-operator events: its row is the whole delegated subgraph" if blob else None
    return {"source": "litert-profiler", "total_ms": total, "ops": ops, "note": note}


def etdump_op_table(dump: str | Path) -> dict[str, Any]:
    """Read an ETDump file (``executorch.devtools``) into :func:`op_table`'s table."""
    from edgekd.convert.executorch import etdump_events

    return op_table(etdump_events(Path(dump)))


def dump_name(model: str | Path, key: str, threads: int) -> str:
    """The file name the native runner's ``--profile`` writes for ``model`` (an ETDump or LiteRT's JSON)."""
    row = suffix_rows().get(Path(model).suffix.lower())  # the table names each runtime's dump
    return profile_stem(model, key, threads) + (row.profile[1] if row and row.profile else ".etdump")


def store_op_table(run_dir: Path, model: str | Path, key: str, threads: int, dump: Path) -> str:
    """Turn the dump into ``profiles/<profile_stem>.ops.json`` (atomically); return that path relative to ``run_dir``."""
    sources = {f.profile[1]: f.profile[0] for f in suffix_rows().values() if f.profile}
    source = next((s for end, s in sources.items() if dump.name.endswith(end)), "etdump")
    table = litert_op_table(dump) if source == "litert-profiler" else etdump_op_table(dump)
    out = run_dir / PROFILES / f"{profile_stem(model, key, threads)}.ops.json"
    write_atomic(out, json.dumps(table, indent=1), stage="bench/profile")
    return str(out.relative_to(run_dir))
