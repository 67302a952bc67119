"""Fit a student to a device: pick the architecture by latency measured on that device, distil it, prove it.

::

    import edgekd
    r = edgekd.fit("runs/teacher/model.pt", "mnist5k", target="local", budget="latency_ms=0.2",
                   families=("resnet", "mobilenetv2"), formats=("pte", "tflite"), threads=(1,))
    r.chosen.name, r.passed, r.out / "fit.json"

Candidates (:mod:`~edgekd.fit.space`) are exported untrained and checked for ops outside XNNPACK
(:mod:`~edgekd.fit.coverage`), measured on the target through the bench harness and kept in a persistent
latency table (:mod:`~edgekd.fit.measure`, :mod:`~edgekd.fit.store`), filtered by the budget and given
short KD proxy runs near the measured front (:mod:`~edgekd.fit.select`, :mod:`~edgekd.fit.proxy`); the
chosen one is distilled, exported with parity and benchmarked, gated by the budget
(:mod:`~edgekd.fit.run`), and reported (:mod:`~edgekd.fit.report`). Nothing here trains or runs a model
by itself: it composes ``distill``, ``edge``, ``export`` and ``bench``.

``edgekd.fit`` is this package and is callable: ``edgekd.fit(...)`` is :func:`edgekd.fit.run.fit`.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgekd.fit.run import FitResult, fit
    from edgekd.fit.space import DEFAULT_FAMILIES, Arch, Deploy, Knobs, Space, knobs_of
    from edgekd.fit.store import LatencyStore, MeasureKey

#: Where each public name lives; imported on first use, so ``edgekd.fit.config`` (the CLI's flags) loads no torch.
_LAZY = {"FitResult": "run", "fit": "run", "DEFAULT_FAMILIES": "space", "Arch": "space", "Deploy": "space",
         "Knobs": "space", "Space": "space", "knobs_of": "space", "LatencyStore": "store", "MeasureKey": "store"}
__all__ = ["DEFAULT_FAMILIES", "Arch", "Deploy", "FitResult", "Knobs", "LatencyStore", "MeasureKey", "Space", "fit",
           "knobs_of"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """Lets ``edgekd.fit(...)`` call :func:`fit` although ``edgekd.fit`` is this package (a module attribute
    of ``edgekd`` once imported, so a plain function of that name could not live beside it)."""

    def __call__(self, *args: Any, **kwargs: Any) -> FitResult:
        from edgekd.fit.run import fit as run_fit

        return run_fit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
