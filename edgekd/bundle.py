"""The bundle: model files plus ``edgekd.json``, the one file apps and device runners read.

Layout of a bundle folder::

    my_bundle/
      edgekd.json               manifest (this module)
      model_fp32.pte            one file per (format, precision, converter)
      model_int8.pte
      model_fp32.tflite ...

Every tensor description records the *file's own* view: an onnx2tf TFLite file takes NHWC input,
a litert-torch int8 file takes int8 input with a scale and zero point. ``Bundle.inputs`` is the
logical (PyTorch) view that preprocessing produces: float32, NCHW.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import ModelFileError
from edgekd.files import write_atomic

SCHEMA_VERSION = 1
MANIFEST = "edgekd.json"


@dataclass(frozen=True)
class Quantization:
    scale: float
    zero_point: int


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name: float32, int8, uint8, int32, int64
    layout: str | None = None  # "NCHW", "NHWC" or None (not an image tensor)
    quantization: Quantization | None = None

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TensorSpec:
        q = d.get("quantization")
        return TensorSpec(
            name=d["name"],
            shape=tuple(int(s) for s in d["shape"]),
            dtype=d["dtype"],
            layout=d.get("layout"),
            quantization=Quantization(float(q["scale"]), int(q["zero_point"])) if q else None,
        )


@dataclass(frozen=True)
class Parity:
    """How one exported file agrees with eager PyTorch on held-out inputs."""

    n_samples: int
    max_abs_error: float
    mean_abs_error: float
    top1_agreement: float
    accuracy: float | None  # of the exported file, when labels were given
    accuracy_eager: float | None  # of the eager model on the same samples
    thresholds: dict[str, float] = field(default_factory=dict)
    passed: bool = True
    cosine_min: float | None = None  # lowest cosine between an output row and eager's (embeddings)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Parity:
        return Parity(**d)


@dataclass(frozen=True)
class ModelFile:
    path: str  # relative to the bundle folder
    format: str  # "pte" | "tflite" | "pt2"
    precision: str  # "fp32" | "int8"
    converter: str  # "executorch" | "onnx2tf" | "litert-torch" | "torch"
    bytes: int
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parity: Parity | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # converter notes, op counts, exit name...

    @property
    def key(self) -> str:
        """A short unique label, e.g. ``tflite/int8/onnx2tf``."""
        return f"{self.format}/{self.precision}/{self.converter}"

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ModelFile:
        return ModelFile(
            path=d["path"],
            format=d["format"],
            precision=d["precision"],
            converter=d["converter"],
            bytes=int(d["bytes"]),
            sha256=d["sha256"],
            inputs=tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in d["outputs"]),
            parity=Parity.from_dict(d["parity"]) if d.get("parity") else None,
            extra=dict(d.get("extra", {})),
        )


RESIZE_POLICIES = ("exact", "shorter_side")
CROPS = ("none", "center")
INTERPOLATIONS = ("bilinear",)


@dataclass(frozen=True)
class Preprocessing:
    """What an app does to a decoded 8-bit image before the model, in this order:

    1. channels: to ``channel_order`` (RGB → GRAY by integer BT.601 luma ``(299R + 587G + 114B + 500) // 1000``,
       GRAY → RGB by repetition; ``BGR`` reverses RGB); alpha is dropped, a palette expanded, 16-bit pixels
       become ``(v + 128) // 257``;
    2. resize (``interpolation="bilinear"``: half-pixel centres — ``align_corners=False`` — edge clamp, no
       antialiasing, on float pixel values, not rounded): ``resize="exact"`` straight to ``size``;
       ``"shorter_side"``: the shorter side to ``resize_to``, the longer ``int(resize_to * long / short)``
       (torchvision's ``Resize(int)``);
    3. crop ``size`` = (height, width) from the centre (``crop="center"``; offsets ``round((H - h) / 2)``,
       half to even, as torchvision's ``CenterCrop``);
    4. in float32: ``x = pixel * scale``, ``x = (x - mean[c]) / std[c]``.

    :meth:`resized` and :meth:`crop_box` are the geometry every implementation follows (the data pipeline,
    ``edgekd.android``, the device runner, the Android Java core).
    """

    size: tuple[int, int]  # (height, width) of the model input
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channel_order: str = "GRAY"  # "GRAY" | "RGB" | "BGR"
    scale: float = 1.0 / 255.0  # raw pixel -> [0, 1] before mean/std
    resize: str = "exact"  # "exact" | "shorter_side"
    resize_to: int | None = None  # shorter_side: length of the shorter side before the crop
    crop: str = "none"  # "none" | "center"
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        bad = [(k, v, ok) for k, v, ok in (("resize", self.resize, RESIZE_POLICIES), ("crop", self.crop, CROPS),
                                           ("interpolation", self.interpolation, INTERPOLATIONS)) if v not in ok]
        if bad:
            k, v, ok = bad[0]
            raise ModelFileError(f"preprocessing.{k} {v!r} is not one of {', '.join(ok)}", stage="bundle",
                                 hint="re-export the bundle with this edgekd")
        if self.resize == "shorter_side" and (self.resize_to is None or self.resize_to < max(self.size)):
            raise ModelFileError(f"preprocessing.resize_to {self.resize_to} must be >= the crop size {list(self.size)}",
                                 stage="bundle", hint="e.g. resize_to=256 for size (224, 224)")
        if self.resize == "shorter_side" and self.crop != "center":
            raise ModelFileError("preprocessing.resize 'shorter_side' needs crop 'center' (else the input size varies)",
                                 stage="bundle", hint="re-export the bundle with this edgekd")

    def resized(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) an image of ``height`` × ``width`` is resized to before the crop."""
        if self.resize == "exact":
            return int(self.size[0]), int(self.size[1])
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = int(self.resize_to), int(int(self.resize_to) * long / short)  # type: ignore[arg-type]
        return (new_long, new_short) if width <= height else (new_short, new_long)

    def crop_box(self, height: int, width: int) -> tuple[int, int]:
        """(top, left) of the ``size`` crop in a resized image of ``height`` × ``width``."""
        if self.crop == "none":
            return 0, 0
        return int(round((height - self.size[0]) / 2.0)), int(round((width - self.size[1]) / 2.0))

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Preprocessing:
        return Preprocessing(
            size=tuple(d["size"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            channel_order=d.get("channel_order", "GRAY"),
            scale=float(d.get("scale", 1.0 / 255.0)),
            resize=d.get("resize", "exact"),
            resize_to=None if d.get("resize_to") is None else int(d["resize_to"]),
            crop=d.get("crop", "none"),
            interpolation=d.get("interpolation", "bilinear"),
        )


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


@dataclass
class Bundle:
    """A bundle folder and its manifest. ``Bundle.load(dir)`` reads one; ``save()`` writes ``edgekd.json``."""

    root: Path
    model_name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    files: list[ModelFile] = field(default_factory=list)
    preprocessing: Preprocessing | None = None
    labels: list[str] | None = None
    edgekd_version: str = ""
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    # -- reading --------------------------------------------------------------------------------
    @staticmethod
    def load(path: str | Path) -> Bundle:
        root = Path(path)
        manifest = root / MANIFEST if root.is_dir() else root
        if not manifest.exists():
            raise ModelFileError(
                f"no {MANIFEST} in {root}",
                stage="bundle",
                hint="pass a folder written by edgekd.export(...) / `edgekd export`, or a single .pte/.tflite file",
            )
        try:
            d = json.loads(manifest.read_text())
        except json.JSONDecodeError as e:
            raise ModelFileError(f"{manifest} is not valid JSON ({e})", stage="bundle",
                                 hint="re-export the bundle") from None
        if int(d.get("schema_version", 0)) > SCHEMA_VERSION:
            raise ModelFileError(
                f"{manifest} has schema_version {d['schema_version']}, newer than this edgekd reads ({SCHEMA_VERSION})",
                stage="bundle", hint="upgrade edgekd")
        return Bundle(
            root=manifest.parent,
            model_name=d["model_name"],
            inputs=tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in d["outputs"]),
            files=[ModelFile.from_dict(f) for f in d["files"]],
            preprocessing=Preprocessing.from_dict(d["preprocessing"]) if d.get("preprocessing") else None,
            labels=d.get("labels"),
            edgekd_version=d.get("edgekd_version", ""),
            schema_version=int(d.get("schema_version", SCHEMA_VERSION)),
            extra=dict(d.get("extra", {})),
        )

    def file(self, key_or_path: str) -> ModelFile:
        """Look a file up by its key (``pte/int8/executorch``) or its relative path."""
        for f in self.files:
            if key_or_path in (f.key, f.path):
                return f
        known = ", ".join(f.key for f in self.files)
        raise ModelFileError(f"bundle {self.root} has no file {key_or_path!r}; it has: {known}", stage="bundle")

    def path_of(self, f: ModelFile) -> Path:
        return self.root / f.path

    def verify(self) -> None:
        """Check every listed file exists with the recorded size and sha256."""
        for f in self.files:
            p = self.path_of(f)
            if not p.exists():
                raise ModelFileError(f"{p} is listed in {MANIFEST} but missing", stage="bundle",
                                     hint="copy the whole bundle folder, or re-export it")
            if p.stat().st_size != f.bytes or sha256_of(p) != f.sha256:
                raise ModelFileError(f"{p} does not match its sha256 in {MANIFEST} (truncated or modified)",
                                     stage="bundle", hint="re-export the bundle or copy the file again")

    # -- writing --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("root")
        d = {"schema_version": d.pop("schema_version"), **d}
        return _jsonable(d)

    def save(self) -> Path:
        """Write ``edgekd.json`` atomically (a full disk or unwritable folder: an OutputError naming it)."""
        return write_atomic(self.root / MANIFEST, json.dumps(self.to_dict(), indent=2) + "\n", stage="export",
                            what="the bundle manifest")
