"""PT2E int8 quantization: post-training (PTQ) and quantization-aware training (QAT).

Both paths use ExecuTorch's ``XNNPACKQuantizer`` with a symmetric int8 config (per-channel weights
by default), so the converted ``GraphModule`` lowers straight to XNNPACK int8 kernels::

    q = quantize(model, (x,), calibration)          # PTQ: observe, then convert
    p = prepare_qat(model, (x,)); train(p); q = convert_qat(p)

Stages return new values: ``model`` is deep-copied and never changed.

**Calibration observers** (``observer=``, also for litert-torch's int8 path): both quantizers observe
activations with torchao's ``HistogramObserver`` (2,048 bins, an L2-optimal range search). Its search
(``_non_linear_param_search``) walks the range in up to 10⁵ Python steps on 0-dim tensors — on an
EfficientNet-B0 (~150 observed activations) ``convert_pt2e`` alone ran for more than ten minutes on
one core. :class:`FastHistogramObserver` runs the *same* walk on precomputed indices (numpy
``searchsorted``, plain Python ints), so it returns bit-identical scales and zero points in
milliseconds per observer: the default (``"histogram"``). ``"minmax"`` (torchao's ``MinMaxObserver``:
the observed range itself, no histogram) also makes calibration passes cheap, at the cost of a
range stretched by outliers; ``"histogram_torchao"`` is the stock observer, kept to measure against.
``benchmarks/zoo_export.py --observers`` measures time and int8 parity of each.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from edgekd.errors import ConfigError, ExportError
from edgekd.extras import requires
from edgekd.settings import OBSERVERS

STAGE = "quantize"

Calibration = torch.Tensor | Iterable[Any]




def _fast_histogram_class() -> type:
    """:class:`FastHistogramObserver`, defined on first use (torchao is an optional backend)."""
    global _FAST
    if _FAST is not None:
        return _FAST
    with requires("executorch", "PT2E int8 (torchao's observers)"):
        from torchao.quantization.pt2e.observer import HistogramObserver

    class FastHistogramObserver(HistogramObserver):  # type: ignore[misc, valid-type]
        """torchao's ``HistogramObserver`` with its range search on precomputed indices (same result).

        The search moves a lower quantile ``alpha`` up or an upper quantile ``beta`` down by 1e-5 per
        step (bins ``l``/``r`` found by a walk over the cumulative histogram, one 0-dim tensor
        comparison per bin) and stops when the L2 quantization error grows. Here ``l`` and ``r`` are
        binary searches in the same float32 cumulative sums held as Python floats (compared in float32,
        as torch compares them), the quantiles the same sequential sums, so each step costs about a
        microsecond, and the error (torchao's own ``_compute_quantization_error``) is evaluated at the
        same bins in the same order.
        """

        def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
            assert self.histogram.size()[0] == self.bins, "bins mismatch"
            bin_width = (self.max_val - self.min_val) / self.bins
            total = torch.sum(self.histogram).item()
            csum = torch.cumsum(self.histogram, dim=0).detach().cpu().float().tolist()  # float32 values, exact
            f32 = np.float32
            stepsize, alpha, beta = 1e-5, 0.0, 1.0
            start_bin, end_bin = 0, self.bins - 1
            norm_min = float("inf")
            while alpha < beta:
                next_alpha, next_beta = alpha + stepsize, beta - stepsize
                # the walk's l: first bin in [start, end) whose cumulative sum reaches alpha (else end);
                # its r: last bin in [start, end] within beta (else start); compared in float32, as torch does
                l_ = bisect.bisect_left(csum, float(f32(next_alpha * total)), start_bin, end_bin)
                r_ = max(bisect.bisect_right(csum, float(f32(next_beta * total)), start_bin, end_bin + 1) - 1,
                         start_bin)
                next_start_bin, next_end_bin = start_bin, end_bin
                if (l_ - start_bin) > (end_bin - r_):
                    next_start_bin, alpha = l_, next_alpha
                else:
                    next_end_bin, beta = r_, next_beta
                if next_start_bin == start_bin and next_end_bin == end_bin:
                    continue
                norm = self._compute_quantization_error(next_start_bin, next_end_bin)
                if norm > norm_min:
                    break
                norm_min = norm
                start_bin, end_bin = next_start_bin, next_end_bin
            new_min = self.min_val + bin_width * start_bin
            new_max = self.min_val + bin_width * (end_bin + 1)
            return new_min, new_max

    _FAST = FastHistogramObserver
    return _FAST


_FAST: type | None = None


def observer_class(observer: str) -> type:
    """The activation observer class for ``observer`` (one of :data:`OBSERVERS`)."""
    if observer not in OBSERVERS:
        raise ConfigError(f"unknown calibration observer {observer!r}; known: {', '.join(OBSERVERS)}", stage=STAGE,
                          hint="pass observer='histogram' (default), 'minmax' or 'histogram_torchao'")
    with requires("executorch", "PT2E int8 (torchao's observers)"):
        from torchao.quantization.pt2e.observer import HistogramObserver, MinMaxObserver

    return {"histogram": _fast_histogram_class(), "minmax": MinMaxObserver,
            "histogram_torchao": HistogramObserver}[observer]


def with_observer(config: Any, observer: str) -> Any:
    """A copy of a PT2E ``QuantizationConfig`` (XNNPACK's or litert-torch's) whose static activation
    specs use ``observer``; weight, bias and QAT fake-quant specs are left as they are."""
    cls = observer_class(observer)

    def swap(spec: Any) -> Any:
        ctr = getattr(spec, "observer_or_fake_quant_ctr", None)
        base = getattr(ctr, "p", None)  # with_args() returns a partial wrapper: .p.func is the class
        func = getattr(base, "func", None)
        if spec is None or func is None or not (isinstance(func, type) and func.__name__ == "HistogramObserver"):
            return spec
        return dataclasses.replace(spec, observer_or_fake_quant_ctr=cls.with_args(**base.keywords))

    return dataclasses.replace(config, input_activation=swap(config.input_activation),
                               output_activation=swap(config.output_activation))


def _quantizer(per_channel: bool, is_qat: bool, observer: str = "histogram") -> Any:
    with requires("executorch", "PT2E int8 with the XNNPACK quantizer"):
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

    config = get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=is_qat)
    return XNNPACKQuantizer().set_global(config if is_qat else with_observer(config, observer))


def export_program(model: torch.nn.Module, example_inputs: tuple[Any, ...], *,
                   stage: str = STAGE) -> torch.export.ExportedProgram:
    """``torch.export.export`` with a clear :class:`ExportError` when the model cannot be traced."""
    try:
        return torch.export.export(model, tuple(example_inputs))
    except Exception as e:  # torch raises many types (Unsupported, UserError, RuntimeError...)
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise ExportError(
            f"torch.export could not trace {type(model).__name__}: {lines[0][:300] if lines else type(e).__name__}",
            stage=stage,
            hint="remove data-dependent Python control flow / unsupported calls from forward(), "
            "and check example_inputs has the shape forward() expects",
        ) from e


def capture(model: torch.nn.Module, example_inputs: tuple[Any, ...], *, stage: str = STAGE) -> torch.fx.GraphModule:
    """``torch.export`` the model and return its ATen-level ``GraphModule`` (what PT2E quantizes)."""
    return export_program(model, example_inputs, stage=stage).module()


def program_module(program: torch.export.ExportedProgram) -> torch.fx.GraphModule:
    """A fresh ``GraphModule`` of an exported program (what PT2E quantizes), not sharing its graph."""
    return copy.deepcopy(program).module()


def iter_batches(calibration: Calibration, batch_size: int) -> Iterable[tuple[torch.Tensor]]:
    """Yield ``(x,)`` batches of exactly ``batch_size`` samples (the traced batch size).

    ``calibration`` is a Tensor of samples or an iterable of batches, each a Tensor or an ``(x, y)``
    pair whose first item is used; a trailing partial batch is dropped.
    """
    batches = [calibration] if isinstance(calibration, torch.Tensor) else calibration
    for batch in batches:
        if isinstance(batch, (tuple, list)) and batch:
            batch = batch[0]
        if not isinstance(batch, torch.Tensor):
            raise ConfigError(
                f"calibration batch of type {type(batch).__name__} is not a Tensor or (x, y) pair",
                stage=STAGE,
                hint="pass a Tensor of samples or an iterable (e.g. a DataLoader) of x or (x, y) batches",
            )
        for i in range(0, batch.shape[0] - batch_size + 1, batch_size):
            yield (batch[i : i + batch_size],)


def quantize(
    model: torch.nn.Module,
    example_inputs: tuple[Any, ...],
    calibration: Calibration,
    *,
    per_channel: bool = True,
    transform: Callable[[torch.fx.GraphModule], Any] | None = None,
    observer: str = "histogram",
    program: torch.export.ExportedProgram | None = None,
) -> torch.fx.GraphModule:
    """Post-training int8 quantization (PT2E + XNNPACKQuantizer); ``model`` is left unchanged.

    Args:
        model: float model (put in eval mode on a copy; batch norm is folded by ``convert_pt2e``).
        example_inputs: positional inputs for tracing, e.g. ``(torch.randn(1, 1, 28, 28),)``.
        calibration: a Tensor of samples, or an iterable of batches (``x`` or ``(x, y)``).
        per_channel: per-output-channel weight scales (better accuracy, same speed on XNNPACK).
        transform: an in-place pass over the captured ATen graph, run before the quantizer annotates
            it (the ExecuTorch exporter passes ``keepdim_spatial_means`` so XNNPACK takes the mean).
        observer: the activation observer (see the module docstring).
        program: ``torch.export`` of ``model`` already made (one per :func:`edgekd.convert.export` call);
            its graph is copied, never changed.

    Returns:
        the converted ``GraphModule`` with quantize/dequantize nodes around int8 ops.
    """
    with requires("executorch", "PT2E int8"):
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    gm = program_module(program) if program is not None else capture(copy.deepcopy(model).eval(), example_inputs)
    if transform is not None:
        transform(gm)
    prepared = prepare_pt2e(gm, _quantizer(per_channel, is_qat=False, observer=observer))
    n = 0
    with torch.no_grad():
        for args in iter_batches(calibration, example_inputs[0].shape[0]):
            prepared(*args)
            n += 1
    if n == 0:
        raise ConfigError("calibration is empty", stage=STAGE, hint="pass at least one batch of samples")
    return convert_pt2e(prepared)


def prepare_qat(model: torch.nn.Module, example_inputs: tuple[Any, ...], *, per_channel: bool = True) -> torch.fx.GraphModule:
    """Insert fake-quantize modules for quantization-aware training; ``model`` is left unchanged.

    Train the returned module as usual (it is in train mode), then call :func:`convert_qat`.
    """
    with requires("executorch", "PT2E QAT"):
        from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    m = copy.deepcopy(model).train()
    gm = capture(m, example_inputs)
    return prepare_qat_pt2e(gm, _quantizer(per_channel, is_qat=True))


def convert_qat(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Turn a QAT-prepared (and trained) module into an int8 ``GraphModule`` in eval mode."""
    with requires("executorch", "PT2E QAT"):
        from torchao.quantization.pt2e import move_exported_model_to_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    m = copy.deepcopy(prepared)
    move_exported_model_to_eval(m)
    return convert_pt2e(m)
