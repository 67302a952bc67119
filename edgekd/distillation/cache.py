"""Teacher cache for offline KD: teacher outputs (logits and tapped features) computed once, reused.

A frozen teacher in eval mode is a pure function of its input, and a train split without random
augmentation (``dataset.deterministic``, or a ``TensorDataset``) gives the same input for sample ``i``
every epoch, so the teacher's outputs for train sample ``i`` never change during
a run: :class:`TeacherCache` computes them in one no-grad pass and the trainer reads
``cache[idx]`` (logits) and ``cache.features(idx)`` (tapped modules) instead of running the
teacher, making a KD step cost about a student-only step.

The cache is keyed by train-sample index plus a :func:`fingerprint` (SHA-256) of the teacher's
weights and buffers and of the train tensors. Reusing a cache object (or its file) with another
teacher or other data recomputes it, so a stale entry is never read. Feature maps can be large
(``n_train × C × H × W`` floats per tap): :func:`cache_bytes` estimates the size first, and the
automatic choice (``cache_teacher=None``) caches only below ``DEFAULT_MAX_BYTES``; build a
:class:`TeacherCache` with a larger ``max_bytes`` yourself to go beyond. ``storage="disk"`` keeps the
arrays in memory-mapped ``.npy`` files (in ``path``, a folder, or a temporary one removed with the cache)
instead of RAM: what an explicit ``cache_teacher=True`` does when the cache would not fit in memory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from edgekd.data.images import ArrayImages, ImageDataset, loader, unwrap
from edgekd.distillation.taps import Taps
from edgekd.errors import ConfigError
from edgekd.files import atomic_path, write_atomic

STAGE = "distill/cache"
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB of cached logits + features
MEMORY_FRACTION = 0.5  # an explicit cache_teacher=True may use up to this share of the RAM available now


def memory_limit() -> int:
    """The most bytes an explicitly requested cache may take: half the memory available now."""
    import psutil

    return int(psutil.virtual_memory().available * MEMORY_FRACTION)


def cacheable(dataset: Dataset | torch.Tensor) -> bool:
    """Whether items of ``dataset`` are fixed tensors (no random augmentation), so caching is exact."""
    return isinstance(dataset, TensorDataset | torch.Tensor) or (
        isinstance(dataset, ImageDataset) and dataset.deterministic)


def disk_limit(folder: str | Path | None = None) -> int:
    """The most bytes a cache on disk may take: half the free space where it would be written."""
    return int(shutil.disk_usage(folder or tempfile.gettempdir()).free * MEMORY_FRACTION)


def as_dataset(data: Dataset | torch.Tensor) -> Dataset:
    """A tensor of inputs (e.g. token ids, no labels) as a one-tensor ``TensorDataset``; a data set as it is."""
    return TensorDataset(data) if isinstance(data, torch.Tensor) else data


def fingerprint(teacher: nn.Module, dataset: Dataset | torch.Tensor) -> str:
    """SHA-256 over the teacher's state (names, dtypes, shapes, bytes) and the data's tensors."""
    dataset = as_dataset(dataset)
    h = hashlib.sha256()
    for name, t in sorted(teacher.state_dict().items()):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    if isinstance(dataset, ImageDataset) and dataset.deterministic:
        h.update(dataset.fingerprint().encode())
        return h.hexdigest()
    if not isinstance(dataset, TensorDataset):
        raise ConfigError(f"cannot fingerprint a {type(dataset).__name__}: only TensorDataset items and splits "
                          "without random augmentation are known to be fixed", stage=STAGE,
                          hint="pass cache_teacher=False for data with random transforms")
    for t in dataset.tensors:
        h.update(f"{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def _run(teacher: nn.Module, x: torch.Tensor, taps: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    was_training = teacher.training
    teacher.eval()
    try:
        with Taps(teacher, taps) as t:
            logits = teacher(x)
            feats = {p: t[p] for p in taps}
    finally:
        teacher.train(was_training)
    for p, f in feats.items():
        if not isinstance(f, torch.Tensor):
            raise ConfigError(f"teacher tap {p!r} returns a {type(f).__name__}, not a tensor; it cannot be cached",
                              stage=STAGE, hint="tap a module that returns one tensor, or pass cache_teacher=False")
    return logits, feats


def cache_bytes(teacher: nn.Module, dataset: Dataset | torch.Tensor, taps: Sequence[str] = (),
                device: str = "cpu") -> int:
    """Bytes a cache of ``teacher``'s logits and ``taps`` over ``dataset`` would hold (from one sample)."""
    dataset = as_dataset(dataset)
    x = next(_inputs(dataset, 1, num_workers=0))[1][:1].to(device)  # one sample: no worker processes
    logits, feats = _run(teacher, x, taps)
    per_item = logits.float().numel() * 4 + sum(f.float().numel() * 4 for f in feats.values())
    return per_item * len(dataset)  # type: ignore[arg-type]


class TeacherCache:
    """Logits (and ``taps`` outputs) of ``teacher`` for every item of ``dataset`` (eval mode), by index.

    ``dataset`` is a ``TensorDataset`` (image splits) or a tensor of inputs (token ids: the teacher's
    "logits" are then its sentence embeddings). Features are kept in ``feature_dtype`` (float16 halves
    a transformer's Q/K/V cache). ``path`` (optional) persists them: a file whose fingerprint matches
    is loaded instead of recomputed; a mismatching one is overwritten. :meth:`ensure` re-validates
    before each run and widens the cache when a run needs taps it lacks. A cache over ``max_bytes``
    is refused with a :class:`~edgekd.errors.ConfigError` before any work. :meth:`held_out` keeps the
    teacher's outputs on val/test inputs too, for runs that score the student against them.
    ``storage="disk"``: the arrays are memory-mapped ``.npy`` files in the folder ``path`` (default: a
    temporary folder, removed when the cache is), read a batch at a time; for caches larger than RAM.
    """

    def __init__(self, teacher: nn.Module, dataset: Dataset | torch.Tensor, *, taps: Sequence[str] = (),
                 batch_size: int = 256, device: str = "cpu", path: str | Path | None = None,
                 max_bytes: int | None = None, feature_dtype: torch.dtype = torch.float32,
                 progress: bool = False, storage: str = "ram", num_workers: int | None = None) -> None:
        if storage not in ("ram", "disk"):
            raise ConfigError(f"storage={storage!r} is not 'ram' or 'disk'", stage=STAGE, hint="pass storage='disk'")
        self.batch_size, self.device, self.max_bytes = batch_size, device, max_bytes
        self.feature_dtype, self.progress, self.storage, self.num_workers = feature_dtype, progress, storage, num_workers
        self.path = Path(path) if path is not None else None
        if storage == "disk" and self.path is None:
            self.path = Path(tempfile.mkdtemp(prefix="edgekd-teacher-cache-"))
            weakref.finalize(self, shutil.rmtree, self.path, True)
        self.fingerprint = ""
        self.taps: list[str] = []
        self.logits = torch.empty(0)
        self.feature_maps: dict[str, torch.Tensor] = {}
        self._held_out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.computed = 0  # how many times the teacher pass ran (tests and logs read it)
        self.ensure(teacher, dataset, taps)

    def ensure(self, teacher: nn.Module, dataset: Dataset | torch.Tensor, taps: Sequence[str] = ()) -> TeacherCache:
        """Recompute (or load from ``path``) unless the cache already fits ``teacher``, ``dataset`` and ``taps``."""
        dataset = as_dataset(dataset)
        fp = fingerprint(teacher, dataset)
        if fp != self.fingerprint:
            self._held_out.clear()  # another teacher or other data: its held-out outputs are stale too
        want = list(dict.fromkeys([*self.taps, *taps])) if fp == self.fingerprint else list(dict.fromkeys(taps))
        if fp == self.fingerprint and set(want) <= set(self.taps):
            return self
        if self._load(fp, want):
            return self
        if self.max_bytes is not None:
            need = cache_bytes(teacher, dataset, want, self.device)
            if need > self.max_bytes:
                raise ConfigError(f"a teacher cache of logits + {want or 'no taps'} over {len(dataset)} samples "  # type: ignore[arg-type]
                                  f"needs {need / 2**20:.0f} MiB, over max_bytes={self.max_bytes / 2**20:.0f} MiB",
                                  stage=STAGE, hint="raise max_bytes, tap smaller modules, or pass cache_teacher=False")
        self.logits, self.feature_maps = self._compute(teacher, dataset, want)
        self.fingerprint, self.taps = fp, want
        self.computed += 1
        if self.path is not None and self.storage == "ram":
            with atomic_path(self.path, stage=STAGE, what="the teacher cache") as tmp:
                torch.save({"fingerprint": fp, "logits": self.logits, "features": self.feature_maps}, tmp)
        elif self.path is not None:  # the index, written last, marks the .npy files complete
            write_atomic(self.path / "index.json", json.dumps({"fingerprint": fp, "taps": want,
                                                                 "feature_dtype": str(self.feature_dtype)}), stage=STAGE,
                         what="the teacher cache index")
        return self

    def _load(self, fp: str, want: list[str]) -> bool:
        """Read a matching cache from ``path`` (a file, or a folder of .npy files on disk); False when none fits."""
        if self.path is None or not self.path.exists():
            return False
        if self.storage == "disk":
            try:  # an unreadable or half-written cache is a miss: it is computed again
                index = self.path / "index.json"
                meta = json.loads(index.read_text()) if index.is_file() else {}
                if (meta.get("fingerprint") != fp or not set(want) <= set(meta.get("taps", []))
                        or meta.get("feature_dtype", str(self.feature_dtype)) != str(self.feature_dtype)):
                    return False
                self.logits = torch.from_numpy(np.load(self.path / "logits.npy", mmap_mode="r+"))
                self.feature_maps = {p: torch.from_numpy(np.load(self.path / f"tap{i}.npy", mmap_mode="r+"))
                                     for i, p in enumerate(meta["taps"])}
            except (OSError, ValueError):  # ValueError: bad JSON or a damaged .npy header
                return False
        else:
            blob = torch.load(self.path, map_location="cpu", weights_only=True)
            if (blob.get("fingerprint") != fp or not set(want) <= set(blob.get("features", {}))
                    or any(f.dtype != self.feature_dtype for f in blob.get("features", {}).values())):
                return False
            self.logits, self.feature_maps = blob["logits"], blob.get("features", {})
        self.fingerprint, self.taps = fp, list(self.feature_maps)
        return True

    def _compute(self, teacher: nn.Module, dataset: Dataset, taps: Sequence[str]
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One no-grad pass of the teacher over ``dataset`` (kept in RAM, or written into memory-mapped files)."""
        from tqdm.auto import tqdm

        n = len(dataset)  # type: ignore[arg-type]
        self._mmaps: list[np.memmap] = []
        logits: torch.Tensor | None = None
        feats: dict[str, torch.Tensor] = {}
        if self.storage == "disk":
            self.path.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
            (self.path / "index.json").unlink(missing_ok=True)  # type: ignore[operator]
        with tqdm(total=n, desc="teacher cache", disable=not self.progress, leave=False, unit="img") as bar:
            for start, x in _inputs(dataset, self.batch_size, self.num_workers):
                out, f = _run(teacher, x.to(self.device), taps)
                outs = {"": out.float().cpu(), **{p: f[p].to(self.feature_dtype).cpu() for p in taps}}
                if logits is None:
                    arrays = {k: self._array(k, taps, (n, *v.shape[1:]), v.dtype) for k, v in outs.items()}
                    logits, feats = arrays.pop(""), arrays
                for k, v in outs.items():
                    (logits if k == "" else feats[k])[start:start + len(v)] = v
                bar.update(len(x))
        for mm in self._mmaps:
            mm.flush()
        return logits if logits is not None else torch.zeros((0, 0)), feats

    def _array(self, key: str, taps: Sequence[str], shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """An empty array for one cached output: a tensor in RAM, or a memory-mapped .npy file on disk."""
        if self.storage == "ram":
            return torch.empty(shape, dtype=dtype)
        name = "logits.npy" if key == "" else f"tap{list(taps).index(key)}.npy"
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        mm = np.lib.format.open_memmap(self.path / name, mode="w+", dtype=np_dtype, shape=shape)  # type: ignore[operator]
        self._mmaps.append(mm)
        return torch.from_numpy(mm)

    def __len__(self) -> int:
        return len(self.logits)

    @torch.no_grad()
    def held_out(self, teacher: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
        """The teacher's outputs on held-out inputs ``x`` (e.g. ``"val"``, ``"test"``), computed on first use
        and kept until the cache is rebuilt; other inputs under the same ``name`` are recomputed."""
        hit = self._held_out.get(name)
        if hit is not None and hit[0].shape == x.shape and torch.equal(hit[0], x):
            return hit[1]
        outs = [_run(teacher, x[i:i + self.batch_size].to(self.device), ())[0].float().cpu()
                for i in range(0, len(x), self.batch_size)]
        out = torch.cat(outs) if outs else torch.zeros((0, 0))
        self._held_out[name] = (x, out)
        return out

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits of the train samples at positions ``idx``."""
        return self.logits[idx.cpu()].to(self.device)

    def features(self, idx: torch.Tensor, taps: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Cached outputs of ``taps`` (default: all cached) for the train samples at ``idx``."""
        names = self.taps if taps is None else list(taps)
        missing = [p for p in names if p not in self.feature_maps]
        if missing:
            raise ConfigError(f"teacher cache holds no {missing}; it has {self.taps or 'logits only'}", stage=STAGE,
                              hint="call cache.ensure(teacher, data, taps=[...]) with every tap the method needs")
        i = idx.cpu()
        return {p: self.feature_maps[p][i].to(self.device) for p in names}


def _inputs(dataset: Dataset, batch_size: int, num_workers: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, x)`` batches of ``dataset``'s inputs in order, never drawing from torch's global generator (so
    cached and live runs stay identical): slices of tensors, or a loader with its own generator."""
    base = unwrap(dataset)
    if isinstance(dataset, TensorDataset):
        x_all = dataset.tensors[0]
        for start in range(0, len(x_all), batch_size):
            yield start, x_all[start:start + batch_size]
    elif isinstance(base, ArrayImages):
        for start in range(0, len(base), batch_size):
            yield start, base.batch(torch.arange(start, min(start + batch_size, len(base))))
    else:  # an undecodable image is a row of zeros here; the trainer drops its batch row anyway
        for i, batch in enumerate(loader(dataset, batch_size, num_workers=num_workers)):
            yield i * batch_size, batch[0]
