"""Teacher-logit cache for offline KD: teacher outputs computed once, reused every epoch.

A frozen teacher in eval mode is a pure function of its input, and edgekd's train splits are
augmentation-free tensors, so the teacher's logits for train sample ``i`` never change during
a run: :class:`TeacherCache` computes them in one no-grad pass and the trainer reads
``cache[idx]`` instead of running the teacher, making a KD step cost about a student-only step.

The cache is keyed by train-sample index plus a :func:`fingerprint` (SHA-256) of the teacher's
weights and buffers and of the train tensors. Reusing a cache object (or its file) with another
teacher or other data recomputes it, so a stale entry is never read. It covers logits only: a
method that taps teacher features still runs the teacher each step.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from edgekd.errors import ConfigError

STAGE = "distill/cache"


def cacheable(dataset: Dataset) -> bool:
    """Whether items of ``dataset`` are fixed tensors (no random augmentation), so caching is exact."""
    return isinstance(dataset, TensorDataset)


def fingerprint(teacher: nn.Module, dataset: Dataset) -> str:
    """SHA-256 over the teacher's state (names, dtypes, shapes, bytes) and the data's tensors."""
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


class TeacherCache:
    """Logits of ``teacher`` for every item of ``dataset`` (eval mode), looked up by index.

    ``path`` (optional) persists them: a file whose fingerprint matches is loaded instead of
    recomputed; a mismatching one is overwritten. :meth:`ensure` re-validates before each run.
    """

    def __init__(self, teacher: nn.Module, dataset: Dataset, *, batch_size: int = 256, device: str = "cpu",
                 path: str | Path | None = None) -> None:
        self.batch_size, self.device = batch_size, device
        self.path = Path(path) if path is not None else None
        self.fingerprint = ""
        self.logits = torch.empty(0)
        self.computed = 0  # how many times the teacher pass ran (tests and logs read it)
        self.ensure(teacher, dataset)

    def ensure(self, teacher: nn.Module, dataset: Dataset) -> TeacherCache:
        """Recompute (or load from ``path``) unless the cache already fits ``teacher`` and ``dataset``."""
        fp = fingerprint(teacher, dataset)
        if fp == self.fingerprint:
            return self
        if self.path is not None and self.path.exists():
            blob = torch.load(self.path, map_location=self.device, weights_only=True)
            if blob.get("fingerprint") == fp:
                self.fingerprint, self.logits = fp, blob["logits"]
                return self
        self.logits = self._compute(teacher, dataset)
        self.fingerprint = fp
        self.computed += 1
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"fingerprint": fp, "logits": self.logits}, self.path)
        return self

    @torch.no_grad()
    def _compute(self, teacher: nn.Module, dataset: Dataset) -> torch.Tensor:
        was_training = teacher.training
        teacher.eval()
        try:
            out = [teacher(batch[0].to(self.device)).float()
                   for batch in DataLoader(dataset, batch_size=self.batch_size)]
        finally:
            teacher.train(was_training)
        return torch.cat(out)

    def __len__(self) -> int:
        return len(self.logits)

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits of the train samples at positions ``idx``."""
        return self.logits[idx.to(self.logits.device)]
