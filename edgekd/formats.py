"""The format table: every kind of model file edgekd writes and runs, one row per (format, converter).

This module is the one place a per-format fact is written. Each row names the file suffix, the
header the file starts with, the converter's exporter and the host runner parity uses
(``"module:function"``, imported only when called), the device runner's backend for it and the
Python modules that backend imports (any one set will do), the native C++ runner's plugin, the pip
extra it needs, the file's tensor conventions (the layout of a 4-D image input, whether an int8 file
takes and returns int8 tensors), whether a QAT graph lowers to it and whether the Android app loads it.

Export (argument checks, dispatch, file names), parity, QAT lowering, the bench harness (suffix →
format, which runner backend, which layout to feed), the device probes (which modules run a backend),
the native runner's choice, the machine facts and the Android helper all read this table. The device
runner never imports edgekd: it carries a generated copy of its part (:func:`runner_table`, written
between markers in ``runtimes/python/edgekd_runner.py`` by :func:`sync_runner_table`; a test checks
the two agree), and a test checks the C++ runner's suffixes and plugins against :func:`native_rows`.
Adding a format is one row here, one converter file under ``edgekd/convert/`` and one backend class
in the device runner (``tests/test_formats.py`` does exactly that with a toy format).
The functions at the end are the host side's one copy of the tensor conventions (NHWC, int8 I/O).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bundle import TensorSpec
from edgekd.errors import ConfigError, ModelFileError
from edgekd.files import write_atomic

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
    magic: bytes = b""  # how the file starts: "?" any byte, "#" an ASCII digit, else that byte (b"": any header)
    runtimes: tuple[tuple[str, ...], ...] = ()  # module sets the runner's backend imports: any one set will do
    dists: tuple[str, ...] = ()  # the distributions whose version the runner reports, in the order it tries them
    plugin: str | None = None  # the native C++ runner's backend plugin for the suffix (None: Python runner only)
    qat: bool = False  # a trained PT2E fake-quant graph (QAT) lowers to an int8 file through this converter
    engine: str = ""  # the runtime's name in messages (ExecuTorch, LiteRT)
    profile: tuple[str, str] | None = None  # the native runner's --profile dump: (op table source, file ending)

    @property
    def key(self) -> tuple[str, str]:
        return self.format, self.converter

    def load(self, attr: str) -> Any:
        """The exporter or host runner function of this row (``attr`` = ``"exporter"`` | ``"host_runner"``)."""
        module, _, name = getattr(self, attr).partition(":")
        return getattr(importlib.import_module(module), name)


# What the device runner's backends import and report (shared by the rows of one backend)
_ET = {"magic": b"????ET##", "runtimes": (("torch", "executorch"),),  # ExecuTorch's bindings link libtorch
       "dists": ("executorch",), "plugin": "libedgekd_backend_executorch.so",
       "engine": "ExecuTorch", "profile": ("etdump", ".etdump")}
_LITERT = {"magic": b"????TFL3", "runtimes": (("ai_edge_litert",), ("tflite_runtime",), ("tensorflow",)),
           "dists": ("ai-edge-litert", "tflite-runtime", "tensorflow", "tensorflow-cpu"),
           "plugin": "libedgekd_backend_litert.so", "engine": "LiteRT",
           "profile": ("litert-profiler", ".litert.json")}
_TORCH = {"magic": b"PK\x03\x04", "runtimes": (("torch",),), "dists": ("torch",), "engine": "torch"}

FORMATS: dict[tuple[str, str], Format] = {
    f.key: f
    for f in (
        Format("pte", "executorch", "pte", PRECISIONS, "edgekd.convert.executorch:to_pte",
               "edgekd.convert.executorch:pte_runner", "executorch", "NCHW", False, "executorch", True,
               **_ET, qat=True),
        Format("tflite", "litert-torch", "tflite", PRECISIONS, "edgekd.convert.tflite:to_tflite_litert",
               "edgekd.convert.tflite:tflite_runner", "tflite", "NCHW", True, "tflite", True, **_LITERT, qat=True),
        Format("tflite", "onnx2tf", "tflite", PRECISIONS, "edgekd.convert.tflite:to_tflite_onnx2tf",
               "edgekd.convert.tflite:tflite_runner", "tflite", "NHWC", True, "onnx2tf", True, **_LITERT),
        Format("pt2", "torch", "pt2", ("fp32",), "edgekd.convert.torch_program:to_pt2",
               "edgekd.convert.torch_program:pt2_runner", "torch", "NCHW", False, None, False, **_TORCH),
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


def suffix_rows() -> dict[str, Format]:
    """The first row of every suffix, keyed by the suffix with its dot (``.tflite`` → the litert-torch row):
    the facts a file's suffix alone decides (runner backend, header, runtimes, plugin)."""
    out: dict[str, Format] = {}
    for f in FORMATS.values():
        out.setdefault("." + f.suffix, f)
    return out


def backend_row(backend: str) -> Format | None:
    """The first row the device runner's ``backend`` serves (its runtimes and distributions), None if none."""
    return next((f for f in FORMATS.values() if f.backend == backend), None)


def backends() -> list[str]:
    """Every device runner backend, in table order (``executorch``, ``tflite``, ``torch``)."""
    return list(dict.fromkeys(f.backend for f in FORMATS.values()))


def runtime_modules() -> list[str]:
    """Every top-level module a runner backend imports (``torch``, ``executorch``, ``ai_edge_litert``, ...)."""
    return list(dict.fromkeys(m for f in FORMATS.values() for mods in f.runtimes for m in mods))


def distributions() -> list[str]:
    """The converters' and the runner backends' distributions (``executorch``, ``ai-edge-litert``, ...)."""
    return list(dict.fromkeys(d for f in FORMATS.values() for d in (*f.dists, f.converter)))


def native_rows() -> dict[str, Format]:
    """The suffixes the native C++ runner reads (a row with a plugin), keyed like :func:`suffix_rows`."""
    return {s: f for s, f in suffix_rows().items() if f.plugin}


def qat_rows() -> list[Format]:
    """The rows a trained QAT graph lowers to (int8 through the converter's PT2E path)."""
    return [f for f in FORMATS.values() if f.qat]


def header_ok(head: bytes, suffix: str) -> bool:
    """Whether a file's first 8 bytes look like its suffix's format (the device runner's check, host side)."""
    f = suffix_rows().get(suffix.lower())
    return f is None or header_matches(head, f.magic)


def header_matches(head: bytes, magic: bytes) -> bool:
    """Whether ``head`` starts as ``magic`` says (the runners' matcher, the same in all three languages)."""
    return len(head) >= len(magic) and all(m == ord("?") or (m == ord("#") and 48 <= h <= 57) or m == h
                                           for h, m in zip(head, magic, strict=False))


def converters(fmt: str) -> list[str]:
    """The converters of ``fmt``, the default first."""
    return [c for f, c in FORMATS if f == fmt]


def parse_converters(specs: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``["tflite=onnx2tf", "pte=executorch"]`` (``FORMAT=NAME[,NAME]``, one spec per format) → ``{format:
    converters}``, each checked against the table; a bad spec is a ConfigError naming the known choices."""
    out: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        fmt, sep, names = (p.strip() for p in spec.partition("="))
        choices = "; ".join(f"{f}={'|'.join(converters(f))}" for f in formats())
        if not sep or not names:
            raise ConfigError(f"--converter {spec!r} is not FORMAT=NAME", stage="export", hint=f"known: {choices}")
        out[fmt] = tuple(n.strip() for n in names.split(",") if n.strip())
        for name in out[fmt]:
            row(fmt, name)  # an unknown format or converter fails here, naming the known ones
    return out


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


# -- the device runner's copy -----------------------------------------------------------------------------
RUNNER_BEGIN = "# --- generated from edgekd/formats.py by edgekd.formats.sync_runner_table(): do not edit ---"
RUNNER_END = "# --- end of the generated table ---"


def runner_table() -> str:
    """The format table as the device runner reads it (it never imports edgekd): suffix → (backend, header),
    between :data:`RUNNER_BEGIN` and :data:`RUNNER_END`."""
    rows = "".join(f"    {s!r}: ({f.backend!r}, {f.magic!r}),\n" for s, f in suffix_rows().items())
    return f"{RUNNER_BEGIN}\nFORMATS = {{\n{rows}}}\n{RUNNER_END}\n"


def runner_source(text: str) -> str:
    """``text`` (the runner's source) with its generated table replaced by :func:`runner_table`."""
    start, end = text.find(RUNNER_BEGIN), text.find(RUNNER_END)
    if start < 0 or end < start:
        raise ConfigError("the device runner has no generated format table", stage="formats",
                          hint=f"put the lines {RUNNER_BEGIN!r} and {RUNNER_END!r} back where FORMATS is defined")
    return text[:start] + runner_table() + text[end + len(RUNNER_END) + 1:]


def sync_runner_table(path: str | Path | None = None) -> bool:
    """Rewrite the device runner's generated table from :data:`FORMATS` (default: the checkout's
    ``runtimes/python/edgekd_runner.py``); True when it changed."""
    path = Path(path) if path else Path(__file__).resolve().parents[1] / "runtimes" / "python" / "edgekd_runner.py"
    old, mode = path.read_text(), path.stat().st_mode
    new = runner_source(old)
    if new != old:
        write_atomic(path, new, stage="formats", what="the device runner")
        path.chmod(mode)
    return new != old


def _c_string(raw: bytes | str) -> str:
    data = raw.encode() if isinstance(raw, str) else raw
    return '"' + "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\{b:03o}" for b in data) + '"'


def native_header() -> str:
    """``runtimes/cpp/src/formats.h``: the suffixes the C++ runner knows, with backend, plugin (nullptr: the
    Python runner only), runtime name and header (a test checks the file equals this; :func:`sync_native_header`)."""
    rows = "".join(f"    {{{_c_string(s)}, {_c_string(f.backend)}, {_c_string(f.plugin) if f.plugin else 'nullptr'}, "
                   f"{_c_string(f.engine)}, {_c_string(f.magic)}, {len(f.magic)}}},\n"
                   for s, f in suffix_rows().items())
    return ("// Generated from edgekd/formats.py by edgekd.formats.sync_native_header(): do not edit.\n"
            "// The suffixes the native runner knows; magic: how the file starts (? any byte, # an ASCII digit).\n"
            "#pragma once\n\n#include <cstddef>\n\nnamespace edgekd {\n\n"
            "struct FormatRow {\n  const char* suffix;\n  const char* backend;\n  const char* plugin;\n"
            "  const char* engine;\n  const char* magic;\n  size_t magic_len;\n};\n\n"
            f"inline constexpr FormatRow kFormats[] = {{\n{rows}}};\n\n}}  // namespace edgekd\n")


def sync_native_header(path: str | Path | None = None) -> bool:
    """Rewrite the C++ runner's ``formats.h`` from :data:`FORMATS`; True when it changed."""
    path = Path(path) if path else Path(__file__).resolve().parents[1] / "runtimes" / "cpp" / "src" / "formats.h"
    new = native_header()
    if path.is_file() and path.read_text() == new:
        return False
    write_atomic(path, new, stage="formats", what="the native runner's format header")
    return True


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
