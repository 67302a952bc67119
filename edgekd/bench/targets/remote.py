"""What SSH and adb targets share: a per-run folder on the device, upload, run, collect, clean up.

A subclass supplies three transport primitives (run a shell command with a timeout, copy a file
to the device, read a file back); :class:`RemoteTarget` builds everything else on them, so both
transports run the runner the same way:

1. check once what the device can run: its Python (>= 3.10, numpy, the runtime for the file's format)
   or the native runner bundle for its ABI (``uname -m``: aarch64 or x86_64), and say exactly what to
   install where neither will do. ``runner=auto`` (default) takes Python where it can run the file,
   else the bundle; ``runner=python`` / ``runner=native`` force one (the benchmark option, or ``?runner=``);
2. wait until the board is cool, when asked (``?cool=60`` in the URL: degrees C);
3. native only: make sure ``WORKDIR/native/<abi>-<sha256>/`` holds the bundle (every file's sha256 is
   checked on the device; a missing or different one means a fresh push to ``<folder>.partial``, checked
   again, then renamed: an interrupted push is never used), once per target object;
4. ``mkdir`` a fresh ``WORKDIR/run-XXXXXXXX`` and copy the runner (Python), the model and the ``.npz`` files;
5. ``cd RUN && echo $$ > pid && export EDGEKD_RUN=<id> && [taskset MASK] PYTHON edgekd_runner.py ... > out.jsonl
   2> err.txt; exit with its status`` (native: ``GLIBC_TUNABLES=glibc.pthread.rseq=0 DIR/ld-linux-<abi>.so.N --library-path DIR
   DIR/edgekd_runner ... [--profile RUN/<dump>]``: glibc's rseq registration off, so a seccomp filter that
   forbids rseq, as Android's may, cannot kill it) with a timeout. On timeout the runner is ended with
   everything it started: the shell, its process group where it leads one, and every process whose
   environment carries the run's ``EDGEKD_RUN`` mark (the runner and its children keep it, even once
   orphaned); the outcome says which runner ran;
6. read ``out.jsonl`` / ``err.txt`` back (and the profile dump the native runner wrote, with ``--profile``),
   remove the folder.

Every argument that reaches the device's shell goes through :func:`shlex.quote`, so model paths and
folders with spaces, quotes or ``;`` are safe. Query options shared by both URL schemes:
``workdir``, ``python``, ``runner`` (``auto|python|native``, or the path of a runner binary already on
the device, same protocol), ``cool``,
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
    python_can_run,
    wait_until_cool,
)
from edgekd.bench.native import RUNNERS
from edgekd.bench.runner_bundle import NATIVE_ENV, RunnerBundle, abi_of, find_bundle, unsupported_abi
from edgekd.bench.targets import RunnerArgs, RunnerOutcome, Target
from edgekd.bench.targets.local import runner_path
from edgekd.errors import ConfigError, TargetError
from edgekd.formats import guess_row

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
        runner = opts.get("runner")  # auto | python | native, or the path of a runner binary already on the device
        self.mode = runner if runner in RUNNERS else "auto"
        self.native_runner = runner if runner and runner not in RUNNERS else None
        self.cmd_timeout_s = float(opts.get("timeout") or 60)
        self.cool_c = float(opts["cool"]) if opts.get("cool") else None
        self.cool_timeout_s = float(opts.get("cool_timeout") or 600)
        self.pin = _flag(opts.get("pin"), self.default_pin)
        self.runner = runner_path()
        self._probe: dict[str, Any] | None = None
        self._python: tuple[dict[str, Any] | None, str | None] | None = None
        self._abi: str | None = None
        self._pushed: str | None = None  # the bundle folder verified on the device by this target
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

    @abstractmethod
    def get(self, remote: str, local: Path) -> bool:
        """Copy a device file to ``local`` (bytes as they are); False where it does not exist. Raise
        :class:`TargetError` if the device is lost."""

    # -- checks and facts --------------------------------------------------------------------------
    def _err(self, message: str, hint: str) -> TargetError:
        return TargetError(f"{self.name}: {message}", stage=self.stage, hint=hint)

    def python_probe(self) -> tuple[dict[str, Any] | None, str | None]:
        """(what the device's Python has, what to install where it cannot run the runner), probed once."""
        if self._python is None:
            r = self.exec(f"{sh_path(self.python)} -c {shlex.quote(PROBE_SCRIPT)}", self.cmd_timeout_s)
            probe = parse_facts(r.stdout).get("probe") if r.returncode == 0 else None
            hint = missing_runtime_hint(probe, self.python)
            found = f"exit {r.returncode}: {(r.stderr or r.stdout).strip()[-200:]}" if probe is None else probe
            self._python = (probe, None if probe is not None and not hint else
                            f"the device cannot run the Python runner ({found}); fix: {hint or 'see runtimes/README.md'}")
        return self._python

    def check(self) -> dict[str, Any]:
        """What the device can run (its Python, or the native runner); raise saying what to install where neither.

        With ``runner=python`` (URL ``?runner=python`` or the benchmark option) the Python runner must work;
        with ``runner=native`` the native runner must; ``auto`` (the default) needs one of them.
        """
        if self._probe is not None:
            return self._probe
        if self.native_runner:
            r = self.exec(f"test -x {sh_path(self.native_runner)}", self.cmd_timeout_s)
            if r.returncode != 0:
                raise self._err(f"native runner {self.native_runner!r} is not an executable file on the device",
                                "build it (runtimes/README.md) and copy it there, or drop ?runner= to use Python")
            self._probe = {"runner": self.native_runner}
            return self._probe
        probe, why = self.python_probe() if self.mode != "native" else (None, "runner=native")
        if probe is not None and why is None:
            self._probe = probe
            return probe
        if self.mode == "python":
            message, _, hint = str(why).partition("; fix: ")
            raise self._err(message, hint)
        bundle = self.host_bundle()
        self._probe = {"runner": "native", "abi": bundle.abi, "bundle_sha256": bundle.sha256, "python": probe,
                       "python_missing": why}
        return self._probe

    def device_abi(self) -> str:
        """The device's bundle ABI from ``uname -m``; an ABI without a native runner is a TargetError."""
        if self._abi is None:
            r = self.exec("uname -m", self.cmd_timeout_s)
            machine = r.stdout.strip()
            abi = abi_of(machine) if r.returncode == 0 else None
            if abi is None:
                raise self._err(*unsupported_abi(machine or f"uname -m failed: {r.stderr.strip()[-100:]}"))
            self._abi = abi
        return self._abi

    def choose_runner(self, model: Path, mode: str) -> str:
        """``python`` or ``native`` for this model file (``mode``: auto | python | native)."""
        mode = self.mode if self.mode != "auto" else mode
        if self.native_runner:
            return "native"
        if mode not in RUNNERS:
            raise self._err(f"unknown runner {mode!r}", f"use one of {', '.join(RUNNERS)}")
        if mode == "native":
            return "native"
        probe, why = self.python_probe()
        if mode == "python":
            if why:
                message, _, hint = why.partition("; fix: ")
                raise self._err(message, hint)
            return "python"
        backend = _backend_of(model)
        return "python" if why is None and python_can_run(probe, backend) else "native"

    def host_bundle(self) -> RunnerBundle:
        """The host's bundle for the device's ABI; where it is missing the error also says why Python will not do."""
        abi = self.device_abi()
        try:
            return find_bundle(abi)
        except TargetError as e:
            why = self._python[1] if self._python else None
            if not why:
                raise self._err(e.message, str(e.hint)) from None
            message, _, fix = why.partition("; fix: ")
            raise self._err(f"{e.message}, and {message}", f"{e.hint}; or for the Python runner: {fix}") from None

    def native_bundle(self) -> tuple[RunnerBundle, str]:
        """The host bundle for the device's ABI and its folder on the device, pushed there once (by sha256)."""
        bundle = self.host_bundle()
        abi = bundle.abi
        folder = f"{self.workdir.rstrip('/')}/native/{abi}-{bundle.sha256[:16]}"
        if self._pushed != folder:
            self._push_bundle(bundle, folder)
            self._pushed = folder
        return bundle, folder

    def _device_sums(self, folder: str, names: list[str]) -> dict[str, str]:
        """``sha256sum`` (or busybox's / toybox's) of those files in a device folder: name -> hash."""
        q = shlex.quote
        script = (f"{_SHA256SUM}; cd {q(folder)} 2>/dev/null || exit 0; "
                  f"\"$@\" {' '.join(q(n) for n in names)} 2>/dev/null; true")
        r = self.exec(script, max(self.cmd_timeout_s, 120))
        if r.returncode == 3 and "NO_SHA256SUM" in r.stdout:
            raise self._err("the device has no sha256sum (nor busybox or toybox) to check the native runner bundle",
                            "install coreutils or busybox on the device, or use runner=python")
        out = {}
        for line in r.stdout.splitlines():
            digest, _, name = line.strip().partition("  ")
            if len(digest) == 64 and name:
                out[name.lstrip("*")] = digest
        return out

    def _push_bundle(self, bundle: RunnerBundle, folder: str) -> None:
        """Make sure ``folder`` on the device holds exactly ``bundle``: check its sha256s, else push it again.

        The copy goes to ``folder.partial`` and is renamed only once every file's sha256 matches on the
        device, so an interrupted push leaves nothing that is ever used; a folder that does not match
        (changed or cut short) is replaced.
        """
        want = bundle.expected_sums()
        if self._device_sums(folder, sorted(want)) == want:
            return
        q = shlex.quote
        part = f"{folder}.partial"
        mk = self.exec(f"rm -rf {q(part)} && mkdir -p {q(part)}", self.cmd_timeout_s)
        if mk.returncode != 0:
            raise self._err(f"cannot create {part!r} for the native runner bundle: {mk.stderr.strip()[-200:]}",
                            "pass a writable folder with free space: ?workdir=/path/on/device")
        for name in bundle.upload_order():
            self.put(bundle.path / name, f"{part}/{name}")
        self.exec(f"chmod 755 {q(part + '/' + bundle.loader)} {q(part + '/' + bundle.entry)}", self.cmd_timeout_s)
        got = self._device_sums(part, sorted(want))
        if got != want:
            bad = sorted(n for n in want if got.get(n) != want[n])
            raise self._err(f"the native runner bundle copied to {part!r} does not match its sha256 "
                            f"({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}); it is not used",
                            "check the free space on the device and run again (the bundle is pushed again)")
        base = folder.rsplit("/", 1)[0]
        prefix = folder.rsplit("/", 1)[1].split("-", 1)[0]
        mv = self.exec(f"rm -rf {q(folder)} && mv {q(part)} {q(folder)} && for d in {q(base)}/{prefix}-*; do "
                       f"[ \"$d\" = {q(folder)} ] || rm -rf \"$d\"; done", self.cmd_timeout_s)
        if mv.returncode != 0:
            raise self._err(f"cannot move the checked bundle into {folder!r}: {mv.stderr.strip()[-200:]}",
                            "check the device folder's permissions, or pass ?workdir=")

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
        which = self.choose_runner(model, args.runner)
        if args.profile_path:  # stale from an earlier try: only what this run pulls back may be read
            Path(args.profile_path).unlink(missing_ok=True)
        remote = {p: f"{run}/{name}" for p, name in ((model, model.name), (inputs, "inputs.npz"),
                                                     (eval_npz, "eval.npz")) if p is not None}
        if which == "python":
            remote[self.runner] = f"{run}/{RUNNER_NAME}"
            exe = [self.python, remote[self.runner]]
        elif self.native_runner:
            exe = [self.native_runner]
        else:
            bundle, folder = self.native_bundle()
            exe = bundle.command(folder)
        for local, dest in remote.items():
            self.put(local, dest)
        argv = args.argv(remote[model], inputs and remote[inputs], eval_npz and remote[eval_npz])
        dump = f"{run}/{Path(args.profile_path).name}" if args.profile_path and which == "native" else None
        if dump:
            argv += ["--profile", dump]
        mask = big_core_mask(self.facts()) if self.pin and "taskset" in self.facts().get("tools", ()) else None
        pin = f"taskset {mask} " if mask else ""
        q = shlex.quote
        mark = f"EDGEKD_RUN={run.rsplit('/', 1)[-1]}-{uuid.uuid4().hex[:8]}"
        env = f"{NATIVE_ENV} " if which == "native" else ""
        # The shell stays (no exec) and exits with the runner's status: a runner killed by a signal is then
        # "128 + N" from the shell, which every transport reports (sshd reports a killed session process as an
        # exit-signal that paramiko drops, which would read as a lost connection).
        command = (f"cd {q(run)} && echo $$ > pid && export {mark} && PYTHONUNBUFFERED=1 {env}{pin}"
                   f"{sh_path(exe[0])} {' '.join(q(a) for a in [*exe[1:], *argv])} > out.jsonl 2> err.txt; "
                   "rc=$?; exit $rc")
        outcome = self.exec(command, timeout_s)
        if outcome.timed_out:
            self.exec(_end_all(f"{run}/pid", mark), max(self.cmd_timeout_s, 60))
        code = outcome.returncode
        if 128 < code < 160:  # the shell reports "killed by signal N" as 128 + N
            code = 128 - code
        out, err = self.read_text(f"{run}/out.jsonl"), self.read_text(f"{run}/err.txt")
        if dump and args.profile_path and not outcome.timed_out:
            self.get(dump, Path(args.profile_path))  # parsed on the host by the harness
        return RunnerOutcome(code, out, err, timed_out=outcome.timed_out, wall_s=outcome.wall_s, runner=which)


_SHA256SUM = ("if command -v sha256sum >/dev/null 2>&1; then set -- sha256sum; "
              "elif command -v busybox >/dev/null 2>&1; then set -- busybox sha256sum; "
              "elif command -v toybox >/dev/null 2>&1; then set -- toybox sha256sum; "
              "else echo NO_SHA256SUM; exit 3; fi")


def _backend_of(model: Path) -> str:
    """The runner backend for a model file (``tflite``, ``executorch``, ...) from the format table."""
    try:
        r = guess_row(model)
    except ConfigError:
        r = None
    return r.backend if r is not None else model.suffix.lstrip(".")


def _end_all(pid_file: str, mark: str) -> str:
    """A device shell command that ends a runner and everything it started (see the module docstring, step 5)."""
    q = shlex.quote
    return (f"p=$(cat {q(pid_file)} 2>/dev/null); "
            'if [ -n "$p" ]; then '
            'if read -r l < "/proc/$p/stat" 2>/dev/null; then set -- ${l##*) }; '
            '[ "$3" = "$p" ] && kill -9 -- "-$p" 2>/dev/null; fi; '  # its process group, where it leads one
            'kill -9 "$p" 2>/dev/null; fi; '
            "for e in /proc/[0-9]*/environ; do "
            f'grep -q {q(mark)} "$e" 2>/dev/null && {{ d=${{e%/environ}}; kill -9 "${{d#/proc/}}" 2>/dev/null; }}; '
            "done; true")
