"""Device facts (board, governor, temperature, throttling, runtimes), thermal gating and listing.

The remote targets run :data:`FACTS_SCRIPT` (POSIX ``sh``, every probe optional) and
:data:`PROBE_SCRIPT` (the device's Python) and parse the ``key=value`` lines with
:func:`parse_facts`. Nothing here talks to a transport itself, except :func:`list_devices`,
which asks each target to describe itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from edgekd.errors import TargetError
from edgekd.formats import backend_row, runtime_modules

FACTS_SCRIPT = r"""
echo "kernel=$(uname -srm)"
echo "cpus=$(grep -c ^processor /proc/cpuinfo 2>/dev/null)"
[ -r /proc/device-tree/model ] && echo "board=$(tr -d '\000' < /proc/device-tree/model)"
g=/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor; [ -r $g ] && echo "governor=$(cat $g)"
z=/sys/class/thermal/thermal_zone0/temp; [ -r $z ] && echo "thermal_zone_milli_c=$(cat $z)"
for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; do
  [ -r "$f" ] && c=${f#/sys/devices/system/cpu/cpu} && echo "maxfreq.${c%%/*}=$(cat "$f")"
done
t=""; for x in taskset vcgencmd getprop dumpsys; do command -v $x >/dev/null 2>&1 && t="$t $x"; done
echo "tools=$t"
if command -v vcgencmd >/dev/null 2>&1; then
  echo "vcgencmd_temp=$(vcgencmd measure_temp)"; echo "throttled=$(vcgencmd get_throttled)"
fi
true
"""

ANDROID_FACTS = r"""
for p in ro.product.manufacturer ro.product.model ro.build.version.release ro.build.version.sdk \
         ro.product.cpu.abi ro.soc.model ro.board.platform; do echo "prop.$p=$(getprop $p)"; done
command -v dumpsys >/dev/null 2>&1 && echo "battery_deci_c=$(dumpsys battery | sed -n 's/^ *temperature: *//p')"
true
"""

# the runtimes every runner backend imports, from the format table
RUNTIMES = tuple(runtime_modules())
PROBE_SCRIPT = f"""
import importlib.util as u, json, platform, sys
mods = {("numpy", *RUNTIMES)!r}
""" + """print("probe=" + json.dumps({"python": platform.python_version(), "machine": platform.machine(),
      "executable": sys.executable, "modules": [m for m in mods if u.find_spec(m) is not None]}))
"""


def _number(text: str) -> float | None:
    digits = "".join(ch for ch in text.split("=")[-1] if ch.isdigit() or ch in ".-")
    try:
        return float(digits)
    except ValueError:
        return None


def parse_facts(text: str) -> dict[str, Any]:
    """``key=value`` lines -> a dict with ``temp_c``, ``throttled_now``, ``maxfreq`` etc. normalised."""
    raw: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            raw[key.strip()] = value.strip()
    out: dict[str, Any] = {k: v for k, v in raw.items() if "." not in k and k != "probe" and v}
    out["tools"] = raw.get("tools", "").split()
    if raw.get("probe"):
        out["probe"] = json.loads(raw["probe"])
    props = {k[5:]: v for k, v in raw.items() if k.startswith("prop.") and v}
    if props:
        out["props"] = props
    freqs = {int(k[8:]): int(v) for k, v in raw.items() if k.startswith("maxfreq.") and v.isdigit()}
    if freqs:
        out["maxfreq_khz"] = freqs
    temps = [(raw.get("vcgencmd_temp"), 1.0), (raw.get("thermal_zone_milli_c"), 1e-3), (raw.get("battery_deci_c"), 0.1)]
    out["temp_c"] = next((round(n * scale, 3) for v, scale in temps if v and (n := _number(v)) is not None), None)
    if raw.get("throttled"):
        bits = int(raw["throttled"].split("=")[-1], 16)
        out.update(throttled=hex(bits), under_voltage_now=bool(bits & 0x1), throttled_now=bool(bits & 0x4),
                   throttled_since_boot=bool(bits & 0x40000))
    return out


def missing_runtime_hint(probe: dict[str, Any] | None, python: str) -> str | None:
    """What to install on the device so the Python runner works there, or None when nothing is missing."""
    if probe is None:
        return (f"install Python 3.10+ on the device (Raspberry Pi OS 64-bit: sudo apt install python3 "
                f"python3-venv; Termux: pkg install python) or point ?python= at one (tried {python!r})")
    major, minor = (int(p) for p in probe["python"].split(".")[:2])
    if (major, minor) < (3, 10):
        return f"the device's Python is {probe['python']}; the runner needs 3.10+ (use a newer OS or ?python=)"
    mods = set(probe.get("modules", ()))
    if "numpy" not in mods:
        return f"{probe['executable']} -m pip install numpy   (with tflite-runtime: 'numpy<2')"
    if not mods & set(RUNTIMES):
        arm32 = probe.get("machine", "").startswith("armv")
        return (f"no runtime on the device: {probe['executable']} -m pip install "
                + ("tflite-runtime 'numpy<2' (32-bit OS; for ai-edge-litert install the 64-bit OS)" if arm32 else
                   "ai-edge-litert (.tflite) and/or executorch (.pte); see runtimes/README.md"))
    return None


def python_can_run(probe: dict[str, Any] | None, backend: str) -> bool:
    """Whether the device's Python (as probed) has numpy and a runtime for that runner backend."""
    if probe is None:
        return False
    mods = set(probe.get("modules", ()))
    row = backend_row(backend)  # the module sets any one of which lets the Python runner run that backend
    return "numpy" in mods and row is not None and any(set(need) <= mods for need in row.runtimes)


def big_core_mask(facts: dict[str, Any]) -> str | None:
    """A hex CPU mask of the fastest cores for ``taskset`` (None where all cores are alike or unknown)."""
    freqs: dict[int, int] = facts.get("maxfreq_khz") or {}
    if len(set(freqs.values())) < 2:
        return None
    top = max(freqs.values())
    return format(sum(1 << cpu for cpu, f in freqs.items() if f == top), "x")


def wait_until_cool(read_c: Callable[[], float | None], below_c: float, timeout_s: float, *, where: str,
                    poll_s: float = 0.5) -> float | None:
    """Poll the temperature until it is at most ``below_c``; returns it (None where it cannot be read)."""
    deadline = time.monotonic() + timeout_s
    while True:
        t = read_c()
        if t is None or t <= below_c:
            return t
        if time.monotonic() > deadline:
            raise TargetError(f"{where}: still {t:.1f} C after {timeout_s:g}s (want <= {below_c:g} C)",
                              stage="bench/thermal",
                              hint="cool the board (heatsink, fan), raise ?cool= or lengthen ?cool_timeout=")
        time.sleep(poll_s)


def list_devices(urls: Sequence[str] = (), discover: bool = True) -> list[dict[str, Any]]:
    """Describe every device the targets discover (``local``, what ``adb devices`` lists) and each URL given."""
    from edgekd.bench.targets import TARGETS, get_target, list_targets

    found = [url for scheme in list_targets() for url in TARGETS.get(scheme).discover()] if discover else []
    found.sort(key=lambda url: url != "local")  # this machine first, then in registry order
    out = []
    for url in dict.fromkeys([*found, *urls]):
        try:
            out.append(get_target(url).describe())
        except TargetError as e:
            out.append({"url": url, "error": str(e)})
    return out


def format_devices(rows: Sequence[dict[str, Any]]) -> str:
    """One line per device: url, board/model, machine, temperature, runtimes, or its error."""
    lines = []
    for d in rows:
        if d.get("error"):
            lines.append(f"{d['url']:32s} UNREACHABLE  {str(d['error']).splitlines()[0]}")
            continue
        facts, rt = d.get("facts", {}), d.get("runtimes", {})
        name = facts.get("props", {}).get("ro.product.model") or facts.get("board") or d.get("hostname", "")
        temp = f"{facts['temp_c']:.1f}C" if facts.get("temp_c") is not None else "-"
        mods = ",".join(m for m in rt.get("modules", ()) if m in RUNTIMES) or rt.get("runner", "")
        lines.append(f"{d['url']:32s} {name or '-':24s} {rt.get('machine', facts.get('kernel', '-'))!s:10s} "
                     f"temp {temp:7s} governor {facts.get('governor', '-'):12s} {mods}")
    return "\n".join(lines)
