"""Export every candidate untrained, before any training: the files to measure, and which ops fall outside XNNPACK.

Each (architecture, format, precision) is one :func:`edgekd.export` call (``keep_going``: a converter
error is recorded, not raised) into its own bundle folder. The file's coverage is what its runtime will
run outside the XNNPACK delegate: for ``.pte`` the ops ExecuTorch left to its portable kernels
(``extra["partition"]``, recorded at lowering), for ``.tflite`` the nodes LiteRT does not hand to its
XNNPACK delegate (:func:`edgekd.convert.tflite.xnnpack_delegation`). Such a candidate would run those
ops in slow reference kernels: it is flagged, or dropped with ``strict_delegation``.

Untrained weights are made representative first (:func:`for_latency`): every BatchNorm scale is set to 1,
because a zero-initialised scale (MobileNetV2's residual blocks start as identities) lets a converter
fold whole branches away, and the file would be faster than the trained student it stands for.

The outcome is stored in the latency table's coverage part (keyed by architecture, input shape,
format, precision and the converters' versions), so a later search exports only what is new. A
marker is stored before each export: an export that takes the process down (a converter segfault,
the OOM killer) leaves it, and the next run tries that file once more and then records it as failed,
so a search resumed after such a crash goes on past it.
"""

from __future__ import annotations

import copy
import os
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.bundle import Bundle
from edgekd.errors import EdgekdError
from edgekd.fit.space import Arch
from edgekd.fit.store import CoverageKey, LatencyStore

STAGE = "fit/coverage"
TOOLCHAIN = ("torch", "executorch", "litert-torch", "ai-edge-litert", "torchao")
CRASH_TRIES = 2  # a file whose export took the process down this many times is recorded as failed


def toolchain() -> str:
    """The converters' versions (part of a coverage key)."""
    found = []
    for d in TOOLCHAIN:
        try:
            found.append(f"{d}=={metadata.version(d)}")
        except metadata.PackageNotFoundError:
            continue
    return " ".join(found)


@dataclass
class FileCoverage:
    """One untrained file: exported or not (``error``), its size, XNNPACK partitions and the ops outside them."""

    format: str
    precision: str
    error: str | None = None
    bytes: int = 0
    partitions: int = 0
    outside: dict[str, int] = field(default_factory=dict)
    file_key: str | None = None  # ModelFile.key inside its bundle

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def fallback(self) -> bool:
        """Exported, but some ops run outside XNNPACK."""
        return self.ok and bool(self.outside)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> FileCoverage:
        return FileCoverage(**{k: d[k] for k in ("format", "precision", "error", "bytes", "partitions", "outside",
                                                 "file_key") if k in d})


def for_latency(model: nn.Module) -> nn.Module:
    """A copy whose BatchNorm scales are 1 (see the module docstring); other weights stay as initialised."""
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        for m in out.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                m.weight.fill_(1.0)
    return out


def _coverage_of(bundle: Bundle, fmt: str, precision: str) -> FileCoverage:
    from edgekd.convert.tflite import xnnpack_delegation

    failed = bundle.extra.get("failed") or []
    if failed or not bundle.files:
        err = failed[0]["error"] if failed else "no file written"
        return FileCoverage(fmt, precision, error=err)
    f = bundle.files[0]
    if fmt == "pte":
        part = f.extra.get("partition") or {}
        parts, outside = int(part.get("partitions", 0)), dict(part.get("non_delegated") or {})
    else:
        deleg = xnnpack_delegation(bundle.path_of(f))
        parts, outside = int(deleg["partitions"]), dict(deleg["outside"])
    return FileCoverage(fmt, precision, bytes=f.bytes, partitions=parts, outside=outside, file_key=f.key)


class Exporter:
    """Untrained exports of candidates into ``root/<arch hash>/<format>_<precision>/``, via the table."""

    def __init__(self, store: LatencyStore, root: Path, *, verbose: bool = False) -> None:
        self.store, self.root, self.verbose = store, Path(root), verbose
        self.toolchain = toolchain()
        self.exported = 0  # export calls made (files written or failed)
        self.reused = 0  # coverage records taken from the table

    def key(self, arch: Arch, shape: tuple[int, ...], fmt: str, precision: str) -> CoverageKey:
        return CoverageKey(arch.spec, tuple(shape), fmt, precision, self.toolchain)

    def folder(self, arch: Arch, fmt: str, precision: str) -> Path:
        return self.root / CoverageKey(arch.spec, (), "", "", "").id[:12] / f"{fmt}_{precision}"

    def known(self, arch: Arch, shape: tuple[int, ...], fmt: str, precision: str) -> FileCoverage | None:
        """The stored outcome, or None when the file must be exported (again)."""
        rec = self.store.coverage(self.key(arch, shape, fmt, precision))
        if rec is None:
            return None
        if rec.get("state") == "started":  # an earlier export never returned: it took its process down
            if int(rec.get("tries", 1)) < CRASH_TRIES:
                return None
            return FileCoverage(fmt, precision, error=f"the converter took the process down {rec.get('tries')} times "
                                "(a crash or a kill, no Python error) while exporting this file")
        self.reused += 1
        return FileCoverage.from_dict(rec)

    def bundle(self, arch: Arch, fmt: str, precision: str) -> Bundle | None:
        """The bundle this run (or an earlier one in the same folder) wrote, if its file is there."""
        folder = self.folder(arch, fmt, precision)
        try:
            b = Bundle.load(folder)
        except (EdgekdError, OSError, ValueError, KeyError):
            return None
        return b if b.files and all(b.path_of(f).is_file() for f in b.files) else None

    def export(self, arch: Arch, model: nn.Module, shape: tuple[int, ...], fmt: str, precision: str,
               calibration: torch.Tensor) -> tuple[Bundle | None, FileCoverage]:
        """Export one file untrained and record its coverage in the table (see the module docstring).
        ``calibration``: real images at the candidate's input size (the last 4 are the parity inputs)."""
        from edgekd.convert import export

        key = self.key(arch, shape, fmt, precision)
        prev = self.store.coverage(key) or {}
        tries = int(prev.get("tries", 0)) + 1 if prev.get("state") == "started" else 1
        self.store.put_coverage(key, {"state": "started", "tries": tries, "pid": os.getpid(), "host": platform.node()})
        self.exported += 1
        calib = calibration
        try:
            bundle = export(for_latency(model), (torch.zeros(shape),), formats=(fmt,), precision=(precision,),
                            calibration=calib[:-4] if precision == "int8" else None, parity_data=calib[-4:],
                            out_dir=self.folder(arch, fmt, precision), model_name=arch.name, check_parity=False,
                            keep_going=True, progress=False, verbose=self.verbose)
            cov = _coverage_of(bundle, fmt, precision)
        except EdgekdError as e:  # the model cannot even be traced or run at this shape: every file fails
            bundle, cov = None, FileCoverage(fmt, precision, error=str(e).splitlines()[0][:300])
        except KeyboardInterrupt:  # Ctrl-C is not a crash: forget the marker, the file is exported next time
            self.store.delete_coverage(key)
            raise
        except Exception as e:  # noqa: BLE001  (a converter's own exception type: recorded, the search goes on)
            bundle, cov = None, FileCoverage(fmt, precision, error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
        self.store.put_coverage(key, cov.to_dict())
        return (bundle if cov.ok else None), cov
