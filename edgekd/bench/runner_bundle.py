"""The native runner bundle on the host: find it for a device's ABI, check it, say how to start it.

``runtimes/cpp/make_bundle.py`` writes the bundle (``build/native/<abi>/bundle/``): the C++ runner,
the runtime ``.so`` files and glibc's own loader and libraries, with ``SHA256SUMS`` and ``bundle.json``.
It runs on any Linux kernel of its ABI without the device's libc, as
``DIR/ld-linux-aarch64.so.1 --library-path DIR DIR/edgekd_runner ...``. The remote targets push it once
per device into a folder named by the bundle's sha256 (see :mod:`edgekd.bench.targets.remote`).

Where bundles are looked for (:func:`edgekd.bench.native.native_roots`): ``$EDGEKD_NATIVE_DIR`` (a folder
holding ``<abi>/bundle``) alone when set, else the checkout's ``build/native``, then the bundles a built
wheel ships as package data (``edgekd/runtimes/native/<abi>/bundle``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from edgekd.bench import native
from edgekd.bench.native import (
    check_runner,
    find_native_runner,
    host_arch,
    native_dir,
    native_roots,
    native_supports,
)
from edgekd.bundle import sha256_of
from edgekd.errors import TargetError

FORMAT = "edgekd-native-bundle/1"
# glibc >= 2.35 registers rseq in every thread; a seccomp filter that does not allow rseq (Android's app
# policy, older container runtimes) kills such a process with SIGSYS. The tunable turns the registration off
# (glibc.pthread.rseq, glibc 2.35+); the bundle's glibc is Debian's 2.36. Appended to any tunables already set.
RSEQ_OFF = "glibc.pthread.rseq=0"
NATIVE_ENV = 'GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}' + RSEQ_OFF + '"'  # shell text, for the device
SIGSYS = 31  # on Linux, every ABI the bundle is built for
MANIFEST = "bundle.json"
SUMS = "SHA256SUMS"
ABIS = ("aarch64", "x86_64")
_ALIASES = {"aarch64": "aarch64", "arm64": "aarch64", "arm64-v8a": "aarch64", "armv8": "aarch64",
            "x86_64": "x86_64", "amd64": "x86_64", "x86-64": "x86_64"}
_MAKE = {"aarch64": "make native-aarch64", "x86_64": "make native"}


def abi_of(machine: str) -> str | None:
    """``uname -m`` -> the bundle ABI (``aarch64``/``x86_64``), or None where no bundle is built for it."""
    return _ALIASES.get(machine.strip().lower())


def unsupported_abi(machine: str) -> tuple[str, str]:
    """(message, fix) for a device whose ABI has no native runner."""
    return (f"the device's ABI is {machine.strip() or 'unknown'!r}; the native runner is built for "
            f"{' and '.join(ABIS)} only",
            "use a 64-bit OS on the board (aarch64), or runner=python with Python 3.10+, numpy and the runtime "
            "installed there, or cross-build runtimes/cpp for this ABI with your own CMake toolchain "
            "(runtimes/README.md)")


@dataclass(frozen=True)
class RunnerBundle:
    """A checked bundle folder: ``files`` maps each file name to its sha256; ``sha256`` names the bundle."""

    path: Path
    abi: str
    entry: str
    loader: str
    files: dict[str, str]
    sha256: str
    runtimes: dict[str, str]

    @staticmethod
    def load(path: str | Path, verify: bool = True) -> RunnerBundle:
        """Read ``bundle.json``; with ``verify`` every file must match its sha256 (else a TargetError)."""
        path = Path(path)
        make = _MAKE.get(path.parent.name, "runtimes/cpp/build.sh --arch ABI")
        try:
            m = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError) as e:
            raise TargetError(f"no readable native runner bundle at {path} ({e.__class__.__name__}: {e})",
                              stage="bench/native", hint=f"build it: {make}") from None
        if m.get("format") != FORMAT:
            raise TargetError(f"{path / MANIFEST} is not a {FORMAT} manifest", stage="bench/native",
                              hint=f"rebuild the bundle: {make}")
        b = RunnerBundle(path, m["abi"], m["entry"], m["loader"],
                         {n: f["sha256"] for n, f in m["files"].items()}, m["sha256"], m.get("runtimes", {}))
        if verify:
            for name, want in {**b.files, SUMS: b.sha256}.items():
                f = path / name
                if not f.is_file() or sha256_of(f) != want:
                    raise TargetError(f"native runner bundle file {f} is missing or does not match bundle.json",
                                      stage="bench/native", hint=f"rebuild the bundle: {make}")
        return b

    def upload_order(self) -> list[str]:
        """Every file to copy to the device (``SHA256SUMS`` too), the runner and the loader last."""
        last = (self.loader, self.entry)
        return sorted(n for n in [*self.files, SUMS] if n not in last) + list(last)

    def expected_sums(self) -> dict[str, str]:
        """What ``sha256sum`` of every uploaded file must print on the device."""
        return {**self.files, SUMS: self.sha256}

    def command(self, device_dir: str) -> list[str]:
        """How to start the runner from its folder on the device (absolute paths, any cwd)."""
        d = device_dir.rstrip("/")
        return [f"{d}/{self.loader}", "--library-path", d, f"{d}/{self.entry}"]


def native_env(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` with glibc's rseq registration turned off (``GLIBC_TUNABLES``), for starting a native runner."""
    have = environ.get("GLIBC_TUNABLES")
    return {**environ, "GLIBC_TUNABLES": f"{have}:{RSEQ_OFF}" if have else RSEQ_OFF}


def native_failure(returncode: int, stderr: str) -> tuple[str, str, str] | None:
    """(error type, cause, fix) for a native runner that died without a JSON line: killed by a seccomp filter
    (SIGSYS) or unable to start (the loader, a library, the file itself); None for anything else."""
    tail = " ".join(stderr.strip().splitlines()[-3:])[-300:]
    rebuild = ("rebuild the bundle on the host (make native-aarch64 / make native); the harness pushes it again "
               "when its sha256 differs")
    if returncode == -SIGSYS:
        return ("seccomp",
                "the device killed the native runner with SIGSYS: a seccomp filter forbids a system call it made "
                "(on Android, glibc >= 2.35 registering rseq is the known one; the harness starts the bundle with "
                f"GLIBC_TUNABLES={RSEQ_OFF}, which turns that off, so this filter forbids another call)",
                "run the Python runner on the device instead (Termux: ?python=/data/data/com.termux/files/usr/bin/"
                "python3), or build runtimes/cpp with the Android NDK and pass ?runner=/path/on/device "
                "(runtimes/README.md)")
    if returncode <= 0:
        return None
    m = re.search(r"error while loading shared libraries: ([^:]+): (.*)", stderr)
    if m:
        return ("loader", f"the native runner could not start on the device: the library {m.group(1)} could not "
                          f"be loaded ({m.group(2).strip()})", rebuild)
    m = re.search(r"version `(GLIBC[^']*)' not found", stderr)
    if m:
        return ("loader", f"the native runner could not start on the device: a library needs {m.group(1)}, newer "
                          "than the glibc it was started with", rebuild)
    if "Exec format error" in stderr or returncode == 126:
        why = tail or f"exit {returncode}"
        return ("loader", f"the native runner could not start on the device: it cannot be executed there ({why}: "
                          "built for another ABI, or its folder is on a noexec mount)",
                "use a workdir on an executable file system (?workdir=/data/local/tmp/edgekd on Android), and a "
                "bundle of the device's ABI (make native-aarch64)")
    if returncode == 127 or "No such file or directory" in stderr:
        why = tail or f"exit {returncode}"
        return ("loader", "the native runner could not start on the device (a library or the loader is missing "
                          f"or not executable: {why})", rebuild)
    return None


def find_bundle(abi: str) -> RunnerBundle:
    """The checked host bundle for ``abi`` (the first root that has one); the error names the folders looked in
    and the make target that builds it."""
    places = [root / abi / "bundle" for root in native_roots()]
    path = next((p for p in places if (p / MANIFEST).is_file()), None)
    if path is None:
        raise TargetError(f"no native runner bundle for {abi} at {' nor at '.join(map(str, places))}",
                          stage="bench/native",
                          hint=f"build it once on this machine: {_MAKE.get(abi, 'runtimes/cpp/build.sh --arch ' + abi)}"
                               " (or install an edgekd wheel built after it, or point $EDGEKD_NATIVE_DIR at a folder "
                               "holding <abi>/bundle)")
    b = RunnerBundle.load(path)
    if b.abi != abi:
        raise TargetError(f"the bundle at {path} is for {b.abi}, not {abi}", stage="bench/native",
                          hint=f"rebuild it: {_MAKE.get(abi, 'runtimes/cpp/build.sh --arch ' + abi)}")
    return b


def native_command(arch: str | None = None) -> list[str] | None:
    """How to start the native runner for ``arch`` on this machine: the build folder's ``edgekd_runner``,
    else a bundle (``<root>/<arch>/bundle``, e.g. the one a wheel ships) started by its own glibc loader;
    None where there is neither."""
    exe = find_native_runner(arch)
    if exe is not None:
        return [str(exe)]
    try:
        b = find_bundle(arch or host_arch())
    except TargetError:
        return None
    return b.command(str(b.path))


def choose_local_runner(runner: str, model: str | Path) -> tuple[str, list[str] | None]:
    """For the ``local`` target: ``("native", command)`` or ``("python", None)``, by the rule in
    :mod:`edgekd.bench.native` (``command``: :func:`native_command`).

    ``runner="native"`` without a build or bundle is a TargetError saying how to build it.
    """
    check_runner(runner)
    if runner == "python":
        return "python", None
    cmd = native_command()
    if runner == "native":
        if cmd is None:
            raise TargetError(f"no native runner built in {native_dir()} (nor a bundle in "
                              f"{' or '.join(str(r / host_arch() / 'bundle') for r in native_roots())})",
                              stage="bench/local",
                              hint="build it with `make native` (runtimes/cpp/build.sh), or pass runner=python")
        return "native", cmd
    if not native.python_can_run(model) and cmd is not None and native_supports(model):
        return "native", cmd
    return "python", None
