"""Sustained mode (``edgekd bench --sustained 300 --interval 10``): latency and temperature over time.

One runner process times the file back to back for ``seconds`` (runner ``--min-duration``) while
the host reads the target's thermal zones (``/sys/class/thermal/thermal_zone*/temp``) every
``interval`` seconds through the same transport (a file read for ``local``, the target's shell for
ssh/adb). The samples are then cut into ``interval``-second windows (:func:`edgekd.bench.stats.windows`)
and each window gets the temperature read closest to its end, so throttling shows as a rising
p50 beside a rising temperature. Where no zone is readable (most VMs), the temperature is ``None``
("n/a" in tables and the report).
"""

from __future__ import annotations

import glob
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bench.results import BenchResult
from edgekd.bench.stats import windows
from edgekd.errors import ConfigError

THERMAL_GLOB = "/sys/class/thermal/thermal_zone*"
THERMAL_SCRIPT = ('for z in /sys/class/thermal/thermal_zone*; do [ -r "$z/temp" ] && '
                  'echo "$(cat "$z/type" 2>/dev/null || basename "$z")=$(cat "$z/temp" 2>/dev/null)"; done; true')


def parse_thermal(text: str) -> dict[str, float]:
    """``type=millidegrees`` lines -> {zone type: °C}; unreadable or absurd values are left out."""
    zones: dict[str, float] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().rpartition("=")
        try:
            v = float(value)
        except ValueError:
            continue
        c = v / 1000 if abs(v) > 200 else v  # the kernel reports millidegrees; a few drivers degrees
        if sep and -40 < c < 150:
            key, i = name or "zone", 1
            while key in zones:  # several zones of one type (e.g. cpu-thermal x 8)
                key, i = f"{name}#{i}", i + 1
            zones[key] = round(c, 2)
    return zones


def thermal_zones(target: Any) -> dict[str, float]:
    """The target's thermal zones in °C now; ``{}`` where none can be read (never raises)."""
    if getattr(target, "url", "") == "local":
        lines = []
        for z in sorted(glob.glob(THERMAL_GLOB)):
            try:
                kind = Path(z, "type").read_text().strip() if Path(z, "type").exists() else Path(z).name
                lines.append(f"{kind}={Path(z, 'temp').read_text().strip()}")
            except OSError:
                continue
        return parse_thermal("\n".join(lines))
    if callable(getattr(target, "exec", None)):
        try:
            out = target.exec(THERMAL_SCRIPT, 20)
        except Exception:  # noqa: BLE001  (a lost device: the runner's own outcome reports it)
            return {}
        return parse_thermal(out.stdout) if out.returncode == 0 else {}
    return {}


def _hottest(zones: dict[str, float]) -> float | None:
    return max(zones.values()) if zones else None


def run_sustained(measure: Callable[[], BenchResult], target: Any, seconds: float, interval: float,
                  eval_samples: int = 0) -> BenchResult:
    """Run ``measure()`` (a runner call with ``--min-duration seconds``) while reading the temperature
    every ``interval`` seconds; returns its result with ``sustained`` (one row per window) and ``thermal``."""
    if seconds <= 0 or interval <= 0 or interval > seconds:
        raise ConfigError(f"--sustained {seconds:g} --interval {interval:g}: need 0 < interval <= sustained",
                          stage="bench/sustained", hint="e.g. --sustained 300 --interval 10")
    box: dict[str, BenchResult] = {}
    worker = threading.Thread(target=lambda: box.setdefault("r", measure()), name="sustained", daemon=True)
    t0 = time.perf_counter()
    readings: list[tuple[float, dict[str, float]]] = [(0.0, thermal_zones(target))]
    worker.start()
    while worker.is_alive():
        worker.join(timeout=interval)
        readings.append((time.perf_counter() - t0, thermal_zones(target)))
    wall = time.perf_counter() - t0
    r = box["r"]
    if not r.ok or not r.latency_samples_ms:
        r.thermal = [{"t_s": round(t, 2), "temp_c": _hottest(z), "zones": z} for t, z in readings]
        return r
    timed_s = float(np.sum(r.latency_samples_ms)) / 1e3
    p50 = r.latency_ms.p50 if r.latency_ms else 0.0
    lead = max(0.0, wall - timed_s - eval_samples * p50 / 1e3)  # start-up before the timed loop (import, load)
    r.thermal = [{"t_s": round(t - lead, 2), "temp_c": _hottest(z), "zones": z} for t, z in readings]
    rows = []
    for end_s, chunk in windows(r.latency_samples_ms, interval):
        near = min(r.thermal, key=lambda th: abs(th["t_s"] - end_s))
        p50w, p90w = np.percentile(chunk, [50, 90])
        rows.append({"t_s": round(end_s, 2), "n": len(chunk), "p50": float(p50w), "p90": float(p90w),
                     "mean": float(np.mean(chunk)), "temp_c": near["temp_c"]})
    r.sustained = rows
    return r


def format_sustained(r: BenchResult) -> str:
    """A small text table of the sustained rows of one result (temperature ``n/a`` where unreadable)."""
    lines = [f"{r.model_name} {r.key}: sustained {r.min_duration_s:g} s",
             f"{'t s':>7} {'runs':>7} {'p50 ms':>8} {'p90 ms':>8} {'temp C':>7}"]
    for w in r.sustained or []:
        temp = "n/a" if w["temp_c"] is None else f"{w['temp_c']:.1f}"
        lines.append(f"{w['t_s']:7.1f} {w['n']:7d} {w['p50']:8.3f} {w['p90']:8.3f} {temp:>7}")
    return "\n".join(lines)
