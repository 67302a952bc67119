"""The format table: one row per (format, converter) that export, parity, the harness, the Android helper
and the device runner agree on; adding a format is one row plus one backend file."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from conftest import RUNNER
from torch import nn

from edgekd.bundle import Bundle, Quantization, TensorSpec
from edgekd.errors import ConfigError, ModelFileError
from edgekd.formats import (
    FORMATS,
    RUNNER_BEGIN,
    RUNNER_END,
    Format,
    app_formats,
    backends,
    dequantize,
    format_of,
    guess_row,
    header_ok,
    native_header,
    native_rows,
    quantize,
    row,
    runner_source,
    runner_table,
    suffix_rows,
    suffixes,
    sync_runner_table,
    to_layout,
)

CPP_FORMATS = RUNNER.parents[1] / "cpp" / "src" / "formats.h"


def test_the_device_runner_carries_the_generated_table(runner_module: ModuleType) -> None:
    """The runner stays standalone (it never imports edgekd): its table is generated from this one, and it has
    a backend class for every backend the table names."""
    text = RUNNER.read_text()
    assert runner_source(text) == text, "regenerate it: python -c 'import edgekd.formats as f; f.sync_runner_table()'"
    assert {s: (r.backend, r.magic) for s, r in suffix_rows().items()} == runner_module.FORMATS
    assert set(runner_module.FORMATS) == set(suffixes())
    assert {name: cls.runtime for name, cls in runner_module.BACKENDS.items()} == {b: b for b in backends()}


def test_sync_rewrites_only_the_generated_block(tmp_path: Path) -> None:
    runner = tmp_path / "edgekd_runner.py"
    runner.write_text(f"before\n{RUNNER_BEGIN}\nFORMATS = {{}}\n{RUNNER_END}\nafter\n")
    runner.chmod(0o755)
    assert sync_runner_table(runner) and not sync_runner_table(runner)
    assert runner.read_text() == f"before\n{runner_table()}after\n" and runner.stat().st_mode & 0o777 == 0o755
    runner.write_text("FORMATS = {}\n")
    with pytest.raises(ConfigError, match="no generated format table"):
        sync_runner_table(runner)


@pytest.mark.parametrize(("suffix", "head", "ok"), [
    (".tflite", b"\x1c\0\0\0TFL3", True), (".tflite", b"\x1c\0\0\0TFL", False),
    (".pte", b"\x18\0\0\0ET12", True), (".pte", b"\x18\0\0\0ETx2", False), (".pte", b"PK\x03\x04ET12", True),
    (".pt2", b"PK\x03\x04\0\0\0\0", True), (".pt2", b"\0\0\0\0TFL3", False),
])
def test_the_runners_check_headers_as_the_table_says(runner_module: ModuleType, tmp_path: Path, suffix: str,
                                                     head: bytes, ok: bool) -> None:
    assert header_ok(head, suffix) is ok
    path = tmp_path / f"m{suffix}"
    path.write_bytes(head)
    if ok:
        runner_module.check_header(path)
    else:
        with pytest.raises(runner_module.RunnerError, match="does not start like"):
            runner_module.check_header(path)


def test_the_native_runner_reads_the_native_rows() -> None:
    """The C++ runner's header (runtimes/cpp/src/formats.h) is generated from the table too."""
    assert CPP_FORMATS.read_text() == native_header()
    assert {s: r.plugin for s, r in native_rows().items()} == {
        ".pte": "libedgekd_backend_executorch.so", ".tflite": "libedgekd_backend_litert.so"}


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


# -- a toy format end to end: one row, one converter (the two functions below), one runner backend (NUMPY_BACKEND) --
def to_npy(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], path: Path, *, precision: str,
           calibration: torch.Tensor | None, verbose: bool = False) -> dict:
    """The converter: the model's linear map read off its eager outputs on the basis vectors (exact for a
    bias-free linear model), written as one ``(classes, C, H, W)`` array."""
    shape = example_inputs[0].shape[1:]
    basis = torch.eye(int(np.prod(shape))).reshape(-1, *shape)
    with torch.no_grad():
        w = model.eval()(basis).T.reshape(-1, *shape).numpy().astype(np.float32)
    with open(path, "wb") as f:
        np.save(f, w)
    return {"classes": int(w.shape[0])}


def npy_runner(path: Path, layout: str | None = None) -> tuple:
    w = np.load(path)
    return (lambda x: np.tensordot(x, w, axes=(list(range(1, x.ndim)), list(range(1, w.ndim))))), None, None


NUMPY_BACKEND = '''
class NumpyBackend:
    runtime = "numpy"
    interpreter = "numpy.tensordot"

    def __init__(self) -> None:
        self.version = np.__version__

    def load(self, path: Path, threads: int) -> None:
        self.w = np.load(path)
        self.input = TensorInfo((1, *self.w.shape[1:]), "float32")
        self.output = TensorInfo((1, self.w.shape[0]), "float32")

    def close(self) -> None:
        del self.w

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.tensordot(x, self.w, axes=(list(range(1, x.ndim)), list(range(1, self.w.ndim))))

    def timed_call(self, x: np.ndarray) -> Any:
        return lambda: self.run(x)


'''


def test_a_toy_format_flows_through_export_bench_and_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import edgekd.bench.targets.local as local
    from edgekd.bench import benchmark
    from edgekd.bench.html_report import write_html_report
    from edgekd.bench.report import format_table
    from edgekd.convert import export

    row = Format("npy", "numpy", "npy", ("fp32",), "test_formats:to_npy", "test_formats:npy_runner", "numpy",
                 "NCHW", False, None, False, magic=b"\x93NUMPY", runtimes=(("numpy",),), dists=("numpy",),
                 engine="numpy")
    monkeypatch.setitem(FORMATS, row.key, row)
    # the device runner with its generated table regenerated and the one backend class added
    text = runner_source(RUNNER.read_text())
    anchor = "# a new format's backend class joins this tuple"
    text = text.replace(anchor, NUMPY_BACKEND + anchor).replace("TorchBackend)}", "TorchBackend, NumpyBackend)}")
    (tmp_path / "runner").mkdir()
    runner = tmp_path / "runner" / "edgekd_runner.py"
    runner.write_text(text)
    monkeypatch.setattr(local, "runner_path", lambda: runner)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3, bias=False))
    x_eval = torch.randn(32, 1, 4, 4)
    y_eval = model(x_eval).argmax(1)
    y_eval[:4] = (y_eval[:4] + 1) % 3  # 28 of 32 right, so a wrong map could not score the same
    bundle = export(model, (x_eval[:1],), formats=("npy",), precision=("fp32",), out_dir=tmp_path / "b",
                    parity_data=x_eval, progress=False)
    (f,) = bundle.files
    assert (f.path, f.format, f.converter, f.extra["classes"]) == ("model_fp32.npy", "npy", "numpy", 3)
    assert f.parity is not None and f.parity.passed and f.parity.max_abs_error < 1e-5

    (r,) = benchmark(tmp_path / "b", "local", warmup=1, runs=5, threads=1, out_dir=tmp_path / "run",
                     eval_data=(x_eval.numpy(), y_eval.numpy()), progress=False, print_table=False)
    assert r.error is None, r.error
    assert (r.format, r.runtime, r.runner) == ("npy", "numpy", "python")
    assert r.accuracy == pytest.approx(28 / 32) and r.latency_ms is not None and r.latency_ms.p50 > 0
    assert "npy" in format_table([r])
    assert "npy/fp32" in write_html_report(tmp_path / "run").read_text()


def test_fit_stamps_the_runtime_distribution_the_table_names() -> None:
    from edgekd.bench.targets.local import LocalTarget
    from edgekd.fit.measure import runtime_stamp

    which, backend, found = runtime_stamp(LocalTarget(), "tflite", runner="python").split(":")
    assert (which, backend) == ("python", "tflite") and found.split("==")[0] in row("tflite").dists


def test_native_profiles_are_named_and_read_as_the_table_says(tmp_path: Path) -> None:
    import json

    from edgekd.bench.native_profile import dump_name, store_op_table

    for suffix, r in native_rows().items():
        assert r.profile and dump_name(f"m{suffix}", "k/e/y", 2) == f"m__k-e-y__2t{r.profile[1]}"
    dump = tmp_path / dump_name("m.tflite", "tflite/fp32/litert-torch", 1)
    dump.write_text(json.dumps({"events": [{"type": 1, "tag": "Invoke", "us": 2000, "node": -1},
                                           {"type": 8, "tag": "CONV_2D", "us": 1500, "node": 0}]}))
    rel = store_op_table(tmp_path, "m.tflite", "tflite/fp32/litert-torch", 1, dump)
    table = json.loads((tmp_path / rel).read_text())
    assert table["source"] == row("tflite").profile[0] and table["ops"][0]["name"] == "CONV_2D"
    assert table["ops"][0]["pct"] == pytest.approx(75.0)
