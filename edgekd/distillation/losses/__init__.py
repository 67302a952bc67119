"""Distillation losses, one short module per family; importing this package registers them all.

Adding a method is one new file here: a :class:`~edgekd.distillation.methods.DistillLoss` subclass
decorated with ``@register_method("name")``. Every module in this folder is imported below, so
the method is usable as soon as the file exists.
"""

from __future__ import annotations

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
