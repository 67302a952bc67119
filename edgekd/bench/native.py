"""The native C++ runner (``runtimes/cpp``): where a build lives, what it runs, which runner ``auto`` picks.

``runtimes/cpp/build.sh --arch ARCH`` (``make native``) puts ``edgekd_runner``, its backend plugins
and the runtime libraries it needs into ``build/native/<arch>/`` of the checkout (``MANIFEST`` lists
them), and the self-contained bundle into ``build/native/<arch>/bundle/``. Where to look, in order
(:func:`native_roots`): ``$EDGEKD_NATIVE_DIR`` alone when set (a folder holding ``<arch>/``), else the
checkout's ``build/native``, then the bundles a built wheel carries as package data
(``edgekd/runtimes/native/<arch>/bundle/``, copied in by ``setup.py``), so ``pip install edgekd-*.whl``
profiles a phone with no checkout around. The native runner speaks the Python runner's protocol
(``runtimes/README.md``) for ``.pte`` and ``.tflite`` files.

``runner="auto"`` (the default) picks, per file and target, the Python runner where the target's
Python can run the file's format, else the native runner where one is built for the target's
architecture and reads the format, else the Python runner (whose error then says what to install).
A target with edgekd's Python environment (``local``) therefore keeps the Python runner unless asked
for ``runner="native"``; a device without a usable Python gets the native one.
"""

from __future__ import annotations

import importlib.util
import os
import platform
from pathlib import Path

from edgekd.errors import TargetError
from edgekd.formats import native_rows, suffix_rows

NATIVE_DIR_ENV = "EDGEKD_NATIVE_DIR"
RUNNER_NAME = "edgekd_runner"
RUNNERS = ("auto", "python", "native")


def host_arch() -> str:
    """This machine's architecture as the build names it (``x86_64``, ``aarch64``)."""
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


def package_native_root() -> Path:
    """Where a built wheel keeps the native bundles: ``edgekd/runtimes/native`` (holding ``<arch>/bundle``)."""
    return Path(__file__).resolve().parents[1] / "runtimes" / "native"


def native_roots() -> list[Path]:
    """The folders holding one build folder per architecture, searched in order (module docstring)."""
    env = os.environ.get(NATIVE_DIR_ENV)
    if env:
        return [Path(env)]
    return [Path(__file__).resolve().parents[2] / "build" / "native", package_native_root()]


def native_root() -> Path:
    """The first of :func:`native_roots`: ``$EDGEKD_NATIVE_DIR`` or ``<checkout>/build/native`` (what errors name)."""
    return native_roots()[0]


def native_dir(arch: str | None = None) -> Path:
    """The build folder of ``arch`` (default: this machine's) in the checkout (or ``$EDGEKD_NATIVE_DIR``)."""
    return native_root() / (arch or host_arch())


def find_native_runner(arch: str | None = None) -> Path | None:
    """The built ``edgekd_runner`` for ``arch`` in the build folder, or None when there is none."""
    p = native_dir(arch) / RUNNER_NAME
    return p if p.is_file() and os.access(p, os.X_OK) else None


def runtime_files(arch: str | None = None) -> list[Path]:
    """Every file of the runner folder as its ``MANIFEST`` lists it (the runner first); [] without a build."""
    d = native_dir(arch)
    manifest = d / "MANIFEST"
    if not manifest.is_file():
        return []
    return [d / name for name in manifest.read_text().split() if name]


def native_supports(model: str | Path, arch: str | None = None) -> bool:
    """Whether a native build (or bundle) of ``arch`` can run ``model`` (its suffix and the backend plugin for it)."""
    suffix = Path(model).suffix.lower()
    arch = arch or host_arch()
    row = native_rows().get(suffix)  # the format table names each suffix's plugin (none: Python runner only)
    return row is not None and any((root / arch / sub / str(row.plugin)).is_file()
                                   for root in native_roots() for sub in ("", "bundle"))


def python_can_run(model: str | Path) -> bool:
    """Whether this Python environment has a runtime the Python runner uses for ``model`` (nothing is imported)."""
    row = suffix_rows().get(Path(model).suffix.lower())
    options = row.runtimes if row else ()
    return any(all(importlib.util.find_spec(m) is not None for m in mods) for mods in options)


def check_runner(runner: str) -> str:
    """``runner`` if it names a runner, else a TargetError listing the choices."""
    if runner not in RUNNERS:
        raise TargetError(f"unknown runner {runner!r}", stage="bench", hint=f"use one of: {', '.join(RUNNERS)}")
    return runner
