"""Data sets behind one entry point: ``load("mnist5k")``, ``load("folder:PATH", image_size=224)`` -> DataSplits.

Registered (in-memory) names: ``digits``, ``mnist5k`` (the embedded default), ``fashion_mnist``,
``cifar10``, ``cifar100`` (:func:`list_datasets`); image files: ``folder:PATH`` (one sub-folder per
class) and ``csv:FILE`` (:mod:`edgekd.data.folder`); any map-style dataset: :func:`from_datasets`.
Every split is a lazy :class:`ImageDataset` (indices, ``targets``, ``classes``, ``preprocessing``),
decoded and augmented per item in ``DataLoader`` workers. A new in-memory data set is one
``@register_dataset`` reader returning :class:`RawData`.
"""

from __future__ import annotations

from edgekd.data import sources as _sources  # noqa: F401  (fills the registry)
from edgekd.data.core import (
    DATASETS,
    DataSplits,
    RawData,
    WithIndices,
    as_tensors,
    calibration_sample,
    few_labels,
    list_datasets,
    loaders,
    register_dataset,
    sample,
    targets,
)
from edgekd.data.folder import from_datasets, write_folder
from edgekd.data.images import BAD, ArrayImages, DatasetImages, FileImages, ImageDataset, loader
from edgekd.data.loading import as_splits, load
from edgekd.data.transforms import Augment

__all__ = [
    "BAD",
    "DATASETS",
    "ArrayImages",
    "Augment",
    "DataSplits",
    "DatasetImages",
    "FileImages",
    "ImageDataset",
    "RawData",
    "WithIndices",
    "as_splits",
    "as_tensors",
    "calibration_sample",
    "few_labels",
    "from_datasets",
    "list_datasets",
    "load",
    "loader",
    "loaders",
    "register_dataset",
    "sample",
    "targets",
    "write_folder",
]
