"""Make any classifier's ``forward`` return its logits Tensor, the one thing the pipeline reads.

Hugging Face classifiers return an output object (``.logits``), others a tuple ``(logits, aux)`` or a
dict. :func:`logits_only` gives such a model a ``forward`` that returns the logits Tensor, without a
wrapper module: the model keeps its class (as a subclass of the same name), its module paths, its
``state_dict`` keys and its parameters, so taps (``features.3``), checkpoints and family contracts
see the same model.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from edgekd.errors import ConfigError

_VIEWS: dict[type, type] = {}


def to_logits(out: Any, owner: str = "the model") -> torch.Tensor:
    """The logits Tensor of a forward's output: itself, ``.logits``, ``["logits"]`` or the first item."""
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, Mapping) and isinstance(out.get("logits"), torch.Tensor):
        return out["logits"]
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ConfigError(f"{owner}'s forward() returned {type(out).__name__}, which holds no logits Tensor",
                      stage="models", hint="return the logits Tensor (or an object with .logits, or a tuple "
                                           "whose first item is the logits) from forward()")


def _view_class(cls: type) -> type:
    if getattr(cls, "_edgekd_logits_only", False):
        return cls
    if cls not in _VIEWS:
        def forward(self: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
            return to_logits(cls.forward(self, *args, **kwargs), cls.__name__)

        _VIEWS[cls] = type(cls.__name__, (cls,), {"forward": forward, "_edgekd_logits_only": True,
                                                  "__module__": cls.__module__, "__qualname__": cls.__qualname__,
                                                  "__doc__": cls.__doc__})
    return _VIEWS[cls]


def logits_only(model: nn.Module, *, in_place: bool = False) -> nn.Module:
    """``model`` with a ``forward`` that returns the logits Tensor (see the module docstring).

    By default a shallow view: it shares every parameter and submodule with ``model`` (training one
    trains the other). ``in_place=True`` changes ``model`` itself (for a model you just built).
    """
    if getattr(type(model), "_edgekd_logits_only", False):
        return model
    out = model if in_place else copy.copy(model)
    out.__class__ = _view_class(type(model))
    return out


def returns_tensor(model: nn.Module, sample: torch.Tensor) -> bool:
    """Whether ``model(sample)`` returns a Tensor (one eval-mode pass without gradients; mode restored)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return isinstance(model(sample), torch.Tensor)
    finally:
        model.train(was)
