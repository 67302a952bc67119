"""Rendering results for people (aligned text tables) and for files (``summary.json``).

Nothing here measures or computes statistics; it only formats :class:`BenchResult` fields.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.bench.results import BenchResult


def _num(fmt: str) -> Callable[[Any], str]:
    return lambda v: "-" if v is None else format(v, fmt)


def _lat(field: str) -> Callable[[BenchResult], Any]:
    return lambda r: getattr(r.latency_ms, field) if r.latency_ms else None


# column header (unit in it) -> (value getter, formatter, right-aligned)
COLUMNS: dict[str, tuple[Callable[[BenchResult], Any], Callable[[Any], str], bool]] = {
    "model": (lambda r: r.model_name, str, False),
    "format": (lambda r: r.format, str, False),
    "precision": (lambda r: r.precision, str, False),
    "converter": (lambda r: r.converter, str, False),
    "runtime": (lambda r: r.runtime, lambda v: v or "-", False),
    "threads": (lambda r: r.threads, str, True),
    "KB": (lambda r: r.bytes / 1024, _num(".1f"), True),
    "acc %": (lambda r: None if r.accuracy is None else 100 * r.accuracy, _num(".2f"), True),
    "load ms": (lambda r: r.load_ms, _num(".2f"), True),
    "first ms": (lambda r: r.first_inference_ms, _num(".3f"), True),
    "p50 ms": (_lat("p50"), _num(".3f"), True),
    "p90 ms": (_lat("p90"), _num(".3f"), True),
    "p99 ms": (_lat("p99"), _num(".3f"), True),
    "std ms": (_lat("std"), _num(".3f"), True),
    "peak MB": (lambda r: r.peak_mem_mb, _num(".1f"), True),
    "error": (lambda r: r.error, lambda v: "" if v is None else str(v).splitlines()[0][:100], False),
}
DEFAULT_COLUMNS = ("model", "format", "precision", "converter", "KB", "acc %", "load ms", "first ms",
                   "p50 ms", "p90 ms", "p99 ms", "peak MB", "error")


def format_table(results: Sequence[BenchResult], columns: Sequence[str] = DEFAULT_COLUMNS) -> str:
    """A plain-text table, one row per result; headers carry the units (ms, MB, KB, %)."""
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        from edgekd.errors import ConfigError

        raise ConfigError(f"unknown table column(s) {unknown}; known: {', '.join(COLUMNS)}", stage="bench/report")
    if not any(r.error for r in results):
        columns = [c for c in columns if c != "error"]
    rows = [[COLUMNS[c][1](COLUMNS[c][0](r)) for c in columns] for r in results]
    widths = [max([len(c), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(w) if COLUMNS[c][2] else cell.ljust(w)
                         for cell, w, c in zip(cells, widths, columns, strict=True)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def write_summary(results: Sequence[BenchResult], path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write every result (raw samples included) and the rendered table to a JSON file, atomically."""
    path = Path(path)
    doc = {"created": datetime.now().isoformat(timespec="seconds"), "n_results": len(results),
           "n_failed": sum(1 for r in results if r.error), **(extra or {}),
           "table": format_table(results).splitlines(), "results": [r.to_dict() for r in results]}
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return path
