"""The accuracy proxy: a short distillation of each candidate on or near the measured front.

The schedule (:class:`Schedule`, stated in the report) is the full run's method and loop, cut short:
``epochs`` (default 1) of :func:`edgekd.distill` from the same teacher, AdamW with its default
learning rate and a cosine schedule over those epochs, one seed, optionally on the first ``limit``
train images. Candidates are ranked by the student's **validation** accuracy (the test split is
reported, never used to choose). All proxies share one teacher cache per input resolution.

A candidate at another input resolution trains on the images resized to it (bilinear, antialiased:
:func:`at_resolution`), while the teacher keeps seeing its own size (:class:`Resized` scales the
student-sized input back up before the teacher), as a deployed student would get camera frames
resized to its input.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from edgekd.data.core import DataSplits
from edgekd.distillation.cache import TeacherCache
from edgekd.fit.space import Arch

STAGE = "fit/proxy"


@dataclass(frozen=True)
class Schedule:
    """How a proxy (or the final run, with more epochs) trains: ``distill(teacher, student, data, method,
    epochs=…, batch_size=…, lr=…, seed=…, **options)`` on all train images or the first ``limit``."""

    epochs: int = 1
    method: str = "ce+kd"
    batch_size: int = 128
    lr: float | None = None
    seed: int = 0
    limit: int | None = None
    options: tuple[tuple[str, Any], ...] = ()  # method options, e.g. (("kd_T", 4.0),)

    def describe(self, n_train: int) -> str:
        opts = "".join(f", {k}={v}" for k, v in self.options)
        n = min(self.limit or n_train, n_train)
        return (f"{self.epochs} epoch(s) of {self.method}{opts} from the teacher, AdamW (lr "
                f"{self.lr if self.lr is not None else 'default 2e-3'}, cosine), batch {self.batch_size}, "
                f"seed {self.seed}, on {n:,} train images; ranked by validation accuracy")

    def kwargs(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "seed": self.seed,
                **dict(self.options)}


def resize_images(x: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """``x`` (N, C, H, W) at ``size`` (bilinear, antialiased); None or the same size: ``x`` itself."""
    if size is None or tuple(x.shape[-2:]) == tuple(size):
        return x
    with torch.no_grad():
        return F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False).contiguous()


def _resize(ds: TensorDataset, size: tuple[int, int]) -> TensorDataset:
    x, *rest = ds.tensors
    return ds if tuple(x.shape[-2:]) == tuple(size) else TensorDataset(resize_images(x, size), *rest)


def at_resolution(splits: DataSplits, size: tuple[int, int] | None) -> DataSplits:
    """``splits`` with every image resized to ``size`` (a copy; None or the same size: ``splits`` itself)."""
    if size is None or tuple(size) == tuple(splits.image_size):
        return splits
    return dataclasses.replace(splits, train=_resize(splits.train, size), val=_resize(splits.val, size),
                               test=_resize(splits.test, size), image_size=tuple(size))


class Resized(nn.Module):
    """``teacher(resize(x, size))``: the teacher at its own input size while the student sees another."""

    def __init__(self, teacher: nn.Module, size: tuple[int, int]) -> None:
        super().__init__()
        self.teacher, self.size = teacher, tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return self.teacher(x)


def _limited(splits: DataSplits, limit: int | None) -> DataSplits:
    if limit is None or limit >= len(splits.train):
        return splits
    return dataclasses.replace(splits, train=TensorDataset(*(t[:limit] for t in splits.train.tensors)))


@dataclass
class ProxyResult:
    """One proxy run: the candidate, its accuracies and how long it took."""

    arch: str  # Arch.spec
    name: str
    val_acc: float
    test_acc: float
    epochs: int
    seconds: float
    seed: int


class Proxies:
    """Runs proxies for one teacher and data set, sharing a teacher cache per resolution."""

    def __init__(self, teacher: nn.Module, splits: DataSplits, schedule: Schedule, *, progress: bool = False) -> None:
        self.teacher, self.splits, self.schedule, self.progress = teacher, splits, schedule, progress
        self._data: dict[tuple[int, int] | None, tuple[DataSplits, nn.Module, TeacherCache | None]] = {}

    def data(self, arch: Arch) -> tuple[DataSplits, nn.Module, TeacherCache | None]:
        """(data at the candidate's resolution, the teacher for it, its teacher cache)."""
        size = arch.resolution
        if size not in self._data:
            splits = _limited(at_resolution(self.splits, size), self.schedule.limit)
            teacher = self.teacher if size is None else Resized(self.teacher, tuple(self.splits.image_size))
            from edgekd.distillation import build_objective

            needs = build_objective(self.schedule.method, **dict(self.schedule.options)).needs_teacher
            cache = TeacherCache(teacher, splits.train) if needs else None
            self._data[size] = (splits, teacher, cache)
        return self._data[size]

    def run(self, arch: Arch, student: nn.Module) -> ProxyResult:
        from edgekd.distillation import distill

        splits, teacher, cache = self.data(arch)
        t0 = time.perf_counter()
        r = distill(teacher if cache is not None else None, student, splits, self.schedule.method,
                    cache_teacher=cache if cache is not None else False, progress=self.progress,
                    **self.schedule.kwargs())
        return ProxyResult(arch.spec, arch.name, float(r.metrics["best_val_acc"]), float(r.metrics["test_acc"]),
                           self.schedule.epochs, time.perf_counter() - t0, self.schedule.seed)
