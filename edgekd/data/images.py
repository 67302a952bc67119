"""Lazy map-style image datasets: one split of a data set, decoded and transformed per item.

Every split :func:`edgekd.data.load` returns is an :class:`ImageDataset`: items are ``(x, y)`` with ``x``
the normalised float32 (C, H, W) model input and ``y`` an int64 label (``-1``: unlabelled, see
:func:`~edgekd.data.few_labels`). It knows, without decoding anything, its ``targets``, its ``classes``
and its ``preprocessing`` (the eval transform, recorded in bundles), plus the train-time ``augment``.
A split is a set of *indices* into a store that is never copied: :meth:`ImageDataset.subset` and
:meth:`ImageDataset.with_targets` make new views.

- :class:`ArrayImages`: pixels held in memory once (uint8 where the source is 8-bit), shared by the
  splits: the built-in sets (digits, MNIST-5k, Fashion-MNIST, CIFAR).
- :class:`FileImages`: one image file per item, decoded in the ``DataLoader`` worker that asks for it
  (``folder:`` and ``csv:`` sources, :mod:`edgekd.data.folder`).
- :class:`DatasetImages`: any map-style ``torch.utils.data.Dataset`` of ``(image, label)`` a user passes.

An item whose file cannot be decoded (truncated, not an image, unreadable) comes back as zeros with
label :data:`BAD` instead of killing the worker; the trainer and :func:`~edgekd.eval.classification.evaluate`
drop such rows and report each file, with the count, at the end of the epoch (:func:`report_bad`).
Items may be asked for as ``(index, seed)``: the seed drives that item's augmentation
(:func:`~edgekd.data.transforms.item_seed`).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from edgekd.bundle import Preprocessing
from edgekd.data.decode import BadImage, decode
from edgekd.data.transforms import Augment, eval_transform, train_transform

BAD = -2  # the label of an item that could not be decoded (dropped by the trainer and evaluate)
MAX_WORKERS = 8
FORK_UNSAFE = ("jax", "tensorflow")
SMALL = 512  # items read in the calling process by collect()  # loaded (by a converter) → workers are spawned, not forked


class ImageDataset(Dataset):
    """One lazy split (see the module docstring). Subclasses implement :meth:`_pixels` and :meth:`source`."""

    in_memory = False  # items are slices of tensors in RAM (no worker processes needed)

    def __init__(self, index: torch.Tensor, targets: torch.Tensor, classes: Sequence[str], preprocessing: Preprocessing,
                 *, augment: Augment | None = None, mirror_safe: bool = True, name: str = "") -> None:
        self.index = torch.as_tensor(index, dtype=torch.int64)
        self.targets = torch.as_tensor(targets, dtype=torch.int64)
        if len(self.index) != len(self.targets):
            raise ValueError(f"{len(self.index)} items but {len(self.targets)} targets")
        self.classes = list(classes)
        self.preprocessing = preprocessing
        self.augment = augment if augment is not None and augment.active else None
        self.mirror_safe = mirror_safe
        self.name = name

    # -- what it is -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index)

    @property
    def deterministic(self) -> bool:
        """Whether item ``i`` is the same tensor every time (no random augmentation): a teacher cache is exact."""
        return self.augment is None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of an item."""
        pre = self.preprocessing
        return (1 if pre.channel_order == "GRAY" else 3, int(pre.size[0]), int(pre.size[1]))

    def source(self, i: int) -> str:
        """Where item ``i`` comes from (a path, or ``name[position]``), for messages."""
        return f"{self.name}[{int(self.index[i])}]"

    def fingerprint(self) -> str:
        """SHA-256 of what the items are: the store, the indices, the labels and the preprocessing."""
        h = hashlib.sha256(self._store_digest().encode())
        for t in (self.index, self.targets):
            h.update(t.numpy().tobytes())
        h.update(repr(self.preprocessing).encode() + repr(self.augment).encode())
        return h.hexdigest()

    def _store_digest(self) -> str:
        raise NotImplementedError

    # -- views --------------------------------------------------------------------------------------
    def replace(self, **changes: Any) -> ImageDataset:
        """A shallow copy with attributes replaced (the store is shared)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        for k, v in changes.items():
            setattr(new, k, v)
        if "augment" in changes and changes["augment"] is not None and not changes["augment"].active:
            new.augment = None
        return new

    def subset(self, positions: Sequence[int] | torch.Tensor | np.ndarray) -> ImageDataset:
        """The items at ``positions`` (of this split), as a new split over the same store."""
        pos = torch.as_tensor(np.asarray(positions), dtype=torch.int64)
        return self.replace(index=self.index[pos], targets=self.targets[pos])

    def with_targets(self, targets: torch.Tensor) -> ImageDataset:
        """The same items with other labels (e.g. ``-1`` for unlabelled ones)."""
        if len(targets) != len(self):
            raise ValueError(f"{len(targets)} targets for {len(self)} items")
        return self.replace(targets=torch.as_tensor(targets, dtype=torch.int64))

    def with_augment(self, augment: Augment | None) -> ImageDataset:
        return self.replace(augment=augment)

    # -- items --------------------------------------------------------------------------------------
    def _pixels(self, i: int) -> torch.Tensor:
        """The stored pixels of item ``i`` (C, H, W): uint8, or float in ``store_scale`` units."""
        raise NotImplementedError

    store_scale: float | None = None  # the scale of stored values (None: the preprocessing's)

    def _transform(self, pixels: torch.Tensor, seed: int | None) -> torch.Tensor:
        if self.augment is None:
            return eval_transform(pixels, self.preprocessing, self.store_scale)
        return train_transform(pixels, self.preprocessing, self.augment, seed, self.store_scale)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        i, seed = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), None)
        try:
            x = self._transform(self._pixels(i), seed)
        except BadImage:
            return torch.zeros(self.shape), torch.tensor(BAD)
        return x, self.targets[i]

    def check(self, i: int) -> str | None:
        """Why item ``i`` cannot be decoded, or None when it can."""
        try:
            self._pixels(i)
        except BadImage as e:
            return e.reason
        return None

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split as ``(x, y)`` tensors, without augmentation (materialised on each call)."""
        return collect(self, list(range(len(self))))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, n={len(self)}, classes={len(self.classes)}, "
                f"shape={self.shape}, augment={self.augment.spec if self.augment else 'none'})")


class ArrayImages(ImageDataset):
    """Items are rows of one in-memory pixel store (N, C, H, W), shared by every split of a data set."""

    in_memory = True

    def __init__(self, store: torch.Tensor, index: torch.Tensor, targets: torch.Tensor, classes: Sequence[str],
                 preprocessing: Preprocessing, *, store_scale: float, **kw: Any) -> None:
        super().__init__(index, targets, classes, preprocessing, **kw)
        self.store, self.store_scale = store, float(store_scale)

    def _pixels(self, i: int) -> torch.Tensor:
        return self.store[int(self.index[i])]

    def _store_digest(self) -> str:
        h = hashlib.sha256(f"{self.store.dtype}:{tuple(self.store.shape)}:{self.store_scale}".encode())
        h.update(self.store.contiguous().numpy().tobytes())
        return h.hexdigest()

    def batch(self, positions: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Items at ``positions`` stacked (N, C, H, W), without augmentation: one vectorised eval transform."""
        pos = torch.as_tensor(np.asarray(positions), dtype=torch.int64)
        return eval_transform(self.store[self.index[pos]], self.preprocessing, self.store_scale)

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self.augment is not None or any(isinstance(k, tuple) for k in keys):
            return [self[k] for k in keys]
        x = self.batch(list(keys))
        return list(zip(x.unbind(0), self.targets[torch.as_tensor(list(keys), dtype=torch.int64)].unbind(0),
                        strict=True))


class FileImages(ImageDataset):
    """Items are image files, decoded on demand (in the ``DataLoader`` worker) into the declared channels."""

    def __init__(self, paths: Sequence[str], targets: torch.Tensor, classes: Sequence[str],
                 preprocessing: Preprocessing, **kw: Any) -> None:
        super().__init__(torch.arange(len(paths)), targets, classes, preprocessing, **kw)
        self.paths = np.asarray([str(p) for p in paths], dtype=object)  # one shared array: workers do not copy lists

    def _pixels(self, i: int) -> torch.Tensor:
        return decode(self.paths[int(self.index[i])], self.preprocessing.channel_order)

    def source(self, i: int) -> str:
        return str(self.paths[int(self.index[i])])

    def _store_digest(self) -> str:
        h = hashlib.sha256()
        for p in self.paths[self.index.numpy()]:
            try:
                st = os.stat(p)
                h.update(f"{p}:{st.st_size}:{st.st_mtime_ns};".encode())
            except OSError:
                h.update(f"{p}:missing;".encode())
        return h.hexdigest()


class DatasetImages(ImageDataset):
    """A user's map-style dataset of ``(image, label)``. A float tensor image is taken as the model input as it
    is (the user's own transform made it); a uint8 tensor (C, H, W) or a PIL image goes through this split's
    preprocessing and augmentation like a decoded file."""

    def __init__(self, dataset: Dataset, targets: torch.Tensor, classes: Sequence[str], preprocessing: Preprocessing,
                 *, deterministic: bool = False, **kw: Any) -> None:
        super().__init__(torch.arange(len(targets)), targets, classes, preprocessing, **kw)
        self.dataset, self._deterministic = dataset, deterministic

    @property
    def deterministic(self) -> bool:
        return self.augment is None and self._deterministic

    def _item(self, i: int) -> Any:
        return self.dataset[int(self.index[i])][0]

    def _pixels(self, i: int) -> torch.Tensor:
        return as_pixels(self._item(i), self.preprocessing.channel_order)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        i = int(key[0]) if isinstance(key, tuple) else int(key)
        item = self._item(i)
        if isinstance(item, torch.Tensor) and item.is_floating_point():
            return item, self.targets[i]
        return super().__getitem__(key)

    def _store_digest(self) -> str:
        return f"{type(self.dataset).__module__}.{type(self.dataset).__qualname__}:{id(self.dataset)}"


def as_pixels(image: Any, channel_order: str) -> torch.Tensor:
    """A PIL image, a uint8 (C, H, W) tensor or an (H, W[, C]) uint8 array as uint8 (C, H, W) in ``channel_order``."""
    from edgekd.data.decode import pil_pixels, to_channels

    if isinstance(image, torch.Tensor):
        t = image
    elif isinstance(image, np.ndarray):
        a = image[:, :, None] if image.ndim == 2 else image
        t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)
    else:  # a PIL image: the same conversion rules as a decoded file (16-bit, palette, alpha)
        t = pil_pixels(image)
    if t.dtype != torch.uint8 or t.ndim != 3 or t.shape[0] not in (1, 3, 4):
        raise BadImage("item", f"is a {t.dtype} tensor of shape {list(t.shape)}, not uint8 (C, H, W) pixels")
    return to_channels(t[:3].contiguous(), channel_order)


# -- loaders --------------------------------------------------------------------------------------------
def default_num_workers(dataset: Dataset) -> int:
    """0 for in-memory items (a worker only adds copying), else the CPUs this process may use, at most 8."""
    if getattr(unwrap(dataset), "in_memory", False) or isinstance(unwrap(dataset), torch.utils.data.TensorDataset):
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover  (not Linux)
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


def unwrap(dataset: Dataset) -> Dataset:
    """The dataset under wrappers that keep its items (``WithIndices``, ``Augmented``)."""
    while not isinstance(dataset, ImageDataset) and hasattr(dataset, "dataset"):
        dataset = dataset.dataset  # type: ignore[attr-defined]
    return dataset


def loader(dataset: Dataset, batch_size: int = 256, *, num_workers: int | None = None, device: str = "cpu",
           batch_sampler: Any = None, persistent: bool = False) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` over ``dataset``: workers by :func:`default_num_workers`, pinned memory on CUDA, its own
    generator (iterating it never draws from torch's global one), in order unless ``batch_sampler`` says."""
    workers = default_num_workers(dataset) if num_workers is None else int(num_workers)
    kw: dict[str, Any] = {"batch_sampler": batch_sampler} if batch_sampler is not None else {"batch_size": batch_size}
    if workers > 0:
        kw.update(persistent_workers=persistent, prefetch_factor=4)
        if any(m in sys.modules for m in FORK_UNSAFE):  # multithreaded runtimes: a forked worker may deadlock
            kw["multiprocessing_context"] = "spawn"
        else:
            from edgekd.data.decode import preload

            preload()  # imported once here, so forked workers do not each import torchvision
    return torch.utils.data.DataLoader(dataset, num_workers=workers, pin_memory=str(device).startswith("cuda"),
                                       generator=torch.Generator(), **kw)


def report_bad(dataset: Dataset, positions: Sequence[int], where: str) -> str:
    """One message naming the items at ``positions`` that could not be decoded, why, and the count."""
    base = unwrap(dataset)
    items = sorted(set(int(p) for p in positions))
    names = []
    for p in items[:5]:
        reason = base.check(p) if isinstance(base, ImageDataset) else None
        src = base.source(p) if isinstance(base, ImageDataset) else str(p)
        names.append(f"{src} ({reason or 'could not be decoded'})")
    more = f" and {len(items) - 5} more" if len(items) > 5 else ""
    return (f"{where}: skipped {len(items)} image{'s' if len(items) != 1 else ''} that could not be decoded: "
            f"{'; '.join(names)}{more}")


def say(message: str) -> None:
    """A message for the user on the terminal (above any progress bar)."""
    from tqdm.auto import tqdm

    from edgekd.quiet import terminal

    tqdm.write(f"edgekd: {message}", file=terminal())


def drop_bad(batch: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """``batch`` (x, y, ...) without rows labelled :data:`BAD`, and the dropped rows' positions (None: none)."""
    y = batch[1]
    bad = y == BAD
    if not bool(bad.any()):
        return list(batch), None
    keep = ~bad
    dropped = batch[2][bad] if len(batch) > 2 else bad.nonzero().flatten()
    return [t[keep] for t in batch], dropped


def collect(dataset: Dataset, positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Items at ``positions`` without augmentation, stacked ``(x, y)``; undecodable ones are dropped with a
    message (:func:`report_bad`)."""
    positions = [int(p) for p in positions]
    if isinstance(dataset, ArrayImages):
        pos = torch.as_tensor(positions, dtype=torch.int64)
        return dataset.batch(pos), dataset.targets[pos]
    if isinstance(dataset, ImageDataset):
        view = dataset.subset(positions).with_augment(None)
        xs, ys, bad = [], [], []
        workers = None if len(view) > SMALL else 0  # a few hundred images: starting workers costs more
        for start, (x, y) in zip(range(0, len(view), 256), loader(view, 256, num_workers=workers), strict=True):
            (x, y), dropped = drop_bad([x, y])
            xs.append(x)
            ys.append(y)
            if dropped is not None:
                bad += [positions[start + int(p)] for p in dropped]
        if bad:
            say(report_bad(dataset, bad, dataset.name or "data"))
        empty = (torch.zeros((0, *dataset.shape)), torch.zeros(0, dtype=torch.int64))
        return (torch.cat(xs), torch.cat(ys)) if xs else empty
    items = [dataset[i] for i in positions]
    return torch.stack([it[0] for it in items]), torch.as_tensor([int(it[1]) for it in items])


def raw_sample(dataset: ImageDataset, n: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` items drawn across classes as decoded uint8 (C, H, W) pixels in the split's channel order, before any
    resize (what an app gets from its decoder), with their labels; undecodable ones are left out and named."""
    y = dataset.targets.numpy()
    pixels, labels, bad = [], [], []
    order = spread(y, n, seed)
    for i in order:
        try:
            p = dataset._pixels(i)
        except BadImage:
            bad.append(i)
            continue
        pixels.append(p.numpy() if p.dtype == torch.uint8 else
                      np.clip(np.rint(p.numpy() / dataset.preprocessing.scale), 0, 255).astype(np.uint8))
        labels.append(int(y[i]))
    if bad:
        say(report_bad(dataset, bad, dataset.name or "eval images"))
    return pixels, np.asarray(labels, dtype=np.int64)


def spread(y: np.ndarray, n: int, seed: int) -> list[int]:
    """Up to ``n`` positions drawn evenly across classes (one of each class in turn), seeded."""
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    order = [int(idx[k]) for k in range(max(map(len, per_class), default=0)) for idx in per_class if k < len(idx)]
    return order[:min(n, len(y))]
