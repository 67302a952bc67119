"""What a fit leaves behind: ``fit.json`` (:func:`document`) and the terminal table (:func:`format_fit`).

``fit.json`` holds the settings, the space, the budget, each target (fingerprint, CPU facts, runtime),
the stated proxy schedule, every candidate (architecture, deployment, parameters, FLOPs, file size,
coverage, p50 / trimmed mean / CV / peak memory per target, where the row came from, verdict and
reason, proxy accuracy, role), the accuracy/latency front per target, the chosen candidate, the final
run's metrics and benchmark, the gate's misses, timings and the table's counters. The HTML report reads
it (:func:`edgekd.bench.html_report.fit_section`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from edgekd.bench.gate import Miss
from edgekd.bench.results import BenchResult
from edgekd.bundle import Bundle
from edgekd.fit.select import REJECTIONS, Candidate

SCHEMA = 1


def document(cands: Sequence[Candidate], *, status: str, settings: Any, space: Any, budgets: Sequence[Any],
             requirements: Sequence[Any], schedule: Any, splits: Any, measurer: Any, exporter: Any, store: Any,
             qat: bool, strict: bool, timings: dict[str, float], error: str | None = None,
             chosen: Candidate | None = None, fronts: dict[str, list[int]] | None = None,
             final: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``fit.json`` document (see the module docstring)."""
    from edgekd._version import __version__
    from edgekd.bench.machine import machine_facts

    doc: dict[str, Any] = {
        "schema": SCHEMA, "status": status, "error": error, "created": datetime.now().isoformat(timespec="seconds"),
        "edgekd_version": __version__, "data": splits.name, "num_classes": splits.num_classes,
        "budget": [{"kind": b.kind, "limit": b.limit} for b in budgets],
        "require": [str(r) for r in requirements], "qat": qat, "prune": settings.prune, "strict_delegation": strict,
        "space": space.describe(),
        "targets": [{"url": t.url, "fingerprint": measurer.devices[t.url][0], "device": measurer.devices[t.url][1],
                     "runtimes": measurer.stamps(t.url)}
                    for t in measurer.targets],
        "host": machine_facts(),
        "schedule": {"proxy": schedule.describe(len(splits.train)), "proxies": settings.proxies,
                     "final": f"{settings.epochs} epoch(s) of {settings.method}"
                              + (f" then {settings.ft_epochs} of KD + QAT" if qat else "")
                              + (f", pruning {settings.prune:g} of the inner channels" if settings.prune else "")},
        "table": {"path": str(store.path), **store.counts()},
        "counts": {"exported": exporter.exported, "exports_reused": exporter.reused, "measured": measurer.measured,
                   "stored": measurer.stored, "measurements_reused": measurer.reused},
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "candidates": [c.to_dict() for c in cands],
        "rejected": {v: sum(c.verdict == v for c in cands) for v in REJECTIONS},
        "feasible": sum(c.feasible for c in cands),
    }
    if fronts is not None:
        doc["fronts"] = fronts
    if chosen is not None:
        doc["chosen"] = {"index": list(cands).index(chosen), "name": chosen.name, **chosen.to_dict()}
    if final is not None:
        doc["final"] = final
    return doc


def final_section(metrics: dict[str, float], model_path: Any, bundle: Bundle | None, bench: Sequence[BenchResult],
                  misses: Sequence[Miss], passed: bool) -> dict[str, Any]:
    """``fit.json``'s ``final``: the full run's metrics, the files and their parity, the gated benchmark."""
    return {
        "metrics": metrics, "model": str(model_path) if model_path else None,
        "bundle": str(bundle.root) if bundle else None,
        "files": [{"path": f.path, "bytes": f.bytes, "parity": asdict(f.parity) if f.parity else None}
                  for f in (bundle.files if bundle else [])],
        "bench": [{"target": r.target, "key": r.key, "ok": r.ok, "error": r.error,
                   "p50_ms": r.latency_ms.p50 if r.latency_ms else None, "cv": r.spread.cv if r.spread else None,
                   "accuracy": r.accuracy, "peak_mem_mb": r.peak_mem_mb, "bytes": r.bytes} for r in bench],
        "misses": [str(m) for m in misses], "passed": passed}


def _cell(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_fit(doc: dict[str, Any], limit: int | None = None) -> str:
    """The candidates as a table (front and chosen first, then feasible, then each rejection), the chosen
    one and the final benchmark's verdict."""
    urls = [t["url"] for t in doc["targets"]]
    short = [u.split("?")[0] for u in urls]
    rank = {"chosen": 0, "front": 1, "proxied": 2}
    cands = sorted(doc["candidates"], key=lambda c: (rank.get(c["role"], 3), c["verdict"] != "feasible",
                                                     c["verdict"], min([v for v in c["p50_ms"].values() if v] or [9e9])))
    head = ["", "candidate", "deploy", "params", "MFLOPs", "KB", *[f"p50 ms {u}" for u in short], "MB",
            "proxy val %", "verdict"]
    rows = []
    for c in cands[:limit] if limit else cands:
        mark = {"chosen": "*", "front": "+", "proxied": "."}.get(c["role"], "")
        mem = [v for v in c["peak_mem_mb"].values() if v is not None]
        reason = c["verdict"] + (f": {c['reason']}" if c["reason"] else "") + ("; " + "; ".join(c["flags"])
                                                                               if c["flags"] else "")
        rows.append([mark, c["arch"], f"{c['format']}/{c['precision']}/{c['threads']}t", f"{c['params']:,}",
                     _cell(c["flops"] / 1e6 if c["flops"] else None, ".2f"),
                     _cell(c["bytes"] / 1024 if c["bytes"] else None, ".1f"),
                     *[_cell(c["p50_ms"].get(u), ".4f") for u in urls], _cell(max(mem) if mem else None, ".1f"),
                     _cell(100 * c["proxy"]["val_acc"] if c["proxy"] else None, ".2f"), reason[:90]])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    budget = ", ".join(f"{b['kind']}<={b['limit']:g}" for b in doc["budget"])
    out = [f"fit {doc['data']} under {budget}: {len(doc['candidates'])} candidates, {doc['feasible']} feasible; "
           + ", ".join(f"{v} {k}" for k, v in doc["rejected"].items() if v), *lines,
           "(* chosen, + on the accuracy/latency front, . proxy run; proxy: " + doc["schedule"]["proxy"] + ")"]
    if doc.get("chosen"):
        c = doc["chosen"]
        out.append(f"chosen: {c['name']}")
    final = doc.get("final")
    if final:
        for b in final["bench"]:
            acc = f"  accuracy {100 * b['accuracy']:.2f}%" if b["accuracy"] is not None else ""
            p50 = f"p50 {b['p50_ms']:.4f} ms" if b["p50_ms"] is not None else f"FAILED: {b['error']}"
            out.append(f"final benchmark {b['target'].split('?')[0]} {b['key']}: {p50}{acc}")
        out += [f"requirement missed: {m}" for m in final["misses"]]
        out.append("meets the budget on every target" if final["passed"] else "DOES NOT meet the budget")
    return "\n".join(out)
