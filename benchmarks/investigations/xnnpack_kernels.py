"""Which XNNPACK micro-kernels each runtime runs for the same model: ``perf record`` on a bare invoke loop.

For each file it starts ``benchmarks/investigations/bare_loop.py`` (load as the device runner does, time only
``invoke()``/``execute()``), attaches ``perf record -p PID`` once the warm-up is done, and prints the
hottest functions. TFLite's XNNPACK (``ai_edge_litert/libpywrap_litert_common.so``) keeps its symbol
table, so perf names kernels such as ``xnn_qs8_qc8w_igemm_minmax_fp32_ukernel_7x16c8__avx512vnni_prfm``.
The executorch wheel's ``libexecutorch_backend_xnnpack.so`` is stripped: perf shows bare addresses.
This script groups them into functions by the library's ``.eh_frame`` ranges and names each by the
symbolized TFLite function with the closest instruction mix (marked ``~``; the two libraries are
different XNNPACK versions, so a similarity of 0.7-0.8 is a match of kernel family, tile and ISA),
and counts the instructions that decide the ISA: ``vpdpbusd`` (VNNI), ``tdpbssd``/``tdpbusd`` (AMX),
``vpmaddwd`` (AVX2/AVX-512 int8 without VNNI), ``vfmadd231ps`` (fp32).

It also records, per library, how many AMX / VNNI instructions it contains at all: a runtime whose
XNNPACK has no AMX code cannot use the AMX tiles of a Sapphire Rapids (or newer) Xeon, however the
model is exported.

    apt-get install -y linux-perf        # Debian; kernel.perf_event_paranoid <= 2 is enough
    python benchmarks/investigations/xnnpack_kernels.py --threads 1 --seconds 5
    python benchmarks/investigations/xnnpack_kernels.py --files pte/int8/executorch tflite/int8/litert-torch --threads 2
    python benchmarks/investigations/xnnpack_kernels.py --files pte/fp32/executorch tflite/fp32/litert-torch --isa avx2

``--isa avx2`` runs both runtimes on XNNPACK's AVX2 kernels on an AVX-512 host (``benchmarks/investigations/xnnpack_avx2.py``).
For stripped code each row also names the hottest single instruction address (a stall shows up there).

Reads the bundle ``benchmarks/runtimes.py`` exported (``--bundle``); writes ``benchmarks/results/kernels.json``.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent  # benchmarks/: _common.py and results/
sys.path.insert(0, str(BENCH))
from _common import RUNTIMES_BUNDLE, bundle_files  # noqa: E402

from edgekd.bench.machine import machine_facts  # noqa: E402

DEFAULT_FILES = ("pte/int8/executorch", "tflite/int8/litert-torch", "tflite/int8/onnx2tf", "pte/fp32/executorch",
                 "tflite/fp32/litert-torch")
ISA_OPS = {"amx": ("tdpbssd", "tdpbusd", "tdpbsud", "tdpbuud", "tileloadd"), "vnni": ("vpdpbusd", "vpdpbusds"),
           "madd": ("vpmaddwd", "vpmaddubsw"), "fp32_fma": ("vfmadd231ps",)}
PERF_LINE = re.compile(r"^\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.+?)\s*$")
INSN = re.compile(r"^\s+([0-9a-f]+):\t(\S+)")
FUNC = re.compile(r"^([0-9a-f]+) <(.+)>:$")


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SystemExit(f"kernels: '{tool}' not found; install it (Debian: apt-get install -y {package})")
    return path


def _package_dir(name: str) -> Path:
    """Where an installed package lives, without importing it (executorch is a namespace package)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return Path("/nonexistent") / name
    return Path(list(spec.submodule_search_locations)[0])


class Library:
    """One shared library's disassembly: instruction list, function ranges, names where it has them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(path)], capture_output=True,
                              text=True, check=True).stdout
        self.insns: list[tuple[int, str]] = []
        self.named: dict[str, tuple[int, int]] = {}  # name -> (first, last+1 instruction index)
        name, first = None, 0
        for line in text.splitlines():
            m = INSN.match(line)
            if m:
                self.insns.append((int(m.group(1), 16), m.group(2)))
                continue
            f = FUNC.match(line)
            if f:
                if name is not None:
                    self.named[name] = (first, len(self.insns))
                name, first = f.group(2), len(self.insns)
        if name is not None:
            self.named[name] = (first, len(self.insns))
        self.addrs = [a for a, _ in self.insns]
        frames = subprocess.run(["readelf", "--debug-dump=frames", str(path)], capture_output=True, text=True).stdout
        self.ranges = sorted({(int(a, 16), int(b, 16)) for a, b in re.findall(r"FDE .*pc=([0-9a-f]+)\.\.([0-9a-f]+)",
                                                                              frames)})
        self.starts = [a for a, _ in self.ranges]

    def isa_counts(self) -> dict[str, int]:
        counts = collections.Counter(op for _, op in self.insns)
        return {k: sum(counts[o] for o in ops) for k, ops in ISA_OPS.items()}

    def function_of(self, addr: int) -> tuple[int, int] | None:
        i = bisect.bisect_right(self.starts, addr) - 1
        return self.ranges[i] if i >= 0 and addr < self.ranges[i][1] else None

    def mix(self, start: int, end: int) -> collections.Counter[str]:
        lo, hi = bisect.bisect_left(self.addrs, start), bisect.bisect_left(self.addrs, end)
        return collections.Counter(op for _, op in self.insns[lo:hi])

    def named_mixes(self, prefixes: tuple[str, ...] = ("xnn_", "pthreadpool", "thread_main")
                    ) -> dict[str, collections.Counter[str]]:
        return {n: collections.Counter(op for _, op in self.insns[a:b]) for n, (a, b) in self.named.items()
                if n.startswith(prefixes)}


def similarity(a: collections.Counter[str], b: collections.Counter[str]) -> float:
    """Shared instructions over the larger function's count (1.0 = same multiset of opcodes)."""
    return sum((a & b).values()) / max(sum(a.values()), sum(b.values()), 1)


def isa_of(mix: collections.Counter[str]) -> dict[str, int]:
    return {k: sum(mix[o] for o in ops) for k, ops in ISA_OPS.items() if sum(mix[o] for o in ops)}


def profile(model: Path, threads: int, seconds: float, perf_data: Path, isa: str = "native") -> dict[str, Any]:
    """Run the bare loop, attach perf to the timed part, return the loop's result and perf's hot list."""
    loop = subprocess.Popen([sys.executable, str(HERE / "bare_loop.py"), "--model", str(model), "--threads",
                             str(threads), "--seconds", str(seconds + 1.5), "--ready", "--isa", isa],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert loop.stdout is not None
    ready = json.loads(loop.stdout.readline() or "{}")
    if ready.get("event") != "ready":
        loop.kill()
        raise SystemExit(f"kernels: the bare loop for {model} did not start (run benchmarks/investigations/bare_loop.py by hand)")
    perf = subprocess.run(["perf", "record", "-q", "-F", "1999", "-p", str(ready["pid"]), "-o", str(perf_data),
                           "--", "sleep", str(seconds)], capture_output=True, text=True)
    result = json.loads(loop.stdout.readline())
    loop.wait()
    if perf.returncode != 0:
        raise SystemExit(f"kernels: perf record failed: {perf.stderr.strip()[:300]} "
                         "(check /proc/sys/kernel/perf_event_paranoid <= 2)")
    report = subprocess.run(["perf", "report", "-i", str(perf_data), "--stdio", "--no-children", "--sort",
                             "dso,sym", "--percent-limit", "0.05"], capture_output=True, text=True).stdout
    hot = []
    for line in report.splitlines():
        m = PERF_LINE.match(line)
        if m:
            hot.append((float(m.group(1)), m.group(2), m.group(4)))
    by_tid = subprocess.run(["perf", "report", "-i", str(perf_data), "--stdio", "--no-children", "--sort", "pid",
                             "--percent-limit", "2"], capture_output=True, text=True).stdout
    threads = [{"thread": m.group(2), "pct": float(m.group(1))}
               for m in re.finditer(r"^\s+([\d.]+)%\s+(.+?)\s*$", by_tid, re.M)]
    result.pop("latency_samples_ms", None)
    return {"loop": result, "hot": hot, "threads": threads}


def name_hot(hot: list[tuple[float, str, str]], libs: dict[str, Library], reference: Library | None,
             top: int) -> list[dict[str, Any]]:
    """Group perf's lines into functions; name stripped addresses by the reference library."""
    ref_mixes = reference.named_mixes() if reference else {}
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for pct, dso, sym in hot:
        key, row = (dso, sym), {"dso": dso, "function": sym, "approx": False}
        if sym.startswith("0x") and dso in libs:
            rng = libs[dso].function_of(int(sym, 16))
            if rng is not None:
                key = (dso, f"{rng[0]:#x}")
                row = {"dso": dso, "function": f"{dso}+{rng[0]:#x}", "approx": True, "range": rng}
        g = grouped.setdefault(key, {**row, "pct": 0.0})
        g["pct"] += pct
        if sym.startswith("0x") and pct > g.get("hottest_pct", 0.0):  # stripped code: perf lists each address
            g["hottest_address"], g["hottest_pct"] = sym, pct
    rows = sorted(grouped.values(), key=lambda r: -r["pct"])[:top]
    for r in rows:
        lib = libs.get(r["dso"])
        if lib is None:
            continue
        rng = r.pop("range", None)
        if rng is not None:
            mix = lib.mix(*rng)
            r["address"] = f"{rng[0]:#x}"
            if ref_mixes:
                best = max(ref_mixes.items(), key=lambda kv: similarity(mix, kv[1]))
                r["function"] = f"~{best[0]}"
                r["similarity"] = round(similarity(mix, best[1]), 2)
            r["isa_insns"] = isa_of(mix)
        elif r["function"] in lib.named:
            a, b = lib.named[r["function"]]
            r["isa_insns"] = isa_of(collections.Counter(op for _, op in lib.insns[a:b]))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=str(RUNTIMES_BUNDLE),
                    help="a bundle folder (default: the one benchmarks/runtimes.py exports)")
    ap.add_argument("--files", nargs="+", default=list(DEFAULT_FILES), help="file keys in the bundle")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=5.0, help="perf recording time per file")
    ap.add_argument("--top", type=int, default=6)
    ap.add_argument("--isa", choices=("native", "avx2"), default="native",
                    help="avx2: both runtimes pick the kernels of an AVX2-only CPU (see benchmarks/xnnpack_avx2.py)")
    ap.add_argument("--out", default=str(BENCH / "results" / "kernels.json"))
    args = ap.parse_args(argv)
    _need("perf", "linux-perf")
    _need("objdump", "binutils")
    _need("readelf", "binutils")

    root = Path(args.bundle)
    models = list(bundle_files(root, args.files, "kernels").items())

    lib_paths = {"libexecutorch_backend_xnnpack.so": _package_dir("executorch") / "lib" /
                 "libexecutorch_backend_xnnpack.so",
                 "libexecutorch_threadpool.so": _package_dir("executorch") / "lib" / "libexecutorch_threadpool.so",
                 "libpywrap_litert_common.so": _package_dir("ai_edge_litert") / "libpywrap_litert_common.so"}
    print("disassembling the XNNPACK (and thread pool) copies of both runtimes ...", flush=True)
    libs = {name: Library(p) for name, p in lib_paths.items() if p.is_file()}
    reference = libs.get("libpywrap_litert_common.so")
    isa = {name: lib.isa_counts() for name, lib in libs.items()}
    for name, counts in isa.items():
        print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + " instructions")

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for key, path in models:
            print(f"\n== {key} ({path.name}), {args.threads} thread(s), perf {args.seconds:.0f} s", flush=True)
            prof = profile(path, args.threads, args.seconds, Path(tmp) / "perf.data", args.isa)
            rows = name_hot(prof["hot"], libs, reference, args.top)
            print(f"   bare-loop p50 {prof['loop']['p50_ms']:.3f} ms over {prof['loop']['runs']} runs; threads with "
                  "samples: " + ", ".join(f"{t['thread']} {t['pct']:.0f}%" for t in prof["threads"]))
            for r in rows:
                extra = f"  [similarity {r['similarity']}]" if "similarity" in r else ""
                insns = " ".join(f"{k}:{v}" for k, v in r.get("isa_insns", {}).items())
                hottest = (f"  [hottest instruction {r['hottest_address']}: {r['hottest_pct']:.1f}%]"
                           if "hottest_address" in r else "")
                print(f"   {r['pct']:6.2f}%  {r['dso'][:34]:34s} {r['function']}{extra}  {insns}{hottest}")
            results.append({"key": key, "file": str(path), "threads": args.threads, "isa": args.isa, "loop": prof["loop"],
                            "busy_threads": prof["threads"], "hot": rows})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "kernels", "machine_facts": machine_facts(), "bundle": str(root),
                               "seconds": args.seconds, "library_isa_insns": isa, "results": results},
                              indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
