"""Splits, normalisation, calibration sampling and loaders shared by every data set.

:func:`load` is the one way in: a registered data set (a reader returns :class:`RawData`, pixels held in
memory once), ``folder:PATH`` or ``csv:FILE`` (image files, :mod:`edgekd.data.folder`). It returns
:class:`DataSplits`: deterministic stratified train/val/test splits by seed, each a lazy
:class:`~edgekd.data.images.ImageDataset` of indices whose items are normalised with the *train* split's
per-channel mean and std. Any map-style dataset joins through :func:`edgekd.data.folder.from_datasets`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from edgekd.data.images import ImageDataset, collect, spread
from edgekd.data.transforms import Augment, parse_augment
from edgekd.errors import ConfigError
from edgekd.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.bundle import Preprocessing


@dataclass
class RawData:
    """What a reader returns: ``x`` (N, C, H, W) raw pixels — uint8 values that ``pixel_scale`` maps to
    [0, 1], or float32 already in [0, 1] — and ``y`` int64 (N,). ``mirror_safe=False`` for data sets where a
    mirror image changes the label (digits): no default augmentation flips them."""

    x: np.ndarray
    y: np.ndarray
    labels: list[str]
    x_test: np.ndarray | None = None  # the official test split, when the data set has one
    y_test: np.ndarray | None = None
    pixel_scale: float = 1.0 / 255.0  # raw pixel value -> [0, 1]
    channel_order: str = "GRAY"
    mirror_safe: bool = True


DatasetReader = Callable[..., RawData]  # reader(root: Path | None) -> RawData
DATASETS: Registry[DatasetReader] = Registry("dataset")
SOURCES = ("folder", "csv")  # load("folder:PATH") / load("csv:FILE"): image files on disk (edgekd.data.folder)


def register_dataset(name: str) -> Callable[[DatasetReader], DatasetReader]:
    """Register a reader ``fn(root: Path | None) -> RawData`` under ``name``."""
    return DATASETS.register(name)


def list_datasets() -> list[str]:
    """Names :func:`load` accepts (and ``folder:PATH``, ``csv:FILE``)."""
    return DATASETS.names()


@dataclass
class DataSplits:
    """Train/val/test splits of one data set: lazy :class:`~edgekd.data.images.ImageDataset` views whose items are
    normalised (``(x * scale - mean) / std``) model inputs; ``train`` may be augmented, val and test never are."""

    name: str
    train: Dataset  # items (x float32 C×H×W, y int64); an ImageDataset for every data set load() returns
    val: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]  # (height, width) of the model input
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale, from the train split
    std: tuple[float, ...]
    labels: list[str] = field(default_factory=list)
    pixel_scale: float = 1.0 / 255.0
    channel_order: str = "GRAY"
    notes: list[str] = field(default_factory=list)  # what loading skipped, and why

    def preprocessing(self) -> Preprocessing:
        """What an app must do to a raw image before the model (written into bundles)."""
        from edgekd.data.images import unwrap

        base = unwrap(self.train)
        if isinstance(base, ImageDataset):
            return base.preprocessing
        from edgekd.bundle import Preprocessing

        return Preprocessing(size=self.image_size, mean=self.mean, std=self.std,
                             channel_order=self.channel_order, scale=self.pixel_scale)

    def with_augment(self, augment: str | Augment | None) -> DataSplits:
        """These splits with the train split's augmentation replaced (``"crop+flip"``, ``"shift:2"``, ``"none"``)."""
        train = self.train
        if not isinstance(train, ImageDataset):
            raise ConfigError(f"the train split of {self.name} is a {type(train).__name__}; it cannot be re-augmented",
                              stage="data", hint="augment inside your own dataset, or pass an edgekd split")
        aug = parse_augment(augment, default="none", mirror_safe=train.mirror_safe, source=self.name)
        return dataclasses.replace(self, train=train.with_augment(aug))

    def __repr__(self) -> str:
        return (f"DataSplits({self.name!r}, train={len(self.train)}, val={len(self.val)}, "  # type: ignore[arg-type]
                f"test={len(self.test)}, classes={self.num_classes}, "  # type: ignore[arg-type]
                f"shape={self.in_channels}x{self.image_size[0]}x{self.image_size[1]})")


class WithIndices(Dataset):
    """Wrap a data set so items are ``(x, y, idx)``; contrastive losses (CRD) need the index.

    Items without a label (a tensor of token ids, a one-tensor ``TensorDataset``) get ``y = -1``. A key
    ``(idx, seed)`` passes the seed on (it drives that item's augmentation).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    @staticmethod
    def _triple(item: Any, i: int) -> tuple[Any, Any, int]:
        if isinstance(item, (tuple, list)):
            return item[0], (item[1] if len(item) > 1 else -1), i
        return item, -1, i

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor | int, int]:
        i = int(key[0]) if isinstance(key, tuple) else int(key)
        item = self.dataset[key if isinstance(self.dataset, ImageDataset) else i]
        return self._triple(item, i)

    def __getitems__(self, keys: list[Any]) -> list[tuple[Any, Any, int]]:
        many = getattr(self.dataset, "__getitems__", None)
        if many is None or not isinstance(self.dataset, ImageDataset):
            return [self[k] for k in keys]
        idx = [int(k[0]) if isinstance(k, tuple) else int(k) for k in keys]
        return [self._triple(item, i) for item, i in zip(many(keys), idx, strict=True)]


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


def _limit(y: np.ndarray, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """Positions of at most ``limit`` items of ``y`` (stratified), sorted; all of them without a limit."""
    if limit is None or limit >= len(y):
        return np.arange(len(y))
    return _stratified_split(y, [limit / len(y)], rng)[0]


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name}={value} is outside [0, 1)", stage="data",
                          hint=f"pass a fraction such as {name}=0.1")


@dataclass(frozen=True)
class LoadOptions:
    """:func:`load`'s options, handed to the sources."""

    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    limit: int | None = None
    image_size: tuple[int, int] | None = None
    resize_to: int | None = None
    augment: str | Augment | None = None
    channels: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    stats_samples: int = 512
    num_workers: int | None = None


def _size(value: int | Sequence[int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    size = (int(value), int(value)) if isinstance(value, (int, np.integer)) else tuple(int(v) for v in value)
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"image_size={value!r} is not a positive int or (height, width)", stage="data",
                          hint="e.g. image_size=224")
    return size  # type: ignore[return-value]


def split_indices(y: np.ndarray, has_test: bool, opts: LoadOptions, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(train, val, test) positions of ``y`` by a seeded stratified split (test None when the source has one)."""
    if has_test:
        val, train = _stratified_split(y, [opts.val_fraction], rng)
        return train, val, None
    test, val, train = _stratified_split(y, [opts.test_fraction, opts.val_fraction], rng)
    return train, val, test


def splits_of(name: str, train: ImageDataset, val: Dataset, test: Dataset, notes: Sequence[str] = ()) -> DataSplits:
    """:class:`DataSplits` around three splits, its fields read from the train split's preprocessing."""
    pre = train.preprocessing
    return DataSplits(name=name, train=train, val=val, test=test, num_classes=len(train.classes),
                      in_channels=train.shape[0], image_size=(int(pre.size[0]), int(pre.size[1])),
                      mean=tuple(pre.mean), std=tuple(pre.std), labels=list(train.classes), pixel_scale=pre.scale,
                      channel_order=pre.channel_order, notes=list(notes))


def targets(dataset: Dataset) -> torch.Tensor:
    """The labels of ``dataset`` as one int64 tensor (``-1``: unlabelled, :func:`few_labels`), without decoding
    an image where the dataset knows them (``.targets``, a ``TensorDataset``)."""
    if isinstance(dataset, WithIndices):
        return targets(dataset.dataset)
    if isinstance(dataset, ImageDataset):
        return dataset.targets
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1]
    known = getattr(dataset, "targets", None)
    if known is not None:
        return torch.as_tensor(known, dtype=torch.int64)
    if hasattr(dataset, "dataset") and len(dataset.dataset) == len(dataset):  # type: ignore[attr-defined,arg-type]
        return targets(dataset.dataset)  # type: ignore[attr-defined]  (a wrapper that keeps labels: Augmented)
    return torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))])  # type: ignore[arg-type]


def as_tensors(dataset: Dataset, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The data set (its first ``n`` items) as two tensors ``(x: N×C×H×W float32, y: N int64)``, without
    augmentation; items that cannot be decoded are left out, with a message."""
    if isinstance(dataset, WithIndices):
        return as_tensors(dataset.dataset, n)
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0][:n], dataset.tensors[1][:n]
    count = len(dataset) if n is None else min(n, len(dataset))  # type: ignore[arg-type]
    return collect(dataset, list(range(count)))


def sample(dataset: Dataset, n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` items ``(x, y)`` drawn evenly across classes, without augmentation: parity and eval samples."""
    return collect(dataset, spread(targets(dataset).numpy(), n, seed))


def calibration_sample(dataset: Dataset, n: int = 128, seed: int = 0) -> torch.Tensor:
    """``n`` inputs (stacked, N×C×H×W) drawn evenly across classes, for int8 calibration/parity."""
    return sample(dataset, n, seed)[0]


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
    y = targets(splits.train)
    if not 0 < n <= len(y):
        raise ConfigError(f"few_labels n={n} is outside 1..{len(y)} (the train split's size)", stage="data",
                          hint=f"pass n between 1 and {len(y)}")
    keep = torch.from_numpy(_stratified_split(y.numpy(), [n / len(y)], np.random.default_rng(seed))[0])
    masked = torch.full_like(y, -1)
    masked[keep] = y[keep]
    train = splits.train
    if isinstance(train, ImageDataset):
        train = train.with_targets(masked) if transfer else train.subset(keep)
    elif isinstance(train, TensorDataset):
        x = train.tensors[0]
        train = TensorDataset(x, masked) if transfer else TensorDataset(x[keep], y[keep])
    else:
        raise ConfigError(f"few_labels needs an edgekd split or a TensorDataset, not a {type(train).__name__}",
                          stage="data", hint="load the data with edgekd.data.load or data.from_datasets")
    return dataclasses.replace(splits, train=train)
