"""The ssh:// target against OpenSSH's sshd on 127.0.0.1 (real paramiko, real sftp, real runner)."""

# ruff: noqa: F811  (pytest fixtures imported from standins.fixtures are re-bound as arguments)
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from standins.fixtures import odd_dir, own_sshd, sshd  # noqa: F401

from edgekd.bench import benchmark
from edgekd.bench.targets import RunnerArgs, get_target
from edgekd.errors import TargetError


def test_ssh_runs_the_runner_with_odd_paths_and_cleans_up(tiny_models, sshd, odd_dir, tmp_path: Path) -> None:
    model = odd_dir / "my model; 'rm -rf x'.tflite"
    shutil.copy(tiny_models.tflite, model)
    workdir = odd_dir / "work; dir"
    url = sshd.url(workdir=str(workdir))
    [r] = benchmark(model, target=url, runs=3, warmup=1, threads=1, eval_data=tiny_models.eval,
                    out_dir=tmp_path / "run", progress=False)
    assert r.ok, r.error
    assert r.runtime and len(r.latency_samples_ms) == 3 and r.target == url
    assert r.accuracy == pytest.approx(tiny_models.eager_accuracy)
    assert list(workdir.iterdir()) == []  # the per-run folder is gone
    assert not (odd_dir.parent / "x").exists()
    d = get_target(url).describe()
    assert d["kind"] == "ssh" and "numpy" in d["runtimes"]["modules"]
    facts = d["facts"]
    assert facts["temp_c"] == 45.0 and facts["throttled_since_boot"] and not facts["throttled_now"]
    assert "vcgencmd" in facts["tools"]


def test_host_keys_are_checked_and_trust_on_first_use_is_explicit(sshd, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    with pytest.raises(TargetError, match="not in .*known_hosts") as e:
        get_target(sshd.url(known_hosts=str(kh))).check()
    assert "trust=1" in str(e.value) and "ssh-keyscan" in str(e.value)
    assert get_target(sshd.url(known_hosts=str(kh), trust="1")).check()["python"]
    assert f"[127.0.0.1]:{sshd.port}" in kh.read_text()  # trusted on first use, and remembered
    other = (Path(sshd.options["key"]).parent / "client.pub").read_text().split()[:2]  # a key that is not the host's
    kh.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(other)}\n")
    with pytest.raises(TargetError, match="CHANGED"):
        get_target(sshd.url(known_hosts=str(kh), trust="1")).check()


def test_missing_python_or_numpy_says_what_to_install(sshd) -> None:
    with pytest.raises(TargetError, match="install Python 3.10"):  # runner=auto would use the native bundle
        get_target(sshd.url(python="/no/such/python3", runner="python")).check()
    if shutil.which("python3", path="/usr/bin"):
        with pytest.raises(TargetError, match="pip install numpy"):
            get_target(sshd.url(python="/usr/bin/python3", runner="python")).check()


def test_waits_until_the_board_is_cool(tiny_models, own_sshd, tmp_path: Path) -> None:
    temp = own_sshd.shim / "temp"
    temp.write_text("80")
    threading.Timer(1.0, lambda: temp.write_text("40")).start()
    tgt = get_target(own_sshd.url(cool="50"))
    t0 = time.monotonic()
    out = tgt.run_runner(tiny_models.tflite, None, RunnerArgs(warmup=0, runs=1, threads=1), timeout_s=60)
    assert out.returncode == 0 and time.monotonic() - t0 >= 1.0
    temp.write_text("90")
    [r] = benchmark(tiny_models.tflite, target=own_sshd.url(cool="50", cool_timeout="0.3"), runs=1, warmup=0,
                    out_dir=tmp_path, progress=False)
    assert r.error_type == "target" and "still 90.0 C" in r.error
