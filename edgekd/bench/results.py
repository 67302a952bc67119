"""One measured model file (:class:`BenchResult`) and the ``results.jsonl`` it is appended to.

The harness, the pool, the table and the HTML report all read and write these rows; each row is
appended (flushed and fsynced) the moment it is measured, so an interrupted run loses nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgekd.bench.stats import Spread, Stats

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
ABOUT = "about.html"  # an HTML fragment a run folder may carry about itself; the report shows it first
OK, DEVICE_FAILED, EXPORT_FAILED = "ok", "failed on device", "failed to export"  # BenchResult.status


@dataclass
class BenchResult:
    """One model file measured on one target. Times in ms, memory in MB, accuracy in [0, 1]."""

    target: str
    model: str  # path of the model file on the host
    model_name: str  # the bundle's model name (or the file's stem): column "model" in tables
    key: str  # format/precision/converter
    format: str
    precision: str
    converter: str
    bytes: int
    runtime: str | None = None
    runtime_version: str | None = None
    interpreter: str | None = None
    runner: str | None = None  # "python" | "native": which device runner measured it
    threads: int = 0
    warmup: int = 0
    runs: int = 0
    load_ms: float | None = None  # the cold, first load in the runner process
    warm_load_ms: float | None = None  # a second load of the same file after freeing the first
    first_inference_ms: float | None = None
    latency_ms: Stats | None = None  # derived from latency_samples_ms
    spread: Spread | None = None  # trimmed mean, CV, stability verdict; derived from latency_samples_ms
    latency_samples_ms: list[float] = field(default_factory=list)
    peak_mem_mb: float | None = None
    baseline_mem_mb: float | None = None
    accuracy: float | None = None
    eval_samples: int = 0
    machine: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)
    min_duration_s: float = 0.0  # timed runs went on past `runs` until this many seconds (0: off)
    repeat: dict[str, Any] | None = None  # --repeat N: the p50 of each repetition and whether they agree
    sustained: list[dict[str, Any]] | None = None  # --sustained: one row per interval (t_s, p50, temp_c, ...)
    thermal: list[dict[str, Any]] | None = None  # --sustained: every temperature reading (t_s, temp_c, zones)
    profile: str | None = None  # op table (ops JSON) beside the result, relative to the run folder
    error: str | None = None
    error_type: str | None = None  # "export" for a file that failed to export (no runner ran)
    exit_code: int | None = None
    created: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        """``ok``, ``failed on device`` (exported, but the target could not run or time it) or ``failed to export``."""
        return OK if self.ok else EXPORT_FAILED if self.error_type == "export" else DEVICE_FAILED

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latency_ms"] = self.latency_ms.to_dict() if self.latency_ms else None
        d["spread"] = self.spread.to_dict() if self.spread else None
        d["status"] = self.status
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> BenchResult:
        known = {f.name for f in fields(BenchResult)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["latency_ms"] = Stats.from_dict(d["latency_ms"]) if d.get("latency_ms") else None
        kw["spread"] = Spread(**d["spread"]) if d.get("spread") else (
            Spread.from_samples(d["latency_samples_ms"]) if d.get("latency_samples_ms") else None)
        return BenchResult(**kw)


def append_result(path: Path, result: BenchResult) -> None:
    with open(path, "a+b") as f:
        if f.tell() and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n":
            f.write(b"\n")  # a line cut off by an earlier interruption stays on its own line
        f.write((json.dumps(result.to_dict()) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


def load_results(path: str | Path) -> list[BenchResult]:
    """Read a ``results.jsonl``; a line cut off by an interruption is skipped."""
    out = []
    p = Path(path)
    for line in p.read_text().splitlines() if p.exists() else []:
        try:
            out.append(BenchResult.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError, KeyError):
            continue
    return out
