"""The timing lock: a timing run waits while another process holds the lock, says so, and lets go after."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgekd.bench.harness import benchmark
from edgekd.bench.lock import timing_lock
from edgekd.cli import main
from edgekd.errors import ConfigError

HOLD = """import fcntl, sys, time
f = open(sys.argv[1], "a+b"); fcntl.flock(f, fcntl.LOCK_EX); print("held", flush=True); time.sleep(float(sys.argv[2]))"""


def _held_elsewhere(lock: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process that holds ``lock`` for ``seconds`` (returns once it holds it)."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


def _free(lock: Path) -> bool:
    with open(lock, "a+b") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def test_waits_for_another_holder_and_releases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = tmp_path / "timing.lock"
    with timing_lock(lock) as held:  # free: taken at once, silently
        assert held.path == lock and held.waited_s < 0.5 and not _free(lock)
    assert _free(lock) and "waiting" not in capsys.readouterr().err
    other = _held_elsewhere(lock, 1.5)
    with timing_lock(lock, stage="demo/bench") as held:
        assert other.wait(timeout=30) == 0  # the holder let go (by ending) before we got it
        assert held.waited_s >= 1.0 and not _free(lock)
    assert _free(lock)
    assert f"demo/bench: waiting for the timing lock {lock}" in capsys.readouterr().err
    with timing_lock(None) as held:  # no lock asked for: nothing waits
        assert held.path is None and held.waited_s == 0.0
    with pytest.raises(RuntimeError), timing_lock(lock):  # released however the block ends
        raise RuntimeError("boom")
    assert _free(lock)


def test_lock_that_cannot_be_opened_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "no" / "such" / "folder" / "timing.lock"
    with pytest.raises(ConfigError, match=r"cannot open the timing lock .*timing\.lock") as e, timing_lock(bad):
        pass
    assert e.value.stage == "bench" and "/tmp/edgekd-timing.lock" in (e.value.hint or "")


def test_benchmark_measures_only_once_it_holds_the_lock(tiny_models, tmp_path: Path) -> None:
    lock = tmp_path / "timing.lock"
    other = _held_elsewhere(lock, 2.0)
    t0 = time.perf_counter()
    (r,) = benchmark(tiny_models.tflite, warmup=1, runs=5, threads=1, out_dir=tmp_path / "run", progress=False,
                     timing_lock=lock)
    assert other.wait(timeout=30) == 0 and time.perf_counter() - t0 >= 1.8 and r.ok
    assert _free(lock)


def test_cli_timing_lock_is_one_target_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", str(tmp_path), "--target", "local", "--target", "ssh://pi@board", "--timing-lock",
                 str(tmp_path / "timing.lock")])
    assert code == 2 and "--timing-lock measure one target at a time" in capsys.readouterr().err
