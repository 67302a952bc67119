"""Where the device runner runs: one registry of targets keyed by URL scheme.

``get_target("local")``, later ``get_target("ssh://pi@raspberrypi:22")`` or
``get_target("adb://SERIAL")``. A target only knows how to put the runner, a model and its
input files on a machine and run ``edgekd_runner.py`` there; the harness does everything else,
so every target speaks the same runner protocol (see ``runtimes/README.md``).

A target module is named after its scheme (``local.py``, ``ssh.py``, ``adb.py``) and registers
its class with ``@TARGETS.register("<scheme>")``; ``get_target`` imports it on first use.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.errors import TargetError
from edgekd.registry import Registry, import_modules


@dataclass(frozen=True)
class RunnerArgs:
    """The runner's options, apart from the files a target has to place on the device."""

    warmup: int = 10
    runs: int = 50
    threads: int = 2
    layout: str = "auto"
    keep_samples: bool = False
    cpus: str | None = None  # pin the runner to these CPUs ("0,1", "4-7") before the runtime loads
    runner: str = "auto"  # auto | python | native (edgekd.bench.native); chosen by the target, not an argument
    profile_path: str | None = None  # host path for the native runner's per-operator dump (--profile), if any
    min_duration: float = 0.0  # go on past `runs` until this many seconds of timed runs (runner --min-duration)

    def argv(self, model: str, inputs: str | None, eval_npz: str | None) -> list[str]:
        """Command-line arguments for the runner, given the paths as the device sees them."""
        out = ["--model", model, "--warmup", str(self.warmup), "--runs", str(self.runs),
               "--threads", str(self.threads), "--layout", self.layout]
        if inputs:
            out += ["--inputs", inputs]
        if eval_npz:
            out += ["--eval", eval_npz]
        if self.keep_samples:
            out.append("--keep-samples")
        if self.cpus:
            out += ["--cpus", self.cpus]
        if self.min_duration:
            out += ["--min-duration", f"{self.min_duration:g}"]
        return out


@dataclass(frozen=True)
class RunnerOutcome:
    """What came back from one runner process: exit code (negative: killed by that signal)."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False
    wall_s: float = 0.0
    runner: str = "python"  # which runner ran: "python" | "native"


class Target(ABC):
    """A machine that runs ``edgekd_runner.py``. ``url`` is what the user passed."""

    def __init__(self, url: str) -> None:
        self.url = url

    @abstractmethod
    def run_runner(self, model_path: Path, inputs_npz: Path | None, args: RunnerArgs, timeout_s: float,
                   eval_npz: Path | None = None) -> RunnerOutcome:
        """Run the runner on ``model_path`` with host-side input files; never raise on runner failure."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON-able description of the target (kind, url, host facts) for the run summary."""

    @classmethod
    def discover(cls) -> list[str]:
        """URLs of the devices of this kind that are reachable now, for ``edgekd devices`` (default: none)."""
        return []


TARGETS: Registry[type[Target]] = Registry("target")


def scheme_of(url: str) -> str:
    """``ssh://pi@host`` -> ``ssh``; a bare name such as ``local`` is its own scheme."""
    return url.split("://", 1)[0].strip().lower() if "://" in url else url.strip().lower()


def _import_builtin_targets() -> None:
    import_modules(__name__, __path__)  # built-in targets register themselves on import


def list_targets() -> list[str]:
    """URL schemes of every registered target (``local``, ``ssh``, ``adb``, ...)."""
    _import_builtin_targets()
    return TARGETS.names()


def get_target(url: str | Target) -> Target:
    """Build the target for ``url`` (``local``, ``ssh://user@host[:port]``, ``adb://SERIAL``)."""
    if isinstance(url, Target):
        return url
    _import_builtin_targets()
    factory = TARGETS.get(scheme_of(url))
    try:
        return factory(url)
    except ValueError as e:
        raise TargetError(f"bad target {url!r}: {e}", stage="bench/target",
                          hint="use local, ssh://user@host[:port] or adb://SERIAL") from None
