"""Students and teachers behind one registry: ``create("resnet8_plain", num_classes=10)``.

Families: :mod:`edgekd.models.resnet` (CIFAR ResNets and their ``*_plain`` twins) and
:mod:`edgekd.models.mobilenet` (MobileNetV2 students). A new model is a typed factory function
decorated with :func:`register_model` in a family file imported below.
"""

from __future__ import annotations

from edgekd.models import adder as _adder  # noqa: F401  (fills the registry)
from edgekd.models import bert as _bert  # noqa: F401
from edgekd.models import mobilenet as _mobilenet  # noqa: F401
from edgekd.models import resnet as _resnet  # noqa: F401
from edgekd.models._registry import MODELS, create, list_models, register_model
from edgekd.models.complexity import count_params, flops

__all__ = ["MODELS", "count_params", "create", "flops", "list_models", "register_model"]
