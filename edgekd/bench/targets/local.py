"""The ``local`` target: run the device runner in a subprocess on this machine."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgekd.bench.runner_bundle import choose_local_runner, native_command, native_env
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
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if native is not None:
            cmd = [*native, *argv] + (["--profile", args.profile_path] if args.profile_path else [])
            env = native_env(env)  # glibc's rseq registration off, as on a device (runtimes/README.md)
        else:
            cmd = [self.python, str(self.runner), *argv]
        return run_group(cmd, env, timeout_s, which)

    @classmethod
    def discover(cls) -> list[str]:
        return ["local"]

    def describe(self) -> dict[str, Any]:
        native = native_command()
        return {"kind": "local", "url": self.url, "hostname": platform.node(), "python": self.python,
                "runner": str(self.runner), "native_runner": " ".join(native) if native else None,
                "cpu_count": os.cpu_count()}


def run_group(cmd: list[str], env: dict[str, str], timeout_s: float, runner: str) -> RunnerOutcome:
    """Run ``cmd`` in its own process group (a new session); at the timeout the whole group is killed, so
    nothing the runner started outlives it."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired as e:  # something left the group and holds the pipes: stop reading
            p.kill()
            out, err = _text(e.stdout), _text(e.stderr)
        return RunnerOutcome(-9, _text(out), _text(err), timed_out=True, wall_s=time.perf_counter() - t0,
                             runner=runner)
    return RunnerOutcome(p.returncode, out, err, wall_s=time.perf_counter() - t0, runner=runner)


def _text(b: bytes | str | None) -> str:
    if isinstance(b, bytes):
        return b.decode(errors="replace")
    return b or ""
