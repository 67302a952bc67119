"""Writing files: nothing half-written under a final name, and a full disk or an unwritable folder is one
clear :class:`~edgekd.errors.OutputError` naming the stage, the file and the fix.

* :func:`write_atomic` writes bytes or text to a temporary name in the same folder, flushes and fsyncs
  it, then ``os.replace``-s it over the final name (atomic on POSIX); on any failure the temporary file
  is removed and the final name is untouched (an older file there stays as it was).
* :func:`atomic_path` does the same for writers that want a file name (``torch.save``, ``np.savez``,
  ExecuTorch's and LiteRT's writers, matplotlib's ``savefig``): the block writes the yielded temporary
  path, and the rename happens only when the block succeeds.
* :func:`make_folder` is ``mkdir -p`` with the same error.
* :func:`output_error` turns an ``OSError`` into that error: ENOSPC/EDQUOT (disk full, with the free
  space), EROFS (read-only), EACCES/EPERM (no permission), EFBIG (over the file size limit).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from edgekd.errors import OutputError

DEFAULT_FIX = "write to another folder (--out DIR)"


def _free(folder: Path) -> str:
    for f in (folder, *folder.parents):
        with contextlib.suppress(OSError):
            if f.exists():
                return f"{shutil.disk_usage(f).free / 1e6:.1f} MB free"
    return "free space unknown"


def output_error(e: OSError, path: str | Path, *, stage: str, what: str = "", fix: str = DEFAULT_FIX) -> OutputError:
    """The :class:`OutputError` for ``e`` raised while writing ``path`` (``what`` names it: "the .pte file")."""
    path = Path(path)
    if e.filename and Path(str(e.filename)).name != path.name and not str(e.filename).startswith(str(path.parent)):
        path = Path(str(e.filename))  # the writer failed elsewhere (its own temporary folder, say): name that
    folder = path if path.is_dir() else path.parent
    thing = f"{what} {path}" if what else str(path)
    code = e.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"cannot write {thing}: the disk holding {folder} is full ({_free(folder)})",
                           stage=stage, hint=f"free space there, or {fix}")
    if code == errno.EROFS:
        return OutputError(f"cannot write {thing}: {folder} is on a read-only file system", stage=stage,
                           hint=fix)
    if code in (errno.EACCES, errno.EPERM):
        return OutputError(f"cannot write {thing}: no permission to write in {folder}", stage=stage,
                           hint=f"{fix}, or make {folder} writable")
    if code == errno.EFBIG:
        return OutputError(f"cannot write {thing}: it is larger than this process may write (file size limit, "
                           "`ulimit -f`)", stage=stage, hint=f"raise the limit (ulimit -f unlimited), or {fix}")
    return OutputError(f"cannot write {thing}: {e.strerror or e}", stage=stage, hint=fix)


_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def output_oserror_in(e: BaseException | None) -> OSError | None:
    """The OSError of a full disk / read-only or unwritable folder / size limit in ``e`` or its causes, else None
    (converters wrap the OSError of their writer in their own exception types)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _OUTPUT_ERRNOS:
            return e
        e = e.__cause__ or e.__context__
    return None


def make_folder(folder: str | Path, *, stage: str, fix: str = DEFAULT_FIX) -> Path:
    """``mkdir -p folder``; an OSError becomes an :class:`OutputError` naming the folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(e, folder / ".", stage=stage, what="the folder", fix=fix) from None
    return folder


def _tmp_name(path: Path) -> Path:
    # a hidden name in the same folder (same file system, so the rename is atomic); the suffix is kept,
    # because some writers (np.savez, savefig, torch.export.save) act on it
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | Path, *, stage: str, what: str = "", fix: str = DEFAULT_FIX) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it is fsynced and renamed to ``path``.

    Any failure (an OSError from the writer included) removes the temporary file; an OSError becomes an
    :class:`OutputError`."""
    path = Path(path)
    make_folder(path.parent, stage=stage, fix=fix)
    tmp = _tmp_name(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise output_error(e, path, stage=stage, what=what, fix=fix) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_atomic(path: str | Path, data: bytes | str, *, stage: str, what: str = "", fix: str = DEFAULT_FIX) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; see the module docstring."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    with atomic_path(path, stage=stage, what=what, fix=fix) as tmp, open(tmp, "wb") as f:
        f.write(raw)
    return path
