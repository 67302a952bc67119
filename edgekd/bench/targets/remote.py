"""What SSH and adb targets share: a per-run folder on the device, upload, run, collect, clean up.

A subclass supplies three transport primitives (run a shell command with a timeout, copy a file
to the device, read a file back); :class:`RemoteTarget` builds everything else on them, so both
transports run the runner the same way:

1. check once that the device has Python >= 3.10 and numpy (or that the native runner exists),
   and say exactly what to install where it does not;
2. wait until the board is cool, when asked (``?cool=60`` in the URL: degrees C);
3. ``mkdir`` a fresh ``WORKDIR/run-XXXXXXXX`` and copy the runner, the model and the ``.npz`` files;
4. ``cd RUN && echo $$ > pid && exec [taskset MASK] PYTHON edgekd_runner.py ... > out.jsonl 2> err.txt``
   with a timeout; on timeout the remote process is killed by the pid it wrote;
5. read ``out.jsonl`` / ``err.txt`` back, remove the folder.

Every argument that reaches the device's shell goes through :func:`shlex.quote`, so model paths and
folders with spaces, quotes or ``;`` are safe. Query options shared by both URL schemes:
``workdir``, ``python``, ``runner`` (a native runner on the device, same protocol), ``cool``,
``cool_timeout``, ``timeout`` (seconds for each remote command other than the runner), ``pin``.
"""

from __future__ import annotations

import contextlib
import shlex
import uuid
from abc import abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edgekd.bench.devices import (
    FACTS_SCRIPT,
    PROBE_SCRIPT,
    big_core_mask,
    missing_runtime_hint,
    parse_facts,
    wait_until_cool,
)
from edgekd.bench.targets import RunnerArgs, RunnerOutcome, Target
from edgekd.bench.targets.local import runner_path
from edgekd.errors import TargetError

RUNNER_NAME = "edgekd_runner.py"


def url_options(url: str) -> tuple[str, dict[str, str]]:
    """``ssh://pi@host:22?workdir=/tmp/x`` -> (``pi@host:22``, ``{"workdir": "/tmp/x"}``)."""
    parts = urlsplit(url)
    opts = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    return parts.netloc, opts


def sh_path(path: str) -> str:
    """``shlex.quote`` that keeps a leading ``~/`` meaning the device user's home."""
    return '"$HOME"/' + shlex.quote(path[2:]) if path.startswith("~/") else shlex.quote(path)


def _flag(value: str | None, default: bool) -> bool:
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on", "")


class RemoteTarget(Target):
    """A device reached through a transport; see the module docstring for the run sequence."""

    stage = "bench/remote"
    default_workdir = "/tmp/edgekd"
    default_pin = False

    def __init__(self, url: str, opts: dict[str, str]) -> None:
        super().__init__(url)
        self.name = url.split("?", 1)[0]  # for messages: the URL without its options
        self.workdir = opts.get("workdir") or self.default_workdir
        self.python = opts.get("python") or "python3"
        self.native_runner = opts.get("runner")  # a runner binary already on the device
        self.cmd_timeout_s = float(opts.get("timeout") or 60)
        self.cool_c = float(opts["cool"]) if opts.get("cool") else None
        self.cool_timeout_s = float(opts.get("cool_timeout") or 600)
        self.pin = _flag(opts.get("pin"), self.default_pin)
        self.runner = runner_path()
        self._probe: dict[str, Any] | None = None
        self._facts: dict[str, Any] | None = None

    # -- transport primitives ----------------------------------------------------------------------
    @abstractmethod
    def exec(self, command: str, timeout_s: float) -> RunnerOutcome:
        """Run ``command`` in the device's ``sh``; raise :class:`TargetError` if the transport fails."""

    @abstractmethod
    def put(self, local: Path, remote: str) -> None:
        """Copy a host file to the device; raise :class:`TargetError` naming the file on failure."""

    @abstractmethod
    def read_text(self, remote: str) -> str:
        """The contents of a device file ('' if it does not exist); raise :class:`TargetError` if lost."""

    # -- checks and facts --------------------------------------------------------------------------
    def _err(self, message: str, hint: str) -> TargetError:
        return TargetError(f"{self.name}: {message}", stage=self.stage, hint=hint)

    def check(self) -> dict[str, Any]:
        """Probe the device's Python and runtimes once; raise saying what is missing and how to install it."""
        if self._probe is not None:
            return self._probe
        if self.native_runner:
            r = self.exec(f"test -x {sh_path(self.native_runner)}", self.cmd_timeout_s)
            if r.returncode != 0:
                raise self._err(f"native runner {self.native_runner!r} is not an executable file on the device",
                                "build it (runtimes/README.md) and copy it there, or drop ?runner= to use Python")
            self._probe = {"runner": self.native_runner}
            return self._probe
        r = self.exec(f"{sh_path(self.python)} -c {shlex.quote(PROBE_SCRIPT)}", self.cmd_timeout_s)
        probe = parse_facts(r.stdout).get("probe") if r.returncode == 0 else None
        hint = missing_runtime_hint(probe, self.python)
        if probe is None or hint:
            found = f"exit {r.returncode}: {(r.stderr or r.stdout).strip()[-200:]}" if probe is None else probe
            raise self._err(f"the device cannot run the Python runner ({found})", hint or "see runtimes/README.md")
        self._probe = probe
        return probe

    def upload_error(self, local: Path, remote: str, detail: str) -> TargetError:
        """The error for a failed copy, with the free space in the destination folder where ``df`` says it."""
        folder = remote.rsplit("/", 1)[0] or "/"
        try:
            df = self.exec(f"df -Pk {shlex.quote(folder)} | tail -n 1", self.cmd_timeout_s).stdout.split()
            free = f"; {df[3]} KB free there" if len(df) > 3 and df[3].isdigit() else ""
        except TargetError:
            free = ""
        return self._err(f"cannot upload {local.name} to {remote!r}: {detail.strip()[-200:]}{free}",
                         "the device folder may be full or read-only: free space or pass ?workdir=")

    def facts(self, refresh: bool = False) -> dict[str, Any]:
        """Board facts: model, kernel, CPU governor, temperature, throttling, per-core max frequency."""
        if self._facts is None or refresh:
            self._facts = parse_facts(self.exec(self.facts_script(), self.cmd_timeout_s).stdout)
        return self._facts

    def facts_script(self) -> str:
        return FACTS_SCRIPT

    def temperature_c(self) -> float | None:
        return self.facts(refresh=True).get("temp_c")

    def describe(self) -> dict[str, Any]:
        """Kind, URL and the facts; never raises (a lost device is described by its error)."""
        out: dict[str, Any] = {"kind": self.stage.rsplit("/", 1)[-1], "url": self.url, "workdir": self.workdir}
        try:
            out.update(facts=self.facts(), runtimes=self.check())
        except TargetError as e:
            out["error"] = str(e)
        return out

    # -- the run -----------------------------------------------------------------------------------
    def run_runner(self, model_path: Path, inputs_npz: Path | None, args: RunnerArgs, timeout_s: float,
                   eval_npz: Path | None = None) -> RunnerOutcome:
        self.check()
        if self.cool_c is not None:
            wait_until_cool(self.temperature_c, self.cool_c, self.cool_timeout_s, where=self.name)
        run = f"{self.workdir.rstrip('/')}/run-{uuid.uuid4().hex[:8]}"
        mk = self.exec(f"mkdir -p {shlex.quote(run)}", self.cmd_timeout_s)
        if mk.returncode != 0:
            raise self._err(f"cannot create the run folder {run!r}: {mk.stderr.strip() or mk.stdout.strip()}",
                            "pass a writable folder with free space: ?workdir=/path/on/device")
        try:
            return self._run_in(run, model_path, inputs_npz, eval_npz, args, timeout_s)
        finally:
            with contextlib.suppress(TargetError):  # a lost device: the error that matters was raised above
                self.exec(f"rm -rf {shlex.quote(run)}", self.cmd_timeout_s)

    def _run_in(self, run: str, model: Path, inputs: Path | None, eval_npz: Path | None, args: RunnerArgs,
                timeout_s: float) -> RunnerOutcome:
        remote = {p: f"{run}/{name}" for p, name in ((model, model.name), (inputs, "inputs.npz"),
                                                     (eval_npz, "eval.npz")) if p is not None}
        if not self.native_runner:
            remote[self.runner] = f"{run}/{RUNNER_NAME}"
        for local, dest in remote.items():
            self.put(local, dest)
        argv = args.argv(remote[model], inputs and remote[inputs], eval_npz and remote[eval_npz])
        exe = [self.native_runner] if self.native_runner else [self.python, remote[self.runner]]
        mask = big_core_mask(self.facts()) if self.pin and "taskset" in self.facts().get("tools", ()) else None
        pin = f"taskset {mask} " if mask else ""
        q = shlex.quote
        command = (f"cd {q(run)} && echo $$ > pid && PYTHONUNBUFFERED=1 exec {pin}{sh_path(exe[0])} "
                   f"{' '.join(q(a) for a in [*exe[1:], *argv])} > out.jsonl 2> err.txt")
        outcome = self.exec(command, timeout_s)
        if outcome.timed_out:
            self.exec(f"kill -9 $(cat {q(run + '/pid')}) 2>/dev/null", self.cmd_timeout_s)
        code = outcome.returncode
        if 128 < code < 160:  # the shell reports "killed by signal N" as 128 + N
            code = 128 - code
        return RunnerOutcome(code, self.read_text(f"{run}/out.jsonl"), self.read_text(f"{run}/err.txt"),
                             timed_out=outcome.timed_out, wall_s=outcome.wall_s)
