"""The model registry: ``@register_model`` on typed factories, ``create(name, **kw)`` to build.

Names with a namespace (``tv:mobilenet_v3_small``, ``hf:vit_tiny``) go to that namespace's
:class:`Namespace` (torchvision's builders, Hugging Face configs), imported only when used.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from edgekd.errors import ConfigError
from edgekd.registry import Registry

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")


@dataclass(frozen=True)
class Namespace:
    """A source of models named ``prefix:NAME``: ``names()`` lists them, ``create(name, num_classes=,
    in_channels=, weights=, **kw)`` builds one, ``family(name)`` names its :class:`~edgekd.models.contract.Family`."""

    prefix: str
    what: str
    names: Callable[[], list[str]]
    create: Callable[..., nn.Module]
    family: Callable[[str], str]


NAMESPACES: Registry[Namespace] = Registry("model namespace")


def register_namespace(ns: Namespace) -> Namespace:
    return NAMESPACES.register(ns.prefix)(ns)


def register_model(fn: ModelFactory) -> ModelFactory:
    """Register a factory ``fn(num_classes=10, in_channels=3, **kw) -> nn.Module`` under its name."""
    return MODELS.register()(fn)


def list_models(namespace: str | None = None) -> list[str]:
    """Registered model names, sorted: the zoo's (default), one namespace's (``"tv"``, ``"hf"``, names
    with their prefix) or ``"all"`` of them."""
    if namespace is None:
        return MODELS.names()
    if namespace == "all":
        return MODELS.names() + [n for p in NAMESPACES for n in list_models(p)]
    ns = NAMESPACES.get(namespace)
    return [f"{ns.prefix}:{n}" for n in ns.names()]


def create(name: str, *, num_classes: int = 10, in_channels: int = 3, **kw: Any) -> nn.Module:
    """Build model ``name`` (see :func:`list_models`); extra ``kw`` go to its factory.

    ``tv:NAME`` / ``hf:NAME`` build torchvision / Hugging Face models; both take ``weights=PATH`` (a
    local state-dict file; nothing is downloaded).
    """
    prefix, sep, rest = name.partition(":")
    if sep:
        return NAMESPACES.get(prefix).create(rest, num_classes=num_classes, in_channels=in_channels, **kw)
    factory = MODELS.get(name)
    params = inspect.signature(factory).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(kw) - set(params)) if not accepts_any else []
    if unknown:
        raise ConfigError(f"model {name!r} takes no option {', '.join(unknown)}", stage="models",
                          hint=f"its options are: {', '.join(p for p in params if p not in ('kw', 'kwargs'))}")
    return factory(num_classes=num_classes, in_channels=in_channels, **kw)
