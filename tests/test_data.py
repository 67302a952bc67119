"""Data sets: deterministic disjoint splits, normalisation, offline readers and their errors."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd import data
from edgekd.data.core import _stratified_split
from edgekd.data.sources import FASHION_MNIST_DIR
from edgekd.errors import ConfigError, DataError, RegistryError


@pytest.fixture(scope="module")
def digits() -> data.DataSplits:
    return data.load("digits")


def _rows(ds: torch.utils.data.TensorDataset) -> set[bytes]:
    return {row.numpy().tobytes() for row in ds.tensors[0]}


def test_digits_shapes_dtypes_and_normalisation(digits: data.DataSplits) -> None:
    assert (digits.num_classes, digits.in_channels, digits.image_size) == (10, 1, (8, 8))
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    x, y = digits.train.tensors
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (1, 8, 8)
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-3  # train is standardised
    assert 0.2 < digits.mean[0] < 0.4 and digits.pixel_scale == 1 / 16
    pre = digits.preprocessing()
    assert pre.mean == digits.mean and pre.size == (8, 8) and pre.channel_order == "GRAY"


def test_splits_deterministic_by_seed_and_stratified(digits: data.DataSplits) -> None:
    again = data.load("digits", seed=0)
    other = data.load("digits", seed=1)
    assert torch.equal(again.val.tensors[0], digits.val.tensors[0])
    assert not torch.equal(other.val.tensors[0], digits.val.tensors[0])
    counts = torch.bincount(digits.test.tensors[1], minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38  # 20% of ~180 per class


def test_stratified_split_is_disjoint_and_complete() -> None:
    y = np.repeat(np.arange(3), [10, 20, 30])
    parts = _stratified_split(y, [0.2, 0.1], np.random.default_rng(0))
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(60))  # disjoint and covering
    assert np.bincount(y[parts[0]]).tolist() == [2, 4, 6]


def test_limit_and_bad_fractions() -> None:
    small = data.load("digits", limit=200)
    assert len(small.train) + len(small.val) + len(small.test) == 200
    with pytest.raises(ConfigError, match="val_fraction"):
        data.load("digits", val_fraction=1.5)
    with pytest.raises(ConfigError, match="leaves no training data"):
        data.load("digits", val_fraction=0.5, test_fraction=0.5)


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(RegistryError, match="known: cifar10, cifar100, digits, fashion_mnist, mnist5k"):
        data.load("cifar11")


def test_mnist5k_embedded() -> None:
    s = data.load("mnist5k")
    assert (len(s.train), len(s.val), len(s.test)) == (3500, 500, 1000)
    assert s.image_size == (28, 28) and s.labels[3] == "3"


def test_calibration_sample_is_stratified(digits: data.DataSplits) -> None:
    calib = data.calibration_sample(digits.val, n=20, seed=0)
    assert calib.shape == (20, 1, 8, 8)
    rows = {r.numpy().tobytes(): int(y) for r, y in zip(*digits.val.tensors, strict=True)}
    labels = [rows[r.numpy().tobytes()] for r in calib]
    assert sorted(labels) == sorted(list(range(10)) * 2)
    assert torch.equal(calib, data.calibration_sample(digits.val, n=20, seed=0))


def test_loaders_with_indices(digits: data.DataSplits) -> None:
    train, val, test = data.loaders(digits, batch_size=32, seed=0, with_indices=True)
    x, y, idx = next(iter(train))
    assert x.shape == (32, 1, 8, 8) and idx.dtype == torch.int64
    assert torch.equal(digits.train.tensors[0][idx], x) and torch.equal(digits.train.tensors[1][idx], y)
    first = next(iter(data.loaders(digits, batch_size=32, seed=0)[0]))[0]
    assert torch.equal(first, x)  # same seed, same order


# -- folder readers, with tiny fake files written by the tests --------------------------------
def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_from_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 100), ("t10k", 20)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    s = data.load("fashion_mnist", root=tmp_path)
    assert (len(s.train), len(s.val), len(s.test)) == (90, 10, 20)  # official test kept
    assert s.labels[0] == "T-shirt/top" and s.train.tensors[0].shape[1:] == (1, 28, 28)


def test_fashion_mnist_missing_folder_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        data.load("fashion_mnist", root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "train-images-idx3-ubyte.gz" in msg


@pytest.mark.skipif(not FASHION_MNIST_DIR.exists(), reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_debian_package() -> None:
    s = data.load("fashion_mnist", limit=1000)
    assert len(s.test) == 1000 and len(s.train) + len(s.val) == 1000


def _write_pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def _images(n: int, start: int) -> np.ndarray:
    # every image unique: its index is written into the first pixels
    img = np.zeros((n, 3072), dtype=np.uint8)
    img[:, 0] = (np.arange(start, start + n) % 256)
    img[:, 1] = (np.arange(start, start + n) // 256)
    return img


def test_fake_cifar10_folder(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    for i in range(1, 6):
        _write_pickle(folder / f"data_batch_{i}",
                      {"data": _images(20, 20 * i), "labels": list(np.arange(20) % 10)})
    _write_pickle(folder / "test_batch", {"data": _images(10, 0), "labels": list(range(10))})
    _write_pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    s = data.load("cifar10", root=tmp_path)
    assert (s.in_channels, s.image_size, s.channel_order) == (3, (32, 32), "RGB")
    assert (len(s.train), len(s.val), len(s.test)) == (90, 10, 10) and s.labels[9] == "c9"
    splits = [_rows(s.train), _rows(s.val), _rows(s.test)]
    assert sum(map(len, splits)) == len(set.union(*splits)) == 110  # disjoint


def test_fake_cifar100_folder(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    _write_pickle(folder / "train", {"data": _images(200, 0), "fine_labels": list(np.arange(200) % 100)})
    _write_pickle(folder / "test", {"data": _images(100, 200), "fine_labels": list(range(100))})
    _write_pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)]})
    s = data.load("cifar100", root=tmp_path, val_fraction=0.5)
    assert s.num_classes == 100 and len(s.train) == len(s.val) == 100 and len(s.test) == 100


def test_cifar_missing_folder_names_tarball(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        data.load("cifar100", root=tmp_path)
    msg = str(e.value)
    assert "cifar-100-python.tar.gz" in msg and str(tmp_path) in msg and "tar xzf" in msg


def test_augmented_shifts_flips_and_keeps_labels(digits: data.DataSplits) -> None:
    from edgekd.data.augment import Augmented, augmented

    aug = augmented(digits, shift=1, flip=True)
    assert aug.val is digits.val and aug.test is digits.test and len(aug.train) == len(digits.train)
    x, y = digits.train[3]
    torch.manual_seed(0)
    seen = []
    for _ in range(60):
        xa, ya = aug.train[3]
        assert ya == y and xa.shape == x.shape
        seen.append(xa)
    # every draw is one of the 3×3 shifts of x or of its mirror image, with border replicated
    pad = torch.nn.functional.pad(x[None], (1, 1, 1, 1), mode="replicate")[0]
    cands = [c for dy in range(3) for dx in range(3) for c in (pad[..., dy:dy + 8, dx:dx + 8],)]
    cands += [c.flip(-1) for c in cands]
    assert all(any(torch.equal(s, c) for c in cands) for s in seen)
    assert len({s.numpy().tobytes() for s in seen}) > 5  # random, not a fixed transform
    torch.manual_seed(0)
    assert torch.equal(aug.train[3][0], seen[0])  # seeded: repeatable
    plain = Augmented(digits.train, shift=0, flip=False)
    assert torch.equal(plain[3][0], x)
    with pytest.raises(ConfigError, match="shift"):
        Augmented(digits.train, shift=-1)


def test_few_labels_keeps_a_stratified_labelled_subset(digits: data.DataSplits) -> None:
    x, y = digits.train.tensors
    transfer = data.few_labels(digits, 50, seed=3)
    xt, yt = transfer.train.tensors
    assert torch.equal(xt, x) and int((yt >= 0).sum()) == 50 and set(yt[yt < 0].tolist()) == {-1}
    assert torch.equal(yt[yt >= 0], y[yt >= 0])  # kept labels are the true ones
    assert torch.bincount(yt[yt >= 0]).tolist() == [5] * 10  # stratified
    only = data.few_labels(digits, 50, seed=3, transfer=False)
    assert torch.equal(only.train.tensors[0], x[yt >= 0]) and torch.equal(only.train.tensors[1], yt[yt >= 0])
    assert only.val is digits.val and only.test is digits.test
    assert not torch.equal(data.few_labels(digits, 50, seed=4).train.tensors[1], yt)  # another draw
    with pytest.raises(ConfigError, match="outside 1.."):
        data.few_labels(digits, len(y) + 1)


def test_default_augmentation_never_mirrors_digits(digits: data.DataSplits, tmp_path: Path) -> None:
    """`edgekd train --augment` once mirrored digits (a mirrored 2 is no 2): the default now flips only where a
    mirror keeps the label."""
    from edgekd.data.augment import augmented
    from edgekd.distillation.config import DistillConfig, prepare

    assert augmented(digits).train.flip is False and augmented(digits, flip=True).train.flip is True
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 10)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    assert augmented(data.load("fashion_mnist", root=tmp_path)).train.flip is True  # clothes: a mirror is fine
    splits = prepare(DistillConfig(data="digits", student="resnet8"), augment=True)[0]  # what `train --augment` uses
    assert splits.train.flip is False and splits.train.shift == 2
