#!/usr/bin/env python3
"""edgekd device runner: time one model file on the machine it runs on and print JSON lines.

Runs ON the device with the standard library, numpy and ONE runtime: ExecuTorch for ``.pte``,
LiteRT / tflite-runtime / TensorFlow Lite for ``.tflite``, torch for ``.pt2`` (the eager
baseline). It never imports edgekd, so it can be copied alone to a Pi or a phone::

    python3 edgekd_runner.py --model m.tflite --inputs x.npz --warmup 10 --runs 50 --threads 2 \\
        [--min-duration SECONDS] [--eval eval.npz] [--layout auto|NCHW|NHWC] [--keep-samples]

Order: import the runtime; load the file (``load_ms``, the cold load); free it and load it again
(``warm_load_ms``); one inference (``first_inference_ms``, output read); set the input once; ``--warmup``
untimed and ``--runs`` timed runs of the runtime's invoke alone (``invoke()``/``execute()``; with
``--min-duration`` timing goes on past ``--runs`` until that many seconds have passed, and ``runs``
in the result is the count timed); then the eval set.

``x.npz`` holds ``x``: the LOGICAL input (float32, NCHW, batch 1). The runner adapts it to the
file's own input: NHWC files (onnx2tf) get a transpose, int8/uint8 inputs (litert-torch int8)
are quantized with the file's scale and zero point, quantized outputs are dequantized. Without
``--inputs`` it feeds zeros of the file's own input shape. Another float dtype (float64) is converted
to the file's and NaN/inf are fed as they are (a quantized input takes NaN as its zero point, inf
clipped to its range); the result says so (``notes``, ``input.given_dtype``/``nan``/``inf``,
``output_nan``). A wrong shape or a non-float dtype is an ``input_mismatch`` error. ``eval.npz`` holds ``x`` (N,C,H,W)
float32 and ``y`` (N,) labels; the runner reports top-1 accuracy over all N. It may instead hold
decoded 8-bit images in the model's channel order — ``pixels`` (all of them flattened, uint8),
``shapes`` (N, 3: C, H, W of each) — with the bundle's preprocessing as numbers (``pre_size`` [h, w],
``pre_resize_to`` (0: resize straight to the size), ``pre_crop`` (1: centre), ``pre_scale``,
``pre_mean``, ``pre_std``), and the runner applies that preprocessing itself, a batch at a time, as an
app would (:func:`preprocess_image`): the accuracy then covers the whole image pipeline, not just the
model. (Such a file may also hold ``x``, the host's preprocessing of the same images.)

stdout carries exactly one JSON object per line (native libraries' own stdout is sent to
stderr): ``{"event": "result", ...}`` or ``{"event": "error", "error_type", "message", "hint"}``
with a non-zero exit code: 2 bad arguments / missing file, 3 corrupt or unreadable model,
4 wrong input shape or dtype, 5 no runtime installed for the format, 1 anything else.

Latency summaries use numpy's linear-interpolation percentiles and the population std, the
same as ``edgekd.bench.stats.Stats``. Peak memory is VmHWM (``/proc/self/status``) at the end
minus VmHWM after importing the runtime (the high-water mark is reset there where Linux allows).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

EXIT_OTHER, EXIT_ARGS, EXIT_MODEL, EXIT_INPUT, EXIT_RUNTIME = 1, 2, 3, 4, 5

# suffix -> (the backend class's ``runtime`` that runs it, how the file starts: "?" any byte, "#" a digit)
# --- generated from edgekd/formats.py by edgekd.formats.sync_runner_table(): do not edit ---
FORMATS = {
    '.pte': ('executorch', b'????ET##'),
    '.tflite': ('tflite', b'????TFL3'),
    '.pt2': ('torch', b'PK\x03\x04'),
}
# --- end of the generated table ---


class RunnerError(Exception):
    """A failure with its exit code, a short type, a message naming the thing at fault and a fix."""

    def __init__(self, code: int, error_type: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code, self.error_type, self.message, self.hint = code, error_type, message, hint


# -- tensors ------------------------------------------------------------------------------------
class TensorInfo:
    """The file's own view of a tensor: shape (None = any size), numpy dtype, (scale, zero point)."""

    def __init__(self, shape: tuple[int | None, ...], dtype: Any, quant: tuple[float, int] | None = None):
        self.shape, self.dtype, self.quant = tuple(shape), np.dtype(dtype), quant


def _shape_fits(shape: tuple[int, ...], want: tuple[int | None, ...]) -> bool:
    return len(shape) == len(want) and all(w is None or w < 0 or s == w for s, w in zip(shape, want, strict=True))


def choose_layout(x_shape: tuple[int, ...], info: TensorInfo, layout: str) -> str:
    """Pick NCHW or NHWC for a logical NCHW array; ``layout`` other than ``auto`` forces it."""
    if layout != "auto":
        return layout
    if _shape_fits(x_shape, info.shape):
        return "NCHW"
    if len(x_shape) == 4 and _shape_fits(tuple(x_shape[i] for i in (0, 2, 3, 1)), info.shape):
        return "NHWC"
    raise RunnerError(EXIT_INPUT, "input_mismatch",
                      f"input of shape {list(x_shape)} fits the model's input {list(info.shape)} neither as NCHW nor as NHWC",
                      "write the logical input (float32, NCHW, the model's batch size) under key 'x'")


def to_model_input(x: np.ndarray, info: TensorInfo, layout: str) -> np.ndarray:
    """Turn a logical NCHW float array into what the file takes: layout, dtype, quantization."""
    if layout == "NHWC" and x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    if not _shape_fits(x.shape, info.shape):
        raise RunnerError(EXIT_INPUT, "input_mismatch",
                          f"input of shape {list(x.shape)} ({layout}) does not fit the model's input {list(info.shape)}",
                          "check the input shape, or pass --layout NCHW|NHWC")
    if x.dtype == info.dtype:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.integer) and np.issubdtype(info.dtype, np.integer) and info.quant is None:
        lim = np.iinfo(info.dtype)  # token ids: int64 in the .npz, int32 in a litert-torch file
        if x.size and (x.min() < lim.min or x.max() > lim.max):
            raise RunnerError(EXIT_INPUT, "input_mismatch", f"integer input out of the model's {info.dtype} range",
                              "write ids that fit the model's input dtype")
        return np.ascontiguousarray(x.astype(info.dtype))
    if not np.issubdtype(x.dtype, np.floating):
        raise RunnerError(EXIT_INPUT, "input_mismatch",
                          f"input dtype {x.dtype} cannot feed the model's {info.dtype} input",
                          "write the logical input as float32")
    if info.quant is not None:
        scale, zero_point = info.quant
        lim = np.iinfo(info.dtype)
        x = np.where(np.isnan(x), x.dtype.type(0), x)  # an integer cannot hold NaN: it is fed as the zero point
        q = np.clip(np.round(x / scale) + zero_point, lim.min, lim.max)
        return np.ascontiguousarray(q.astype(info.dtype))
    if np.issubdtype(info.dtype, np.floating):
        return np.ascontiguousarray(x.astype(info.dtype))
    raise RunnerError(EXIT_INPUT, "input_mismatch",
                      f"the model takes {info.dtype} input without a quantization scale; float input cannot feed it",
                      "pass the input already in the model's dtype")


def input_notes(x: np.ndarray, feed: np.ndarray, info: TensorInfo) -> tuple[dict[str, Any], list[str]]:
    """What the runner did to the given input, as fields of ``input`` and sentences for ``notes``."""
    fields: dict[str, Any] = {"given_dtype": str(x.dtype), "nan": 0, "inf": 0}
    notes = []
    if x.dtype != feed.dtype and x.dtype != np.float32:  # float32 -> int8 quantization is the protocol's own path
        notes.append(f"input x is {x.dtype}; converted to {feed.dtype}, the model's input dtype"
                     + (" (quantized with the file's scale and zero point)" if info.quant is not None else ""))
    if np.issubdtype(x.dtype, np.floating):
        fields["nan"], fields["inf"] = int(np.isnan(x).sum()), int(np.isinf(x).sum())
        if fields["nan"]:
            notes.append(f"input x holds {fields['nan']} NaN of {x.size} values; "
                         + ("fed as the zero point (0.0): the quantized input cannot hold NaN" if info.quant is not None
                            else "fed as they are"))
        if fields["inf"]:
            notes.append(f"input x holds {fields['inf']} infinite of {x.size} values; "
                         + ("clipped to the quantized input's range" if info.quant is not None else "fed as they are"))
    return fields, notes


def from_model_output(y: np.ndarray, info: TensorInfo) -> np.ndarray:
    if info.quant is not None:
        scale, zero_point = info.quant
        return (y.astype(np.float32) - zero_point) * scale
    return y.astype(np.float32, copy=False)


def _quant(params: tuple[float, int]) -> tuple[float, int] | None:
    scale, zero_point = params
    return (float(scale), int(zero_point)) if scale else None


def _dist_version(*names: str) -> str:
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


# -- backends: one class per format -------------------------------------------------------------
class TFLiteBackend:
    runtime = "tflite"

    def __init__(self) -> None:
        for module, dists in (("ai_edge_litert.interpreter", ("ai-edge-litert",)),
                              ("tflite_runtime.interpreter", ("tflite-runtime",)),
                              ("tensorflow.lite", ("tensorflow", "tensorflow-cpu"))):
            try:
                mod = importlib.import_module(module.split(".")[0])
                self.cls = (mod.lite if module == "tensorflow.lite" else importlib.import_module(module)).Interpreter
            except (ImportError, AttributeError):
                continue
            self.interpreter, self.version = module, _dist_version(*dists)
            return
        raise RunnerError(EXIT_RUNTIME, "runtime_missing", "no TFLite runtime is installed for .tflite files",
                          "pip install ai-edge-litert (or tflite-runtime on older boards)")

    def load(self, path: Path, threads: int) -> None:
        self.interp = self.cls(model_path=str(path), num_threads=threads)
        self.interp.allocate_tensors()
        ins, outs = self.interp.get_input_details(), self.interp.get_output_details()
        if len(ins) != 1:
            raise RunnerError(EXIT_INPUT, "input_mismatch", f"{path.name} has {len(ins)} inputs; the runner feeds one",
                              "export the model with a single image input")
        self.in_index, self.out_index = ins[0]["index"], outs[0]["index"]
        self.input = TensorInfo(tuple(int(s) for s in ins[0]["shape"]), ins[0]["dtype"], _quant(ins[0]["quantization"]))
        self.output = TensorInfo(tuple(int(s) for s in outs[0]["shape"]), outs[0]["dtype"],
                                 _quant(outs[0]["quantization"]))

    def close(self) -> None:
        del self.interp

    def run(self, x: np.ndarray) -> np.ndarray:
        self.interp.set_tensor(self.in_index, x)
        self.interp.invoke()
        return self.interp.get_tensor(self.out_index)

    def timed_call(self, x: np.ndarray) -> Any:
        """The call the timed loop repeats: the input is set once here, each run is ``invoke()`` alone."""
        self.interp.set_tensor(self.in_index, x)
        return self.interp.invoke


# ExecuTorch ScalarType codes -> numpy dtypes
_ET_DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
              7: "float64", 11: "bool"}


class ExecuTorchBackend:
    """ExecuTorch's C++ runtime through its pybindings module ``_C``.

    ``executorch.runtime.Runtime`` wraps the same calls but imports ``executorch.exir`` (the
    compiler) first, ~4 s more here and far more on a board; ``_C`` needs only libtorch.
    """

    runtime = "executorch"

    def __init__(self) -> None:
        try:
            import torch  # the pybindings link against libtorch and take torch tensors
        except ImportError:
            raise RunnerError(EXIT_RUNTIME, "runtime_missing", "the ExecuTorch Python runtime needs torch",
                              "pip install executorch (it brings torch)") from None
        for module in ("executorch.extension.pybindings._C", "executorch.extension.pybindings.portable_lib"):
            try:
                self.lib = importlib.import_module(module)
            except ImportError:
                continue
            self.torch, self.interpreter, self.version = torch, module, _dist_version("executorch")
            return
        raise RunnerError(EXIT_RUNTIME, "runtime_missing", "cannot import the ExecuTorch runtime for .pte files",
                          "pip install executorch")

    def load(self, path: Path, threads: int) -> None:
        self.lib._unsafe_reset_threadpool(threads)  # XNNPACK's thread pool; the only knob from Python
        program = self.lib._load_program(str(path), enable_etdump=False, debug_buffer_size=0,
                                         program_verification=self.lib.Verification.InternalConsistency)
        self.method = program.load_method("forward")
        self._program = program  # the method borrows from the program: keep it alive
        meta = self.method.method_meta()
        if meta.num_inputs() != 1:
            raise RunnerError(EXIT_INPUT, "input_mismatch", f"{path.name} has {meta.num_inputs()} inputs; the runner feeds one",
                              "export the model with a single image input")
        self.input, self.output = (TensorInfo(tuple(t.sizes()), _ET_DTYPES.get(t.dtype(), "float32"))
                                   for t in (meta.input_tensor_meta(0), meta.output_tensor_meta(0)))

    def close(self) -> None:
        del self.method, self._program

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.method.call([self.torch.from_numpy(x)])[0].numpy()

    def timed_call(self, x: np.ndarray) -> Any:
        """The call the timed loop repeats: ``execute()`` alone, with the input set once here.

        ``call()`` costs set_inputs (a copy into the planned buffer) plus ``get_outputs`` (a clone of every
        output) on top of ``execute()``: 3-6% of a 0.3 ms model. Setting the input once is allowed when
        running again leaves the output unchanged (no planned buffer reuses the input's memory); this is
        checked here, and where it fails every run sets the input again.
        """
        inputs = [self.torch.from_numpy(x)]
        self.method.set_inputs(inputs)
        self.method.execute()
        first = [t.clone() for t in self.method.get_outputs()]
        self.method.execute()  # input not set again
        again = self.method.get_outputs()
        if all(self.torch.equal(a, b) for a, b in zip(first, again, strict=True)):
            return self.method.execute
        self.method.set_inputs(inputs)

        def set_and_execute() -> None:
            self.method.set_inputs(inputs)
            self.method.execute()

        return set_and_execute


class TorchBackend:
    runtime = "torch"
    interpreter = "torch.export"

    def __init__(self) -> None:
        try:
            import torch
        except ImportError:
            raise RunnerError(EXIT_RUNTIME, "runtime_missing", "torch is not installed; .pt2 files need it",
                              "pip install torch") from None
        self.torch, self.version = torch, torch.__version__

    def load(self, path: Path, threads: int) -> None:
        torch = self.torch
        torch.set_num_threads(threads)
        ep = torch.export.load(str(path))
        users = set(ep.graph_signature.user_inputs)
        vals = [n.meta.get("val") for n in ep.graph.nodes if n.op == "placeholder" and n.name in users]
        if len(vals) != 1 or not isinstance(vals[0], torch.Tensor):
            raise RunnerError(EXIT_INPUT, "input_mismatch", f"{path.name} takes {len(vals)} inputs; the runner feeds one tensor",
                              "export the model with a single image input")
        shape = tuple(s if isinstance(s, int) else None for s in vals[0].shape)
        self.input = TensorInfo(shape, str(vals[0].dtype).removeprefix("torch."))
        self.module = ep.module()
        self.output = TensorInfo((), "float32")

    def close(self) -> None:
        del self.module

    def timed_call(self, x: np.ndarray) -> Any:
        return lambda: self.run(x)

    def run(self, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            y = self.module(self.torch.from_numpy(x))
        return (y[0] if isinstance(y, (tuple, list)) else y).numpy()


# a new format's backend class joins this tuple (its ``runtime`` names it in FORMATS)
BACKENDS = {cls.runtime: cls for cls in (ExecuTorchBackend, TFLiteBackend, TorchBackend)}


def backend_for(path: Path) -> Any:
    """The backend class of a model file, from its suffix."""
    return BACKENDS[FORMATS[path.suffix][0]]


def check_header(path: Path) -> None:
    """Reject files that are clearly not of their format before a native loader sees them."""
    head = path.open("rb").read(8)
    magic = FORMATS[path.suffix][1]
    if not (len(head) >= len(magic) and all(m == ord("?") or (m == ord("#") and 48 <= h <= 57) or m == h
                                            for h, m in zip(head, magic, strict=False))):
        raise RunnerError(EXIT_MODEL, "corrupt_model",
                          f"{path} does not start like a {path.suffix} file (header {head!r})",
                          "re-export the model or copy it again; compare its sha256 with edgekd.json")


# -- measuring ----------------------------------------------------------------------------------
def summarize(samples_ms: list[float]) -> dict[str, float]:
    """p50/p90/p99 (numpy linear interpolation), mean, population std, min, max."""
    a = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(a.mean()),
            "std": float(a.std()), "min": float(a.min()), "max": float(a.max())}


def peak_rss_mb() -> float:
    """VmHWM of this process in MB; ru_maxrss where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def reset_peak_rss() -> None:
    with contextlib.suppress(OSError):  # Linux >= 4.0: "5" resets VmHWM to the current RSS
        Path("/proc/self/clear_refs").write_text("5")


def _ms(t0: int) -> float:
    return (time.perf_counter_ns() - t0) / 1e6


def evaluate(backend: Any, x: Any, y: np.ndarray, layout: str) -> tuple[float, list[int]]:
    """Top-1 accuracy over all N samples, fed in chunks of the model's batch size."""
    if x.ndim < 2 or len(x) != len(y):
        raise RunnerError(EXIT_INPUT, "input_mismatch", f"eval x {list(x.shape)} and y {list(y.shape)} do not pair up",
                          "write x (N,C,H,W) float32 and y (N,) int labels")
    batch = backend.input.shape[0] or 1
    preds: list[int] = []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        out = from_model_output(backend.run(to_model_input(chunk, backend.input, layout)), backend.output)
        preds.extend(int(p) for p in out.reshape(batch, -1).argmax(axis=1)[:batch - pad])
    return float(np.mean(np.asarray(preds) == y.astype(np.int64))), preds


# -- raw images: the bundle's preprocessing (edgekd.bundle.Preprocessing; edgekd.android is its reference) -----
def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5, 0.0)
    lo = np.minimum(np.floor(s).astype(np.int64), n_in - 1)
    return lo, np.minimum(lo + 1, n_in - 1), s - lo


def _resize(p: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear (half-pixel centres, edge clamp, no antialiasing) resize of (C, H, W) planes, float64."""
    y0, y1, wy = _axis(p.shape[1], h)
    x0, x1, wx = _axis(p.shape[2], w)
    wx, wy = wx[None, None, :], wy[None, :, None]
    top = (1.0 - wx) * p[:, y0][:, :, x0] + wx * p[:, y0][:, :, x1]
    bottom = (1.0 - wx) * p[:, y1][:, :, x0] + wx * p[:, y1][:, :, x1]
    return (1.0 - wy) * top + wy * bottom


PRE_KEYS = ("pre_size", "pre_resize_to", "pre_crop", "pre_scale", "pre_mean", "pre_std")


def preprocess_image(pixels: np.ndarray, pre: dict[str, np.ndarray]) -> np.ndarray:
    """One decoded uint8 (C, H, W) image (already in the model's channel order) → the float32 (C, h, w) input:
    resize (exact, or the shorter side to ``pre_resize_to``), centre crop, ``x * scale``, ``(x - mean) / std``."""
    c, ih, iw = pixels.shape
    h, w = (int(v) for v in pre["pre_size"])
    resize_to = int(pre["pre_resize_to"])
    if resize_to:
        short, long = (iw, ih) if iw <= ih else (ih, iw)
        n_short, n_long = resize_to, int(resize_to * long / short)
        rh, rw = (n_long, n_short) if iw <= ih else (n_short, n_long)
    else:
        rh, rw = h, w
    top, left = (int(round((rh - h) / 2.0)), int(round((rw - w) / 2.0))) if int(pre["pre_crop"]) else (0, 0)
    r = _resize(pixels.astype(np.float64), rh, rw)[:, top:top + h, left:left + w]
    mean = np.resize(np.asarray(pre["pre_mean"], dtype=np.float32), c)[:, None, None]
    std = np.resize(np.asarray(pre["pre_std"], dtype=np.float32), c)[:, None, None]
    return (r.astype(np.float32) * np.float32(pre["pre_scale"]) - mean) / std


class RawImages:
    """Decoded images from an eval .npz, preprocessed a slice at a time (never all at the model's size at once)."""

    def __init__(self, pixels: np.ndarray, shapes: np.ndarray, pre: dict[str, np.ndarray]) -> None:
        self.pixels, self.shapes, self.pre = pixels.reshape(-1), shapes.astype(np.int64).reshape(-1, 3), pre
        self.offsets = np.concatenate([[0], np.cumsum(np.prod(self.shapes, axis=1))]).astype(np.int64)
        c = int(self.shapes[0, 0]) if len(self.shapes) else 1
        self.shape = (len(self.shapes), c, *(int(v) for v in pre["pre_size"]))
        self.ndim = 4

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, s: slice) -> np.ndarray:
        rows = range(*s.indices(len(self)))
        return np.stack([preprocess_image(self.pixels[self.offsets[i]:self.offsets[i + 1]].reshape(self.shapes[i]),
                                          self.pre) for i in rows]).astype(np.float32)


def load_eval(path: Path) -> tuple[Any, np.ndarray]:
    """``(x, y)`` of an eval .npz: decoded images preprocessed on the fly when it has them, else logical inputs."""
    try:
        with np.load(path) as probe:
            raw = "pixels" in probe.files
    except (OSError, ValueError) as e:
        raise RunnerError(EXIT_ARGS, "bad_arguments", f"cannot read {path} as .npz ({e})", "write it with np.savez") from None
    if not raw:
        ev = _load_npz(path, ("x", "y"))
        return ev["x"], ev["y"]
    ev = _load_npz(path, ("pixels", "shapes", "y", *PRE_KEYS))
    images = RawImages(ev["pixels"], ev["shapes"], {k: ev[k] for k in PRE_KEYS})
    if images.offsets[-1] != ev["pixels"].size or len(images) != len(ev["y"]):
        raise RunnerError(EXIT_INPUT, "input_mismatch", f"{path}: shapes describe {len(images)} images of "
                          f"{images.offsets[-1]} pixels for {len(ev['y'])} labels; the file holds {ev['pixels'].size} "
                          "pixels", "write pixels, shapes and y of the same images")
    return images, ev["y"]


def _load_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise RunnerError(EXIT_ARGS, "bad_arguments", f"{path} has no key(s) {missing}; it has {data.files}",
                                  "write the arrays with np.savez(path, x=..., y=...)")
            return {k: data[k] for k in keys}
    except (OSError, ValueError) as e:
        raise RunnerError(EXIT_ARGS, "bad_arguments", f"cannot read {path} as .npz ({e})", "write it with np.savez") from None


def pin_cpus(spec: str | None) -> list[int] | None:
    """Restrict this process to the CPUs in ``spec`` ("0,1" or "2-3") before any runtime starts its
    thread pool, so every runtime sizes its pool to the same cores (Linux only)."""
    if not spec:
        return None
    try:
        cpus = sorted({c for part in spec.split(",") for c in (
            range(int(part.split("-")[0]), int(part.split("-")[1]) + 1) if "-" in part else [int(part)])})
        os.sched_setaffinity(0, cpus)
    except (ValueError, OSError, AttributeError) as e:
        raise RunnerError(EXIT_ARGS, "bad_arguments", f"cannot pin to CPUs {spec!r} ({e})",
                          f"pass CPUs this machine has, e.g. 0-{(os.cpu_count() or 1) - 1}") from None
    return cpus


def measure(args: argparse.Namespace) -> dict[str, Any]:
    model = Path(args.model)
    cpus = pin_cpus(args.cpus)
    t0 = time.perf_counter_ns()
    backend = backend_for(model)()
    import_ms = _ms(t0)
    reset_peak_rss()
    baseline = peak_rss_mb()

    t0 = time.perf_counter_ns()
    try:
        backend.load(model, args.threads)
    except RunnerError:
        raise
    except Exception as e:  # every loader has its own exception types for a bad file
        raise RunnerError(EXIT_MODEL, "corrupt_model", f"{backend.runtime} cannot load {model}: {e}".strip(),
                          "re-export the model or copy it again; compare its sha256 with edgekd.json") from None
    load_ms = _ms(t0)
    backend.close()  # free the first load, then time a second one of the same file: the warm load
    t0 = time.perf_counter_ns()
    backend.load(model, args.threads)
    warm_load_ms = _ms(t0)

    if args.inputs:
        x = _load_npz(Path(args.inputs), ("x",))["x"]
    else:
        x = np.zeros([s or 1 for s in backend.input.shape], backend.input.dtype)
    layout = choose_layout(x.shape, backend.input, args.layout) if args.inputs else "native"
    feed = to_model_input(x, backend.input, layout)
    given, notes = input_notes(x, feed, backend.input)

    t0 = time.perf_counter_ns()
    out = backend.run(feed)
    first_ms = _ms(t0)
    out_nan = int(np.isnan(from_model_output(np.asarray(out), backend.output)).sum())
    if out_nan:
        notes.append(f"the output holds {out_nan} NaN of {np.size(out)} values")
    call = backend.timed_call(feed)  # the input does not change: set once, then invoke alone per run
    warm: list[float] = []
    for _ in range(args.warmup):
        t0 = time.perf_counter_ns()
        call()
        warm.append(_ms(t0))
    samples: list[float] = []
    start = time.perf_counter_ns()
    min_ns = int(args.min_duration * 1e9)
    t0 = start
    while len(samples) < args.runs or t0 - start < min_ns:  # --min-duration: go on past --runs until then
        t0 = time.perf_counter_ns()
        call()
        samples.append(_ms(t0))

    accuracy, n_eval, preds = None, 0, None
    if args.eval:
        ev_x, ev_y = load_eval(Path(args.eval))
        batch = backend.input.shape[0] or 1
        ev_layout = choose_layout((batch, *ev_x.shape[1:]), backend.input, args.layout)
        accuracy, preds = evaluate(backend, ev_x, ev_y, ev_layout)
        n_eval = len(ev_y)
    peak = peak_rss_mb()

    result = {
        "event": "result", "runtime": backend.runtime, "runtime_version": backend.version,
        "interpreter": backend.interpreter,
        "machine": {"hostname": socket.gethostname(), "platform": platform.platform(),
                    "machine": platform.machine(), "python": platform.python_version(), "cpu_count": os.cpu_count()},
        "model": str(model), "model_bytes": model.stat().st_size, "threads": args.threads, "cpus": cpus,
        "warmup": args.warmup, "runs": len(samples), "min_duration_s": args.min_duration, "import_ms": import_ms,
        "load_ms": load_ms, "warm_load_ms": warm_load_ms,
        "first_inference_ms": first_ms, "latency_ms": summarize(samples) if samples else None,
        "latency_samples_ms": samples, "peak_mem_mb": max(0.0, peak - baseline), "baseline_mem_mb": baseline,
        "accuracy": accuracy, "eval_samples": n_eval,
        "input": {"shape": list(feed.shape), "dtype": str(feed.dtype), "layout": layout, **given},
        "output_shape": list(np.shape(out)), "output_nan": out_nan, "notes": notes,
    }
    if args.keep_samples:
        result["warmup_samples_ms"] = warm
        result["eval_predictions"] = preds
    return result


# -- command line -------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print usage and exit 2 without JSON
        raise RunnerError(EXIT_ARGS, "bad_arguments", message, "run edgekd_runner.py --help")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(description="Time one .pte/.tflite/.pt2 model and print JSON lines on stdout.")
    p.add_argument("--model", required=True, help="model file: .pte, .tflite or .pt2")
    p.add_argument("--inputs", help=".npz with x: logical float32 NCHW input (default: zeros)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs before timing")
    p.add_argument("--runs", type=int, default=50, help="timed runs (at least)")
    p.add_argument("--min-duration", type=float, default=0.0, metavar="SECONDS",
                   help="go on timing past --runs until this many seconds of timed runs have elapsed")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the runtime")
    p.add_argument("--eval", help=".npz with x (N,C,H,W) float32 and y (N,) labels, or decoded images (pixels, shapes, "
                   "y, preprocessing): top-1 accuracy")
    p.add_argument("--layout", choices=("auto", "NCHW", "NHWC"), default="auto", help="input layout of the file")
    p.add_argument("--cpus", default=None, help="pin the runner to these CPUs first, e.g. 0,1 or 4-7 (Linux)")
    p.add_argument("--keep-samples", action="store_true", help="also emit warm-up samples and eval predictions")
    args = p.parse_args(argv)
    if args.warmup < 0 or args.runs < 1 or args.threads < 1 or not args.min_duration >= 0:
        p.error(f"need --warmup >= 0, --runs >= 1, --threads >= 1, --min-duration >= 0 (got {args.warmup}, "
                f"{args.runs}, {args.threads}, {args.min_duration})")
    for flag in ("model", "inputs", "eval"):
        path = getattr(args, flag)
        if path and not Path(path).is_file():
            p.error(f"--{flag} {path}: no such file")
    if Path(args.model).suffix not in FORMATS:
        p.error(f"--model {args.model}: unknown format; expected one of {', '.join(FORMATS)}")
    check_header(Path(args.model))
    return args


def main(argv: list[str] | None = None) -> int:
    out_fd = os.dup(1)
    os.dup2(2, 1)  # native libraries print on fd 1: keep stdout for our JSON lines only

    def emit(obj: dict[str, Any]) -> None:
        os.write(out_fd, (json.dumps(obj) + "\n").encode())

    try:
        emit(measure(parse_args(argv)))
        return 0
    except RunnerError as e:
        emit({"event": "error", "error_type": e.error_type, "message": e.message, "hint": e.hint, "exit_code": e.code})
        return e.code
    except Exception as e:
        emit({"event": "error", "error_type": "runner_failure", "message": f"{type(e).__name__}: {e}",
              "hint": "see the runner's stderr; report it with the model file", "exit_code": EXIT_OTHER})
        return EXIT_OTHER
    finally:
        sys.stdout.flush()
        os.dup2(out_fd, 1)
        os.close(out_fd)


if __name__ == "__main__":
    sys.exit(main())
