# ruff: noqa: F811  (pytest fixtures imported from standins.fixtures are re-bound as arguments)
"""Slow tier (``pytest -m slow``): the TFLite runner on aarch64, in an arm64 Debian chroot under qemu-user.

The "device" Python is a wrapper that runs the chroot's Python through ``chroot`` (binfmt + qemu),
after mapping the host paths of the per-run folder to the chroot's; the same SSH and adb stand-ins
carry the files, so this proves the aarch64 path over both transports. Emulated timings are about
100x slow: this tests plumbing, never speed. Needs root, apt and PyPI; the chroot is cached in
``$EDGEKD_ARM64_ROOT`` (default /var/tmp/edgekd-arm64) because debootstrap takes ~4 minutes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from standins.fixtures import adb_server, adbd, sshd  # noqa: F401

from edgekd.bench import benchmark

pytestmark = pytest.mark.slow
ROOT = Path(os.environ.get("EDGEKD_ARM64_ROOT", "/var/tmp/edgekd-arm64"))


def _sh(*cmd: str, timeout: float = 900) -> None:
    subprocess.run(cmd, check=True, timeout=timeout, capture_output=True)


@pytest.fixture(scope="module")
def arm64_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("needs root and apt-get")
    if not shutil.which("debootstrap") or not Path("/usr/bin/qemu-aarch64-static").exists():
        _sh("apt-get", "update", "-qq")
        _sh("apt-get", "install", "-y", "-qq", "qemu-user-static", "binfmt-support", "debootstrap")
    if not Path("/proc/sys/fs/binfmt_misc/register").exists():
        _sh("mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc")
    subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True, timeout=60)
    if not (ROOT / "opt/venv/bin/python3").exists():
        if not (ROOT / "usr/bin/python3").exists():
            _sh("debootstrap", "--arch=arm64", "--variant=minbase",
                "--include=python3,python3-pip,python3-venv,python3-numpy", "bookworm", str(ROOT))
        _sh("chroot", str(ROOT), "python3", "-m", "venv", "--system-site-packages", "/opt/venv")
        # Wheels are fetched by the host's pip (its proxy and CA settings) and installed offline in
        # the chroot, whose minimal trust store may not reach the index.
        wheels = ROOT / "opt" / "wheels"
        _sh(sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", "3.11",
            "--implementation", "cp", *[a for p in ("manylinux_2_27_aarch64", "manylinux_2_28_aarch64",
                                                    "manylinux2014_aarch64") for a in ("--platform", p)],
            "-d", str(wheels), "ai-edge-litert==2.3.0")
        _sh("chroot", str(ROOT), "/opt/venv/bin/pip", "install", "-q", "--no-index", "--find-links",
            "/opt/wheels", "ai-edge-litert==2.3.0")
    (ROOT / "tmp/edgekd").mkdir(parents=True, exist_ok=True)
    proc = ROOT / "proc"  # /proc only: ai-edge-litert segfaults under qemu with /proc and /sys both mounted
    if not os.path.ismount(proc):
        _sh("mount", "-t", "proc", "proc", str(proc))
    wrapper = tmp_path_factory.mktemp("arm64") / "python3"
    wrapper.write_text(f'#!/bin/sh\nR="{ROOT}"\nfor a in "$@"; do shift; set -- "$@" "${{a#"$R"}}"; done\n'
                       f'exec {shutil.which("chroot") or "/usr/sbin/chroot"} "$R" /opt/venv/bin/python3 "$@"\n')
    wrapper.chmod(0o755)
    yield wrapper
    subprocess.run(["umount", "-l", str(proc)], check=False)


@pytest.mark.parametrize("transport", ["ssh", "adb"])
def test_tflite_runner_on_aarch64(transport: str, arm64_python: Path, tiny_models, sshd, adbd, tmp_path: Path) -> None:
    daemon = sshd if transport == "ssh" else adbd
    url = daemon.url(python=str(arm64_python), workdir=str(ROOT / "tmp/edgekd"), timeout="120")
    [r] = benchmark(tiny_models.tflite, target=url, runs=2, warmup=0, threads=1, eval_data=tiny_models.eval,
                    out_dir=tmp_path, timeout_s=600, progress=False)
    assert r.ok, r.error
    assert r.machine["machine"] == "aarch64" and r.runtime
    assert r.accuracy == pytest.approx(tiny_models.eager_accuracy)
