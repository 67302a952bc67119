# ruff: noqa: F811  (pytest fixtures imported from standins.fixtures are re-bound as arguments)
"""Slow tier (``pytest -m slow``): the aarch64 native runner bundle in a BARE arm64 root under qemu-user.

The "device" is a folder holding only a static arm64 busybox (Debian's ``busybox-static:arm64``) as
``/bin/sh`` with its applets, ``/proc``, ``/dev`` nodes and ``/tmp``: no libc, no Python, like a stock
phone's userland as far as the runner is concerned. Two kernel files an arm64 device has are made to
look like one: ``/sys/devices/system/cpu`` (bound read-only from this kernel; XNNPACK's cpuinfo reads it,
without it ExecuTorch reports "XnnpackBackend is not available") and ``/proc/cpuinfo`` (an arm64
listing bound over it: qemu-user 7.2 shows the guest the host's x86 file, on which LiteRT's cpuinfo
dereferences NULL; a real arm64 kernel writes its own). A whole sysfs makes LiteRT crash under qemu.
The emulated CPU is a Neoverse-N1 (``QEMU_CPU=neoverse-n1``, the Cortex-A76 class of a Pi 5 or a recent
phone): with qemu 7.2's default ``max`` CPU, XNNPACK's int8 kernels compute wrong results (accuracy 0.12
instead of 0.85 on the tiny CNN, for .pte and .tflite alike; fp32 is right), while Cortex-A53/A72 and
Neoverse-N1 agree with the host: an emulator bug in the newest instructions, not the runner's. OpenSSH's sshd (``ChrootDirectory``) and the adbd
stand-in (``--root``) serve it through the real clients (paramiko, adb); every arm64 program there runs
through qemu-aarch64-static via binfmt_misc. ``runner=auto`` finds no Python, pushes the bundle
(``make native-aarch64``) once and runs it as ``ld-linux-aarch64.so.1 --library-path DIR DIR/edgekd_runner``.
Each model (.pte and .tflite, fp32 and int8) must give the same accuracy, input and output shape as the
Python runner on this host. Emulated timings mean nothing and are not checked.

It also builds the aarch64 bundle from an EMPTY wheel cache (``EDGEKD_WHEEL_CACHE``: a fresh machine's first
``make native-aarch64``), and benchs the bare root from a wheel that carries the aarch64 bundle, installed in a
fresh venv with no checkout around.

Needs root, qemu-user-static, busybox-static:arm64, g++-aarch64-linux-gnu (scripts/system-deps.sh) and PyPI once
(the aarch64 wheels); a missing one is a failure that names the fix, not a skip. Without a built aarch64 bundle
(a clean clone) it is built first, as ``make native-aarch64`` does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from standins import Daemon, start_adbd, start_sshd
from standins.fixtures import adb_server  # noqa: F401

from edgekd.bench import benchmark
from edgekd.bench.runner_bundle import RunnerBundle, find_bundle
from edgekd.bench.targets import RunnerArgs, get_target
from edgekd.errors import TargetError

pytestmark = pytest.mark.slow
QEMU = Path("/usr/bin/qemu-aarch64-static")
BINFMT = Path("/proc/sys/fs/binfmt_misc")
BASE = Path(os.environ.get("EDGEKD_BARE_ROOT_BASE", "/var/lib/edgekd-tests"))  # root-owned, for sshd's chroot
WORKDIR = "/tmp/edgekd"  # as the device sees it
DEVICE_ENV = {"QEMU_CPU": "neoverse-n1"}  # read by qemu-user for every arm64 program the device runs


def _need(ok: bool, what: str, fix: str) -> None:
    if not ok:
        pytest.fail(f"{what}; fix: {fix}", pytrace=False)


def _busybox_arm64() -> Path:
    p = subprocess.run(["dpkg", "-L", "busybox-static:arm64"], capture_output=True, text=True)
    path = next((Path(x) for x in p.stdout.split() if x.endswith("/bin/busybox")), None)
    _need(path is not None and path.is_file(), "busybox-static:arm64 is not installed",
          "dpkg --add-architecture arm64 && apt-get update && apt-get install busybox-static:arm64")
    return path  # type: ignore[return-value]


def _binfmt_aarch64() -> None:
    """qemu-aarch64 registered with binfmt_misc, with the F flag (the interpreter is opened now, so a chroot works)."""
    _need(QEMU.exists(), f"{QEMU} is missing", "apt-get install qemu-user-static")
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True)
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists():
        conf = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
        _need(conf.is_file(), f"{conf} is missing", "apt-get install qemu-user-static")
        (BINFMT / "register").write_text(conf.read_text().strip())
    text = entry.read_text()
    _need("enabled" in text and "F" in text.split("flags:")[1].split()[0], f"binfmt entry {entry} is not usable: {text}",
          "echo 1 > /proc/sys/fs/binfmt_misc/qemu-aarch64 (the entry needs the F flag)")


@pytest.fixture(scope="module")
def bare_root() -> Iterator[Path]:
    _need(os.geteuid() == 0, "needs root (chroot, mount, binfmt_misc)", "run the slow tier as root")
    busybox = _busybox_arm64()
    _binfmt_aarch64()
    BASE.mkdir(parents=True, exist_ok=True, mode=0o755)
    root = Path(tempfile.mkdtemp(prefix="bare-arm64-", dir=BASE))
    root.chmod(0o755)
    try:
        for d in ("bin", "proc", "dev", "tmp", "root", "sys/devices/system/cpu"):
            (root / d).mkdir(parents=True)
        (root / "tmp").chmod(0o1777)
        shutil.copy(busybox, root / "bin" / "busybox")
        subprocess.run(["chroot", str(root), "/bin/busybox", "--install", "-s", "/bin"], check=True, timeout=120)
        (root / "bin" / "bash").write_text('#!/bin/sh\nexec /bin/sh "$@"\n')  # sshd runs the login shell
        (root / "bin" / "bash").chmod(0o755)
        for name, minor in (("null", 3), ("zero", 5), ("random", 8), ("urandom", 9)):
            os.mknod(root / "dev" / name, 0o20666, os.makedev(1, minor))
            (root / "dev" / name).chmod(0o666)
        files = [p.name for p in root.rglob("*")]
        assert not [n for n in files if n.startswith(("libc.so", "ld-linux", "python"))], files  # bare: no libc, no Python
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
        (root / "tmp" / ".cpuinfo").write_text(_arm64_cpuinfo(os.cpu_count() or 1))
        subprocess.run(["mount", "--bind", str(root / "tmp" / ".cpuinfo"), str(root / "proc" / "cpuinfo")], check=True)
        subprocess.run(["mount", "--bind", "-o", "ro", "/sys/devices/system/cpu", str(root / "sys/devices/system/cpu")],
                       check=True)
        uname = subprocess.run(["chroot", str(root), "/bin/sh", "-c", "uname -m"], capture_output=True, text=True)
        assert uname.stdout.strip() == "aarch64", uname
        yield root
    finally:
        for m in ("proc/cpuinfo", "proc", "sys/devices/system/cpu"):
            subprocess.run(["umount", "-l", str(root / m)], capture_output=True)
        if not any(os.path.ismount(root / m) for m in ("proc", "sys/devices/system/cpu")):
            shutil.rmtree(root, ignore_errors=True)


def _arm64_cpuinfo(n: int) -> str:
    """/proc/cpuinfo as an arm64 kernel writes it (Cortex-A72 cores), for the n CPUs sysfs lists."""
    core = ("BogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n"
            "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n")
    return "".join(f"processor\t: {i}\n{core}\n" for i in range(n))


ROOT = Path(__file__).resolve().parents[1]


def _build_aarch64(repo: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(repo / "runtimes/cpp/build.sh"), "--arch", "aarch64", "--python", sys.executable],
                          capture_output=True, text=True, timeout=1800, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def arm_bundle() -> RunnerBundle:
    """The checkout's aarch64 bundle, built first where there is none (a clean clone: make native-aarch64)."""
    try:
        return find_bundle("aarch64")
    except TargetError:
        p = _build_aarch64(ROOT)
        _need(p.returncode == 0, f"make native-aarch64 failed:\n{p.stdout[-1500:]}\n{p.stderr[-2500:]}",
              "see the message above (PyPI access once, g++-aarch64-linux-gnu)")
    try:
        return find_bundle("aarch64")
    except TargetError as e:
        pytest.fail(str(e), pytrace=False)


def test_the_aarch64_bundle_builds_from_an_empty_wheel_cache(tmp_path: Path, tiny_models) -> None:
    """runtimes/cpp alone, copied out of the checkout (no build/ folder), with an empty wheel cache: the first
    build on a fresh machine downloads both wheels and goes through in one go (it used to take the download
    message for the wheel's path and fail twice)."""
    repo = tmp_path / "clone"
    shutil.copytree(ROOT / "runtimes" / "cpp", repo / "runtimes" / "cpp")
    cache = tmp_path / "empty_cache"
    p = _build_aarch64(repo, {"EDGEKD_WHEEL_CACHE": str(cache)})
    assert p.returncode == 0, f"{p.stdout[-1500:]}\n{p.stderr[-2500:]}"
    assert "fetch_wheels: downloading executorch==" in p.stderr and "fetch_wheels: downloading ai-edge-litert==" in p.stderr
    assert sorted(w.name.split("-")[0] for w in cache.glob("*.whl")) == ["ai_edge_litert", "executorch"]
    b = RunnerBundle.load(repo / "build" / "native" / "aarch64" / "bundle")  # every sha256 checked
    assert b.abi == "aarch64" and {"libexecutorch.so", "libLiteRt.so", "libc.so.6", b.loader, b.entry} <= set(b.files)
    machine = subprocess.run(["readelf", "-h", str(b.path / b.entry)], capture_output=True, text=True).stdout
    assert "AArch64" in machine
    _binfmt_aarch64()
    # it starts under qemu-user and speaks the protocol (a .pt2 is the native runner's runtime_missing, exit 5)
    run = subprocess.run([*b.command(str(b.path)), "--model", str(tiny_models.pt2)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "QEMU_CPU": "neoverse-n1"})
    assert run.returncode == 5 and json.loads(run.stdout)["error_type"] == "runtime_missing", run.stderr[-1000:]


@pytest.fixture(scope="module")
def devices(bare_root: Path, adb_server: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Daemon]]:
    ssh = start_sshd(tmp_path_factory.mktemp("bare_sshd"), device_root=bare_root, env=DEVICE_ENV)
    adb = start_adbd(tmp_path_factory.mktemp("bare_adbd"), adb_server, device_root=bare_root, env=DEVICE_ENV)
    yield {"ssh": ssh, "adb": adb}
    ssh.stop()
    adb.stop()


@pytest.fixture(scope="module")
def pte_int8(tiny_models, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny CNN as an int8 .pte (XNNPACK quantizer, PT2E), from the tiny_models' exported program."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    ep = torch.export.load(str(tiny_models.pt2))
    x = torch.from_numpy(np.load(tiny_models.eval)["x"])
    example = (x[:1],)
    q = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(ep.module(), example).module(), q)
    for i in range(16):
        prepared(x[i : i + 1])
    lowered = to_edge_transform_and_lower(torch.export.export(convert_pt2e(prepared), example),
                                          partitioner=[XnnpackPartitioner()])
    path = tmp_path_factory.mktemp("pte_int8") / "tiny_int8.pte"
    path.write_bytes(lowered.to_executorch().buffer)
    return path


def _result(stdout: str) -> dict:
    return next(o for o in map(json.loads, stdout.splitlines()[::-1]) if o.get("event") == "result")


@pytest.mark.parametrize("transport", ["ssh", "adb"])
@pytest.mark.parametrize("model", ["pte", "pte_int8", "tflite", "tflite_int8"])
def test_bundle_in_a_bare_arm64_root_agrees_with_the_host(transport: str, model: str, devices, bare_root: Path,
                                                          arm_bundle: RunnerBundle, tiny_models, pte_int8,
                                                          tmp_path: Path) -> None:
    path = pte_int8 if model == "pte_int8" else getattr(tiny_models, model)
    url = devices[transport].url(workdir=WORKDIR, timeout="300")  # python3 there: none at all
    args = RunnerArgs(warmup=0, runs=2, threads=1, keep_samples=True)
    host = get_target("local").run_runner(path, tiny_models.inputs, replace(args, runner="python"), 300,
                                          eval_npz=tiny_models.eval)
    want = _result(host.stdout)
    out = get_target(url).run_runner(path, tiny_models.inputs, args, 900, eval_npz=tiny_models.eval)
    assert out.returncode == 0 and out.runner == "native", (out.stdout[-500:], out.stderr[-1500:])
    got = _result(out.stdout)
    assert got["machine"]["machine"] == "aarch64"
    assert got["accuracy"] == want["accuracy"] and got["eval_samples"] == want["eval_samples"] == 60
    assert got["output_shape"] == want["output_shape"]
    assert got["eval_predictions"] == want["eval_predictions"]  # the same class for every one of the 60 samples
    assert got["input"]["shape"] == want["input"]["shape"] and got["input"]["dtype"] == want["input"]["dtype"]
    folder = bare_root / WORKDIR.lstrip("/") / "native" / f"aarch64-{arm_bundle.sha256[:16]}"
    assert folder.is_dir() and not Path(f"{folder}.partial").exists()
    print(f"AGREES {model} over {transport}: accuracy {got['accuracy']:.4f} (host {want['accuracy']:.4f}), "
          f"input {got['input']['shape']} {got['input']['dtype']}, output {got['output_shape']}, "
          f"runtime {got['runtime']} {got['runtime_version']}")  # for benchmarks/RESULTS.md (pytest -rP)


def test_benchmark_rows_say_native_and_the_bundle_is_pushed_once(devices, bare_root: Path, arm_bundle: RunnerBundle,
                                                                 tiny_models, tmp_path: Path) -> None:
    url = devices["adb"].url(workdir=WORKDIR, timeout="300")
    [r] = benchmark(tiny_models.tflite_int8, target=url, runs=1, warmup=0, threads=1, eval_data=tiny_models.eval,
                    out_dir=tmp_path, timeout_s=900, progress=False)
    assert r.ok, r.error
    assert r.runner == "native" and r.machine["machine"] == "aarch64" and r.precision == "int8"
    folder = bare_root / WORKDIR.lstrip("/") / "native" / f"aarch64-{arm_bundle.sha256[:16]}"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    [r2] = benchmark(tiny_models.tflite, target=devices["ssh"].url(workdir=WORKDIR, timeout="300"), runs=1, warmup=0,
                     threads=1, out_dir=tmp_path, timeout_s=900, progress=False)
    assert r2.ok and r2.runner == "native"
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before  # checked, not pushed again


def test_a_runner_without_its_libraries_fails_naming_the_fix(devices, bare_root: Path, arm_bundle: RunnerBundle,
                                                             tiny_models, tmp_path: Path) -> None:
    """The runner alone, started without the bundle's loader: the bare root has no libc, so it cannot start."""
    lone = bare_root / "tmp" / "lone_runner"
    shutil.copy(arm_bundle.path / arm_bundle.entry, lone)
    lone.chmod(0o755)
    [r] = benchmark(tiny_models.tflite, target=devices["ssh"].url(workdir=WORKDIR, runner="/tmp/lone_runner"),
                    runs=1, warmup=0, out_dir=tmp_path, timeout_s=300, progress=False)
    assert not r.ok and r.runner == "native" and r.exit_code not in (0, None)  # 127 on a kernel; 255 from qemu
    assert "could not start on the device" in r.error and "make native-aarch64" in r.error


def test_bench_a_bare_arm64_device_from_an_installed_wheel(arm_bundle: RunnerBundle, devices, bare_root: Path,
                                                           tiny_models, tmp_path: Path) -> None:
    """`python -m build` after the native builds, installed into a fresh venv (not editable, no checkout around):
    `edgekd bench --target adb://...` pushes the wheel's aarch64 bundle into the bare root and runs it there."""
    from test_wheel import _env, install_wheel

    venv, _, bundles = install_wheel(tmp_path / "wheel", aarch64=arm_bundle.path)
    assert bundles["aarch64"].sha256 == arm_bundle.sha256
    work = "/tmp/edgekd-wheel"  # a folder of its own on the device: the push must come from the wheel
    url = devices["adb"].url(workdir=work, timeout="300")
    out = tmp_path / "run"
    p = subprocess.run([str(venv / "bin" / "edgekd"), "bench", str(tiny_models.tflite), "--target", url, "--runs", "2",
                        "--warmup", "0", "--threads", "1", "--eval-data", str(tiny_models.eval), "--timeout", "900",
                        "--out", str(out), "--no-progress"], capture_output=True, text=True, timeout=1800, env=_env(),
                       cwd=tmp_path)
    assert p.returncode == 0, (p.stdout[-1500:], p.stderr[-2500:])
    [row] = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert row["runner"] == "native" and row["machine"]["machine"] == "aarch64" and row["error"] is None
    assert row["accuracy"] == pytest.approx(tiny_models.eager_accuracy, abs=0.02)
    folder = bare_root / work.lstrip("/") / "native" / f"aarch64-{arm_bundle.sha256[:16]}"
    assert folder.is_dir() and sorted(f.name for f in folder.iterdir()) == sorted(arm_bundle.expected_sums())
