"""edgekd: distil a small student, quantize it, convert it to ExecuTorch/TFLite and profile it.

The public API is one function per stage (heavy backends are imported when first called)::

    import edgekd
    result = edgekd.distill(teacher, student, data, method="ce+kd")
    bundle = edgekd.export(result.model, example_inputs, out_dir="bundle", calibration=calib)  # quantizes int8 itself
    rows = edgekd.benchmark(bundle, target="local")
    r = edgekd.fit(teacher, data, target="local", budget="latency_ms=2")  # measure, choose, distil, prove

``export`` quantizes on its own (``precision=("fp32", "int8")`` with ``calibration``): the int8 files need no
separate step. ``edgekd.quantize`` is the same PT2E int8 step as a PyTorch graph, for looking at the quantized
model before export (its accuracy in PyTorch, its observers, a lowering of your own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Bundle",
    "EdgekdError",
    "__version__",
    "benchmark",
    "distill",
    "export",
    "fit",
    "quantize",
]

from edgekd._version import __version__
from edgekd.errors import EdgekdError

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.bench.harness import benchmark
    from edgekd.bundle import Bundle
    from edgekd.convert import export
    from edgekd.distillation import distill
    from edgekd.fit import fit
    from edgekd.quantization import quantize

_LAZY = {
    "Bundle": ("edgekd.bundle", "Bundle"),
    "distill": ("edgekd.distillation", "distill"),
    "quantize": ("edgekd.quantization", "quantize"),
    "export": ("edgekd.convert", "export"),
    "fit": ("edgekd.fit", None),  # the package itself: callable, edgekd.fit(...) runs the search
    "benchmark": ("edgekd.bench.harness", "benchmark"),
}
#: packages whose import registers recipes (edgekd.distillation.recipes) the entry point offers
_RECIPES = {"distill": ("edgekd.edge",)}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        for plugin in _RECIPES.get(name, ()):  # the layers above register their recipes into distill()
            importlib.import_module(plugin)
        module = importlib.import_module(mod)
        return module if attr is None else getattr(module, attr)
    raise AttributeError(f"module 'edgekd' has no attribute {name!r}")
