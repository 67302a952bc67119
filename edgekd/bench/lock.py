"""A timing lock: timing runs on one shared machine take turns instead of slowing each other down.

Several people (or CI jobs) benchmarking on one machine at once measure each other: two runners
on two cores each see the other's load as their own latency. A timing lock is an ordinary file
that every timing run holds an exclusive ``flock`` on while it measures (the same lock the shell's
``flock FILE command`` takes, so scripts and ``edgekd`` runs share one queue). Work that is not
timed (training, exporting) does not take it, so a long demo holds the lock only for its
benchmark stage. The lock is advisory: it orders the runs that ask for it, nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edgekd.errors import ConfigError
from edgekd.quiet import terminal


@dataclass
class Held:
    """What taking the lock cost: ``waited_s`` seconds queued behind other timing runs (0 when free)."""

    path: Path | None
    waited_s: float = 0.0


@contextmanager
def timing_lock(path: str | Path | None, *, stage: str = "bench", say: bool = True) -> Iterator[Held]:
    """Hold an exclusive ``flock`` on ``path`` for the ``with`` block (``None``: no lock, nothing waits).

    Blocks while another process holds it; ``say``: print one line to the terminal (stderr, even
    inside :func:`edgekd.quiet.quiet`) when it has to wait.
    A lock file that cannot be opened is a :class:`ConfigError` naming it; the lock is released when
    the block ends, however it ends (and by the kernel if the process dies).
    """
    if path is None:
        yield Held(None)
        return
    try:
        import fcntl
    except ImportError as e:  # pragma: no cover - Windows
        raise ConfigError("a timing lock needs flock, which this platform lacks", stage=stage,
                          hint="leave out --timing-lock") from e
    lock = Path(path)
    try:
        f = open(lock, "a+b")  # noqa: SIM115 - held across the yield
    except OSError as e:
        raise ConfigError(f"cannot open the timing lock {lock}: {e.strerror or e}", stage=stage,
                          hint="pass a lock file in a folder you can write to (e.g. /tmp/edgekd-timing.lock)") from e
    with f:
        t0 = time.perf_counter()
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if say:
                print(f"{stage}: waiting for the timing lock {lock} (another timing run holds it)",
                      file=terminal(), flush=True)
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        held = Held(lock, time.perf_counter() - t0)
        try:
            yield held
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
