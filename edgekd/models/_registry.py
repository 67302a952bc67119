"""The model registry: ``@register_model`` on typed factories, ``create(name, **kw)`` to build."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from edgekd.errors import ConfigError
from edgekd.registry import Registry

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")


def register_model(fn: ModelFactory) -> ModelFactory:
    """Register a factory ``fn(num_classes=10, in_channels=3, **kw) -> nn.Module`` under its name."""
    return MODELS.register()(fn)


def list_models() -> list[str]:
    """Every registered model name, sorted."""
    return MODELS.names()


def create(name: str, *, num_classes: int = 10, in_channels: int = 3, **kw: Any) -> nn.Module:
    """Build model ``name`` (see :func:`list_models`); extra ``kw`` go to its factory."""
    factory = MODELS.get(name)
    params = inspect.signature(factory).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(kw) - set(params)) if not accepts_any else []
    if unknown:
        raise ConfigError(f"model {name!r} takes no option {', '.join(unknown)}", stage="models",
                          hint=f"its options are: {', '.join(p for p in params if p not in ('kw', 'kwargs'))}")
    return factory(num_classes=num_classes, in_channels=in_channels, **kw)
