"""The persistent latency table: measurements a later search reuses, in one SQLite file.

A measurement is keyed by :class:`MeasureKey` — (architecture spec, input shape, format, precision,
threads, runtime, device fingerprint) — and holds the harness's whole row (raw latency samples, the
statistics derived from them, peak memory, load times, the machine facts), so a second search on the
same device measures only the keys it has not seen. A second table keeps what exporting each
candidate untrained showed (file size, ops outside the XNNPACK delegate, or the converter's error),
keyed by (architecture, input shape, format, precision, converter versions). Only trusted rows are
kept: a measurement the stability check rejected, or a device failure, is measured again next time.

SQLite in WAL mode: every write is its own committed transaction (an interrupted search loses at most
the row being written), several processes may read while one writes, and a writer waits for another
(``busy_timeout``). The file lives in ``$EDGEKD_CACHE_DIR`` (default ``$XDG_CACHE_HOME/edgekd``, i.e.
``~/.cache/edgekd``) as ``fit.sqlite`` unless a path is given.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from edgekd.errors import ConfigError

STAGE = "fit/table"
CACHE_ENV = "EDGEKD_CACHE_DIR"
SCHEMA = """
CREATE TABLE IF NOT EXISTS latency (
    id TEXT PRIMARY KEY, arch TEXT NOT NULL, input_shape TEXT NOT NULL, format TEXT NOT NULL,
    precision TEXT NOT NULL, threads INTEGER NOT NULL, runtime TEXT NOT NULL, device TEXT NOT NULL,
    p50_ms REAL, row TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS coverage (
    id TEXT PRIMARY KEY, arch TEXT NOT NULL, input_shape TEXT NOT NULL, format TEXT NOT NULL,
    precision TEXT NOT NULL, toolchain TEXT NOT NULL, record TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (fingerprint TEXT PRIMARY KEY, facts TEXT NOT NULL, created TEXT NOT NULL);
"""


def default_path() -> Path:
    """``$EDGEKD_CACHE_DIR/fit.sqlite``, else ``$XDG_CACHE_HOME/edgekd/fit.sqlite`` (``~/.cache/edgekd``)."""
    root = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgekd"
    return Path(root) / "fit.sqlite"


def _id(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class MeasureKey:
    """What a latency depends on; two equal keys are the same measurement."""

    arch: str  # Arch.spec
    input_shape: tuple[int, ...]
    format: str
    precision: str
    threads: int
    runtime: str  # e.g. "python:tflite==2.3.0", "native:<bundle sha256>"
    device: str  # device fingerprint

    @property
    def id(self) -> str:
        return _id(asdict(self))


@dataclass(frozen=True)
class CoverageKey:
    """What the untrained export of one file depends on (not the device: the same file goes everywhere)."""

    arch: str
    input_shape: tuple[int, ...]
    format: str
    precision: str
    toolchain: str  # the converters' versions

    @property
    def id(self) -> str:
        return _id(asdict(self))


class LatencyStore:
    """The table in ``path`` (default :func:`default_path`); see the module docstring."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._db() as db:
                db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"cannot open the latency table {self.path}: {e}", stage=STAGE,
                              hint=f"pass a writable path (--table PATH) or set {CACHE_ENV}") from None

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=60000")
            with db:  # one transaction: committed on success, rolled back on an exception
                yield db
        finally:
            db.close()

    # -- measurements ----------------------------------------------------------------------------------
    def latency(self, key: MeasureKey) -> dict[str, Any] | None:
        """The stored row (a :class:`~edgekd.bench.results.BenchResult` as a dict), or None."""
        with self._db() as db:
            hit = db.execute("SELECT row FROM latency WHERE id = ?", (key.id,)).fetchone()
        return json.loads(hit[0]) if hit else None

    def put_latency(self, key: MeasureKey, row: dict[str, Any]) -> None:
        p50 = (row.get("latency_ms") or {}).get("p50")
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO latency VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (key.id, key.arch, json.dumps(list(key.input_shape)), key.format, key.precision, key.threads,
                        key.runtime, key.device, p50, json.dumps(row), _now()))

    # -- untrained exports ---------------------------------------------------------------------------
    def coverage(self, key: CoverageKey) -> dict[str, Any] | None:
        with self._db() as db:
            hit = db.execute("SELECT record FROM coverage WHERE id = ?", (key.id,)).fetchone()
        return json.loads(hit[0]) if hit else None

    def put_coverage(self, key: CoverageKey, record: dict[str, Any]) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO coverage VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (key.id, key.arch, json.dumps(list(key.input_shape)), key.format, key.precision, key.toolchain,
                        json.dumps(record), _now()))

    def delete_coverage(self, key: CoverageKey) -> None:
        with self._db() as db:
            db.execute("DELETE FROM coverage WHERE id = ?", (key.id,))

    # -- devices -------------------------------------------------------------------------------------
    def put_device(self, fingerprint: str, facts: dict[str, Any]) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO devices VALUES (?, ?, ?)", (fingerprint, json.dumps(facts), _now()))

    def counts(self) -> dict[str, int]:
        """Rows per table (for logs and the report)."""
        with self._db() as db:
            return {t: int(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])  # noqa: S608  (fixed names)
                    for t in ("latency", "coverage", "devices")}


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")
