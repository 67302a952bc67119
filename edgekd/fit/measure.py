"""Latency and memory of candidate files on the targets, through the bench harness, via the latency table.

For each (architecture, input shape, deployment) and target the :class:`Measurer` first looks the key up
in the :class:`~edgekd.fit.store.LatencyStore`; only a key it has not seen is measured, by
:func:`edgekd.bench.benchmark` (one target) or :func:`edgekd.bench.pool.bench_pool` (several, in
parallel), one file per call, and stored the moment it is trusted. The key's device part is a
fingerprint of where the runner runs (the host or board address and its CPU facts:
:func:`device_identity`); its runtime part names the runner and the runtime version it will load
(:func:`runtime_stamp`), probed before measuring so a runtime upgrade makes every old row unknown.

Stability: a row whose verdict (:func:`edgekd.bench.stats.verdict`, CV of the timed runs) is
``stable`` or ``noisy`` is trusted. An ``unstable`` row is measured again ``retries`` times (the
harness's ``repeat`` mode): when the p50s of those runs agree within ``agree`` (relative range), the
median one is trusted; otherwise the candidate is rejected as unstable and nothing is stored. A target
that is lost (the harness's ``target`` error) stops the search with a :class:`~edgekd.errors.TargetError`
that says the rows so far are kept and how to go on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import shlex
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgekd.bench.results import BenchResult
from edgekd.bench.stats import agreement
from edgekd.bench.targets import Target
from edgekd.bundle import Bundle, sha256_of
from edgekd.errors import TargetError
from edgekd.fit.space import Arch, Deploy
from edgekd.fit.store import LatencyStore, MeasureKey
from edgekd.formats import row as format_row

STAGE = "fit/measure"
TRUSTED = ("stable", "noisy")
_VERSIONS_SCRIPT = ("import importlib.metadata as m, json\nout = {}\nfor d in %r:\n    try:\n"
                    "        out[d] = m.version(d)\n    except Exception:\n        pass\nprint(json.dumps(out))")


def device_identity(tgt: Target) -> tuple[str, dict[str, Any]]:
    """(fingerprint, facts) of the device behind ``tgt``: where it is (``local@hostname``; an ssh host without
    its port, so a board reached on another port is the same board; an adb serial, ``host:port`` for adb over
    TCP) and its CPU facts (model, architecture, ISA flags, core count)."""
    from edgekd.bench.machine import machine_of

    url = tgt.url.split("?", 1)[0]
    parts = urlsplit(url)
    where = (f"local@{platform.node()}" if url == "local" else f"adb://{parts.netloc}" if parts.scheme == "adb"
             else f"{parts.scheme}://{parts.hostname}")
    facts = machine_of(tgt)
    ident = {"where": where, **{k: facts.get(k) for k in ("cpu_model", "arch", "isa", "logical_cpus")}}
    fp = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return fp, ident


def runtime_stamp(tgt: Target, fmt: str, runner: str = "auto") -> str:
    """Which runner will run ``fmt`` files on ``tgt`` and the version of the runtime it loads, asked before
    measuring: ``python:tflite:ai-edge-litert==2.3.0``, ``native:<sha256 of the runner or bundle>``; ``unknown`` for a
    target kind that cannot be asked (its rows are then reused by device and spec alone)."""
    from edgekd.bench.runner_bundle import choose_local_runner
    from edgekd.bench.targets.local import LocalTarget
    from edgekd.bench.targets.remote import RemoteTarget

    r = format_row(fmt)
    probe = Path(f"probe.{r.suffix}")
    versions: dict[str, str] = {}
    if isinstance(tgt, LocalTarget):
        which, exe = choose_local_runner(runner, probe)
        if exe is not None:
            return f"native:{sha256_of(exe)[:16]}"
        for d in r.dists:
            try:
                versions[d] = metadata.version(d)
            except metadata.PackageNotFoundError:
                continue
    elif isinstance(tgt, RemoteTarget):
        which = tgt.choose_runner(probe, runner)
        if which == "native":
            return f"native:{tgt.native_runner or tgt.host_bundle().sha256[:16]}"
        script = _VERSIONS_SCRIPT % (r.dists,)
        out = tgt.exec(f"{shlex.quote(tgt.python)} -c {shlex.quote(script)}", tgt.cmd_timeout_s)
        try:
            versions = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {}
        except (json.JSONDecodeError, IndexError):
            versions = {}
    else:
        return "unknown"
    found = next((f"{d}=={versions[d]}" for d in r.dists if d in versions), "none")
    return f"{which}:{r.backend}:{found}"


Guard = Callable[[], AbstractContextManager[object]]


def file_lock(path: str | Path) -> Guard:
    """A guard that holds the timing lock on ``path`` (:func:`edgekd.bench.lock.timing_lock`) while it is entered:
    several fits (or other timing runs) on this host that share the lock measure one at a time."""
    from edgekd.bench.lock import timing_lock

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return lambda: timing_lock(path, stage=STAGE)


def trust(row: BenchResult, agree: float) -> tuple[bool, str]:
    """Whether a measured row can be used, and why not: a failed row never; ``stable``/``noisy`` rows yes;
    an ``unstable`` one only when it carries repeated p50s (``row.repeat``) that agree within ``agree``."""
    if not row.ok or row.latency_ms is None:
        return False, f"failed on device: {row.error}"
    verdict = row.spread.verdict if row.spread else "unstable"
    if verdict in TRUSTED:
        return True, ""
    rcv = row.spread.robust_cv if row.spread and row.spread.robust_cv is not None else (
        row.spread.cv if row.spread else None)
    cv = f"robust CV {100 * rcv:.0f}%" if rcv is not None else "no spread"
    if row.repeat and row.repeat.get("p50s"):
        a = agreement(row.repeat["p50s"], agree)
        if a.agree:
            return True, ""
        return False, (f"unstable: {cv}, and the p50s of {len(a.p50s)} re-measurements spread "
                       f"{100 * a.spread:.0f}% > {100 * agree:.0f}%")
    return False, f"unstable: {cv}"


@dataclass
class Measured:
    """One (architecture, deployment) on one target: the row (None when there is none), where it came from
    (``table`` / ``measured``), and why it cannot be used (``reason``; empty when it can)."""

    row: BenchResult | None
    source: str
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.row is not None and not self.reason

    @property
    def p50_ms(self) -> float | None:
        return self.row.latency_ms.p50 if self.ok and self.row and self.row.latency_ms else None


class Measurer:
    """Look up or measure candidate files on ``targets`` (see the module docstring)."""

    def __init__(self, store: LatencyStore, targets: Sequence[Target], out_dir: Path, *, runs: int = 100,
                 warmup: int = 10, min_duration: float = 0.0, timeout_s: float = 300.0, retries: int = 3,
                 agree: float = 0.05, runner: str = "auto", guard: Guard | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.store, self.targets, self.out_dir = store, list(targets), Path(out_dir)
        self.runs, self.warmup, self.min_duration, self.timeout_s = runs, warmup, min_duration, timeout_s
        self.retries, self.agree, self.runner = retries, agree, runner
        self.guard: Guard = guard or contextlib.nullcontext  # held around every runner call
        self.on_event = on_event or (lambda _e, _i: None)
        self.devices: dict[str, tuple[str, dict[str, Any]]] = {}
        self._stamps: dict[tuple[str, str], str] = {}
        self.measured = 0  # runner runs made by this Measurer (re-measurements included)
        self.stored = 0  # trusted rows it added to the table
        self.reused = 0  # rows taken from the table
        for t in self.targets:
            fp, facts = device_identity(t)
            self.devices[t.url] = (fp, facts)
            store.put_device(fp, facts)

    def stamps(self, url: str) -> dict[str, str]:
        """The runtime stamps asked so far on target ``url``, by format."""
        return {fmt: v for (u, fmt), v in self._stamps.items() if u == url}

    def stamp(self, tgt: Target, fmt: str) -> str:
        if (tgt.url, fmt) not in self._stamps:
            self._stamps[tgt.url, fmt] = runtime_stamp(tgt, fmt, self.runner)
        return self._stamps[tgt.url, fmt]

    def key(self, tgt: Target, arch: Arch, shape: tuple[int, ...], d: Deploy) -> MeasureKey:
        return MeasureKey(arch.spec, tuple(shape), d.format, d.precision, d.threads, self.stamp(tgt, d.format),
                          self.devices[tgt.url][0])

    def known(self, arch: Arch, shape: tuple[int, ...], d: Deploy) -> dict[str, Measured]:
        """The targets whose row for this candidate is in the table."""
        out = {}
        for t in self.targets:
            hit = self.store.latency(self.key(t, arch, shape, d))
            if hit is not None:
                out[t.url] = Measured(BenchResult.from_dict(hit), "table")
        self.reused += len(out)
        return out

    def measure(self, bundle: Bundle, file_key: str, arch: Arch, shape: tuple[int, ...], d: Deploy,
                urls: Sequence[str]) -> dict[str, Measured]:
        """Measure one file of ``bundle`` on the targets ``urls`` (in parallel when several), re-measure the
        unstable ones, store the trusted rows; a lost target raises once the others' rows are stored."""
        from edgekd.bench.harness import benchmark
        from edgekd.bench.pool import bench_pool

        tgts = [t for t in self.targets if t.url in urls]
        kw = dict(warmup=self.warmup, runs=self.runs, threads=d.threads, out_dir=self.out_dir, files=[file_key],
                  timeout_s=self.timeout_s, progress=False, runner=self.runner, min_duration=self.min_duration)
        out: dict[str, Measured] = {}
        lost: list[BenchResult] = []
        with self.guard():  # held over the re-measurements too: one wait for the lock per file
            rows = ([*benchmark(bundle, tgts[0], print_table=False, **kw)] if len(tgts) == 1
                    else bench_pool(bundle, tgts, **kw))  # type: ignore[arg-type]
            checked = []
            for t, r in zip(tgts, rows, strict=True):
                self.measured += 1
                ok, why = trust(r, self.agree)
                if not ok and r.ok and self.retries > 1:  # unstable: measure again, several times, and compare
                    (r,) = benchmark(bundle, t, print_table=False, repeat=self.retries, **kw)
                    self.measured += self.retries
                    ok, why = trust(r, self.agree)
                checked.append((t, r, ok, why))
        for t, r, ok, why in checked:
            if not r.ok and r.error_type == "target":
                lost.append(r)
                continue
            if ok:
                self.store.put_latency(self.key(t, arch, shape, d), r.to_dict())
                self.stored += 1
            out[t.url] = Measured(r, "measured", why)
            self.on_event("measured", {"arch": arch.name, "deploy": d.name, "target": t.url, "ok": ok,
                                       "p50_ms": r.latency_ms.p50 if r.latency_ms else None, "reason": why})
        if lost:
            r = lost[0]
            raise TargetError(f"{r.target.split('?')[0]} was lost while measuring {arch.name} {d.name} ({r.error}); "
                              f"the {self.stored} measurement(s) made before are kept in the latency table "
                              f"{self.store.path}", stage=STAGE,
                              hint="bring the device back and run the same fit again with --resume (resume=True): "
                                   "keys already in the table are not measured again")
        return out
