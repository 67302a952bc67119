"""Distillation losses, one short module per family; importing this package registers them all.

Adding a method is one new file here: a :class:`~edgekd.distillation.methods.DistillLoss` subclass
decorated with ``@register_method("name")``. Every module in this folder is imported below, so
the method is usable as soon as the file exists.
"""

from __future__ import annotations

from edgekd.registry import import_modules

import_modules(__name__, __path__)
