"""The format table: one row per (format, converter) that export, parity, the harness, the Android helper
and the device runner agree on; adding a format is one row plus one backend file."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.bundle import Bundle, Quantization, TensorSpec
from edgekd.errors import ConfigError, ModelFileError
from edgekd.formats import (
    FORMATS,
    Format,
    app_formats,
    dequantize,
    format_of,
    guess_row,
    quantize,
    suffixes,
    to_layout,
)


def test_the_device_runner_has_a_backend_for_every_row(runner_module: ModuleType) -> None:
    """The runner stays standalone (its own backend classes), but names the same backends as the table."""
    runner = {suffix: cls.runtime for suffix, cls in runner_module.BACKENDS.items()}
    assert runner == {"." + r.suffix: r.backend for r in FORMATS.values()}
    assert set(runner_module.FORMATS) == set(suffixes())


@pytest.mark.parametrize("key", list(FORMATS), ids="/".join)
def test_every_row_names_functions_that_exist(key: tuple[str, str]) -> None:
    row = FORMATS[key]
    assert callable(row.load("exporter")) and callable(row.load("host_runner"))
    assert row.layout in ("NCHW", "NHWC") and set(row.precisions) <= {"fp32", "int8"}


def test_app_formats_and_suffixes() -> None:
    assert app_formats() == ("pte", "tflite") and sorted(suffixes()) == [".pt2", ".pte", ".tflite"]
    with pytest.raises(ConfigError, match=r"unknown model file suffix 'onnx'.*\n.*\.pt2, \.pte, \.tflite"):
        format_of("model.onnx")


@pytest.mark.parametrize(("name", "converter", "layout", "precision"), [
    ("model_int8.tflite", "unknown", "auto", "int8"),  # two tflite converters and the name names neither
    ("model_int8_onnx2tf.tflite", "onnx2tf", "NHWC", "int8"),
    ("model_fp32_litert-torch.tflite", "litert-torch", "NCHW", "fp32"),
    ("model.pte", "executorch", "NCHW", "unknown"),
    ("baseline.pt2", "torch", "NCHW", "fp32"),  # the only precision of the row
])
def test_the_harness_describes_loose_files_from_the_table(name: str, converter: str, layout: str,
                                                          precision: str) -> None:
    from edgekd.bench.harness import _job_from_file

    job = _job_from_file(Path(name))
    assert (job.converter, job.layout, job.precision) == (converter, layout, precision)
    assert job.format == Path(name).suffix[1:]


def test_host_tensor_conventions() -> None:
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    assert to_layout(x, "NHWC").shape == (2, 4, 5, 3) and to_layout(x, "NCHW") is x
    assert to_layout(x[0, 0], "NHWC") is not None and to_layout(x[0, 0], "NHWC").shape == (4, 5)
    spec = TensorSpec("x", (1, 4), "int8", None, Quantization(0.5, -3))
    q = quantize(np.array([[0.25, 0.75, 100.0, -100.0]], np.float32), spec)
    assert q.dtype == np.int8 and q.tolist() == [[-3, -1, 127, -128]]  # 0.5 and 1.5 round half to even
    assert dequantize(q, spec).tolist() == [[0.0, 1.0, 65.0, -62.5]]
    assert quantize(np.array([[7, 8]]), TensorSpec("ids", (1, 2), "int32")).dtype == np.int32
    with pytest.raises(ModelFileError, match="without a quantization scale"):
        dequantize(np.array([1], np.int8), TensorSpec("y", (1,), "int8"))


# -- a format added by one row and one backend file (here: this test module) --------------------------
def to_npt(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], path: Path, *, precision: str,
           calibration: torch.Tensor | None, verbose: bool = False) -> dict:
    torch.export.save(torch.export.export(model.eval(), example_inputs), str(path))
    return {"note": "test format"}


def npt_runner(path: Path, layout: str | None = None) -> tuple:
    module = torch.export.load(str(path)).module()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    return run, None, None


def test_a_new_format_is_one_row_and_one_backend_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from edgekd.bench.harness import _jobs
    from edgekd.convert import export

    row = Format("npt", "test", "npt", ("fp32",), "test_formats:to_npt", "test_formats:npt_runner", "torch",
                 "NCHW", False, None, False)
    monkeypatch.setitem(FORMATS, row.key, row)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    bundle = export(model, (torch.randn(1, 1, 8, 8),), formats=("npt",), precision=("fp32",), out_dir=tmp_path,
                    parity_data=torch.randn(8, 1, 8, 8), progress=False)
    (f,) = Bundle.load(tmp_path).files
    assert (f.path, f.format, f.converter, f.extra["note"]) == ("model_fp32.npt", "npt", "test", "test format")
    assert set(f.extra) == {"note", "seconds"}  # export adds where the seconds went (an old-style exporter works)
    assert f.parity is not None and f.parity.passed and f.parity.max_abs_error < 1e-5
    assert format_of(tmp_path / f.path) == "npt" and guess_row(tmp_path / f.path) is row
    ((job,), _) = _jobs(bundle, None)
    assert (job.format, job.layout) == ("npt", "NCHW")
    assert "npt" not in app_formats()  # the row says the phone app cannot load it
