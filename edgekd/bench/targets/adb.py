"""The ``adb://SERIAL`` target: an Android phone (or anything with adbd), through the real adb client.

The client is ``$EDGEKD_ADB``, ``?adb=PATH``, ``adb`` on PATH, or the one ``adbutils`` bundles.
A serial of the form ``host:port`` is ``adb connect``-ed first. Files go to a per-run folder under
``/data/local/tmp/edgekd`` (``?workdir=``) with ``adb push`` and results come back with ``adb pull``;
the device's own ``sh`` runs the command, with every argument quoted by :func:`shlex.quote`.
The Python runner runs where the device has Python (Termux: ``?python=/data/data/com.termux/files/usr/bin/python3``);
otherwise (a stock phone) ``runner=auto`` pushes the self-contained aarch64 bundle once (``make native-aarch64``,
see :mod:`edgekd.bench.runner_bundle`); ``?runner=/data/local/tmp/edgekd_runner`` names a runner already there.
Facts come from ``getprop``, the temperature from ``dumpsys battery`` / the thermal zones, and the
runner is pinned to the big cores with ``taskset`` where the cores differ (``?pin=0`` to turn off).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from edgekd.bench.devices import ANDROID_FACTS, FACTS_SCRIPT
from edgekd.bench.targets import TARGETS, RunnerOutcome
from edgekd.bench.targets.local import _text
from edgekd.bench.targets.remote import RemoteTarget, url_options
from edgekd.errors import TargetError


def adb_path(explicit: str | None = None) -> str:
    """The adb client to use; raises naming how to install one."""
    path = explicit or os.environ.get("EDGEKD_ADB") or shutil.which("adb")
    if path:
        return path
    try:
        import adbutils

        return str(adbutils.adb_path())
    except (ImportError, OSError):
        raise TargetError("no adb client found", stage="bench/adb",
                          hint="apt-get install adb, or pip install adbutils, or set EDGEKD_ADB") from None


def adb_serials(timeout_s: float = 20) -> list[str]:
    """Serials of the devices ``adb devices`` lists as ready (empty where there is no adb)."""
    try:
        p = subprocess.run([adb_path(), "devices"], capture_output=True, text=True, timeout=timeout_s)
    except (TargetError, OSError, subprocess.TimeoutExpired):
        return []
    rows = [line.split() for line in p.stdout.splitlines()[1:]]
    return [r[0] for r in rows if len(r) >= 2 and r[1] == "device"]


@TARGETS.register("adb")
class ADBTarget(RemoteTarget):
    """One adb device; every client call has a timeout and a lost device raises :class:`TargetError`."""

    stage = "bench/adb"
    default_workdir = "/data/local/tmp/edgekd"
    default_pin = True

    def __init__(self, url: str) -> None:
        serial, opts = url_options(url)
        if not serial:
            raise ValueError("an adb target needs a serial: adb://SERIAL (see `adb devices`)")
        super().__init__(url, opts)
        self.serial = serial
        self.adb = adb_path(opts.get("adb"))
        self._connected = False

    @classmethod
    def discover(cls) -> list[str]:
        return [f"adb://{s}" for s in adb_serials()]

    def facts_script(self) -> str:
        return FACTS_SCRIPT + ANDROID_FACTS

    def _adb(self, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        if not self._connected and ":" in self.serial:  # a device over TCP: (re)connect first
            p = subprocess.run([self.adb, "connect", self.serial], capture_output=True, text=True,
                               timeout=self.cmd_timeout_s)
            if "connected" not in p.stdout or "cannot" in p.stdout or "failed" in p.stdout:
                raise self._err(f"adb connect {self.serial} failed: {(p.stdout + p.stderr).strip()}",
                                "check the address and that adbd listens there (adb tcpip PORT)")
        self._connected = True
        try:
            return subprocess.run([self.adb, "-s", self.serial, *args], capture_output=True, text=True,
                                  timeout=timeout_s)
        except OSError as e:
            raise self._err(f"cannot run {self.adb}: {e}", "install adb (apt-get install adb)") from None

    def _lost(self, what: str, detail: str) -> TargetError | None:
        """A :class:`TargetError` when the device is no longer there, else None."""
        try:
            state = subprocess.run([self.adb, "-s", self.serial, "get-state"], capture_output=True, text=True,
                                   timeout=self.cmd_timeout_s).stdout.strip()
        except subprocess.TimeoutExpired:
            state = "unresponsive"
        if state == "device":
            return None
        self._connected = False
        return self._err(f"device lost during {what} (state: {state or 'gone'}): {detail.strip()[-200:]}",
                         "check the cable / adb connection (`adb devices`); the run goes on with the next file")

    # -- transport primitives ----------------------------------------------------------------------
    def exec(self, command: str, timeout_s: float) -> RunnerOutcome:
        t0 = time.perf_counter()
        try:
            p = self._adb("shell", command, timeout_s=timeout_s)
        except subprocess.TimeoutExpired as e:
            return RunnerOutcome(-9, _text(e.stdout), _text(e.stderr), timed_out=True, wall_s=time.perf_counter() - t0)
        if p.returncode != 0 and (lost := self._lost(f"`{command[:60]}`", p.stderr)):
            raise lost
        return RunnerOutcome(p.returncode, p.stdout, p.stderr, wall_s=time.perf_counter() - t0)

    def put(self, local: Path, remote: str) -> None:
        p = self._copy("push", str(local), remote)
        if p.returncode != 0:
            raise self._lost(f"push of {local.name}", p.stderr) or self.upload_error(local, remote, p.stderr or p.stdout)

    def read_text(self, remote: str) -> str:
        with tempfile.TemporaryDirectory() as tmp:
            dest = Path(tmp) / "pulled"
            p = self._copy("pull", remote, str(dest))
            if p.returncode != 0:
                if lost := self._lost(f"pull of {remote}", p.stderr):
                    raise lost
                return ""
            return dest.read_text(errors="replace")

    def get(self, remote: str, local: Path) -> bool:
        local.parent.mkdir(parents=True, exist_ok=True)
        p = self._copy("pull", remote, str(local))
        if p.returncode != 0:
            if lost := self._lost(f"pull of {remote}", p.stderr):
                raise lost
            return False
        return True

    def _copy(self, verb: str, src: str, dst: str) -> subprocess.CompletedProcess[str]:
        try:
            return self._adb(verb, src, dst, timeout_s=self.cmd_timeout_s)
        except subprocess.TimeoutExpired:
            raise self._lost(f"adb {verb} of {src}", "timed out") or self._err(
                f"adb {verb} of {src} timed out after {self.cmd_timeout_s:g}s", "raise ?timeout=") from None

