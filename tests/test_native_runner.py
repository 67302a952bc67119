"""The native C++ runner (runtimes/cpp): built here, then held to the Python runner's protocol.

The build runs once per session (``runtimes/cpp/build.sh``, incremental); a failing build fails the
tests. Without cmake or a C++ compiler they are skipped with the install line (CI installs both, and
a skip under CI is a failure: tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekd.bench.native import find_native_runner, host_arch, native_dir, runtime_files
from edgekd.bench.stats import Stats

REPO = Path(__file__).resolve().parents[1]
PY_RUNNER = REPO / "runtimes" / "python" / "edgekd_runner.py"
BUILD = REPO / "runtimes" / "cpp" / "build.sh"
PY_ONLY = {"python"}  # machine keys only the Python runner has
NEW_FIELDS = {"min_duration_s", "warm_load_ms"}  # native has them; the Python runner once branch profiling lands


@pytest.fixture(scope="session")
def native_runner() -> Path:
    if shutil.which("cmake") is None or (shutil.which("c++") is None and shutil.which("g++") is None):
        pytest.skip("the native runner needs cmake and a C++17 compiler: apt install cmake g++")
    p = subprocess.run(["bash", str(BUILD), "--arch", host_arch(), "--python", sys.executable],
                       capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, f"runtimes/cpp/build.sh failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    exe = find_native_runner()
    assert exe is not None, f"build.sh succeeded but {native_dir()}/edgekd_runner is missing"
    return exe


@pytest.fixture(scope="session")
def tiny_pte_int8(tiny_models, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny CNN of tests/conftest.py, trained the same way, as an int8 (PT2E, XNNPACK) .pte."""
    from conftest import trained_tiny_cnn

    from edgekd.convert.executorch import to_pte

    model, x_all, _ = trained_tiny_cnn()
    path = tmp_path_factory.mktemp("native") / "tiny_int8.pte"
    to_pte(model, (x_all[1500:1501],), path, precision="int8", calibration=x_all[:64])
    return path


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(lines) == 1, f"want one JSON line, got {p.stdout!r}; stderr: {p.stderr[-2000:]}"
    return p.returncode, lines[0], p.stderr


def both(native: Path, model: Path | str, *extra: str) -> tuple[tuple[int, dict[str, Any]], tuple[int, dict[str, Any]]]:
    rc_n, r_n, _ = run([str(native), "--model", str(model), *extra])
    rc_p, r_p, _ = run([sys.executable, str(PY_RUNNER), "--model", str(model), *extra])
    return (rc_n, r_n), (rc_p, r_p)


def _model(tiny_models, tiny_pte_int8: Path, which: str) -> Path:
    return tiny_pte_int8 if which == "pte_int8" else getattr(tiny_models, which)


@pytest.mark.parametrize("which", ["pte", "pte_int8", "tflite", "tflite_int8"])
def test_same_protocol_and_results_as_the_python_runner(native_runner, tiny_models, tiny_pte_int8, which, tmp_path) -> None:
    model = _model(tiny_models, tiny_pte_int8, which)
    args = ("--inputs", str(tiny_models.inputs), "--warmup", "2", "--runs", "7", "--threads", "2",
            "--eval", str(tiny_models.eval), "--keep-samples")
    (rc_n, n), (rc_p, p) = both(native_runner, model, *args)
    assert rc_n == rc_p == 0, (n, p)
    assert set(p) - set(n) == set(), "the native result lacks fields of the Python runner's"
    assert set(n) - set(p) <= NEW_FIELDS
    assert set(n["machine"]) == set(p["machine"]) - PY_ONLY
    for key in ("event", "runtime", "runtime_version", "model", "model_bytes", "threads", "cpus", "warmup",
                "runs", "eval_samples", "input", "output_shape", "output_nan", "notes", "accuracy", "eval_predictions"):
        assert n[key] == p[key], (key, n[key], p[key])
    assert n["interpreter"].startswith("edgekd_runner (native C++)") and n["interpreter"] != p["interpreter"]
    assert n["latency_ms"] == pytest.approx(Stats.from_samples(n["latency_samples_ms"]).to_dict(), rel=1e-9)
    assert len(n["latency_samples_ms"]) == 7 and len(n["warmup_samples_ms"]) == 2
    assert all(v > 0 for v in (n["load_ms"], n["warm_load_ms"], n["first_inference_ms"], *n["latency_samples_ms"]))
    assert n["peak_mem_mb"] >= 0 and n["baseline_mem_mb"] < p["baseline_mem_mb"]  # no interpreter, no numpy
    assert n["accuracy"] > 0.5  # a trained model: identical predictions mean something

    # outputs close to the runtime's own Python API on the same input (dequantized for int8 files)
    out = tmp_path / "out.npy"
    rc, _, _ = run([str(native_runner), "--model", str(model), "--inputs", str(tiny_models.inputs), "--warmup", "0",
                    "--runs", "1", "--save-output", str(out)])
    assert rc == 0
    with np.load(tiny_models.inputs) as f:
        x = f["x"]
    np.testing.assert_allclose(np.load(out), _reference_output(model, x), rtol=1e-5, atol=1e-5)


def _reference_output(model: Path, x: np.ndarray) -> np.ndarray:
    if model.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(model), num_threads=1)
        it.allocate_tensors()
        i, o = it.get_input_details()[0], it.get_output_details()[0]
        scale, zp = i["quantization"]
        it.set_tensor(i["index"], np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8) if scale else x)
        it.invoke()
        y = it.get_tensor(o["index"])
        scale, zp = o["quantization"]
        return (y.astype(np.float32) - zp) * scale if scale else y
    import torch
    from executorch.extension.pybindings import _C

    method = _C._load_program(str(model)).load_method("forward")
    return method.call([torch.from_numpy(x)])[0].numpy()


def test_nhwc_layout_is_chosen_and_transposed_like_the_python_runner(native_runner, tiny_models, tmp_path) -> None:
    """x written as (N, W, C, H)... i.e. a logical NCHW array whose NHWC transpose is the model's input."""
    with np.load(tiny_models.eval) as f:
        x, y = f["x"], f["y"]
    ev = tmp_path / "eval_nhwc.npz"
    np.savez(ev, x=x.transpose(0, 3, 1, 2), y=y)  # (N, 8, 1, 8): fits the (1, 1, 8, 8) input only as NHWC
    inp = tmp_path / "x_nhwc.npz"
    np.savez(inp, x=x[:1].transpose(0, 3, 1, 2))
    (rc_n, n), (rc_p, p) = both(native_runner, tiny_models.tflite, "--inputs", str(inp), "--eval", str(ev),
                                "--warmup", "0", "--runs", "2", "--keep-samples")
    assert rc_n == rc_p == 0
    assert n["input"] == p["input"] == {"shape": [1, 1, 8, 8], "dtype": "float32", "layout": "NHWC",
                                        "given_dtype": "float32", "nan": 0, "inf": 0}
    assert n["eval_predictions"] == p["eval_predictions"] == tiny_models.eager_preds.tolist()


def test_compressed_npz_min_duration_and_cpus(native_runner, tiny_models, tmp_path) -> None:
    with np.load(tiny_models.eval) as f:
        x, y = f["x"], f["y"]
    ev = tmp_path / "eval_z.npz"
    np.savez_compressed(ev, x=x, y=y)
    rc, r, _ = run([str(native_runner), "--model", str(tiny_models.pte), "--eval", str(ev), "--warmup", "0",
                    "--runs", "3", "--min-duration", "0.2", "--cpus", "0", "--keep-samples"])
    assert rc == 0, r
    assert r["eval_predictions"] == tiny_models.eager_preds.tolist()
    assert r["runs"] == len(r["latency_samples_ms"]) > 3 and r["min_duration_s"] == 0.2
    assert r["cpus"] == [0] and r["input"]["layout"] == "native"


@pytest.mark.parametrize("which", ["pte", "tflite", "tflite_int8"])
def test_float64_nan_and_inf_inputs_run_and_both_runners_say_so(native_runner, tiny_models, tiny_pte_int8, which,
                                                               tmp_path) -> None:
    """float64 is converted to the file's dtype, NaN/inf are fed (a quantized input takes NaN as its zero point),
    and the result says so: the same fields and sentences from the Python and the C++ runner."""
    model = _model(tiny_models, tiny_pte_int8, which)
    quantized = which == "tflite_int8"
    with np.load(tiny_models.inputs) as f:
        x = f["x"]
    runs = ("--warmup", "0", "--runs", "2")
    f64, nan, zeroed = tmp_path / "f64.npz", tmp_path / "nan.npz", tmp_path / "zeroed.npz"
    np.savez(f64, x=x.astype(np.float64))
    bad = x.copy()
    bad[0, 0, 0, :3] = np.nan
    bad[0, 0, 1, 0] = np.inf
    np.savez(nan, x=bad)
    np.savez(zeroed, x=np.where(np.isnan(bad), np.float32(0), bad))

    (rc_n, n), (rc_p, p) = both(native_runner, model, "--inputs", str(f64), *runs)
    assert rc_n == rc_p == 0, (n, p)
    assert n["notes"] == p["notes"] and n["input"] == p["input"]
    want = "int8" if quantized else "float32"
    assert p["input"]["given_dtype"] == "float64" and p["input"]["dtype"] == want
    assert p["notes"] == [f"input x is float64; converted to {want}, the model's input dtype"
                          + (" (quantized with the file's scale and zero point)" if quantized else "")]

    (rc_n, n), (rc_p, p) = both(native_runner, model, "--inputs", str(nan), *runs)
    assert rc_n == rc_p == 0, (n, p)
    assert n["notes"] == p["notes"] and n["input"] == p["input"] and n["output_nan"] == p["output_nan"]
    assert (p["input"]["nan"], p["input"]["inf"]) == (3, 1)
    assert p["notes"][0] == "input x holds 3 NaN of 64 values; " + (
        "fed as the zero point (0.0): the quantized input cannot hold NaN" if quantized else "fed as they are")
    if quantized:  # defined: exactly what feeding 0.0 in place of each NaN gives
        assert p["output_nan"] == 0
        outs = []
        for inp in (nan, zeroed):
            out = tmp_path / f"{inp.stem}.npy"
            assert run([str(native_runner), "--model", str(model), "--inputs", str(inp), *runs,
                        "--save-output", str(out)])[0] == 0
            outs.append(np.load(out))
        np.testing.assert_array_equal(*outs)
    else:  # NaN goes through the network: the output says so too
        assert p["output_nan"] > 0 and p["notes"][-1].startswith(f"the output holds {p['output_nan']} NaN")


def _bad_cases(tiny_models, tmp_path: Path) -> dict[str, tuple[list[str], int, str]]:
    def write(name: str, data: bytes) -> str:
        (tmp_path / name).write_bytes(data)
        return str(tmp_path / name)

    pte, tfl = tiny_models.pte.read_bytes(), tiny_models.tflite.read_bytes()
    rng = np.random.default_rng(0)
    small = tmp_path / "small.npz"
    np.savez(small, x=np.zeros((1, 1, 4, 4), np.float32))
    ints = tmp_path / "ints.npz"
    np.savez(ints, x=np.zeros((1, 1, 8, 8), np.int64))
    nokey = tmp_path / "nokey.npz"
    np.savez(nokey, a=np.zeros(3))
    ok = ["--inputs", str(tiny_models.inputs)]
    return {
        "missing_model": (["--model", str(tmp_path / "nope.pte")], 2, "bad_arguments"),
        "unknown_suffix": (["--model", write("m.onnx", b"onnx")], 2, "bad_arguments"),
        "bad_runs": (["--model", str(tiny_models.pte), "--runs", "0"], 2, "bad_arguments"),
        "bad_layout": (["--model", str(tiny_models.pte), "--layout", "NWHC"], 2, "bad_arguments"),
        "unknown_option": (["--model", str(tiny_models.pte), "--bogus", "1"], 2, "bad_arguments"),
        "missing_inputs": (["--model", str(tiny_models.pte), "--inputs", str(tmp_path / "none.npz")], 2, "bad_arguments"),
        "npz_not_zip": (["--model", str(tiny_models.tflite), "--inputs", write("x.npz", b"not a zip at all")], 2,
                        "bad_arguments"),
        "npz_no_key": (["--model", str(tiny_models.tflite), "--inputs", str(nokey)], 2, "bad_arguments"),
        "random_bytes": (["--model", write("r.pte", rng.bytes(4096))], 3, "corrupt_model"),
        "empty": (["--model", write("e.tflite", b"")], 3, "corrupt_model"),
        "garbage_after_pte_header": (["--model", write("g.pte", pte[:8] + rng.bytes(4096))], 3, "corrupt_model"),
        "truncated_pte": (["--model", write("t.pte", pte[: len(pte) // 2]), *ok], 3, "corrupt_model"),
        "truncated_tflite": (["--model", write("t.tflite", tfl[: len(tfl) // 2]), *ok], 3, "corrupt_model"),
        "wrong_shape_pte": (["--model", str(tiny_models.pte), "--inputs", str(small)], 4, "input_mismatch"),
        "wrong_shape_tflite": (["--model", str(tiny_models.tflite), "--inputs", str(small)], 4, "input_mismatch"),
        "wrong_dtype": (["--model", str(tiny_models.tflite), "--inputs", str(ints)], 4, "input_mismatch"),
        "forced_wrong_layout": (["--model", str(tiny_models.tflite), *ok, "--layout", "NHWC"], 4, "input_mismatch"),
    }


CASES = ["missing_model", "unknown_suffix", "bad_runs", "bad_layout", "unknown_option", "missing_inputs",
         "npz_not_zip", "npz_no_key", "random_bytes", "empty", "garbage_after_pte_header", "truncated_pte",
         "truncated_tflite", "wrong_shape_pte", "wrong_shape_tflite", "wrong_dtype", "forced_wrong_layout"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_the_same_json_error_and_exit_code_as_python(native_runner, tiny_models, tmp_path, case) -> None:
    argv, code, error_type = _bad_cases(tiny_models, tmp_path)[case]
    argv = [*argv, "--warmup", "0", "--runs", "1"] if "--runs" not in argv else argv
    (rc_n, n), (rc_p, p) = both(native_runner, *argv[1:2], *argv[2:])
    assert (rc_n, n["event"], n["error_type"], n["exit_code"]) == (code, "error", error_type, code), n
    assert (rc_p, p["error_type"]) == (code, error_type), p  # the protocol's one answer for this input
    assert n["message"] and n["hint"]


def test_pt2_and_missing_libraries_are_runtime_missing(native_runner, tiny_models, tmp_path) -> None:
    rc, r, _ = run([str(native_runner), "--model", str(tiny_models.pt2)])
    assert (rc, r["error_type"]) == (5, "runtime_missing") and "python" in r["hint"].lower()
    lonely = tmp_path / "alone"
    lonely.mkdir()
    shutil.copy2(native_runner, lonely / "edgekd_runner")  # the runner without its plugins
    env = {"LD_LIBRARY_PATH": ""}
    rc, r, _ = run([str(lonely / "edgekd_runner"), "--model", str(tiny_models.pte)], env=env)
    assert (rc, r["error_type"]) == (5, "runtime_missing") and "libedgekd_backend_executorch.so" in r["message"], r
    shutil.copy2(native_dir() / "libedgekd_backend_executorch.so", lonely)  # plugin without ExecuTorch's libs
    rc, r, _ = run([str(lonely / "edgekd_runner"), "--model", str(tiny_models.pte)], env=env)
    assert (rc, r["error_type"]) == (5, "runtime_missing") and "libexecutorch" in r["message"], r
    assert {p.name for p in runtime_files()} >= {"edgekd_runner", "libexecutorch.so", "libLiteRt.so"}


def test_harness_runner_choice_and_rows(native_runner, tiny_models, tmp_path, monkeypatch) -> None:
    from edgekd.bench import native
    from edgekd.bench.harness import benchmark
    from edgekd.errors import TargetError

    kw = dict(warmup=1, runs=3, threads=1, eval_data=tiny_models.eval, progress=False)
    rows = {}
    for runner in ("native", "python", "auto"):
        [r] = benchmark(tiny_models.tflite_int8, runner=runner, out_dir=tmp_path / runner, **kw)
        assert r.ok, r.error
        rows[runner] = r
        saved = json.loads((tmp_path / runner / "results.jsonl").read_text().splitlines()[-1])
        assert saved["runner"] == r.runner
    assert rows["native"].runner == "native" and rows["native"].interpreter.startswith("edgekd_runner (native C++)")
    assert rows["python"].runner == "python" and rows["python"].interpreter == "ai_edge_litert.interpreter"
    assert rows["auto"].runner == "python"  # this Python has ai_edge_litert: auto keeps the Python runner
    assert rows["native"].accuracy == rows["python"].accuracy
    monkeypatch.setattr(native, "python_can_run", lambda model: False)  # a target whose Python lacks the runtime
    [r] = benchmark(tiny_models.tflite_int8, runner="auto", out_dir=tmp_path / "auto2", **kw)
    assert r.ok and r.runner == "native"
    [r] = benchmark(tiny_models.pt2, runner="auto", out_dir=tmp_path / "auto3", **kw)  # native cannot: python
    assert r.runner == "python"
    [r] = benchmark(tiny_models.pt2, runner="native", out_dir=tmp_path / "pt2", **kw)
    assert not r.ok and r.runner == "native" and r.error_type == "runtime_missing" and r.exit_code == 5
    with pytest.raises(TargetError, match="unknown runner"):
        benchmark(tiny_models.tflite, runner="java", out_dir=tmp_path / "bad", **kw)
    monkeypatch.setenv(native.NATIVE_DIR_ENV, str(tmp_path / "no_build"))
    [r] = benchmark(tiny_models.tflite, runner="native", out_dir=tmp_path / "nobuild", **kw)
    assert not r.ok and "make native" in r.error


@pytest.mark.parametrize(("which", "source"), [("pte", "etdump"), ("tflite", "litert-profiler")])
def test_profile_stores_the_operator_table(native_runner, tiny_models, tmp_path, which, source) -> None:
    from edgekd.bench.harness import benchmark

    [r] = benchmark(getattr(tiny_models, which), runner="native", profile=True, warmup=1, runs=3, threads=1,
                    progress=False, out_dir=tmp_path)
    assert r.ok and r.profile == f"profiles/tiny__{r.key.replace('/', '-')}__1t.ops.json", (r.error, r.profile)
    assert r.profile_error is None
    table = json.loads((tmp_path / r.profile).read_text())
    assert table["source"] == source and table["total_ms"] > 0
    names = {op["name"]: op for op in table["ops"]}
    convs = names["Convolution (NHWC, F32) IGEMM"]
    assert convs["count"] == 2 and convs["delegated"] is True  # XNNPACK reports its operators: no blob
    assert table["note"] is None
    assert [op["total_ms"] for op in table["ops"]] == sorted((op["total_ms"] for op in table["ops"]), reverse=True)


def test_profile_keeps_one_table_per_file_and_says_when_none_was_taken(native_runner, tiny_models, tmp_path) -> None:
    """model_fp32.pte and model_fp32.tflite share a stem: each keeps its own table (keyed by format, precision,
    converter); a file the Python runner ran has none, and its row says why."""
    from test_harness import _bundle

    from edgekd.bench.harness import benchmark
    from edgekd.bench.html_report import write_html_report

    root = _bundle(tmp_path / "bundle", {
        "model_fp32.pte": (tiny_models.pte.read_bytes(), "pte", "fp32", "executorch"),
        "model_fp32.tflite": (tiny_models.tflite.read_bytes(), "tflite", "fp32", "litert-torch")}).root
    rows = benchmark(root, runner="native", profile=True, warmup=0, runs=2, threads=1, progress=False,
                     out_dir=tmp_path / "run")
    assert [r.ok for r in rows] == [True, True]
    tables = {r.format: json.loads((tmp_path / "run" / r.profile).read_text()) for r in rows}
    assert len({r.profile for r in rows}) == 2
    assert (tables["pte"]["source"], tables["tflite"]["source"]) == ("etdump", "litert-profiler")
    assert sorted(p.name for p in (tmp_path / "run" / "profiles").glob("*.ops.json")) == [
        "model_fp32__pte-fp32-executorch__1t.ops.json", "model_fp32__tflite-fp32-litert-torch__1t.ops.json"]
    [py] = benchmark(root, runner="python", profile=True, files=["pte/fp32/executorch"], warmup=0, runs=2,
                     threads=1, progress=False, out_dir=tmp_path / "py")
    assert py.ok and py.profile is None and "needs the native runner" in py.profile_error
    page = write_html_report(tmp_path / "py").read_text()
    assert "no operator table: --profile needs the native runner" in page


def test_cli_bench_runner_native(native_runner, tiny_models, tmp_path) -> None:
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "edgekd.cli", "bench", str(tiny_models.tflite_int8), "--runner", "native",
                        "--warmup", "0", "--runs", "2", "--threads", "1", "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
    [row] = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert row["runner"] == "native" and row["interpreter"].startswith("edgekd_runner (native C++)")


def test_eval_images_are_preprocessed_on_the_device_like_the_python_runner(native_runner, tiny_models,
                                                                           tmp_path) -> None:
    """An eval .npz of decoded images (several sizes) + the bundle's preprocessing: both runners resize, crop and
    normalise them themselves and predict what the host-preprocessed inputs give."""
    from edgekd.bench.harness import EvalImages, _write_images
    from edgekd.bundle import Bundle, Preprocessing, TensorSpec

    with np.load(tiny_models.eval) as f:
        x, y = f["x"][:60], f["y"][:60]
    pixels = []
    for i, img in enumerate(np.clip(np.rint(x[:, 0] * 255), 0, 255).astype(np.uint8)):
        big = np.kron(img, np.ones((2, 2), np.uint8))  # 16x16: a 2x bilinear downscale gives img back
        if i % 3 == 1:
            big = np.pad(big, ((0, 0), (4, 4)), mode="edge")  # 16x24 landscape: the centre crop removes the pad
        pixels.append(big[None])
    pre = Preprocessing(size=(8, 8), mean=(0.0,), std=(1.0,), channel_order="GRAY", scale=1 / 255,
                        resize="shorter_side", resize_to=8, crop="center")
    spec = (TensorSpec("x", (1, 1, 8, 8), "float32", "NCHW"),)
    bundle = Bundle(root=tmp_path, model_name="tiny", inputs=spec, outputs=(TensorSpec("y", (1, 10), "float32"),),
                    preprocessing=pre)
    ev = tmp_path / "eval_images.npz"
    _write_images(ev, EvalImages(pixels, y), bundle)
    with np.load(ev) as f:
        host_x = f["x"]
    np.testing.assert_allclose(host_x, np.rint(x * 255) / 255, atol=1e-6)  # the geometry gives the digits back
    only_x = tmp_path / "eval_x.npz"
    np.savez(only_x, x=host_x, y=y)
    (rc_n, n), (rc_p, p) = both(native_runner, tiny_models.pte, "--eval", str(ev), "--warmup", "0", "--runs", "2",
                                "--keep-samples")
    rc_ref, ref, _ = run([sys.executable, str(PY_RUNNER), "--model", str(tiny_models.pte), "--eval", str(only_x),
                          "--warmup", "0", "--runs", "2", "--keep-samples"])
    assert rc_n == rc_p == rc_ref == 0
    assert n["eval_samples"] == p["eval_samples"] == 60
    assert n["eval_predictions"] == p["eval_predictions"] == ref["eval_predictions"]
    assert n["accuracy"] == p["accuracy"] == ref["accuracy"] > 0.5
