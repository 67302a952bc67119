"""The device runner on real runtimes: result JSON, accuracy, layouts, and every error exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekd.bench.stats import Stats

RUNNER = Path(__file__).resolve().parents[1] / "runtimes" / "python" / "edgekd_runner.py"


def run_runner(model: Path | str, *extra: str, env: dict[str, str] | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Run the runner; every stdout line must be a JSON object."""
    p = subprocess.run([sys.executable, str(RUNNER), "--model", str(model), *extra], capture_output=True,
                       text=True, timeout=120, env={**os.environ, **(env or {})})
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    assert lines, f"no stdout; stderr: {p.stderr[-2000:]}"
    return p.returncode, lines


@pytest.mark.parametrize(("fmt", "runtime"), [("pte", "executorch"), ("tflite", "tflite"), ("pt2", "torch")])
def test_result_json_and_accuracy_match_eager(tiny_models, fmt: str, runtime: str) -> None:
    model = getattr(tiny_models, fmt)
    rc, lines = run_runner(model, "--inputs", str(tiny_models.inputs), "--warmup", "2", "--runs", "7",
                           "--threads", "2", "--eval", str(tiny_models.eval), "--keep-samples")
    assert rc == 0 and len(lines) == 1
    r = lines[0]
    assert r["event"] == "result" and r["runtime"] == runtime and r["threads"] == 2
    assert r["runtime_version"] not in ("", "unknown")
    assert len(r["latency_samples_ms"]) == 7 and all(s > 0 for s in r["latency_samples_ms"])
    assert len(r["warmup_samples_ms"]) == 2
    assert r["latency_ms"] == pytest.approx(Stats.from_samples(r["latency_samples_ms"]).to_dict())
    assert r["load_ms"] > 0 and r["first_inference_ms"] > 0 and r["peak_mem_mb"] >= 0
    assert r["baseline_mem_mb"] > 10  # a Python process with numpy loaded
    assert r["model_bytes"] == model.stat().st_size
    assert r["input"] == {"shape": [1, 1, 8, 8], "dtype": "float32", "layout": "NCHW", "given_dtype": "float32",
                          "nan": 0, "inf": 0}
    assert r["notes"] == [] and r["output_nan"] == 0
    assert r["output_shape"] == [1, 10]
    assert r["eval_samples"] == len(tiny_models.eager_preds)
    assert r["eval_predictions"] == tiny_models.eager_preds.tolist()
    assert r["accuracy"] == pytest.approx(tiny_models.eager_accuracy)
    assert tiny_models.eager_accuracy > 0.5  # the model learned something, so the check has teeth
    assert set(r["machine"]) == {"hostname", "platform", "machine", "python", "cpu_count"}


def test_int8_tflite_quantizes_input_and_dequantizes_output(tiny_models) -> None:
    rc, [r] = run_runner(tiny_models.tflite_int8, "--inputs", str(tiny_models.inputs), "--warmup", "1",
                         "--runs", "3", "--threads", "1", "--eval", str(tiny_models.eval), "--keep-samples")
    assert rc == 0 and r["input"]["dtype"] == "int8"
    agreement = np.mean(np.asarray(r["eval_predictions"]) == tiny_models.eager_preds)
    assert agreement >= 0.9, agreement


def test_without_inputs_feeds_zeros_of_the_files_shape(tiny_models) -> None:
    rc, [r] = run_runner(tiny_models.tflite, "--warmup", "0", "--runs", "2", "--threads", "1")
    assert rc == 0 and r["input"]["shape"] == [1, 1, 8, 8] and r["accuracy"] is None


def _garbage(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize(
    ("case", "code", "error_type"),
    [
        ("missing", 2, "bad_arguments"),
        ("bad_runs", 2, "bad_arguments"),
        ("unknown_suffix", 2, "bad_arguments"),
        ("random_bytes", 3, "corrupt_model"),
        ("empty", 3, "corrupt_model"),
        ("truncated_tflite", 3, "corrupt_model"),
        ("garbage_after_tflite_header", 3, "corrupt_model"),
        ("truncated_pte", 3, "corrupt_model"),
        ("wrong_shape", 4, "input_mismatch"),
        ("int_input", 4, "input_mismatch"),
    ],
)
def test_errors_give_json_and_exit_code(tiny_models, tmp_path: Path, case: str, code: int, error_type: str) -> None:
    good = tiny_models.tflite.read_bytes()
    rng = np.random.default_rng(0)
    model, extra = tiny_models.tflite, ["--runs", "2"]
    if case == "missing":
        model = tmp_path / "nope.tflite"
    elif case == "bad_runs":
        extra = ["--runs", "0"]
    elif case == "unknown_suffix":
        model = _garbage(tmp_path, "m.onnx", good)
    elif case == "random_bytes":
        model = _garbage(tmp_path, "m.tflite", rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif case == "empty":
        model = _garbage(tmp_path, "m.pte", b"")
    elif case == "truncated_tflite":
        model = _garbage(tmp_path, "m.tflite", good[: len(good) // 2])
    elif case == "garbage_after_tflite_header":
        model = _garbage(tmp_path, "m.tflite", good[:8] + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif case == "truncated_pte":
        pte = tiny_models.pte.read_bytes()
        model = _garbage(tmp_path, "m.pte", pte[: len(pte) // 2])
    elif case == "wrong_shape":
        np.savez(tmp_path / "x.npz", x=np.zeros((1, 1, 9, 9), np.float32))
        extra += ["--inputs", str(tmp_path / "x.npz")]
    elif case == "int_input":
        np.savez(tmp_path / "x.npz", x=np.zeros((1, 1, 8, 8), np.int64))
        extra += ["--inputs", str(tmp_path / "x.npz")]
    rc, lines = run_runner(model, *extra)
    assert rc == code
    assert len(lines) == 1 and lines[0]["event"] == "error" and lines[0]["error_type"] == error_type
    assert lines[0]["message"] and lines[0]["hint"]


def test_no_runtime_installed_exits_5(tiny_models, tmp_path: Path) -> None:
    """Shadow every TFLite runtime with a package that fails to import, as on a bare board."""
    for name in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise ImportError('not installed here')\n")
    rc, [r] = run_runner(tiny_models.tflite, "--runs", "1", env={"PYTHONPATH": str(tmp_path)})
    assert rc == 5 and r["error_type"] == "runtime_missing" and "pip install ai-edge-litert" in r["hint"]


@pytest.mark.parametrize(
    ("x_shape", "model_shape", "forced", "layout", "fed_shape"),
    [
        ((1, 3, 8, 6), (1, 3, 8, 6), "auto", "NCHW", (1, 3, 8, 6)),
        ((1, 3, 8, 6), (1, 8, 6, 3), "auto", "NHWC", (1, 8, 6, 3)),
        ((1, 3, 3, 3), (1, 3, 3, 3), "NHWC", "NHWC", (1, 3, 3, 3)),
        ((1, 3, 8, 6), (None, 3, 8, 6), "auto", "NCHW", (1, 3, 8, 6)),
    ],
)
def test_layout_detection(runner_module, x_shape, model_shape, forced, layout, fed_shape) -> None:
    info = runner_module.TensorInfo(model_shape, "float32")
    x = np.arange(np.prod(x_shape), dtype=np.float32).reshape(x_shape)
    chosen = runner_module.choose_layout(x.shape, info, forced)
    fed = runner_module.to_model_input(x, info, chosen)
    assert chosen == layout and fed.shape == fed_shape
    if layout == "NHWC":
        np.testing.assert_array_equal(fed, x.transpose(0, 2, 3, 1))


def test_quantize_and_dequantize_round_trip(runner_module) -> None:
    info = runner_module.TensorInfo((1, 4), "int8", (0.5, -3))
    q = runner_module.to_model_input(np.array([[0.0, 1.0, -1.0, 1000.0]], np.float32), info, "NCHW")
    assert q.dtype == np.int8 and q.tolist() == [[-3, -1, -5, 127]]
    np.testing.assert_allclose(runner_module.from_model_output(q, info), [[0.0, 1.0, -1.0, 65.0]])
