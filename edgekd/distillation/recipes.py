"""Recipes: what plugs into ``distill()``, the one training entry point.

A recipe is a way to train that is more than one :class:`~edgekd.distillation.strategies.Strategy` in the
Trainer — text distillation (its own data and scores), the edge pipeline (KD → prune → KD + QAT, several
stages). Each registers here with :func:`register_recipe`; ``distill()`` hands a call to the first recipe that
:meth:`~Recipe.claims` it (by the data's type or the options given) and returns what it returns, the one
:class:`~edgekd.distillation.result.DistillResult`. Calls no recipe claims train one Strategy in the Trainer
(offline KD, ensembles, online peers, early exits).

The recipes of this layer register when :mod:`edgekd.distillation` is imported (``text``); those of the
layers above register with their own package (``edgekd.edge``: the edge pipeline), which ``edgekd.distill``
imports first. So a layer never imports the one above it, and a new recipe is one decorated class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from edgekd.distillation.result import DistillResult
from edgekd.registry import Registry


class Recipe(Protocol):
    """A way to train that ``distill()`` can hand a call to."""

    name: ClassVar[str]
    #: the ``distill()`` options that mean this recipe (refused with a pointer to it when it is not registered)
    options: ClassVar[tuple[str, ...]]
    #: asked in this order (lowest first): recipes that claim by the data's type before those that claim by options
    order: ClassVar[int]
    #: one line for ``edgekd list recipes``
    summary: ClassVar[str]

    @staticmethod
    def claims(data: Any, options: Mapping[str, Any]) -> bool:
        """Whether this call is this recipe's: the data's type, or one of its ``options`` set."""
        ...

    @staticmethod
    def run(teacher: Any, student: Any, data: Any, method: Any, **kw: Any) -> DistillResult:
        """Train and return the one result type (``kw``: every other ``distill()`` argument)."""
        ...


RECIPES: Registry[type[Recipe]] = Registry("recipe")


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator: register a recipe under its ``name``."""
    return RECIPES.register(cls.name)(cls)


def claimed(data: Any, options: Mapping[str, Any]) -> type[Recipe] | None:
    """The registered recipe that claims this call, or None (one Strategy in the Trainer)."""
    ranked = sorted((RECIPES.get(n) for n in RECIPES), key=lambda r: (r.order, r.name))
    return next((r for r in ranked if r.claims(data, options)), None)


def given(options: Mapping[str, Any]) -> list[str]:
    """The options that are set: not None and not False."""
    return [k for k, v in options.items() if v is not None and v is not False]
