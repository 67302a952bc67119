"""Splits, normalisation, calibration sampling and loaders shared by every data set.

A data set reader (see :mod:`edgekd.data.sources`) returns :class:`RawData`: images as float32
NCHW in [0, 1] and int64 labels, with an official test split when the data set has one.
:func:`load` turns that into :class:`DataSplits`: deterministic stratified train/val/test splits
by seed, normalised with the *train* split's per-channel mean and std.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from edgekd.errors import ConfigError
from edgekd.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.bundle import Preprocessing


@dataclass
class RawData:
    """What a reader returns: ``x`` float32 (N, C, H, W) in [0, 1], ``y`` int64 (N,)."""

    x: np.ndarray
    y: np.ndarray
    labels: list[str]
    x_test: np.ndarray | None = None  # the official test split, when the data set has one
    y_test: np.ndarray | None = None
    pixel_scale: float = 1.0 / 255.0  # raw pixel value -> [0, 1]
    channel_order: str = "GRAY"


DatasetReader = Callable[..., RawData]  # reader(root: Path | None) -> RawData
DATASETS: Registry[DatasetReader] = Registry("dataset")


def register_dataset(name: str) -> Callable[[DatasetReader], DatasetReader]:
    """Register a reader ``fn(root: Path | None) -> RawData`` under ``name``."""
    return DATASETS.register(name)


def list_datasets() -> list[str]:
    """Names :func:`load` accepts."""
    return DATASETS.names()


@dataclass
class DataSplits:
    """Train/val/test splits of one data set, already normalised (``(x - mean) / std``)."""

    name: str
    train: TensorDataset  # items (x float32 C×H×W, y int64)
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]  # (height, width)
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale, from the train split
    std: tuple[float, ...]
    labels: list[str] = field(default_factory=list)
    pixel_scale: float = 1.0 / 255.0
    channel_order: str = "GRAY"

    def preprocessing(self) -> Preprocessing:
        """What an app must do to a raw image before the model (written into bundles)."""
        from edgekd.bundle import Preprocessing

        return Preprocessing(size=self.image_size, mean=self.mean, std=self.std,
                             channel_order=self.channel_order, scale=self.pixel_scale)

    def __repr__(self) -> str:
        return (f"DataSplits({self.name!r}, train={len(self.train)}, val={len(self.val)}, "
                f"test={len(self.test)}, classes={self.num_classes}, "
                f"shape={self.in_channels}x{self.image_size[0]}x{self.image_size[1]})")


class WithIndices(Dataset):
    """Wrap a data set so items are ``(x, y, idx)``; contrastive losses (CRD) need the index.

    Items without a label (a tensor of token ids, a one-tensor ``TensorDataset``) get ``y = -1``.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor | int, int]:
        item = self.dataset[i]
        if isinstance(item, (tuple, list)):
            return item[0], (item[1] if len(item) > 1 else -1), i
        return item, -1, i


def _quotas(counts: np.ndarray, frac: float) -> np.ndarray:
    """Per-class sizes summing to ``round(total * frac)`` (largest remainders get the extras)."""
    want = counts * frac
    out = np.floor(want).astype(np.int64)
    extra = int(round(counts.sum() * frac)) - int(out.sum())
    out[np.argsort(-(want - out), kind="stable")[:max(extra, 0)]] += 1
    return np.minimum(out, counts)


def _stratified_split(y: np.ndarray, fractions: list[float], rng: np.random.Generator) -> list[np.ndarray]:
    """Split indices class by class: one index array per fraction, plus the rest (sorted)."""
    classes, counts = np.unique(y, return_counts=True)
    quotas = [_quotas(counts, f) for f in fractions]
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c_i, c in enumerate(classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for k, q in enumerate(quotas):
            parts[k].append(idx[start:start + q[c_i]])
            start += q[c_i]
        parts[-1].append(idx[start:])
    return [np.sort(np.concatenate(p)) for p in parts]


def _limit(x: np.ndarray, y: np.ndarray, limit: int | None, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    if limit is None or limit >= len(y):
        return x, y
    keep = _stratified_split(y, [limit / len(y)], rng)[0]
    return x[keep], y[keep]


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name}={value} is outside [0, 1)", stage="data",
                          hint=f"pass a fraction such as {name}=0.1")


def load(name: str, *, root: str | Path | None = None, seed: int = 0, val_fraction: float = 0.1,
         test_fraction: float = 0.2, limit: int | None = None) -> DataSplits:
    """Load data set ``name`` (see :func:`list_datasets`) as normalised, seeded splits.

    ``root`` is the folder to read from (each reader has a default). Data sets with an official
    test split keep it and ignore ``test_fraction``; val is carved from train. ``limit`` keeps at
    most that many examples of each source split (stratified), for quick runs.
    """
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(f"val_fraction + test_fraction = {val_fraction + test_fraction} leaves no training data",
                          stage="data", hint="keep their sum below 1, e.g. 0.1 and 0.2")
    raw = DATASETS.get(name)(Path(root).expanduser() if root is not None else None)
    rng = np.random.default_rng(seed)
    x, y = _limit(raw.x, raw.y, limit, rng)
    if raw.x_test is not None and raw.y_test is not None:
        x_test, y_test = _limit(raw.x_test, raw.y_test, limit, rng)
        val_idx, train_idx = _stratified_split(y, [val_fraction], rng)
    else:
        test_idx, val_idx, train_idx = _stratified_split(y, [test_fraction, val_fraction], rng)
        x_test, y_test = x[test_idx], y[test_idx]
    x_train = x[train_idx]
    mean = x_train.mean(axis=(0, 2, 3))
    std = np.maximum(x_train.std(axis=(0, 2, 3)), 1e-6)

    def tensors(xs: np.ndarray, ys: np.ndarray) -> TensorDataset:
        xn = (xs - mean[None, :, None, None]) / std[None, :, None, None]
        return TensorDataset(torch.from_numpy(np.ascontiguousarray(xn, dtype=np.float32)),
                             torch.from_numpy(ys.astype(np.int64)))

    return DataSplits(
        name=name, train=tensors(x_train, y[train_idx]), val=tensors(x[val_idx], y[val_idx]),
        test=tensors(x_test, y_test), num_classes=len(raw.labels), in_channels=int(x.shape[1]),
        image_size=(int(x.shape[2]), int(x.shape[3])),
        mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std), labels=list(raw.labels),
        pixel_scale=raw.pixel_scale, channel_order=raw.channel_order)


def targets(dataset: Dataset) -> torch.Tensor:
    """The labels of ``dataset`` as one int64 tensor (``-1``: unlabelled, :func:`few_labels`)."""
    if isinstance(dataset, WithIndices):
        return targets(dataset.dataset)
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1]
    return torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))])  # type: ignore[arg-type]


def as_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole data set as two tensors ``(x: N×C×H×W float32, y: N int64)``."""
    if isinstance(dataset, WithIndices):
        return as_tensors(dataset.dataset)
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0], dataset.tensors[1]
    return torch.stack([dataset[i][0] for i in range(len(dataset))]), targets(dataset)  # type: ignore[arg-type]


def calibration_sample(dataset: Dataset, n: int = 128, seed: int = 0) -> torch.Tensor:
    """``n`` inputs (stacked, N×C×H×W) drawn evenly across classes, for int8 calibration/parity."""
    y = targets(dataset).numpy()
    n = min(n, len(y))
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    order = [idx[k] for k in range(max(map(len, per_class))) for idx in per_class if k < len(idx)]
    return torch.stack([dataset[int(i)][0] for i in order[:n]])


def loaders(splits: DataSplits, batch_size: int = 128, seed: int = 0, *, with_indices: bool = False
            ) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train (shuffled by ``seed``), val and test loaders; ``with_indices`` yields ``(x, y, idx)``."""
    def wrap(d: Dataset) -> Dataset:
        return WithIndices(d) if with_indices else d

    gen = torch.Generator().manual_seed(seed)
    return (DataLoader(wrap(splits.train), batch_size=batch_size, shuffle=True, generator=gen),
            DataLoader(wrap(splits.val), batch_size=batch_size),
            DataLoader(wrap(splits.test), batch_size=batch_size))


def few_labels(splits: DataSplits, n: int, seed: int = 0, *, transfer: bool = True) -> DataSplits:
    """The same splits with only ``n`` train labels kept (stratified by class, drawn by ``seed``).

    ``transfer=True`` keeps every train image and marks the others unlabelled (``y = -1``): the
    *transfer set* of Hinton et al. (2015), where a KD term sees all images and the cross-entropy
    only the labelled ones (:class:`~edgekd.distillation.losses.ce.CrossEntropyLoss` skips ``-1``).
    ``transfer=False`` keeps only the ``n`` labelled images. Val and test are unchanged.
    """
    x, y = splits.train.tensors  # type: ignore[attr-defined]
    if not 0 < n <= len(y):
        raise ConfigError(f"few_labels n={n} is outside 1..{len(y)} (the train split's size)", stage="data",
                          hint=f"pass n between 1 and {len(y)}")
    keep = torch.from_numpy(_stratified_split(y.numpy(), [n / len(y)], np.random.default_rng(seed))[0])
    if transfer:
        masked = torch.full_like(y, -1)
        masked[keep] = y[keep]
        train = TensorDataset(x, masked)
    else:
        train = TensorDataset(x[keep], y[keep])
    return dataclasses.replace(splits, train=train)
