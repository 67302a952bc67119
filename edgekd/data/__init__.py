"""Offline data sets behind one registry: ``load("mnist5k") -> DataSplits``.

Known names: ``digits``, ``mnist5k`` (the embedded default), ``fashion_mnist``, ``cifar10``,
``cifar100``; :func:`list_datasets` lists them. A new data set is one ``@register_dataset``
reader returning :class:`RawData`.
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
    load,
    loaders,
    register_dataset,
)

__all__ = [
    "DATASETS",
    "DataSplits",
    "RawData",
    "WithIndices",
    "as_tensors",
    "calibration_sample",
    "few_labels",
    "list_datasets",
    "load",
    "loaders",
    "register_dataset",
]
