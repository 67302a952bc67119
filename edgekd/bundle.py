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


@dataclass(frozen=True)
class Preprocessing:
    """What an app does to a raw image before the model: resize, to [0,1], (x - mean) / std."""

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channel_order: str = "GRAY"  # "GRAY" | "RGB" | "BGR"
    scale: float = 1.0 / 255.0  # raw pixel -> [0, 1] before mean/std

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Preprocessing:
        return Preprocessing(
            size=tuple(d["size"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            channel_order=d.get("channel_order", "GRAY"),
            scale=float(d.get("scale", 1.0 / 255.0)),
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
