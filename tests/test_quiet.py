"""Library noise stays off the terminal by default (``edgekd.quiet``); ``--verbose``/EDGEKD_VERBOSE shows it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOISE = ("Failed to open midr", "FutureWarning", "absl line", "oneDNN custom operations", "W1204 pytree")

SCRIPT = r"""
import logging, os, sys, warnings
from tqdm import tqdm
from edgekd.quiet import quiet, terminal
with quiet(verbose="-v" in sys.argv) as log:
    os.write(2, b"[cpuinfo_utils.cpp:87] Failed to open midr file /sys/devices/soc0/image_version\n")
    os.write(2, b"I tensorflow/core/util/port.cc:153] oneDNN custom operations are on.\n")
    warnings.warn("copyreg treespec", FutureWarning)
    logging.getLogger("absl").warning("absl line")
    sys.stderr.write("W1204 pytree (a library writing to sys.stderr, as pybind11's redirect does)\n")
    for _ in tqdm(range(3), desc="progress-bar"):
        pass
    print("edgekd: error: the message for the user", file=terminal())
    print("stdout stays stdout")
print("log removed" if log.path is None or not log.path.exists() else "log kept")
"""


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_noise_goes_to_the_log_and_our_messages_and_progress_stay() -> None:
    p = _run()
    assert p.returncode == 0, p.stderr
    assert not [n for n in NOISE if n in p.stderr], p.stderr
    assert "edgekd: error: the message for the user" in p.stderr and "progress-bar" in p.stderr
    assert "stdout stays stdout" in p.stdout and "log removed" in p.stdout


@pytest.mark.parametrize(("args", "env"), [(("-v",), {}), ((), {"EDGEKD_VERBOSE": "1"})])
def test_verbose_shows_everything(args: tuple[str, ...], env: dict[str, str]) -> None:
    p = _run(*args, env=env)
    assert p.returncode == 0 and all(n in p.stderr for n in NOISE), p.stderr


def test_cli_export_terminal_is_clean(tmp_path: Path) -> None:
    """A real `edgekd export` (torch.export + ExecuTorch: FutureWarnings, cpuinfo, torchao lines) prints only
    its own lines and progress bars."""
    code = ("from edgekd import models as M; from edgekd.models.saved import save_model; "
            f"save_model(M.create('resnet8x0_5', num_classes=10, in_channels=1), {str(tmp_path / 'm.pt')!r}, "
            "'resnet8x0_5', num_classes=10, in_channels=1)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, timeout=300)
    p = subprocess.run([sys.executable, "-m", "edgekd", "export", str(tmp_path / "m.pt"), "--data", "mnist5k",
                        "--limit", "300", "--formats", "pte", "--precisions", "fp32", "--calibration", "8",
                        "--parity-samples", "16", "--out", str(tmp_path / "b")],
                       capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [x for x in p.stderr.replace("\r", "\n").splitlines() if x.strip()]
    assert lines and all(x.startswith("export") and "|" in x for x in lines), lines  # progress bars only
    assert "model_fp32.pte" in p.stdout and "wrote" in p.stdout
