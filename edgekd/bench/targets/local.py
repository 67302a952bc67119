"""The ``local`` target: run the device runner in a subprocess on this machine."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgekd.bench.runner_bundle import choose_local_runner, native_command
from edgekd.bench.targets import TARGETS, RunnerArgs, RunnerOutcome, Target
from edgekd.errors import TargetError

RUNNER = "edgekd_runner.py"


def runner_path() -> Path:
    """The device runner: the copy a built wheel ships (``edgekd/runtimes/``, see ``setup.py``), else
    ``runtimes/python/`` of the source checkout this package runs from (the runner's one source)."""
    package = Path(__file__).resolve().parents[2]
    for path in (package / "runtimes" / RUNNER, package.parent / "runtimes" / "python" / RUNNER):
        if path.is_file():
            return path
    raise TargetError(f"device runner {RUNNER} not found in {package / 'runtimes'} nor in a source checkout",
                      stage="bench/local",
                      hint="reinstall edgekd from its wheel (it ships the runner), or pip install -e . from a checkout")


@TARGETS.register("local")
class LocalTarget(Target):
    """This machine, with the interpreter that runs edgekd (``sys.executable``), or the native runner
    built for it (``RunnerArgs.runner``; ``auto`` as :func:`edgekd.bench.runner_bundle.choose_local_runner`)."""

    def __init__(self, url: str = "local", python: str | None = None) -> None:
        super().__init__(url)
        if url != "local":
            raise ValueError("the local target takes no address")
        self.python = python or sys.executable
        self.runner = runner_path()

    def run_runner(self, model_path: Path, inputs_npz: Path | None, args: RunnerArgs, timeout_s: float,
                   eval_npz: Path | None = None) -> RunnerOutcome:
        argv = args.argv(str(model_path), inputs_npz and str(inputs_npz), eval_npz and str(eval_npz))
        which, native = choose_local_runner(args.runner, model_path)
        if native is not None:
            cmd = [*native, *argv] + (["--profile", args.profile_path] if args.profile_path else [])
        else:
            cmd = [self.python, str(self.runner), *argv]
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
        except subprocess.TimeoutExpired as e:
            return RunnerOutcome(-9, _text(e.stdout), _text(e.stderr), timed_out=True,
                                 wall_s=time.perf_counter() - t0, runner=which)
        return RunnerOutcome(p.returncode, p.stdout, p.stderr, wall_s=time.perf_counter() - t0, runner=which)

    @classmethod
    def discover(cls) -> list[str]:
        return ["local"]

    def describe(self) -> dict[str, Any]:
        native = native_command()
        return {"kind": "local", "url": self.url, "hostname": platform.node(), "python": self.python,
                "runner": str(self.runner), "native_runner": " ".join(native) if native else None,
                "cpu_count": os.cpu_count()}


def _text(b: bytes | str | None) -> str:
    if isinstance(b, bytes):
        return b.decode(errors="replace")
    return b or ""
