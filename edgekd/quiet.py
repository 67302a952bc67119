"""Keep library noise off the user's terminal: ``with quiet(verbose=False): ...``.

torch.export floods FutureWarnings (copyreg, pytree), TensorFlow/LiteRT print absl and oneDNN
lines from C++, XNNPACK's cpuinfo prints "Failed to open midr" on some ARM systems. None of it is
for the user. Inside :func:`quiet`:

- file descriptor 2 (what C/C++ libraries write to) goes to a log file;
- ``sys.stderr`` becomes a router: writes from tqdm (progress bars) reach the terminal, everything else
  (pybind11's redirected C++ streams, logging handlers, stray prints) goes to the log; edgekd's own
  messages go to :func:`terminal`;
- Python warnings and the ``absl``/``tensorflow``/``torch``/``onnx2tf`` loggers below ERROR go to the log;
- ``TF_CPP_MIN_LOG_LEVEL``/``GLOG_minloglevel`` are set (where unset) before TensorFlow loads.

``verbose=True`` (``edgekd --verbose ...`` or ``EDGEKD_VERBOSE=1``) changes nothing: every line shows.
When the block fails, the log is kept and its path is named; otherwise it is removed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgekd.formats import runtime_modules

# the runner backends' runtimes (from the format table), the converters' and a few more
NOISY_LOGGERS = ("absl", *runtime_modules(), "torch._export", "torch.export", "onnx2tf", "onnx", "jax",
                 "litert_torch", "ai_edge_torch", "matplotlib", "h5py")
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "3", "TF_CPP_MIN_VLOG_LEVEL": "0",
             "ABSL_MIN_LOG_LEVEL": "3", "KMP_WARNINGS": "0"}


_TERMINAL: list[Any] = []  # the terminal's stderr while a quiet() block runs


def terminal() -> Any:
    """Where edgekd's own messages for the user go: the real stderr, even inside :func:`quiet`."""
    return _TERMINAL[-1] if _TERMINAL else sys.stderr


class _Router(io.TextIOBase):
    """``sys.stderr`` inside :func:`quiet`: progress bars (tqdm) to the terminal, the rest to the log."""

    def __init__(self, terminal: Any, log: Any) -> None:
        self._terminal, self._log = terminal, log

    def write(self, text: str) -> int:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        out = self._terminal if caller.startswith("tqdm") else self._log
        out.write(text)
        return len(text)

    def flush(self) -> None:
        for f in (self._terminal, self._log):
            with contextlib.suppress(OSError, ValueError):
                f.flush()

    def isatty(self) -> bool:
        return bool(getattr(self._terminal, "isatty", lambda: False)())

    def fileno(self) -> int:
        return 2  # the log (fd 2 points there inside the block)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


def verbose_from_env() -> bool:
    return os.environ.get("EDGEKD_VERBOSE", "").lower() in ("1", "true", "yes", "on")


class QuietLog:
    """Where the silenced output went (``path``) and whether to keep it."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.keep = False

    def text(self) -> str:
        try:
            return self.path.read_text(errors="replace") if self.path else ""
        except OSError:
            return ""


def _fd_of(stream: object) -> int | None:
    try:
        return stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


@contextlib.contextmanager
def quiet(verbose: bool = False) -> Iterator[QuietLog]:
    """Send library noise to a log file for the duration of the block (see the module docstring)."""
    if verbose or verbose_from_env():
        yield QuietLog(None)
        return
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    fd, name = tempfile.mkstemp(prefix="edgekd-", suffix=".log")
    log = QuietLog(Path(name))
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    saved_fd = os.dup(2)
    terminal = io.TextIOWrapper(os.fdopen(os.dup(saved_fd), "wb", buffering=0), write_through=True,
                                encoding=getattr(sys.stderr, "encoding", None) or "utf-8", errors="replace")
    logfile = os.fdopen(fd, "w", buffering=1, errors="replace")
    old_stderr, old_show = sys.stderr, warnings.showwarning
    levels = {n: logging.getLogger(n).level for n in NOISY_LOGGERS}
    os.dup2(fd, 2)

    def to_log(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        logfile.write(warnings.formatwarning(message, category, filename, lineno, line))

    try:
        if _fd_of(old_stderr) == 2:  # the real stderr (a captured one, as under pytest, stays as it is)
            sys.stderr = _Router(terminal, logfile)
            _TERMINAL.append(terminal)
        else:
            _TERMINAL.append(old_stderr)
        warnings.showwarning = to_log
        for n in NOISY_LOGGERS:
            logging.getLogger(n).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # every warning reaches showwarning, i.e. the log, once per place
            warnings.showwarning = to_log
            yield log
    except BaseException:
        log.keep = True
        raise
    finally:
        with contextlib.suppress(OSError, ValueError):
            terminal.flush()
        sys.stderr, warnings.showwarning = old_stderr, old_show
        _TERMINAL.pop()
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        with contextlib.suppress(OSError):
            logfile.close()
        if not log.keep:
            with contextlib.suppress(OSError):
                os.unlink(name)
