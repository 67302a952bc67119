"""The format table: every kind of model file edgekd writes and runs, one row per (format, converter).

Each row names the converter's exporter and the host runner parity uses (``"module:function"``,
imported only when called), the file suffix, the device runner's backend for it
(``runtimes/python/edgekd_runner.py``), the pip extra it needs and the file's tensor conventions:
the layout of a 4-D image input and whether an int8 file takes and returns int8 tensors. Export
(argument checks, dispatch, file names), parity, the bench harness (suffix → format, which runner
backend, which layout to feed) and the Android helper all read this table; adding a format is one
row here plus its backend file under ``edgekd/convert/`` (and a backend class in the runner).
The functions at the end are the host side's one copy of the tensor conventions (NHWC, int8 I/O).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bundle import TensorSpec
from edgekd.errors import ConfigError, ModelFileError

PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class Format:
    """One row of the table (see the module docstring)."""

    format: str  # ModelFile.format in edgekd.json
    converter: str  # ModelFile.converter
    suffix: str  # file suffix, without the dot
    precisions: tuple[str, ...]
    exporter: str  # (model, example_inputs, path, *, precision, calibration, verbose[, program, observer]) -> extra
    host_runner: str  # (path, layout) -> (run(x_nchw) -> y, inputs | None, outputs | None)
    backend: str  # the device runner's backend for the suffix (its `runtime` name)
    layout: str  # layout of a 4-D image input in the file: "NCHW" or "NHWC"
    int8_io: bool  # int8 files take int8 input and return int8 output (scale, zero point in the file)
    extra: str | None  # `pip install 'edgekd[<extra>]'` for the converter and its host runtime
    app: bool  # the Android demo app loads it (ExecuTorch / LiteRT on the phone)

    @property
    def key(self) -> tuple[str, str]:
        return self.format, self.converter

    def load(self, attr: str) -> Any:
        """The exporter or host runner function of this row (``attr`` = ``"exporter"`` | ``"host_runner"``)."""
        module, _, name = getattr(self, attr).partition(":")
        return getattr(importlib.import_module(module), name)


FORMATS: dict[tuple[str, str], Format] = {
    f.key: f
    for f in (
        Format("pte", "executorch", "pte", PRECISIONS, "edgekd.convert.executorch:to_pte",
               "edgekd.convert.executorch:pte_runner", "executorch", "NCHW", False, "executorch", True),
        Format("tflite", "litert-torch", "tflite", PRECISIONS, "edgekd.convert.tflite:to_tflite_litert",
               "edgekd.convert.tflite:tflite_runner", "tflite", "NCHW", True, "tflite", True),
        Format("tflite", "onnx2tf", "tflite", PRECISIONS, "edgekd.convert.tflite:to_tflite_onnx2tf",
               "edgekd.convert.tflite:tflite_runner", "tflite", "NHWC", True, "onnx2tf", True),
        Format("pt2", "torch", "pt2", ("fp32",), "edgekd.convert.torch_program:to_pt2",
               "edgekd.convert.torch_program:pt2_runner", "torch", "NCHW", False, None, False),
    )
}


def formats() -> list[str]:
    """Every format name, in table order (``pte``, ``tflite``, ``pt2``)."""
    return list(dict.fromkeys(f for f, _ in FORMATS))


def app_formats() -> tuple[str, ...]:
    """The formats the Android app's runtimes load (``pte``, ``tflite``)."""
    return tuple(dict.fromkeys(f.format for f in FORMATS.values() if f.app))


def suffixes() -> list[str]:
    """Every file suffix the table knows, with the dot (``.pte``, ``.tflite``, ``.pt2``)."""
    return list(dict.fromkeys("." + f.suffix for f in FORMATS.values()))


def converters(fmt: str) -> list[str]:
    """The converters of ``fmt``, the default first."""
    return [c for f, c in FORMATS if f == fmt]


def format_of(path: str | Path) -> str:
    """The format of a model file from its suffix (``model_int8.tflite`` → ``"tflite"``)."""
    suffix = Path(path).suffix.lstrip(".").lower()
    for f in FORMATS.values():
        if f.suffix == suffix:
            return f.format
    raise ConfigError(f"unknown model file suffix {suffix!r} in {path}", stage="export",
                      hint=f"use one of: {', '.join(sorted(suffixes()))}")


def row(fmt: str, converter: str | None = None) -> Format:
    """The row of ``fmt`` made by ``converter`` (default: the format's first converter)."""
    if fmt not in formats():
        raise ConfigError(f"unknown format {fmt!r}; known: {', '.join(sorted(formats()))}", stage="export",
                          hint="pass formats=('pte', 'tflite') or a subset")
    known = converters(fmt)
    if converter is None:
        converter = known[0]
    if converter not in known:
        raise ConfigError(f"unknown {fmt} converter {converter!r}; known: {', '.join(known)}", stage="export")
    return FORMATS[(fmt, converter)]


def guess_row(path: str | Path) -> Format | None:
    """The row of a loose model file, from its suffix and a converter named in its file name
    (``model_int8_onnx2tf.tflite``); None when the suffix has several converters and the name names none."""
    fmt = format_of(path)
    name = Path(path).stem.lower()
    rows = [FORMATS[(fmt, c)] for c in converters(fmt)]
    if len(rows) == 1:
        return rows[0]
    named = [r for r in rows if r.converter.replace("-torch", "") in name]
    return named[0] if len(named) == 1 else None


# -- tensor conventions, host side (the device runner keeps its own copy: it never imports edgekd) ------
def to_layout(x: np.ndarray, layout: str | None) -> np.ndarray:
    """A logical NCHW array in a file's layout: ``"NHWC"`` transposes a 4-D array; anything else is as is."""
    return x.transpose(0, 2, 3, 1) if layout == "NHWC" and x.ndim == 4 else x


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float input → a file's int8/uint8 input: ``clip(round(x / scale) + zero_point)`` (round half to
    even), in float32 arithmetic as the Android core does it; a float input is cast to its dtype."""
    if spec.quantization is None or not spec.quantization.scale or np.dtype(spec.dtype).kind == "f":
        return np.asarray(x).astype(spec.dtype)
    q, info = spec.quantization, np.iinfo(spec.dtype)
    r = np.round(np.asarray(x, dtype=np.float32) / np.float32(q.scale)) + np.float32(q.zero_point)
    return np.clip(r, info.min, info.max).astype(spec.dtype)


def dequantize(raw: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float32 from a file's raw output: ``(q - zero_point) * scale`` for an int8/uint8 output."""
    a = np.asarray(raw)
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float32)
    if spec.quantization is None or not spec.quantization.scale:
        raise ModelFileError(f"output {spec.name!r} is {a.dtype} without a quantization scale", stage="formats",
                             hint="re-export the bundle (its edgekd.json lost the output's scale)")
    q = spec.quantization
    return (a.astype(np.float32) - np.float32(q.zero_point)) * np.float32(q.scale)
