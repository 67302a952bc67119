#!/usr/bin/env python3
"""Make the self-contained native runner bundle: the runner, its runtime ``.so`` files and glibc itself.

    runtimes/cpp/make_bundle.py --arch aarch64      (runtimes/cpp/build.sh calls it after the build)

The bundle runs on any Linux kernel of that ABI without the device's libc (a stock Android phone, a bare
board): ``./ld-linux-aarch64.so.1 --library-path . ./edgekd_runner ...``. Which libraries go in is read
from the ELF files themselves (``readelf -d``, DT_NEEDED, recursively), found first in the runtime
folders (the wheels' ``executorch/lib``, ``ai_edge_litert``) and then in the toolchain's glibc
(``/usr/aarch64-linux-gnu/lib`` for aarch64, ``/lib/x86_64-linux-gnu`` for x86_64). Every file named in the
build's ``MANIFEST`` (beside the runner: the backend plugins it ``dlopen``s, the runtime libraries) goes in,
and ``--extra`` adds more.

Out: ``build/native/<arch>/bundle/`` with the files, ``SHA256SUMS`` (``sha256sum`` format, sorted) and
``bundle.json`` (abi, entry, loader, files with sha256 and size, ``sha256`` = sha256 of SHA256SUMS, which
names the bundle on the device; edgekd/bench/runner_bundle.py reads it). Stdlib only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORMAT = "edgekd-native-bundle/1"
ENTRY = "edgekd_runner"
ABIS = {  # abi -> (glibc loader name, the toolchain's glibc folders)
    "aarch64": ("ld-linux-aarch64.so.1", ["/usr/aarch64-linux-gnu/lib", "/usr/aarch64-linux-gnu/lib64"]),
    "x86_64": ("ld-linux-x86-64.so.2", ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64"]),
}
ELF_MACHINE = {"aarch64": "AArch64", "x86_64": "X86-64"}  # readelf -h "Machine:" ends with these


def fail(message: str, fix: str) -> None:
    sys.exit(f"make_bundle: {message}\n  fix: {fix}")


def readelf(path: Path) -> tuple[str, list[str]]:
    """(machine, DT_NEEDED names) of an ELF file, via binutils' readelf (it reads every architecture)."""
    tool = shutil.which("readelf") or shutil.which("aarch64-linux-gnu-readelf")
    if tool is None:
        fail("readelf not found", "apt-get install binutils")
    head = subprocess.run([tool, "-h", str(path)], capture_output=True, text=True)
    if head.returncode != 0:
        fail(f"{path} is not an ELF file: {head.stderr.strip()}", "rebuild it (runtimes/cpp/build.sh)")
    machine = next((ln.split(":", 1)[1].strip() for ln in head.stdout.splitlines() if "Machine:" in ln), "?")
    dyn = subprocess.run([tool, "-d", str(path)], capture_output=True, text=True).stdout
    needed = [ln.split("[", 1)[1].rstrip("]").strip() for ln in dyn.splitlines() if "(NEEDED)" in ln]
    return machine, needed


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def closure(runner: Path, extras: list[Path], lib_dirs: list[Path], arch: str) -> dict[str, Path]:
    """name in the bundle -> real file, for the runner, the extras and everything they need."""
    loader = ABIS[arch][0]
    files: dict[str, Path] = {ENTRY: runner}
    todo = [runner, *extras]
    for e in extras:
        files[e.name] = e
    want = ELF_MACHINE[arch]
    found_loader = next((d / loader for d in lib_dirs if (d / loader).exists()), None)
    if found_loader is None:
        fail(f"glibc's loader {loader} not found in {', '.join(map(str, lib_dirs))}",
             "apt-get install g++-aarch64-linux-gnu (it brings libc6-arm64-cross)" if arch == "aarch64"
             else "install libc6")
    files[loader] = found_loader
    todo.append(found_loader)
    while todo:
        path = todo.pop()
        machine, needed = readelf(path)
        if not machine.endswith(want):
            fail(f"{path} is built for {machine}, not {want}", f"build for {arch}: runtimes/cpp/build.sh --arch {arch}")
        for name in needed:
            if name in files:
                continue
            hit = next((d / name for d in lib_dirs if (d / name).exists()), None)
            if hit is None:
                fail(f"{name} (needed by {path.name}) is in none of {', '.join(map(str, lib_dirs))}",
                     "pass its folder with --lib-dir, or fetch the runtime wheels (runtimes/cpp/fetch_wheels.sh)")
            files[name] = hit
            todo.append(hit)
    return files


def make(arch: str, runner: Path, extras: list[Path], lib_dirs: list[Path], out: Path,
         runtimes: dict[str, str]) -> dict:
    if not runner.is_file():
        fail(f"no runner at {runner}", f"build it first: runtimes/cpp/build.sh --arch {arch}")
    files = closure(runner, extras, lib_dirs, arch)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, src in files.items():
        dest = tmp / name
        shutil.copyfile(src.resolve(), dest)  # the real file under the DT_NEEDED name (no symlinks)
        dest.chmod(0o755 if name in (ENTRY, ABIS[arch][0]) else 0o644)
    sums = {name: sha256(tmp / name) for name in sorted(files)}
    text = "".join(f"{h}  {name}\n" for name, h in sums.items())
    (tmp / "SHA256SUMS").write_text(text)
    manifest = {"format": FORMAT, "abi": arch, "entry": ENTRY, "loader": ABIS[arch][0],
                "sha256": hashlib.sha256(text.encode()).hexdigest(), "runtimes": runtimes,
                "files": {n: {"sha256": h, "bytes": (tmp / n).stat().st_size} for n, h in sums.items()}}
    (tmp / "bundle.json").write_text(json.dumps(manifest, indent=1) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return manifest


def problem(folder: Path, abi: str) -> str | None:
    """Why ``folder`` is not a complete bundle for ``abi`` (None when every file matches its bundle.json);
    setup.py checks each bundle with this before it goes into a wheel."""
    try:
        manifest = json.loads((folder / "bundle.json").read_text())
    except (OSError, ValueError) as e:
        return f"no readable {folder / 'bundle.json'} ({e.__class__.__name__})"
    if manifest.get("format") != FORMAT or manifest.get("abi") != abi:
        return f"{folder} is not a {FORMAT} bundle for {abi}"
    for name, want in {**{n: f["sha256"] for n, f in manifest["files"].items()}, "SHA256SUMS": manifest["sha256"]}.items():
        if not (folder / name).is_file() or sha256(folder / name) != want:
            return f"{folder / name} is missing or does not match bundle.json"
    return None


def _default_lib_dirs(arch: str) -> list[Path]:
    sdk = ROOT / "build" / "native" / arch / "sdk"
    return [sdk / "executorch" / "lib", sdk / "ai_edge_litert"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=sorted(ABIS), required=True)
    ap.add_argument("--runner", type=Path, help="the built runner (default build/native/ARCH/edgekd_runner)")
    ap.add_argument("--lib-dir", type=Path, action="append", default=[],
                    help="folder with runtime .so files, searched before glibc's (repeatable; default: the "
                         "unpacked wheels in build/native/ARCH/sdk)")
    ap.add_argument("--sysroot-lib", type=Path, action="append", default=[],
                    help="glibc folder (default /usr/aarch64-linux-gnu/lib or /lib/x86_64-linux-gnu)")
    ap.add_argument("--extra", type=Path, action="append", default=[], help="a library the runner dlopens")
    ap.add_argument("--runtime", action="append", default=[], metavar="NAME=VERSION",
                    help="recorded in bundle.json (default: the VERSION files of the unpacked wheels)")
    ap.add_argument("--out", type=Path, help="default build/native/ARCH/bundle")
    a = ap.parse_args(argv)
    build = ROOT / "build" / "native" / a.arch
    runner = a.runner or build / ENTRY
    extras = list(a.extra)
    listed = runner.parent / "MANIFEST"  # build.sh lists what it put beside the runner (plugins it dlopens too)
    if listed.is_file():
        extras += [runner.parent / n for n in listed.read_text().split() if n != ENTRY and "/" not in n]
    lib_dirs = [runner.parent, *(a.lib_dir or _default_lib_dirs(a.arch)), *(a.sysroot_lib or map(Path, ABIS[a.arch][1]))]
    runtimes = dict(r.split("=", 1) for r in a.runtime)
    for d in _default_lib_dirs(a.arch):
        v = d.parent / "VERSION" if d.name == "lib" else d / "VERSION"
        if v.is_file() and not a.runtime:
            runtimes[d.parent.name if d.name == "lib" else d.name] = v.read_text().strip()
    out = a.out or ROOT / "build" / "native" / a.arch / "bundle"
    m = make(a.arch, runner, extras, [d for d in lib_dirs if d.is_dir()], out, runtimes)
    total = sum(f["bytes"] for f in m["files"].values())
    print(f"make_bundle: {out} ({len(m['files'])} files, {total / 1e6:.1f} MB, sha256 {m['sha256'][:16]})")
    print(f"  run on the device: ./{m['loader']} --library-path . ./{ENTRY} --model M.pte ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
