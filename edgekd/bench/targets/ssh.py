"""The ``ssh://user@host[:port]`` target: a Raspberry Pi or any Linux board, over paramiko.

Key authentication only (the SSH agent, ``~/.ssh/id_*``, or ``?key=PATH``). The host key is
checked against ``~/.ssh/known_hosts`` (or ``?known_hosts=PATH``) and an unknown host is refused
unless ``?trust=1`` asks to trust it on first use (the key is then saved); a *changed* key is
always refused. Files travel over SFTP, commands over exec channels, each with a timeout.
Other options (``workdir``, ``python``, ``runner``, ``cool``, ``pin``): see :mod:`.remote`; a board without
Python (or without torch for ``.pte``) runs the native runner bundle (``runner=auto``).

    ssh://pi@raspberrypi.local?cool=60            wait until the SoC is at most 60 C
    ssh://me@127.0.0.1:2222?trust=1&workdir=/tmp/x
"""

from __future__ import annotations

import getpass
import time
from pathlib import Path

from edgekd.bench.targets import TARGETS, RunnerOutcome
from edgekd.bench.targets.remote import RemoteTarget, url_options
from edgekd.errors import TargetError
from edgekd.extras import requires


def _paramiko():  # -> the paramiko module
    with requires("devices", "ssh:// targets"):
        import paramiko
    return paramiko


def _ssh_hint(host: str, port: int) -> str:
    scan = f"ssh-keyscan -p {port} {host} >> ~/.ssh/known_hosts" if port != 22 else f"ssh-keyscan {host} >> ~/.ssh/known_hosts"
    return f"check the host key, then `{scan}`, or add ?trust=1 to trust it on first use"


@TARGETS.register("ssh")
class SSHTarget(RemoteTarget):
    """A Linux board over SSH; one connection per target, reopened after a drop."""

    stage = "bench/ssh"
    default_workdir = "/tmp/edgekd"

    def __init__(self, url: str) -> None:
        netloc, opts = url_options(url)
        super().__init__(url, opts)
        user, _, hostport = netloc.rpartition("@")
        host, _, port = hostport.partition(":") if not hostport.startswith("[") else hostport[1:].partition("]:")
        if not host:
            raise ValueError("an ssh target needs a host: ssh://user@host[:port]")
        self.user, self.host, self.port = user or getpass.getuser(), host.rstrip("]"), int(port or 22)
        self.key = opts.get("key")
        self.known_hosts = Path(opts.get("known_hosts") or Path.home() / ".ssh" / "known_hosts").expanduser()
        self.trust = opts.get("trust", "0").lower() in ("1", "true", "yes", "")
        self._client = None
        self._sftp = None

    # -- connection --------------------------------------------------------------------------------
    def _connect(self):  # -> paramiko.SSHClient
        paramiko = _paramiko()

        if self._client is not None and self._client.get_transport() and self._client.get_transport().is_active():
            return self._client
        self.close()
        client = paramiko.SSHClient()
        if self.known_hosts.is_file():
            client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy() if self.trust else paramiko.RejectPolicy())
        where = f"{self.user}@{self.host}:{self.port}"
        try:
            client.connect(self.host, self.port, username=self.user, key_filename=self.key, timeout=self.cmd_timeout_s,
                           banner_timeout=self.cmd_timeout_s, auth_timeout=self.cmd_timeout_s,
                           look_for_keys=self.key is None, allow_agent=self.key is None)
        except paramiko.BadHostKeyException as e:
            raise self._err(f"host key of {where} CHANGED ({e.key.get_name()}); refusing to connect",
                            f"if the board was re-imaged, remove its old line from {self.known_hosts}") from None
        except paramiko.AuthenticationException as e:
            raise self._err(f"key authentication to {where} failed: {e}",
                            "add your public key to the board's ~/.ssh/authorized_keys, or pass ?key=PATH") from None
        except paramiko.SSHException as e:
            if "known_hosts" in str(e) or "not found in" in str(e):
                raise self._err(f"{where} is not in {self.known_hosts}", _ssh_hint(self.host, self.port)) from None
            raise self._err(f"ssh to {where} failed: {e}", "check that sshd runs on the board") from None
        except OSError as e:
            raise self._err(f"cannot reach {where}: {e}", "check the address, the port and that the board is on") from None
        if self.trust:
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            client.save_host_keys(str(self.known_hosts))
        self._client = client
        return client

    def close(self) -> None:
        """Close the SSH connection (it reopens on the next command)."""
        for obj in (self._sftp, self._client):
            if obj is not None:
                obj.close()
        self._client = self._sftp = None

    def _dropped(self, what: str, e: Exception) -> TargetError:
        self.close()
        return self._err(f"ssh connection dropped during {what}: {e or type(e).__name__}",
                         "check the board's power and network; the run goes on with the next file")

    # -- transport primitives ----------------------------------------------------------------------
    def exec(self, command: str, timeout_s: float) -> RunnerOutcome:
        paramiko = _paramiko()

        client = self._connect()
        t0 = time.perf_counter()
        out, err = bytearray(), bytearray()
        try:
            chan = client.get_transport().open_session(timeout=self.cmd_timeout_s)
            chan.settimeout(1.0)
            chan.exec_command(command)
            deadline = time.monotonic() + timeout_s
            while True:
                got = False
                while chan.recv_ready():
                    out += chan.recv(65536)
                    got = True
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    got = True
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if not chan.get_transport().is_active() or (chan.closed and not chan.exit_status_ready()):
                    raise EOFError("connection closed by the board")
                if time.monotonic() > deadline:
                    chan.close()
                    return RunnerOutcome(-9, out.decode(errors="replace"), err.decode(errors="replace"),
                                         timed_out=True, wall_s=time.perf_counter() - t0)
                if not got:
                    time.sleep(0.01)
            code = chan.recv_exit_status()
            chan.close()
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise self._dropped(f"`{command[:60]}`", e) from None
        return RunnerOutcome(code, out.decode(errors="replace"), err.decode(errors="replace"),
                             wall_s=time.perf_counter() - t0)

    def _sftp_client(self):  # -> paramiko.SFTPClient
        client = self._connect()
        if self._sftp is None:
            self._sftp = client.open_sftp()
            self._sftp.get_channel().settimeout(self.cmd_timeout_s)
        return self._sftp

    def put(self, local: Path, remote: str) -> None:
        paramiko = _paramiko()

        try:
            self._sftp_client().put(str(local), remote)
        except (TimeoutError, paramiko.SSHException, EOFError) as e:
            raise self._dropped(f"upload of {local.name}", e) from None
        except OSError as e:
            raise self.upload_error(local, remote, str(e.strerror or e)) from None

    def get(self, remote: str, local: Path) -> bool:
        paramiko = _paramiko()

        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._sftp_client().get(remote, str(local))
        except FileNotFoundError:
            local.unlink(missing_ok=True)  # paramiko leaves an empty file behind
            return False
        except (paramiko.SSHException, EOFError) as e:
            raise self._dropped(f"download of {remote}", e) from None
        return True

    def read_text(self, remote: str) -> str:
        paramiko = _paramiko()

        try:
            with self._sftp_client().open(remote, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise self._dropped(f"download of {remote}", e) from None
