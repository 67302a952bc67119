"""Rendering results for people (aligned text tables) and for files (``summary.json``).

Nothing here measures or computes statistics; it only formats :class:`BenchResult` fields.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.bench.metrics import METRICS
from edgekd.bench.stats import noise_band, noise_groups
from edgekd.files import write_atomic

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.bench.results import BenchResult


def _num(fmt: str) -> Callable[[Any], str]:
    return lambda v: "-" if v is None else format(v, fmt)


def _lat(field: str) -> Callable[[BenchResult], Any]:
    return lambda r: getattr(r.latency_ms, field) if r.latency_ms else None


# column header (unit in it) -> (value getter, formatter, right-aligned); the metrics' columns come from their table
COLUMNS: dict[str, tuple[Callable[[BenchResult], Any], Callable[[Any], str], bool]] = {
    **{m.column: (m.cell, _num(m.fmt), True) for m in METRICS.values() if m.column},
    "model": (lambda r: r.model_name, str, False),
    "format": (lambda r: r.format, str, False),
    "precision": (lambda r: r.precision, str, False),
    "converter": (lambda r: r.converter, str, False),
    "runtime": (lambda r: r.runtime, lambda v: v or "-", False),
    "threads": (lambda r: r.threads, str, True),
    "KB": (lambda r: r.bytes / 1024, _num(".1f"), True),
    "std ms": (_lat("std"), _num(".3f"), True),
    "runs": (lambda r: r.runs if r.ok else None, _num("d"), True),
    "min ms": (_lat("min"), _num(".3f"), True),
    "robust cv %": (lambda r: 100 * r.spread.robust_cv if r.spread and r.spread.robust_cv is not None else None,
                    _num(".2f"), True),
    "stability": (lambda r: r.spread.verdict if r.spread else None, lambda v: v or "-", False),
    "repeat": (lambda r: r.repeat, lambda v: "-" if not v else
               f"{'agree' if v['agree'] else 'DIFFER'} {100 * v['spread']:.1f}%", False),
    "p50 range ms": (lambda r: noise_band(r.repeat) if r.ok else None,
                     lambda v: "-" if v is None else f"{v[0]:.3f}-{v[1]:.3f}", True),
    "status": (lambda r: r.status, str, False),
    "reason": (lambda r: r.error, lambda v: "" if v is None else _reason(str(v)), False),
    "error": (lambda r: r.error, lambda v: "" if v is None else str(v).splitlines()[0][:100], False),
}
STATUS_COLUMNS = ("model", "format", "precision", "converter", "status", "KB", "acc %", "load ms", "warm ms",
                  "first ms", "p50 ms", "p50 range ms", "trim ms", "p99 ms", "cv %", "robust cv %", "stability", "repeat", "runs",
                  "peak MB", "reason")
GROUP = "same as"  # the noise-group column: files with the same letter are the same speed within noise
NOISE_NOTE = ("p50 range: the lowest and highest p50 of the interleaved rounds (--repeat), at least +-1% of the "
              "p50; \"same as\": files with the same letter have overlapping ranges, i.e. the same speed within noise")
DEFAULT_COLUMNS = ("model", "format", "precision", "converter", "KB", "acc %", "load ms", "first ms",
                   "p50 ms", "p90 ms", "p99 ms", "peak MB", "error")


def _reason(error: str) -> str:
    """The part of an error that says why, without the ``bench/<target>: file [key]:`` prefix (the row names those)."""
    first = error.splitlines()[0]
    head, sep, rest = first.partition("]: ")
    return (rest if sep and "[" in head else first)[:110]


def format_status(results: Sequence[BenchResult]) -> str:
    """Ultralytics-style: one row per file with its status (ok / failed on device / failed to export) and why.

    Columns no row fills (no accuracy measured, no --repeat) are left out; nothing here raises for a bad row.
    """
    cols = [c for c in STATUS_COLUMNS if any(COLUMNS[c][0](r) is not None for r in results) or c in
            ("model", "format", "precision", "status")]
    if not any(r.error for r in results):
        cols = [c for c in cols if c != "reason"]
    groups = status_groups(results)
    cols = noise_columns(cols, groups)
    extra = {GROUP: [g or "-" for g in groups]} if any(groups) else {}
    n_ok = sum(1 for r in results if r.ok)
    return (format_table(results, cols, extra) + f"\n{n_ok}/{len(results)} files ok"
            + (f"\n{NOISE_NOTE}" if extra else ""))


def noise_columns(cols: Sequence[str], groups: Sequence[str | None]) -> list[str]:
    """With noise groups (``--repeat``): the group column after the p50 range, which also replaces the
    ``repeat`` column (its agreement % is the range's width over the p50, said twice otherwise)."""
    if not any(groups):
        return list(cols)
    out = [c for c in cols if c != "repeat"]
    out.insert(out.index("p50 range ms") + 1, GROUP)
    return out


def status_groups(results: Sequence[BenchResult]) -> list[str | None]:
    """The noise group of each result (:func:`edgekd.bench.stats.noise_groups`; None: measured once or failed)."""
    return noise_groups([noise_band(r.repeat) if r.ok else None for r in results])


def format_table(results: Sequence[BenchResult], columns: Sequence[str] = DEFAULT_COLUMNS,
                 extra: dict[str, Sequence[str]] | None = None) -> str:
    """A plain-text table, one row per result; headers carry the units (ms, MB, KB, %).

    ``extra``: columns whose cells the caller computed over the whole set (one string per result), such as
    the noise group, which no single row knows."""
    extra = extra or {}
    unknown = [c for c in columns if c not in COLUMNS and c not in extra]
    if unknown:
        from edgekd.errors import ConfigError

        raise ConfigError(f"unknown table column(s) {unknown}; known: {', '.join(COLUMNS)}", stage="bench/report")
    if not any(r.error for r in results):
        columns = [c for c in columns if c != "error"]
    rows = [[extra[c][i] if c in extra else _cell(c, r) for c in columns] for i, r in enumerate(results)]
    widths = [max([len(c), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(w) if c not in extra and COLUMNS[c][2] else cell.ljust(w)
                         for cell, w, c in zip(cells, widths, columns, strict=True)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _cell(column: str, r: BenchResult) -> str:
    get, fmt, _ = COLUMNS[column]
    try:
        return fmt(get(r))
    except (TypeError, ValueError, KeyError, AttributeError):  # a malformed row must not take the table down
        return "?"


def speed_warnings(results: Sequence[BenchResult]) -> list[str]:
    """One line per (target, model, threads) where the fp32 ``.pte`` is much slower than the fastest fp32
    ``.tflite`` measured beside it (p50s of this run; the rule is :func:`edgekd.convert.speed.slow_pte_note`)."""
    from edgekd.convert.speed import slow_pte_note

    groups: dict[tuple[str, str, int], list[BenchResult]] = {}
    for r in results:
        if r.ok and r.latency_ms is not None and r.precision == "fp32":
            groups.setdefault((r.target, r.model_name, r.threads), []).append(r)
    out = []
    for (target, model, threads), rows in groups.items():
        ptes = [r for r in rows if r.format == "pte"]
        tflites = [r for r in rows if r.format == "tflite"]
        if not ptes or not tflites:
            continue
        best = min(tflites, key=lambda r: r.latency_ms.p50)  # type: ignore[union-attr]
        cpu = (ptes[0].machine or {}).get("cpu_model")
        where = f"on {target.split('?')[0]}{f' ({cpu})' if cpu else ''}, {threads} thread{'s' * (threads != 1)}, p50"
        for pte in ptes:
            note = slow_pte_note(pte.latency_ms.p50, best.latency_ms.p50, where)  # type: ignore[union-attr]
            if note:
                out.append(f"{model}: {note}")
    return out


def write_summary(results: Sequence[BenchResult], path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write every result (raw samples included) and the rendered table to a JSON file, atomically."""
    path = Path(path)
    doc = {"created": datetime.now().isoformat(timespec="seconds"), "n_results": len(results),
           "n_failed": sum(1 for r in results if r.error), "warnings": speed_warnings(results), **(extra or {}),
           "table": format_table(results).splitlines(), "results": [r.to_dict() for r in results]}
    return write_atomic(path, json.dumps(doc, indent=1), stage="bench", what="the run summary",
                        fix="bench into another folder (--out DIR)")
