"""Stand-in devices the target tests start and stop: OpenSSH's sshd and the adbd in ``adbd.py``.

Both listen on 127.0.0.1 at a free high port and run commands on this machine. Their PATH starts
with a "shim" folder (``vcgencmd``, ``getprop``, ``dumpsys`` fakes whose readings the test controls)
and then the venv's ``bin``; URLs name the venv's ``python3`` (root's login shell puts pyenv first).
``stop()`` kills by pid (PID 1 here does not reap, so nothing is left to a broad kill).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest

VENV_BIN = Path(sys.executable).parent
ADBD = Path(__file__).with_name("adbd.py")
RUNNER_SRC = Path(__file__).resolve().parents[2] / "runtimes" / "python" / "edgekd_runner.py"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SHIMS = {
    "vcgencmd": '#!/bin/sh\ncase "$1" in measure_temp) echo "temp=$(cat "{d}/temp")\'C";; '
                'get_throttled) echo "throttled=0x50000";; esac\n',
    "getprop": '#!/bin/sh\ncase "$1" in ro.product.model) echo "Pixel Stand-in";; ro.product.manufacturer) echo edgekd;; '
               "ro.product.cpu.abi) echo arm64-v8a;; ro.build.version.release) echo 14;; *) echo;; esac\n",
    "dumpsys": '#!/bin/sh\n[ "$1" = battery ] && echo "  temperature: $(( $(cat "{d}/temp") * 10 ))"\n',
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def make_shim(folder: Path, temp_c: int = 45) -> Path:
    """Write the fake board tools; ``folder/temp`` holds the temperature they report (integer C)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "temp").write_text(str(temp_c))
    for name, text in SHIMS.items():
        (folder / name).write_text(text.replace("{d}", str(folder)))
        (folder / name).chmod(0o755)
    return folder


def children_of(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
    return out


def kill_tree(pid: int) -> None:
    """Kill a process and its descendants, by pid."""
    for child in children_of(pid):
        kill_tree(child)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class Daemon:
    """A started stand-in: its process, port, shim folder and the target URL options."""

    proc: subprocess.Popen
    port: int
    shim: Path
    url_base: str
    options: dict[str, str] = field(default_factory=dict)

    def url(self, **extra: str) -> str:
        return f"{self.url_base}?{urlencode({**self.options, **extra})}"

    def stop(self) -> None:
        kill_tree(self.proc.pid)
        self.proc.wait(timeout=10)


def start_sshd(root: Path, device_root: Path | None = None, env: dict[str, str] | None = None) -> Daemon:
    """sshd on 127.0.0.1:PORT with a fresh host key, a client key and a known_hosts that trusts it.

    ``device_root``: sshd's ``ChrootDirectory`` (commands and sftp see it as ``/``; it must be owned by root
    and writable by nobody else, path components included); the login shell ``/bin/bash`` there is a
    script handing over to its ``/bin/sh``. ``env``: more variables for every session (besides PATH)."""
    if not Path(SSHD).exists() or not shutil.which("ssh-keygen"):
        pytest.skip("sshd not installed (scripts/system-deps.sh)")
    root.mkdir(parents=True, exist_ok=True)
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    shim = make_shim(root / "shim")
    path = f"{shim}:{VENV_BIN}:/usr/local/bin:/usr/bin:/bin"
    more = "".join(f'environment="{k}={v}",' for k, v in (env or {}).items())
    (root / "authorized_keys").write_text(f'{more}environment="PATH={path}" ' + (root / "client.pub").read_text())
    port = free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host'}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
        f"PidFile {root / 'sshd.pid'}\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin yes\nPermitUserEnvironment yes\nLogLevel ERROR\n"
        "Subsystem sftp internal-sftp\n" + (f"ChrootDirectory {device_root}\n" if device_root else ""))
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation folder sshd insists on
    with open(root / "sshd.log", "wb") as log:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stderr=log)
    _wait_port(port, proc, "sshd")
    host_pub = " ".join((root / "host.pub").read_text().split()[:2])
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    user = os.environ.get("USER") or __import__("getpass").getuser()
    return Daemon(proc, port, shim, f"ssh://{user}@127.0.0.1:{port}",
                  {"key": str(root / "client"), "known_hosts": str(root / "known_hosts"), "timeout": "20",
                   "python": str(VENV_BIN / "python3")})


def start_adbd(root: Path, adb_server_port: int, device_root: Path | None = None,
               env: dict[str, str] | None = None) -> Daemon:
    """The adbd stand-in on 127.0.0.1:PORT; the adb client reaches it as serial 127.0.0.1:PORT.

    ``device_root``: the device's ``/`` (``adbd.py --root``: commands run chrooted, files land inside);
    ``env``: more variables for every command it runs."""
    shim = make_shim(root / "shim")
    port = free_port()
    while 5555 <= port <= 5585:  # adb probes that range as emulators
        port = free_port()
    daemon_env = {**os.environ, **(env or {}), "PATH": f"{shim}:{VENV_BIN}:/usr/bin:/bin"}
    extra = ["--root", str(device_root)] if device_root else []
    proc = subprocess.Popen([sys.executable, str(ADBD), "--port", str(port), "--shim", str(shim), *extra],
                            env=daemon_env,
                            stdout=subprocess.DEVNULL, start_new_session=True)
    _wait_port(port, proc, "adbd stand-in")
    assert os.environ.get("ANDROID_ADB_SERVER_PORT") == str(adb_server_port)
    return Daemon(proc, port, shim, f"adb://127.0.0.1:{port}", {"timeout": "20", "python": str(VENV_BIN / "python3")})


@contextlib.contextmanager
def adb_server_env() -> object:
    """A private ``ANDROID_ADB_SERVER_PORT`` for this test session; the server is killed at the end."""
    from edgekd.bench.targets.adb import adb_path

    old = os.environ.get("ANDROID_ADB_SERVER_PORT")
    port = free_port()
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(port)
    try:
        yield port
    finally:
        subprocess.run([adb_path(), "kill-server"], capture_output=True, timeout=20)
        if old is None:
            os.environ.pop("ANDROID_ADB_SERVER_PORT", None)
        else:
            os.environ["ANDROID_ADB_SERVER_PORT"] = old
