"""``load(name)``: the one way to a data set's splits, whatever its source (see :mod:`edgekd.data.core`).

Registered readers (:mod:`edgekd.data.sources`) are held in memory as one 8-bit pixel store per source
split, shared by every split as index views (:class:`~edgekd.data.images.ArrayImages`); image files go
through :mod:`edgekd.data.folder`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from edgekd.bundle import Preprocessing
from edgekd.data.core import (
    DATASETS,
    SOURCES,
    DataSplits,
    LoadOptions,
    RawData,
    _check_fraction,
    _limit,
    _size,
    split_indices,
    splits_of,
)
from edgekd.data.folder import from_datasets, load_files
from edgekd.data.images import ArrayImages
from edgekd.data.transforms import Augment, parse_augment, with_stats
from edgekd.errors import ConfigError


def load(name: str, *, root: str | Path | None = None, seed: int = 0, val_fraction: float = 0.1,
         test_fraction: float = 0.2, limit: int | None = None, image_size: int | Sequence[int] | None = None,
         resize_to: int | None = None, augment: str | Augment | None = None, channels: str | None = None,
         mean: Sequence[float] | None = None, std: Sequence[float] | None = None, stats_samples: int = 512,
         num_workers: int | None = None) -> DataSplits:
    """Load data set ``name`` as seeded splits of lazy datasets (:class:`~edgekd.data.images.ImageDataset`).

    ``name`` is a registered data set (:func:`list_datasets`, held in memory), ``folder:PATH`` (one
    sub-folder per class, torchvision's ImageFolder layout; ``train/``, ``val/``, ``test/`` sub-folders
    are used when present) or ``csv:FILE`` (a path and a label per row): see :mod:`edgekd.data.folder`.
    Splits are stratified by ``seed`` and hold indices, never copies. Data sets with an official test split
    keep it and ignore ``test_fraction``; val is carved from train. ``limit`` keeps at most that many items
    of each source split (stratified), for quick runs.

    ``image_size`` (an int or (h, w)) is the model input: files default to 224, the built-in sets to their
    own size (another size resizes them on the fly). Files are resized so their shorter side is ``resize_to``
    (default ``image_size``), then centre-cropped. ``augment`` is the train split's random augmentation:
    ``"crop+flip"`` (RandomResizedCrop + mirror, the default for files), ``"crop"``, ``"flip"``, ``"shift:2"``,
    ``"none"`` (the default for the built-in sets); the default never mirrors digits. ``channels`` ("RGB" or
    "GRAY") is the files' declared channel order (default RGB). ``mean``/``std`` default to the train split's
    (all of it in memory; ``stats_samples`` images of a folder).
    """
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(f"val_fraction + test_fraction = {val_fraction + test_fraction} leaves no training data",
                          stage="data", hint="keep their sum below 1, e.g. 0.1 and 0.2")
    opts = LoadOptions(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, limit=limit,
                       image_size=_size(image_size), resize_to=resize_to, augment=augment, channels=channels,
                       mean=None if mean is None else tuple(float(m) for m in mean),
                       std=None if std is None else tuple(float(v) for v in std), stats_samples=stats_samples,
                       num_workers=num_workers)
    kind, sep, rest = name.partition(":")
    if sep and kind in SOURCES:
        return load_files(kind, rest, opts)
    return _in_memory(name, DATASETS.get(name)(Path(root).expanduser() if root is not None else None), opts)


def _channel_stats(store: torch.Tensor, rows: np.ndarray, scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``store[rows] * scale`` in float64, a chunk at a time (no full float copy)."""
    c = store.shape[1]
    total, sq, n = np.zeros(c), np.zeros(c), 0
    for start in range(0, len(rows), 4096):
        chunk = store[torch.from_numpy(rows[start:start + 4096])].to(torch.float64) * scale
        total += chunk.sum(dim=(0, 2, 3)).numpy()
        sq += (chunk * chunk).sum(dim=(0, 2, 3)).numpy()
        n += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / max(n, 1)
    std = np.sqrt(np.maximum(sq / max(n, 1) - mean * mean, 0.0))
    return tuple(float(m) for m in mean), tuple(float(v) for v in std)


def _store(x: np.ndarray) -> tuple[torch.Tensor, bool]:
    """A reader's pixels as a tensor (no copy when already contiguous) and whether they are 8-bit raw values."""
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x)), True
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), False


def _in_memory(name: str, raw: RawData, opts: LoadOptions) -> DataSplits:
    """A registered (in-memory) data set: one pixel store per source split, splits as index views into it."""
    rng = np.random.default_rng(opts.seed)
    store, raw8 = _store(raw.x)
    store_scale = raw.pixel_scale if raw8 else 1.0
    y = torch.from_numpy(np.asarray(raw.y, dtype=np.int64))
    keep = _limit(raw.y, opts.limit, rng)
    has_test = raw.x_test is not None and raw.y_test is not None
    if has_test:
        test_store, _ = _store(raw.x_test)  # type: ignore[arg-type]
        y_test = torch.from_numpy(np.asarray(raw.y_test, dtype=np.int64))
        keep_test = _limit(raw.y_test, opts.limit, rng)  # type: ignore[arg-type]
    train, val, test = split_indices(raw.y[keep], has_test, opts, rng)
    train, val = keep[train], keep[val]
    if not has_test:
        test_store, y_test, keep_test = store, y, keep[test]  # type: ignore[index]
    mean, std = _channel_stats(store, train, store_scale)
    native = (int(store.shape[2]), int(store.shape[3]))
    pre = Preprocessing(size=opts.image_size or native, mean=mean, std=std, channel_order=raw.channel_order,
                        scale=raw.pixel_scale)
    if opts.mean is not None or opts.std is not None:
        pre = with_stats(pre, opts.mean or mean, opts.std or std)
    else:
        pre = with_stats(pre, mean, std)
    kw = dict(classes=raw.labels, preprocessing=pre, store_scale=store_scale, mirror_safe=raw.mirror_safe, name=name)
    aug = parse_augment(opts.augment, default="none", mirror_safe=raw.mirror_safe, source=name)
    tr = ArrayImages(store, torch.from_numpy(train), y[train], augment=aug, **kw)  # type: ignore[arg-type]
    va = ArrayImages(store, torch.from_numpy(val), y[val], **kw)  # type: ignore[arg-type]
    te = ArrayImages(test_store, torch.from_numpy(keep_test), y_test[keep_test], **kw)  # type: ignore[arg-type]
    return splits_of(name, tr, va, te)


def as_splits(data: Any, *, seed: int = 0) -> DataSplits:
    """``data`` as :class:`DataSplits`: already splits; a name or ``folder:``/``csv:`` spec (:func:`~edgekd.data.load`);
    a map-style dataset or a (train, val[, test]) tuple of them (:func:`from_datasets`)."""
    if isinstance(data, DataSplits):
        return data
    if isinstance(data, str):
        return load(data, seed=seed)
    if isinstance(data, Dataset):
        return from_datasets(data, seed=seed)
    if isinstance(data, (tuple, list)) and 1 <= len(data) <= 3 and all(isinstance(d, Dataset) for d in data):
        return from_datasets(*data, seed=seed)
    raise ConfigError(f"data is a {type(data).__name__}; expected DataSplits, a data set name, 'folder:PATH', "
                      "a map-style Dataset of (image, label) or a (train, val[, test]) tuple of them",
                      stage="data", hint="e.g. edgekd.data.load('folder:photos/', image_size=224)")
