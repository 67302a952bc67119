"""The Android demo's Python side: the reference the app's plain-Java core (``android_demo/core``) must match.

The app reads only ``edgekd.json``. Given an 8-bit image it builds the exact input tensor one model
file takes, and turns the file's raw output into ranked classes. This module does the same in numpy,
step for step, so that ``tests/test_android_core.py`` can check the Java core against it bit for bit:

    x = preprocess(image_uint8_hwc, bundle, "tflite/int8/litert-torch")   # what the file takes
    ranked = topk(dequantize(raw_output, bundle.file(key).outputs[0]), k=3)  # [(index, probability)]

Preprocessing (``dev.edgekd.core.Preprocessor`` documents the same steps):

1. channels: to the model's count (RGB → gray by integer BT.601 luma ``(299R + 587G + 114B + 500) // 1000``,
   gray → RGB by repetition); ``BGR`` reverses the three channels;
2. resize: bilinear, half-pixel centres, edge clamp, no antialiasing (OpenCV ``INTER_LINEAR``), in float64,
   straight to ``preprocessing.size`` (h, w) (``resize="exact"``), or the shorter side to ``resize_to`` and a
   centre crop of (h, w) (``"shorter_side"``; :meth:`~edgekd.bundle.Preprocessing.resized` and
   :meth:`~edgekd.bundle.Preprocessing.crop_box` give the geometry);
3. in float32: ``x = r * scale``, ``x = (x - mean[c]) / std[c]``;
4. layout NCHW or NHWC as the file's input says, batch 1;
5. int8/uint8 input with a quantization: ``q = clip(round(x / scale) + zero_point)`` (half to even).

``copy_to_android_assets`` puts a bundle (its ``.pte``/``.tflite`` files and a matching ``edgekd.json``)
and optional sample images into an app's ``assets`` folder (``edgekd export ... --android-assets DIR``).
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bundle import MANIFEST, Bundle, ModelFile, Preprocessing, TensorSpec
from edgekd.errors import ConfigError, ModelFileError
from edgekd.files import atomic_path, make_folder, write_atomic
from edgekd.formats import app_formats, dequantize, quantize, to_layout

__all__ = [
    "ANDROID_FORMATS",
    "copy_to_android_assets",
    "dequantize",
    "logical_input",
    "preprocessing_of",
    "preprocess",
    "raw_images",
    "resize_and_crop",
    "resize_bilinear",
    "samples_from_tensors",
    "softmax",
    "topk",
    "write_png",
    "write_pnm",
]

ANDROID_FORMATS = app_formats()  # what the app's runtimes (ExecuTorch, LiteRT) load: from the format table
_STAGE = "android"


# -- preprocessing -----------------------------------------------------------------------------------
def _bundle(bundle: Bundle | str | Path) -> Bundle:
    return bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)


def preprocessing_of(bundle: Bundle) -> Preprocessing:
    """The bundle's preprocessing, or one derived from its logical input (mean 0, std 1) when absent."""
    if bundle.preprocessing is not None:
        return bundle.preprocessing
    shape = bundle.inputs[0].shape
    if len(shape) != 4:
        raise ModelFileError(f"the bundle has no preprocessing and its input {list(shape)} is not an image",
                             stage=_STAGE, hint="export with preprocessing=Preprocessing(...)")
    c = shape[1]
    return Preprocessing(size=(shape[2], shape[3]), mean=(0.0,) * c, std=(1.0,) * c,
                         channel_order="GRAY" if c == 1 else "RGB")


def _channels(pre: Preprocessing) -> int:
    if pre.channel_order not in ("GRAY", "RGB", "BGR"):
        raise ModelFileError(f"preprocessing.channel_order {pre.channel_order!r} is not GRAY, RGB or BGR",
                             stage=_STAGE, hint="re-export the bundle")
    return 1 if pre.channel_order == "GRAY" else 3


def _layout(spec: TensorSpec, c: int, h: int, w: int, key: str) -> str:
    s = spec.shape
    if len(s) != 4:
        raise ModelFileError(f"{key} input {list(s)} is not a 4-D image tensor", stage=_STAGE)
    layout = spec.layout or ("NCHW" if tuple(s[1:]) == (c, h, w) else "NHWC")
    want = (c, h, w) if layout == "NCHW" else (h, w, c)
    if layout not in ("NCHW", "NHWC") or tuple(s[1:]) != want:
        raise ModelFileError(f"{key} input {list(s)} ({layout}) does not fit the preprocessing "
                             f"({c} channels, {h}x{w})", stage=_STAGE, hint="re-export the bundle")
    if s[0] > 1:
        raise ModelFileError(f"{key} takes batch {s[0]}; the app runs one image at a time",
                             stage=_STAGE, hint="export with a batch-1 example input")
    return layout


def _to_planes(image: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """uint8 HxW or HxWxC (C = 1 or 3, RGB) → int64 planes (C, H, W) in the model's channel order."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ConfigError(f"the image must be uint8, not {a.dtype}", stage=_STAGE,
                          hint="pass raw 8-bit pixels (HxW gray or HxWx3 RGB)")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ConfigError(f"the image must be HxW or HxWx1/3, not {list(a.shape)}", stage=_STAGE)
    a = a.astype(np.int64)
    c = _channels(pre)
    if c == 1 and a.shape[2] == 3:
        a = ((299 * a[:, :, 0] + 587 * a[:, :, 1] + 114 * a[:, :, 2] + 500) // 1000)[:, :, None]
    elif c == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if pre.channel_order == "BGR":
        a = a[:, :, ::-1]
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = (np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5
    s = np.maximum(s, 0.0)
    lo = np.minimum(np.floor(s).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, s - lo


def resize_bilinear(planes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (C, H, W) planes to ``size`` = (h, w): half-pixel centres, edge clamp, float64."""
    p = np.asarray(planes, dtype=np.float64)
    y0, y1, wy = _axis(p.shape[1], size[0])
    x0, x1, wx = _axis(p.shape[2], size[1])
    wx, wy = wx[None, None, :], wy[None, :, None]
    top = (1.0 - wx) * p[:, y0][:, :, x0] + wx * p[:, y0][:, :, x1]
    bottom = (1.0 - wx) * p[:, y1][:, :, x0] + wx * p[:, y1][:, :, x1]
    return (1.0 - wy) * top + wy * bottom


def resize_and_crop(planes: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """(C, H, W) planes resized and cropped as ``pre`` says (float64, never rounded)."""
    rh, rw = pre.resized(planes.shape[1], planes.shape[2])
    top, left = pre.crop_box(rh, rw)
    return resize_bilinear(planes, (rh, rw))[:, top:top + int(pre.size[0]), left:left + int(pre.size[1])]


def _per_channel(v: Sequence[float], c: int, what: str) -> np.ndarray:
    if len(v) == 1:
        return np.full(c, v[0], dtype=np.float32)
    if len(v) < c:
        raise ModelFileError(f"preprocessing.{what} has {len(v)} values; the model takes {c} channels",
                             stage=_STAGE, hint="re-export the bundle")
    return np.asarray(v[:c], dtype=np.float32)


def _quantize(x: np.ndarray, spec: TensorSpec, key: str) -> np.ndarray:
    if spec.dtype == "float32":
        return x
    if spec.dtype not in ("int8", "uint8") or spec.quantization is None or not spec.quantization.scale:
        raise ModelFileError(f"{key} takes {spec.dtype} input without a quantization scale; "
                             "an image cannot feed it", stage=_STAGE)
    return quantize(x, spec)


def preprocess(image: np.ndarray, bundle: Bundle | str | Path, file_key: str) -> np.ndarray:
    """The exact input tensor (batch 1) that ``file_key`` (key or path) takes for an 8-bit image.

    ``image`` is uint8 HxW (gray) or HxWx3 (RGB). The result is float32, or int8/uint8 when the file
    takes quantized input, laid out NCHW or NHWC as the file's own input spec says.
    """
    b = _bundle(bundle)
    f = b.file(file_key)
    pre = preprocessing_of(b)
    c, (h, w) = _channels(pre), (int(pre.size[0]), int(pre.size[1]))
    layout = _layout(f.inputs[0], c, h, w, f.key)
    x = logical_input(_to_planes(image, pre), pre)
    return np.ascontiguousarray(_quantize(to_layout(x[None], layout), f.inputs[0], f.key))


def logical_input(planes: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Integer (C, H, W) planes already in the model's channel order → the float32 (C, h, w) model input:
    resize, crop, ``x * scale``, ``(x - mean) / std`` (steps 2–3 of the module docstring)."""
    c = planes.shape[0]
    x = resize_and_crop(planes, pre).astype(np.float32) * np.float32(pre.scale)
    return (x - _per_channel(pre.mean, c, "mean")[:, None, None]) / _per_channel(pre.std, c, "std")[:, None, None]


# -- postprocessing ----------------------------------------------------------------------------------
def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the flattened logits, in float64."""
    z = np.asarray(logits, dtype=np.float64).ravel()
    e = np.exp(z - z.max())
    return e / e.sum()


def topk(logits: np.ndarray, k: int) -> list[tuple[int, float]]:
    """``[(class index, probability)]``, best first; ties go to the lower index, NaN logits last."""
    if k < 1:
        raise ConfigError(f"k must be >= 1, not {k}", stage=_STAGE)
    z = np.asarray(logits, dtype=np.float32).ravel()
    order = np.argsort(-z, kind="stable")  # stable: equal logits keep index order; NaN sorts last
    p = softmax(z)
    return [(int(i), float(p[i])) for i in order[:k]]


# -- images -------------------------------------------------------------------------------------------
def raw_images(x: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Undo preprocessing on logical float NCHW samples → uint8 NHWC images (for sample pictures)."""
    a = np.asarray(x, dtype=np.float64)
    c = a.shape[1]
    mean = np.asarray(_per_channel(pre.mean, c, "mean"), dtype=np.float64)[None, :, None, None]
    std = np.asarray(_per_channel(pre.std, c, "std"), dtype=np.float64)[None, :, None, None]
    raw = np.clip(np.round((a * std + mean) / pre.scale), 0, 255).astype(np.uint8)
    if pre.channel_order == "BGR":
        raw = raw[:, ::-1]
    return np.ascontiguousarray(raw.transpose(0, 2, 3, 1))


def samples_from_tensors(x: Any, y: Any, pre: Preprocessing | None, labels: Sequence[str] | None = None,
                         n: int = 10) -> list[tuple[np.ndarray, str]]:
    """The first ``n`` logical samples ``(x, y)`` as ``(uint8 HWC image, label)`` pairs for the app's picker."""
    if pre is None:
        return []
    xs = np.asarray(x[:n], dtype=np.float32)
    ys = [int(v) for v in np.asarray(y[:n]).ravel()]
    names = [labels[i] if labels and 0 <= i < len(labels) else str(i) for i in ys]
    return list(zip(raw_images(xs, pre), names, strict=True))


def _hwc(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    a = a[:, :, None] if a.ndim == 2 else a
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ConfigError(f"expected a uint8 HxW or HxWx1/3 image, got {a.dtype} {list(a.shape)}", stage=_STAGE)
    return a


def write_pnm(path: str | Path, image: np.ndarray) -> Path:
    """Write a binary PGM (gray) or PPM (RGB) file, the format the Java core's CLI reads."""
    a = _hwc(image)
    magic = b"P5" if a.shape[2] == 1 else b"P6"
    return write_atomic(path, magic + f"\n{a.shape[1]} {a.shape[0]}\n255\n".encode() + a.tobytes(), stage=_STAGE,
                        what="the image")


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an 8-bit gray or RGB PNG with the standard library only (Android decodes it with BitmapFactory)."""
    a = _hwc(image)
    h, w, c = a.shape

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + a[y].tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0 if c == 1 else 2, 0, 0, 0)
    return write_atomic(path, b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 9))
                        + chunk(b"IEND", b""), stage=_STAGE, what="the image")


# -- assets -------------------------------------------------------------------------------------------
def copy_to_android_assets(
    bundle: Bundle | str | Path,
    assets_dir: str | Path,
    *,
    samples: Sequence[tuple[np.ndarray, str]] | None = None,
    formats: Sequence[str] = ANDROID_FORMATS,
) -> list[Path]:
    """Copy a bundle into an Android app's ``assets`` folder; return the paths written.

    Copies the files of ``formats`` (checked against their sha256 first) and writes an ``edgekd.json``
    that lists only them, so the app never sees a file it cannot load. Model files that an earlier
    copy put there and this bundle no longer lists are removed. ``samples`` — ``(uint8 image, label)``
    pairs — become ``samples/NN_<label>.png`` for the app's picker (earlier samples are replaced).
    """
    b = _bundle(bundle)
    b.verify()
    keep = [f for f in b.files if f.format in formats]
    if not keep:
        have = ", ".join(f.key for f in b.files) or "none"
        raise ConfigError(f"the bundle has no {'/'.join(formats)} file for the app (it has: {have})",
                          stage=_STAGE, hint="export with --formats pte,tflite")
    dest = make_folder(assets_dir, stage=_STAGE, fix="pass another --android-assets folder")
    old = dest / MANIFEST
    if old.exists():
        try:
            stale = {f["path"] for f in json.loads(old.read_text()).get("files", [])}
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError):
            stale = set()
        for p in stale - {f.path for f in keep}:
            target = dest / p
            if target.is_file() and target.parent.resolve() == dest.resolve():
                target.unlink()
    written: list[Path] = []
    for f in keep:
        with atomic_path(dest / f.path, stage=_STAGE, what="the model file",
                         fix="pass another --android-assets folder") as tmp:
            shutil.copyfile(b.path_of(f), tmp)
        written.append(dest / f.path)
    copied: list[ModelFile] = list(keep)
    written.append(replace(b, root=dest, files=copied).save())
    if samples is not None:
        sdir = dest / "samples"
        if sdir.is_dir():
            for p in sdir.glob("*.png"):
                p.unlink()
        sdir.mkdir(exist_ok=True)
        for i, (img, label) in enumerate(samples):
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(label)) or "x"
            written.append(write_png(sdir / f"{i:02d}_{safe}.png", img))
    return written
