"""The host harness on real runtimes: a bundle with a corrupt file, JSONL, resume, table, targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgekd.bench import BenchResult, benchmark, format_table
from edgekd.bench.targets import get_target
from edgekd.bundle import Bundle, ModelFile, TensorSpec, sha256_of
from edgekd.errors import ConfigError, RegistryError

X = TensorSpec("x", (1, 1, 8, 8), "float32", "NCHW")
Y = TensorSpec("logits", (1, 10), "float32")


def _bundle(root: Path, files: dict[str, tuple[bytes, str, str, str]]) -> Bundle:
    """A bundle folder from raw file bytes: name -> (data, format, precision, converter)."""
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, (data, fmt, precision, converter) in files.items():
        (root / name).write_bytes(data)
        entries.append(ModelFile(name, fmt, precision, converter, len(data), sha256_of(root / name), (X,), (Y,)))
    b = Bundle(root=root, model_name="tinycnn", inputs=(X,), outputs=(Y,), files=entries)
    b.save()
    return b


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_bundle_with_a_corrupt_file_keeps_going_and_resumes(tiny_models, tmp_path: Path) -> None:
    root = _bundle(tmp_path / "bundle", {
        "tiny.pte": (tiny_models.pte.read_bytes(), "pte", "fp32", "executorch"),
        "bad.tflite": (b"\x1c\x00\x00\x00TFL3" + b"\x00\xff" * 500, "tflite", "fp32", "litert-torch"),
        "tiny.tflite": (tiny_models.tflite.read_bytes(), "tflite", "fp32", "litert-torch"),
    }).root
    out = tmp_path / "run"
    eval_xy = tuple(np.load(tiny_models.eval)[k] for k in ("x", "y"))
    results = benchmark(root, warmup=1, runs=4, threads=1, eval_data=eval_xy, out_dir=out, progress=False)

    assert [r.ok for r in results] == [True, False, True]
    rows = _lines(out / "results.jsonl")
    assert len(rows) == 3 and sum(r["error"] is None for r in rows) == 2
    bad = results[1]
    assert bad.error_type == "corrupt_model" and bad.exit_code == 3 and "bad.tflite" in bad.error
    for r in (results[0], results[2]):
        assert r.model_name == "tinycnn" and r.latency_ms is not None and len(r.latency_samples_ms) == 4
        assert r.accuracy == pytest.approx(tiny_models.eager_accuracy) and r.eval_samples == len(eval_xy[1])
    assert results[0].key == "pte/fp32/executorch" and results[0].runtime == "executorch"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_results"] == 3 and summary["n_failed"] == 1

    table = format_table(results)
    header = table.splitlines()[0]
    for col in ("model", "KB", "acc %", "p50 ms", "peak MB", "error"):
        assert col in header
    assert len(table.splitlines()) == 5 and "tinycnn" in table and "corrupt" not in header

    again = benchmark(root, warmup=1, runs=4, threads=1, out_dir=out, resume=True, progress=False)
    assert [r.ok for r in again] == [True, False, True]
    rows = _lines(out / "results.jsonl")
    assert len(rows) == 4 and rows[-1]["model"].endswith("bad.tflite")  # only the failed file ran again
    assert again[0].latency_samples_ms == results[0].latency_samples_ms  # reused, not re-measured


def test_files_filter_checksum_and_timeout(tiny_models, tmp_path: Path) -> None:
    b = _bundle(tmp_path / "bundle", {
        "tiny.tflite": (tiny_models.tflite.read_bytes(), "tflite", "fp32", "litert-torch"),
        "int8.tflite": (tiny_models.tflite_int8.read_bytes(), "tflite", "int8", "litert-torch"),
    })
    (b.root / "int8.tflite").write_bytes(tiny_models.tflite_int8.read_bytes()[:-10])  # truncated after export
    [r] = benchmark(b, runs=2, warmup=0, files=["tflite/int8/litert-torch"], out_dir=tmp_path / "a", progress=False)
    assert r.error_type == "checksum" and "sha256" in r.error
    [r] = benchmark(tiny_models.tflite, runs=2, warmup=0, timeout_s=0.01, out_dir=tmp_path / "b", progress=False)
    assert r.error_type == "timeout" and r.key == "tflite/unknown/unknown"


def test_single_file_and_result_round_trip(tiny_models, tmp_path: Path) -> None:
    [r] = benchmark(tiny_models.tflite_int8, runs=3, warmup=1, inputs=tiny_models.inputs, out_dir=tmp_path,
                    progress=False)
    assert r.ok and r.precision == "int8" and r.model_name == "tiny_int8" and r.input["dtype"] == "int8"
    assert BenchResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_targets_and_bad_arguments(tmp_path: Path) -> None:
    assert get_target("local").describe()["kind"] == "local"
    with pytest.raises(RegistryError, match="local"):
        get_target("ftp://example")
    with pytest.raises(ConfigError, match="bench"):
        benchmark(tmp_path / "nothing.pte", out_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="column"):
        format_table([], columns=["model", "speed"])
