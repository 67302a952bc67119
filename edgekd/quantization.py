"""PT2E int8 quantization: post-training (PTQ) and quantization-aware training (QAT).

Both paths use ExecuTorch's ``XNNPACKQuantizer`` with a symmetric int8 config (per-channel weights
by default), so the converted ``GraphModule`` lowers straight to XNNPACK int8 kernels::

    q = quantize(model, (x,), calibration)          # PTQ: observe, then convert
    p = prepare_qat(model, (x,)); train(p); q = convert_qat(p)

Stages return new values: ``model`` is deep-copied and never changed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch

from edgekd.errors import ConfigError, ExportError
from edgekd.extras import requires

STAGE = "quantize"

Calibration = torch.Tensor | Iterable[Any]


def _quantizer(per_channel: bool, is_qat: bool) -> Any:
    with requires("executorch", "PT2E int8 with the XNNPACK quantizer"):
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

    config = get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=is_qat)
    return XNNPACKQuantizer().set_global(config)


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
) -> torch.fx.GraphModule:
    """Post-training int8 quantization (PT2E + XNNPACKQuantizer); ``model`` is left unchanged.

    Args:
        model: float model (put in eval mode on a copy; batch norm is folded by ``convert_pt2e``).
        example_inputs: positional inputs for tracing, e.g. ``(torch.randn(1, 1, 28, 28),)``.
        calibration: a Tensor of samples, or an iterable of batches (``x`` or ``(x, y)``).
        per_channel: per-output-channel weight scales (better accuracy, same speed on XNNPACK).
        transform: an in-place pass over the captured ATen graph, run before the quantizer annotates
            it (the ExecuTorch exporter passes ``keepdim_spatial_means`` so XNNPACK takes the mean).

    Returns:
        the converted ``GraphModule`` with quantize/dequantize nodes around int8 ops.
    """
    with requires("executorch", "PT2E int8"):
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    m = copy.deepcopy(model).eval()
    gm = capture(m, example_inputs)
    if transform is not None:
        transform(gm)
    prepared = prepare_pt2e(gm, _quantizer(per_channel, is_qat=False))
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
