"""Teacher cache for offline KD: teacher outputs (logits and tapped features) computed once, reused.

A frozen teacher in eval mode is a pure function of its input, and edgekd's train splits are
augmentation-free tensors, so the teacher's outputs for train sample ``i`` never change during
a run: :class:`TeacherCache` computes them in one no-grad pass and the trainer reads
``cache[idx]`` (logits) and ``cache.features(idx)`` (tapped modules) instead of running the
teacher, making a KD step cost about a student-only step.

The cache is keyed by train-sample index plus a :func:`fingerprint` (SHA-256) of the teacher's
weights and buffers and of the train tensors. Reusing a cache object (or its file) with another
teacher or other data recomputes it, so a stale entry is never read. Feature maps can be large
(``n_train × C × H × W`` floats per tap): :func:`cache_bytes` estimates the size first, and the
automatic choice (``cache_teacher=None``) caches only below ``DEFAULT_MAX_BYTES``; build a
:class:`TeacherCache` with a larger ``max_bytes`` yourself to go beyond.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from edgekd.distillation.taps import Taps
from edgekd.errors import ConfigError
from edgekd.files import atomic_path

STAGE = "distill/cache"
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB of cached logits + features
MEMORY_FRACTION = 0.5  # an explicit cache_teacher=True may use up to this share of the RAM available now


def memory_limit() -> int:
    """The most bytes an explicitly requested cache may take: half the memory available now."""
    import psutil

    return int(psutil.virtual_memory().available * MEMORY_FRACTION)


def cacheable(dataset: Dataset | torch.Tensor) -> bool:
    """Whether items of ``dataset`` are fixed tensors (no random augmentation), so caching is exact."""
    return isinstance(dataset, TensorDataset | torch.Tensor)


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
    if not isinstance(dataset, TensorDataset):
        raise ConfigError(f"cannot fingerprint a {type(dataset).__name__}: only TensorDataset items are "
                          "known to be augmentation-free", stage=STAGE,
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
    x = dataset[0][0].unsqueeze(0).to(device)
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
    """

    def __init__(self, teacher: nn.Module, dataset: Dataset | torch.Tensor, *, taps: Sequence[str] = (),
                 batch_size: int = 256, device: str = "cpu", path: str | Path | None = None,
                 max_bytes: int | None = None, feature_dtype: torch.dtype = torch.float32,
                 progress: bool = False) -> None:
        self.batch_size, self.device, self.max_bytes = batch_size, device, max_bytes
        self.feature_dtype, self.progress = feature_dtype, progress
        self.path = Path(path) if path is not None else None
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
        if self.path is not None and self.path.exists():
            blob = torch.load(self.path, map_location="cpu", weights_only=True)
            if (blob.get("fingerprint") == fp and set(want) <= set(blob.get("features", {}))
                    and all(f.dtype == self.feature_dtype for f in blob.get("features", {}).values())):
                self.fingerprint, self.logits, self.feature_maps = fp, blob["logits"], blob.get("features", {})
                self.taps = list(self.feature_maps)
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
        if self.path is not None:
            with atomic_path(self.path, stage=STAGE, what="the teacher cache") as tmp:
                torch.save({"fingerprint": fp, "logits": self.logits, "features": self.feature_maps}, tmp)
        return self

    def _compute(self, teacher: nn.Module, dataset: Dataset, taps: Sequence[str]
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # Slices, not a DataLoader: iterating one draws from the global RNG, which would shift every
        # later random draw (e.g. adapter init) and make cached and live runs differ.
        from tqdm.auto import tqdm

        x_all = dataset.tensors[0]  # type: ignore[attr-defined]  (cacheable: a TensorDataset)
        logits, feats = [], {p: [] for p in taps}
        for start in tqdm(range(0, len(x_all), self.batch_size), desc="teacher cache", disable=not self.progress,
                          leave=False):
            out, f = _run(teacher, x_all[start:start + self.batch_size].to(self.device), taps)
            logits.append(out.float().cpu())
            for p in taps:
                feats[p].append(f[p].to(self.feature_dtype).cpu())
        return torch.cat(logits), {p: torch.cat(v) for p, v in feats.items()}

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
