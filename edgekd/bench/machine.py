"""The facts a latency figure is meaningless without: CPU, ISA, cores, clock policy, runtime versions.

Standard library only (no torch, no numpy), so a device runner or any script can copy or import it::

    from edgekd.bench.machine import machine_facts
    facts = machine_facts()          # {"cpu_model": "AMD EPYC", "isa": {"avx512_vnni": True, ...}, ...}

Linux reads ``/proc/cpuinfo`` and ``/sys/devices/system/cpu``; macOS asks ``sysctl``; anything it
cannot read is ``None`` (a VM often hides cpufreq), never a guess. ``isa`` lists only the flags that
decide which int8/fp32 micro-kernels XNNPACK, oneDNN or TFLite pick: on x86 ``avx2``, ``avx512f``,
``avx512bw``, ``avx512_vnni``, ``avx_vnni``, ``avx512_bf16``, ``avx512_fp16``, ``amx_tile``,
``amx_int8``, ``amx_bf16`` (AMX is why an int8 runtime built with AMX kernels can be 3× faster
than one without on a Sapphire Rapids Xeon); on ARM ``neon`` (``asimd``), ``dotprod`` (``asimddp``),
``i8mm``, ``bf16``, ``sve``, ``sve2``, ``sme``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from edgekd.formats import distributions

X86_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16",
             "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")
# name in the report -> spelling in /proc/cpuinfo "Features" (ARM Linux)
ARM_FLAGS = {"neon": "asimd", "dotprod": "asimddp", "i8mm": "i8mm", "bf16": "bf16", "fp16": "asimdhp",
             "sve": "sve", "sve2": "sve2", "sme": "sme"}
# macOS sysctl hw.optional keys for the same ARM features
MAC_ARM_KEYS = {"neon": "hw.optional.neon", "dotprod": "hw.optional.arm.FEAT_DotProd",
                "i8mm": "hw.optional.arm.FEAT_I8MM", "bf16": "hw.optional.arm.FEAT_BF16",
                "fp16": "hw.optional.arm.FEAT_FP16", "sme": "hw.optional.arm.FEAT_SME"}
# the converters' and runner backends' distributions (from the format table), and a few more
RUNTIMES = tuple(dict.fromkeys(("torch", *distributions(), "onnxruntime", "numpy")))


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _sysctl(key: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def _cpuinfo(text: str | None = None) -> dict[str, str]:
    """The first processor block of /proc/cpuinfo (or of ``text``) as {key: value} (empty where there is none)."""
    text = (_read("/proc/cpuinfo") or "") if text is None else text
    info: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if info:
                break
            continue
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def _cpu_model(info: dict[str, str]) -> str | None:
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        if info.get(key):
            return info[key]
    if info.get("CPU implementer"):  # ARM Linux names the core only by numbers
        return f"ARM implementer {info['CPU implementer']} part {info.get('CPU part', '?')}"
    return _sysctl("machdep.cpu.brand_string") or platform.processor() or None


def _isa(info: dict[str, str], machine: str | None = None) -> dict[str, bool] | None:
    machine = (machine or platform.machine()).lower()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    if sys.platform == "darwin" and machine in ("arm64", "aarch64") and not flags:
        return {name: _sysctl(key) == "1" for name, key in MAC_ARM_KEYS.items()}
    if not flags:
        return None
    if machine in ("x86_64", "amd64", "i686", "i386"):
        return {f: f in flags for f in X86_FLAGS}
    return {name: spelled in flags for name, spelled in ARM_FLAGS.items()}


def _frequency() -> dict[str, Any]:
    cpufreq = Path("/sys/devices/system/cpu/cpu0/cpufreq")

    def khz_to_mhz(name: str) -> float | None:
        v = _read(cpufreq / name)
        return int(v) / 1000 if v and v.isdigit() else None

    mhz = None
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("cpu MHz"):
            mhz = float(line.split(":")[1])
            break
    return {"governor": _read(cpufreq / "scaling_governor"), "cur_mhz": khz_to_mhz("scaling_cur_freq") or mhz,
            "min_mhz": khz_to_mhz("cpuinfo_min_freq"), "max_mhz": khz_to_mhz("cpuinfo_max_freq"),
            "boost": _read("/sys/devices/system/cpu/cpufreq/boost")}


def _versions(names: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def machine_facts(runtimes: tuple[str, ...] = RUNTIMES) -> dict[str, Any]:
    """CPU model, the ISA flags that matter, cores, load, clock policy, OS, Python and runtime versions.

    ``runtimes``: distribution names whose installed versions to record (absent ones are left out).
    Reads files and package metadata only; imports nothing heavy, so it costs milliseconds.
    """
    info = _cpuinfo()
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    virt = "hypervisor" in (info.get("flags") or "").split()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "cpu_model": _cpu_model(info),
        "cpu_vendor": info.get("vendor_id"),
        "cpu_family_model": f"{info['cpu family']}/{info['model']}" if "cpu family" in info and "model" in info
        else None,
        "arch": platform.machine(),
        "isa": _isa(info),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "load_avg_1_5_15": load,
        "virtualized": virt if info else None,
        "frequency": _frequency(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "runtimes": _versions(runtimes),
    }


# what a remote Linux device tells about its CPU through the target's own shell (ssh, adb)
REMOTE_SCRIPT = r"""uname -m; echo "cpus=$(grep -c ^processor /proc/cpuinfo 2>/dev/null)"
g=/sys/devices/system/cpu/cpu0/cpufreq
for f in scaling_governor scaling_cur_freq cpuinfo_max_freq; do [ -r $g/$f ] && echo "$f=$(cat $g/$f)"; done
echo ---; sed -n '1,/^$/p' /proc/cpuinfo; grep -m1 -E '^(Hardware|model name)' /proc/cpuinfo; true"""


def remote_machine_facts(text: str) -> dict[str, Any]:
    """:func:`machine_facts`' CPU part from the output of :data:`REMOTE_SCRIPT` run on a device."""
    head, _, cpuinfo = text.partition("---")
    lines = [x.strip() for x in head.strip().splitlines() if x.strip()]
    arch = lines[0] if lines else ""
    kv = dict(x.split("=", 1) for x in lines[1:] if "=" in x)
    info = _cpuinfo(cpuinfo.strip())
    for line in cpuinfo.strip().splitlines()[::-1]:  # the Hardware line after the first block (ARM)
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())

    def mhz(key: str) -> float | None:
        v = kv.get(key, "")
        return int(v) / 1000 if v.isdigit() else None

    return {"cpu_model": _cpu_model(info) if info else None, "arch": arch or None,
            "isa": _isa(info, arch) if arch else None,
            "logical_cpus": int(kv["cpus"]) if kv.get("cpus", "").isdigit() else None,
            "frequency": {"governor": kv.get("scaling_governor"), "cur_mhz": mhz("scaling_cur_freq"),
                          "max_mhz": mhz("cpuinfo_max_freq")}}


_FACTS: dict[str, dict[str, Any]] = {}


def machine_of(target: Any) -> dict[str, Any]:
    """The machine facts of a bench target (cached per URL): :func:`machine_facts` for ``local``; for a
    target with a shell (``exec(command, timeout)``: ssh, adb) the CPU facts read there; else ``{}``."""
    url = getattr(target, "url", str(target))
    if url not in _FACTS:
        facts: dict[str, Any] = {}
        if url == "local":
            facts = machine_facts()
        elif callable(getattr(target, "exec", None)):
            try:
                out = target.exec(REMOTE_SCRIPT, 30)
                facts = remote_machine_facts(out.stdout) if out.returncode == 0 else {}
            except Exception:  # noqa: BLE001  (a lost device: the run's own error says so)
                facts = {}
        _FACTS[url] = facts
    return _FACTS[url]
