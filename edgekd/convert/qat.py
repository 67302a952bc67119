"""Lowering a trained fake-quant graph (QAT, :mod:`edgekd.edge.qat`) to real int8 files.

Training lives in ``edge/``; this module only turns its result into files, with the same
converters as any other export: ``.pte`` through ExecuTorch's XNNPACK lowering
(:mod:`edgekd.convert.executorch`) and ``.tflite`` through litert-torch's int8 path
(:func:`edgekd.convert.tflite.litert_int8`), both from the *same* trained fake-quant parameters.
``export(..., qat=graph)`` calls :func:`write_int8` and checks the files against the graph itself.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from edgekd.errors import ConfigError, ExportError, OutputError
from edgekd.extras import requires
from edgekd.files import atomic_path, make_folder, write_atomic
from edgekd.formats import qat_rows

STAGE = "export/qat"
# what a PT2E graph lowers to, and through which converters (the table's ``qat`` column; onnx2tf takes no PT2E graph)
FORMATS = tuple(dict.fromkeys(r.format for r in qat_rows()))
CONVERTERS = tuple(r.converter for r in qat_rows())


class Logits(nn.Module):
    """The first output of a ``(logits, *features)`` module: what gets exported."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


def set_mode(gm: torch.fx.GraphModule, train: bool) -> None:
    """Train/eval for a PT2E graph (BN and fake-quant observers), in place (``.train()`` does not work on one)."""
    with requires("executorch", "PT2E QAT"):
        from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    (move_exported_model_to_train if train else move_exported_model_to_eval)(gm)


def convert_graph(prepared: torch.fx.GraphModule, *, fold_quantize: bool = True) -> nn.Module:
    """The int8 model of a trained fake-quant graph: ``convert_pt2e``, logits only (input unchanged).

    ``fold_quantize=False`` keeps weights as float + quantize ops (what litert-torch expects).
    """
    with requires("executorch", "PT2E QAT"):
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    m = copy.deepcopy(prepared)
    set_mode(m, train=False)
    return Logits(convert_pt2e(m, fold_quantize=fold_quantize))


def write_int8(prepared: torch.fx.GraphModule, example_inputs: tuple[torch.Tensor, ...], out_dir: str | Path,
               formats: Sequence[str] = FORMATS, *, name: str = "model_int8",
               converted: nn.Module | None = None) -> dict[str, Path]:
    """Lower a trained fake-quant graph to real int8 files: ``{"pte": path, "tflite": path}``.

    ``.pte``: ``convert_pt2e`` → ``torch.export`` at ``example_inputs``' shape → XNNPACK.
    ``.tflite``: ``convert_pt2e(fold_quantize=False)`` → litert-torch (int8 inputs and outputs).
    ``converted``: a :func:`convert_graph` result to reuse for the ``.pte`` (each convert costs ~30 s:
    torchao re-traces its conv-BN patterns; the unfolded one ExecuTorch cannot lower).
    """
    from edgekd.convert.executorch import _lower, first_line
    from edgekd.convert.tflite import litert_int8, quiet
    from edgekd.quantization import export_program

    out = make_folder(out_dir, stage=STAGE)
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ConfigError(f"unknown int8 format(s) {sorted(unknown)}; known: {', '.join(FORMATS)}", stage=STAGE)
    files: dict[str, Path] = {}
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        try:
            if fmt == "pte":
                buffer, _ = _lower(export_program(converted or convert_graph(prepared), example_inputs, stage=STAGE))
                write_atomic(path, buffer, stage=f"{STAGE}/{fmt}", what="the int8 .pte file")
            else:
                # the graph already holds the trained q/dq pairs: no calibration, straight to the converter
                with quiet(False):
                    edge = litert_int8(convert_graph(prepared, fold_quantize=False), example_inputs)
                    with atomic_path(path, stage=f"{STAGE}/{fmt}", what="the int8 .tflite file") as tmp:
                        edge.export(str(tmp))
        except (ExportError, OutputError):
            raise
        except Exception as e:
            raise ExportError(f"could not lower the QAT model to int8 .{fmt}: {first_line(e)}", stage=f"{STAGE}/{fmt}",
                              hint="check the model exports in fp32 first (edgekd.export)") from e
        files[fmt] = path
    return files
