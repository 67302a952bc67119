#!/usr/bin/env python3
"""A device-side adb daemon stand-in: the adb transport protocol over TCP, for tests only.

Real ``adb`` clients (Debian's adb 29, the adb 36 that adbutils bundles) reach it with
``adb connect 127.0.0.1:PORT``. It speaks CNXN/OPEN/OKAY/WRTE/CLSE (no AUTH, no checksums) and
serves ``shell:CMD`` (v1, output merged), ``shell,v2,raw:CMD`` (stdout/stderr/exit code framing),
``exec:CMD`` and ``sync:`` (STAT, LIST, SEND, RECV, QUIT). Commands run with ``/bin/sh -c`` on
this machine, with ``--shim DIR`` first on PATH (the tests put ``getprop`` and ``dumpsys`` there).
``--root DIR`` makes DIR the device's ``/``: commands run in ``chroot DIR /bin/sh -c CMD`` and file
paths are taken inside DIR (the bare arm64 root of tests/test_native_aarch64.py, run through qemu-user).

    python adbd.py --port 47001 --model "Pixel Stand-in" [--shim DIR]

Stdlib only; run as a subprocess so a test can kill it (the "device unplugged" fault).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import shutil
import socket
import struct
import subprocess
import threading

CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"  # found now: the daemon's PATH may lack /usr/sbin
A_VERSION, MAX_DATA = 0x01000001, 256 * 1024
CMD = {name: struct.unpack("<I", name.encode())[0] for name in ("CNXN", "OPEN", "OKAY", "WRTE", "CLSE", "AUTH")}


class Conn:
    """One host connection: a reader loop dispatching to stream threads."""

    def __init__(self, sock: socket.socket, banner: bytes, env: dict[str, str], root: str | None = None) -> None:
        self.sock, self.banner, self.env, self.root = sock, banner, env, root
        self.send_lock = threading.Lock()
        self.streams: dict[int, Stream] = {}
        self.next_id = 1

    def send(self, cmd: str, arg0: int, arg1: int, data: bytes = b"") -> None:
        c = CMD[cmd]
        head = struct.pack("<6I", c, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, c ^ 0xFFFFFFFF)
        with self.send_lock:
            self.sock.sendall(head + data)

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("host closed")
            buf += chunk
        return buf

    def serve(self) -> None:
        try:
            while True:
                cmd, arg0, arg1, length, _crc, _magic = struct.unpack("<6I", self._recv_exact(24))
                data = self._recv_exact(length) if length else b""
                self.dispatch(cmd, arg0, arg1, data)
        except (ConnectionError, OSError):
            pass
        finally:
            for s in list(self.streams.values()):
                s.closed_by_host()
            self.sock.close()

    def dispatch(self, cmd: int, arg0: int, arg1: int, data: bytes) -> None:
        if cmd == CMD["CNXN"]:
            self.send("CNXN", A_VERSION, MAX_DATA, self.banner)
        elif cmd == CMD["OPEN"]:
            local, self.next_id = self.next_id, self.next_id + 1
            s = Stream(self, local, arg0, data.rstrip(b"\0").decode())
            self.streams[local] = s
            self.send("OKAY", local, arg0)
            threading.Thread(target=s.run, daemon=True).start()
        elif cmd == CMD["OKAY"] and arg1 in self.streams:
            self.streams[arg1].can_write.set()
        elif cmd == CMD["WRTE"] and arg1 in self.streams:
            self.streams[arg1].inbox.put(data)
            self.send("OKAY", arg1, arg0)
        elif cmd == CMD["CLSE"] and arg1 in self.streams:
            self.streams.pop(arg1).closed_by_host()


class Stream:
    """One service stream; ``write`` waits for the host's OKAY before the next WRTE (flow control)."""

    def __init__(self, conn: Conn, local: int, remote: int, service: str) -> None:
        self.conn, self.local, self.remote, self.service = conn, local, remote, service
        self.inbox: queue.Queue[bytes | None] = queue.Queue()
        self.can_write = threading.Event()
        self.can_write.set()
        self.closed = False
        self.pending = b""
        self.proc: subprocess.Popen[bytes] | None = None

    def write(self, data: bytes) -> None:
        for i in range(0, len(data), MAX_DATA):
            while not self.can_write.wait(0.5):
                if self.closed:
                    return
            if self.closed:
                return
            self.can_write.clear()
            self.conn.send("WRTE", self.local, self.remote, data[i : i + MAX_DATA])

    def read(self, n: int) -> bytes:
        while len(self.pending) < n:
            chunk = self.inbox.get()
            if chunk is None:
                raise EOFError
            self.pending += chunk
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def closed_by_host(self) -> None:
        self.closed = True
        self.inbox.put(None)
        if self.proc and self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.streams.pop(self.local, None)
            self.conn.send("CLSE", self.local, self.remote)

    def run(self) -> None:
        try:
            head, _, cmd = self.service.partition(":")  # e.g. "shell,v2,TERM=xterm,raw" and the command
            name, *opts = head.split(",")
            if name == "shell" and "v2" in opts:
                self.shell_v2(cmd)
            elif name in ("shell", "exec"):
                self.shell_v1(cmd, merge=name == "shell")
            elif name == "sync":
                self.sync()
        except (EOFError, OSError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(OSError):
                self.close()

    def _spawn(self, cmd: str, merge: bool) -> subprocess.Popen[bytes]:
        shell = [CHROOT, self.conn.root, "/bin/sh", "-c", cmd] if self.conn.root else ["/bin/sh", "-c", cmd]
        self.proc = subprocess.Popen(shell, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT if merge else subprocess.PIPE, env=self.conn.env,
                                     cwd="/")
        return self.proc

    def shell_v1(self, cmd: str, merge: bool) -> None:
        p = self._spawn(cmd, merge)
        assert p.stdout is not None
        while chunk := p.stdout.read1(65536):
            self.write(chunk)
        p.wait()

    def shell_v2(self, cmd: str) -> None:
        p = self._spawn(cmd, merge=False)

        def pump(f, ident: int) -> None:  # noqa: ANN001
            while chunk := f.read1(65536):
                self.write(struct.pack("<BI", ident, len(chunk)) + chunk)

        t = threading.Thread(target=pump, args=(p.stderr, 2), daemon=True)
        t.start()
        pump(p.stdout, 1)
        t.join()
        code = p.wait()
        self.write(struct.pack("<BI", 3, 1) + bytes([code & 0xFF if code >= 0 else 128 - code]))

    def sync(self) -> None:
        while True:
            ident, length = struct.unpack("<4sI", self.read(8))
            if ident == b"QUIT":
                return
            path = self.read(length).decode()
            if self.conn.root:  # the device's / is the root folder
                path = os.path.join(self.conn.root, path.lstrip("/"))
            if ident == b"STAT":
                try:
                    st = os.stat(path)
                    self.write(struct.pack("<4s3I", b"STAT", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime)))
                except OSError:
                    self.write(struct.pack("<4s3I", b"STAT", 0, 0, 0))
            elif ident == b"LIST":
                for name in os.listdir(path) if os.path.isdir(path) else []:
                    st = os.lstat(os.path.join(path, name))
                    self.write(struct.pack("<4s4I", b"DENT", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime),
                                           len(name.encode())) + name.encode())
                self.write(struct.pack("<4s4I", b"DONE", 0, 0, 0, 0))
            elif ident == b"SEND":
                self.recv_file(path.rsplit(",", 1)[0])
            elif ident == b"RECV":
                self.send_file(path)

    def _fail(self, msg: str) -> None:
        self.write(struct.pack("<4sI", b"FAIL", len(msg.encode())) + msg.encode())

    def recv_file(self, path: str) -> None:
        error = None
        try:
            os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
            f = open(path, "wb")  # noqa: SIM115
        except OSError as e:
            error, f = f"{e.strerror}: {path}", None
        while True:  # the host sends all DATA before it reads our answer
            ident, length = struct.unpack("<4sI", self.read(8))
            if ident == b"DONE":
                break
            data = self.read(length)
            if f is not None and error is None:
                try:
                    f.write(data)
                except OSError as e:
                    error = f"{e.strerror}: {path}"
        try:
            if f is not None:
                f.close()
        except OSError as e:
            error = error or f"{e.strerror}: {path}"
        if error:
            self._fail(error)
        else:
            self.write(struct.pack("<4sI", b"OKAY", 0))

    def send_file(self, path: str) -> None:
        try:
            with open(path, "rb") as f:
                while chunk := f.read(64 * 1024):
                    self.write(struct.pack("<4sI", b"DATA", len(chunk)) + chunk)
        except OSError as e:
            self._fail(f"{e.strerror}: {path}")
            return
        self.write(struct.pack("<4sI", b"DONE", 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", default="edgekd stand-in")
    ap.add_argument("--shim", default=None, help="folder put first on PATH (getprop, dumpsys)")
    ap.add_argument("--root", default=None, help="the device's / (commands run chrooted there)")
    args = ap.parse_args()
    props = f"ro.product.name=standin;ro.product.model={args.model};ro.product.device=standin;"
    banner = f"device::{props}features=shell_v2,cmd".encode()
    env = {**os.environ}
    if args.shim:
        env["PATH"] = f"{args.shim}:{env.get('PATH', '/usr/bin:/bin')}"
    srv = socket.create_server(("127.0.0.1", args.port))
    print("ready", flush=True)
    while True:
        sock, _ = srv.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=Conn(sock, banner, env, args.root).serve, daemon=True).start()


if __name__ == "__main__":
    main()
