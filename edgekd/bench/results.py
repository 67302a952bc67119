"""One measured model file (:class:`BenchResult`) and the ``results.jsonl`` it is appended to.

The harness, the pool, the table and the HTML report all read and write these rows; each row is
appended (flushed and fsynced) the moment it is measured, so an interrupted run loses nothing, and a
line that cannot be appended whole (a full disk) is cut back off, so the file never ends in half a row.

Rows written by another edgekd version stay readable (:func:`load_results`): fields this version does
not know are kept aside in ``extra_fields`` (and written back as they were), fields it misses get their
defaults, and the statistics (``latency_ms``, ``spread``) are recomputed from ``latency_samples_ms``
wherever the samples are there, whatever the statistics' own layout was. Lines that cannot be read at
all are counted with the reason (:attr:`Results.skipped`), never dropped without a word.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgekd.bench.stats import Spread, Stats
from edgekd.errors import EdgekdError
from edgekd.files import output_error

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
    profile_error: str | None = None  # --profile was asked for but no op table could be made: why
    notes: list[str] = field(default_factory=list)  # what the runner said about the run (input converted, NaN fed)
    error: str | None = None
    error_type: str | None = None  # "export" for a file that failed to export (no runner ran)
    exit_code: int | None = None
    created: str = ""
    extra_fields: dict[str, Any] = field(default_factory=dict)  # fields of another edgekd version, kept as read

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        """``ok``, ``failed on device`` (exported, but the target could not run or time it) or ``failed to export``."""
        return OK if self.ok else EXPORT_FAILED if self.error_type == "export" else DEVICE_FAILED

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra_fields")
        d["latency_ms"] = self.latency_ms.to_dict() if self.latency_ms else None
        d["spread"] = self.spread.to_dict() if self.spread else None
        d["status"] = self.status
        return {**extra, **d}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> BenchResult:
        """A row of any edgekd version (see the module docstring); ValueError naming what is missing where it
        cannot be one (not an object, no ``target``/``model``)."""
        if not isinstance(d, dict):
            raise ValueError(f"not a JSON object but a {type(d).__name__}")
        missing = [k for k in ("target", "model") if not isinstance(d.get(k), str)]
        if missing:
            raise ValueError(f"no {' or '.join(repr(k) for k in missing)} field")
        known = {f.name for f in fields(BenchResult)}
        derived = {"latency_ms", "spread", "extra_fields"}
        kw: dict[str, Any] = {k: v for k, v in d.items() if k in known and k not in derived}
        kw["extra_fields"] = {k: v for k, v in d.items() if k not in known and k != "status"}  # status: derived
        key = d.get("key") if isinstance(d.get("key"), str) else "/".join(
            str(d.get(k) or "unknown") for k in ("format", "precision", "converter"))
        for name, part in zip(("format", "precision", "converter"), ([*key.split("/"), "unknown", "unknown"]),
                              strict=False):
            kw.setdefault(name, part)
        kw.setdefault("key", key)
        kw.setdefault("model_name", Path(d["model"]).stem)
        kw.setdefault("bytes", 0)
        samples = _samples(d.get("latency_samples_ms"))
        kw["latency_samples_ms"] = samples if samples is not None else []
        if samples:  # the statistics are derived: recomputed from the raw samples, whatever layout they had
            kw["latency_ms"], kw["spread"] = Stats.from_samples(samples), Spread.from_samples(samples)
        else:
            kw["latency_ms"] = _stored(Stats, d.get("latency_ms"))
            kw["spread"] = _stored(Spread, d.get("spread"))
        for name in ("machine", "input"):
            if not isinstance(kw.get(name), dict):
                kw[name] = {}
        if not isinstance(kw.get("notes"), list):
            kw["notes"] = []
        return BenchResult(**kw)


def _samples(value: Any) -> list[float] | None:
    """``latency_samples_ms`` as floats, or None where they are absent, not numbers or not finite."""
    if not isinstance(value, list):
        return None
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for v in out) else None


def _stored(cls: type[Stats] | type[Spread], value: Any) -> Any:
    """A statistics dataclass from its stored dict (the fields it knows; extra ones ignored), or None where
    one of its fields is missing or of the wrong type (and there are no samples to recompute it from)."""
    if not isinstance(value, dict):
        return None
    try:
        return cls(**{f.name: value[f.name] for f in fields(cls)})
    except (KeyError, TypeError, ValueError):
        return None


def append_result(path: Path, result: BenchResult) -> None:
    """Append one row (flushed, fsynced). A row that cannot be written whole (a full disk) is cut back off the
    file and raises an :class:`~edgekd.errors.OutputError` that quotes the row's key and p50, so it is not lost."""
    line = (json.dumps(result.to_dict()) + "\n").encode()
    try:
        with open(path, "a+b") as f:
            start = f.tell()
            try:
                if start and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n":
                    f.write(b"\n")  # a line cut off by an earlier interruption stays on its own line
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            except OSError:
                f.truncate(start)  # never leave half a row behind
                raise
    except OSError as e:
        p50 = f"p50 {result.latency_ms.p50:.4f} ms" if result.latency_ms else result.status
        err = output_error(e, path, stage="bench", what="the results file", fix="bench into another folder (--out DIR)")
        raise type(err)(f"{err.message}; the result of {Path(result.model).name} [{result.key}] ({p50}) "
                        "was not saved", stage=err.stage, hint=err.hint) from None


class Results(list[BenchResult]):
    """The rows of a ``results.jsonl`` (a list), with the lines that could not be read: ``skipped`` holds
    ``(line number, reason)`` and :meth:`describe` says it in one sentence."""

    def __init__(self, rows: list[BenchResult] = (), skipped: list[tuple[int, str]] | None = None,  # type: ignore[assignment]
                 path: Path | None = None) -> None:
        super().__init__(rows)
        self.skipped = skipped or []
        self.path = path

    def describe(self) -> str | None:
        """``"2 of 9 lines of PATH could not be read: 1 not JSON (cut off?) (line 4), ..."``; None when all were read."""
        if not self.skipped:
            return None
        reasons = Counter(reason for _, reason in self.skipped)
        lines: dict[str, list[int]] = {}
        for n, reason in self.skipped:
            lines.setdefault(reason, []).append(n)
        parts = [f"{count} {reason} (line{'s' if count > 1 else ''} {', '.join(map(str, lines[reason][:5]))}"
                 f"{' ...' if count > 5 else ''})" for reason, count in reasons.most_common()]
        total = len(self) + len(self.skipped)
        return f"{len(self.skipped)} of {total} lines of {self.path} could not be read: {'; '.join(parts)}"


def load_results(path: str | Path) -> Results:
    """Read a ``results.jsonl`` written by this or another edgekd version (see the module docstring).

    Every row that can be read is returned; the others are in ``.skipped`` with why (a line cut off by an
    interruption, not an object, no model or target)."""
    p = Path(path)
    rows: list[BenchResult] = []
    skipped: list[tuple[int, str]] = []
    text = p.read_text(errors="replace") if p.exists() else ""
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            skipped.append((n, "not JSON (cut off by an interruption?)"))
            continue
        try:
            rows.append(BenchResult.from_dict(obj))
        except (ValueError, TypeError, EdgekdError) as e:
            skipped.append((n, str(e).split(":")[0] if isinstance(e, TypeError) else str(e)))
    return Results(rows, skipped, p)
