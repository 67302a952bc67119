"""Faults on real transports: each gives a clear error row, the run goes on, measured rows stay in the JSONL."""

# ruff: noqa: F811  (pytest fixtures imported from standins.fixtures are re-bound as arguments)
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from standins import VENV_BIN, Daemon
from standins.fixtures import adb_server, adbd, own_adbd, own_sshd, sshd  # noqa: F401
from test_harness import _bundle

from edgekd.bench import benchmark
from edgekd.bench.pool import bench_pool


def _slow_python(folder: Path, mark: Path) -> Path:
    """A 'python3' for the device that hangs on any model named slow*, after writing its pid to ``mark``."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "python3"
    script.write_text(f'#!/bin/sh\ncase "$*" in *slow*) echo $$ > "{mark}"; exec sleep 60;; esac\n'
                      f'exec "{VENV_BIN / "python3"}" "$@"\n')
    script.chmod(0o755)
    return script


def _three(tiny_models, root: Path):
    good = tiny_models.tflite.read_bytes()
    return _bundle(root, {n: (good, "tflite", p, "litert-torch") for n, p in
                          (("a.tflite", "fp32"), ("slow.tflite", "fp16"), ("c.tflite", "int8"))}).root


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def _when_file(path: Path, action, timeout_s: float = 60) -> threading.Thread:  # noqa: ANN001
    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        action()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_killed_adbd_and_dropped_ssh_mid_run(tiny_models, own_adbd: Daemon, own_sshd: Daemon, tmp_path: Path) -> None:
    bundle = _three(tiny_models, tmp_path / "bundle")
    adb_mark, ssh_mark = tmp_path / "adb.pid", tmp_path / "ssh.pid"
    adb_url = own_adbd.url(python=str(_slow_python(tmp_path / "a", adb_mark)), workdir=str(tmp_path / "adbw"))
    ssh_url = own_sshd.url(python=str(_slow_python(tmp_path / "s", ssh_mark)), workdir=str(tmp_path / "sshw"))
    watchers = [_when_file(adb_mark, own_adbd.stop), _when_file(ssh_mark, own_sshd.stop)]
    run = tmp_path / "run"
    results = bench_pool(bundle, [adb_url, ssh_url, "local"], runs=2, warmup=0, threads=1, out_dir=run,
                         timeout_s=60, progress=False)
    for w in watchers:
        w.join(5)
    by = {(r.target, Path(r.model).name): r for r in results}
    assert all(by["local", n].ok for n in ("a.tflite", "slow.tflite", "c.tflite"))  # the other target went on
    for url, word in ((adb_url, "device lost"), (ssh_url, "dropped")):
        assert by[url, "a.tflite"].ok  # measured before the fault, and kept
        lost = by[url, "slow.tflite"]
        assert lost.error_type == "target" and word in lost.error and "slow.tflite" in lost.error
        assert by[url, "c.tflite"].error_type == "target"  # the device stays gone: a clear row, no hang
    rows = _rows(run)
    assert len(rows) == 9 and sum(r["error"] is None for r in rows) == 5
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_results"] == 9 and [t["url"] for t in summary["targets"]] == [adb_url, ssh_url, "local"]


def test_hanging_runner_times_out_and_is_killed(tiny_models, adbd: Daemon, sshd: Daemon, tmp_path: Path) -> None:
    bundle = _three(tiny_models, tmp_path / "bundle")
    marks = [tmp_path / "adb.pid", tmp_path / "ssh.pid"]
    urls = [d.url(python=str(_slow_python(tmp_path / str(i), m)), workdir=str(tmp_path / f"w{i}"))
            for i, (d, m) in enumerate(zip((adbd, sshd), marks, strict=True))]
    results = bench_pool(bundle, urls, runs=2, warmup=0, threads=1, out_dir=tmp_path / "run", timeout_s=6,
                         files=["tflite/fp32/litert-torch", "tflite/fp16/litert-torch"], progress=False)
    assert [(r.ok, r.error_type) for r in results] == [(True, None), (False, "timeout")] * 2
    assert all("timed out after 6s" in r.error for r in results if not r.ok)
    time.sleep(0.5)
    assert not any(_alive(int(m.read_text())) for m in marks)  # the hung runner was killed on the device
    assert all(not list((tmp_path / f"w{i}").iterdir()) for i in range(2))  # and its folder removed


def test_corrupt_model_and_wrong_input_shape(tiny_models, adbd: Daemon, sshd: Daemon, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "bundle", {
        "bad.tflite": (b"\x1c\x00\x00\x00TFL3" + b"\x00\xff" * 300, "tflite", "fp32", "litert-torch"),
        "tiny.tflite": (tiny_models.tflite.read_bytes(), "tflite", "int8", "litert-torch")}).root
    urls = [adbd.url(workdir=str(tmp_path / "wa")), sshd.url(workdir=str(tmp_path / "ws"))]
    results = bench_pool(bundle, urls, runs=2, warmup=0, threads=1, out_dir=tmp_path / "run", progress=False)
    assert [(r.ok, r.error_type, r.exit_code) for r in results] == [(False, "corrupt_model", 3), (True, None, 0)] * 2
    [r] = benchmark(tiny_models.tflite, target=urls[0], runs=1, warmup=0, inputs=np.zeros((1, 1, 4, 4), np.float32),
                    out_dir=tmp_path / "shape", progress=False)
    assert r.error_type == "input_mismatch" and r.exit_code == 4 and "[1, 1, 4, 4]" in r.error


@pytest.fixture
def full_and_readonly(tmp_path: Path):  # noqa: ANN201
    full, ro = tmp_path / "full", tmp_path / "ro"
    mounted = []
    for path, opts in ((full, "size=16k"), (ro, "size=1m,ro")):
        path.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode:
            for p in mounted:
                subprocess.run(["umount", str(p)], check=False)
            pytest.skip("needs root and mount(8) for a full / read-only tmpfs")
        mounted.append(path)
    yield full, ro
    for p in mounted:
        subprocess.run(["umount", "-l", str(p)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_full_and_read_only_remote_folders(tiny_models, adbd: Daemon, sshd: Daemon, full_and_readonly,
                                           tmp_path: Path) -> None:
    full, ro = full_and_readonly
    urls = [sshd.url(workdir=str(full)), adbd.url(workdir=str(full)), sshd.url(workdir=str(ro / "x")),
            adbd.url(workdir=str(ro / "x"))]
    results = bench_pool(tiny_models.tflite, [*urls, "local"], runs=2, warmup=0, threads=1, out_dir=tmp_path / "run",
                         progress=False)
    assert [r.ok for r in results] == [False] * 4 + [True]
    for r in results[:2]:
        assert "cannot upload" in r.error and " KB free there" in r.error and "?workdir=" in r.error
    for r in results[2:4]:
        assert "cannot create the run folder" in r.error and "Read-only" in r.error and "?workdir=" in r.error
    assert len(_rows(tmp_path / "run")) == 5


def _spawning_python(folder: Path, marks: Path) -> Path:
    """A 'python3' for the device that starts a child (and a grandchild that leaves its parent), writes every pid
    to ``marks`` and never answers: what a hung runtime with a thread pool or a helper process looks like."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "python3"
    script.write_text(f'#!/bin/sh\ncase "$*" in *--model*) ;; *) exec "{VENV_BIN / "python3"}" "$@";; esac\n'
                      f'sleep 300 & echo $! >> "{marks}"\n'
                      f'sh -c \'sleep 301 & echo $! >> "{marks}"\' \n'  # orphaned at once: its parent exits
                      f'echo $$ >> "{marks}"\nexec sleep 302\n')
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("where", ["local", "ssh", "adb"])
def test_a_hung_runner_is_ended_with_everything_it_started(tiny_models, adbd: Daemon, sshd: Daemon, where: str,
                                                           tmp_path: Path) -> None:
    from edgekd.bench.targets.local import LocalTarget

    marks = tmp_path / "pids"
    fake = _spawning_python(tmp_path / "bin", marks)
    target = (LocalTarget(python=str(fake)) if where == "local" else
              (sshd if where == "ssh" else adbd).url(python=str(fake), workdir=str(tmp_path / "w")))
    [r] = benchmark(tiny_models.tflite, target=target, runner="python", runs=1, warmup=0, out_dir=tmp_path / "run",
                    timeout_s=4, progress=False)
    assert not r.ok and r.error_type == "timeout" and "timed out after 4s" in r.error
    pids = [int(p) for p in marks.read_text().split()]
    assert len(pids) == 3
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], "processes the runner started outlived the timeout"
