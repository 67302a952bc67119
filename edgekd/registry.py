"""One registry mechanism for every extension point (models, distillation methods, bench targets).

A registry maps a lower-case name to a factory. Decorators fill it; a failed lookup lists the
names it knows, so ``get("kdd")`` fails with ``unknown method 'kdd'; known: ce, kd``. The modules that
hold the decorated factories are found automatically: a package of extensions calls
:func:`import_modules` on itself, so adding one is adding a file (losses, strategies, models, targets).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from edgekd.errors import RegistryError

T = TypeVar("T")


def import_modules(package: str, path: Iterable[str]) -> None:
    """Import every module of a package (``import_modules(__name__, __path__)`` in its ``__init__``), so the
    decorators in them fill their registries; names starting with ``_`` are left out."""
    for info in pkgutil.iter_modules(list(path)):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


class Registry(Generic[T]):
    """A named table of factories: ``reg.register("name")(obj)``, ``reg.get("name")``, ``list(reg)``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = (name or getattr(obj, "__name__", "")).lower()
            if not key:
                raise ValueError(f"cannot register an unnamed {self.kind}")
            if key in self._items and self._items[key] is not obj:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._items[key] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        key = name.strip().lower()
        try:
            return self._items[key]
        except KeyError:
            raise RegistryError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}",
                stage=self.kind,
                hint=f"pick one of the known names (edgekd lists them with `edgekd list {self.plural}`)",
            ) from None

    @property
    def plural(self) -> str:
        return self.kind[:-1] + "ies" if self.kind.endswith("y") else self.kind + "s"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)
