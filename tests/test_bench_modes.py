"""Issue 18 measuring modes on real runtimes: --min-duration, warm load, --repeat, --sustained, the status
table (ok / failed on device / failed to export) and machine facts in every row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import _tiny_cnn

from edgekd.bench.harness import benchmark, plan_runs
from edgekd.bench.report import format_status
from edgekd.bench.results import DEVICE_FAILED, EXPORT_FAILED, OK, load_results
from edgekd.bench.stats import noise_band
from edgekd.bench.sustained import parse_thermal, run_sustained
from edgekd.bundle import Bundle, ModelFile, sha256_of
from edgekd.errors import ConfigError


def test_plan_runs_mlperf_and_min_runs() -> None:
    assert plan_runs(100) == (100, 0.0)
    assert plan_runs(100, min_runs=500) == (500, 0.0)
    assert plan_runs(100, min_duration=5, mlperf=True) == (1024, 60.0)
    assert plan_runs(2000, min_duration=90, mlperf=True) == (2000, 90.0)
    with pytest.raises(ConfigError, match="min_duration"):
        plan_runs(10, min_duration=-1)


def test_min_duration_warm_load_and_machine_facts(tiny_models, tmp_path: Path) -> None:
    (r,) = benchmark(tiny_models.tflite, warmup=1, runs=3, threads=1, min_duration=0.3, out_dir=tmp_path,
                     progress=False)
    assert r.ok and r.runs == len(r.latency_samples_ms) > 3  # went on past --runs until 0.3 s
    assert sum(r.latency_samples_ms) / 1e3 >= 0.1 and r.min_duration_s == 0.3  # ~6 us runs: the loop's own
    # perf_counter + append (~1 us a run) is part of the 0.3 s wall time, not of the samples
    assert r.load_ms > 0 and r.warm_load_ms is not None and r.warm_load_ms > 0
    assert r.spread is not None and r.spread.n == r.runs and r.spread.verdict in ("stable", "noisy", "unstable")
    assert r.machine["cpu_model"] and "isa" in r.machine and r.machine["runtimes"]  # CPU, ISA flags, versions
    again = load_results(tmp_path / "results.jsonl")[0]
    assert again.spread == r.spread and again.warm_load_ms == r.warm_load_ms and again.status == OK


def test_repeat_interleaves_rounds_and_reports_agreement(tiny_models, tmp_path: Path) -> None:
    """``repeat=3`` over two files: rounds A B, B A, A B; each file's row after every round; the eval set only
    in the first round, its accuracy kept; the row's latency is the median round's; a resumed run skips
    files that have every round and remeasures one that was cut short."""
    n_eval = len(np.load(tiny_models.eval)["y"])
    a, b = benchmark([tiny_models.pte, tiny_models.tflite], warmup=2, runs=20, threads=1, repeat=3,
                     eval_data=tiny_models.eval, out_dir=tmp_path, progress=False)
    lines = load_results(tmp_path / "results.jsonl")
    assert [(Path(r.model).name, len(r.repeat["p50s"])) for r in lines] == [
        ("tiny.pte", 1), ("tiny.tflite", 1), ("tiny.tflite", 2), ("tiny.pte", 2), ("tiny.pte", 3), ("tiny.tflite", 3)]
    for r in (a, b):
        assert r.ok and len(r.repeat["p50s"]) == 3 and r.accuracy is not None and r.eval_samples == n_eval
        p = r.repeat["p50s"]
        assert r.repeat["spread"] == pytest.approx((max(p) - min(p)) / float(np.median(p)))
        assert r.repeat["agree"] == (r.repeat["spread"] <= 0.05)
        assert r.latency_ms.p50 == sorted(p)[1]  # the row is the median round
        lo, hi = noise_band(r.repeat)
        assert lo <= min(p) and hi >= max(p) and hi - lo >= 0.02 * float(np.median(p)) * 0.999
    table = format_status([a, b])
    assert "p50 range ms" in table and "same as" in table and "overlapping ranges" in table
    assert "{:.3f}-{:.3f}".format(*noise_band(a.repeat)) in table
    # resume with repeat=2 after a cut in round 2 (pte has 1 round, tflite 2): pte is measured again, tflite is not
    jsonl = tmp_path / "results.jsonl"
    jsonl.write_text("".join(ln + "\n" for ln in jsonl.read_text().splitlines()[:3]))
    again = benchmark([tiny_models.pte, tiny_models.tflite], warmup=2, runs=20, threads=1, repeat=2,
                      out_dir=tmp_path, resume=True, progress=False)
    assert [len(r.repeat["p50s"]) for r in again] == [2, 2]
    assert [Path(r.model).name for r in load_results(jsonl)[3:]] == ["tiny.pte", "tiny.pte"]


def test_sustained_windows_and_temperature(tiny_models, tmp_path: Path) -> None:
    (r,) = benchmark(tiny_models.tflite, warmup=1, runs=1, threads=1, sustained=1.0, interval=0.25,
                     out_dir=tmp_path, progress=False)
    assert r.ok and r.min_duration_s == 1.0 and r.sustained and len(r.sustained) >= 4
    assert sum(w["n"] for w in r.sustained) == r.runs
    assert all(w["p50"] > 0 for w in r.sustained) and r.thermal
    readable = bool(parse_thermal("\n".join(
        f"{p.name}={(p / 'temp').read_text().strip()}" for p in Path("/sys/class/thermal").glob("thermal_zone*")
        if (p / "temp").exists()))) if Path("/sys/class/thermal").exists() else False
    assert all((w["temp_c"] is not None) == readable for w in r.sustained)  # None = "n/a" where unreadable
    with pytest.raises(ConfigError, match="interval"):
        run_sustained(lambda: r, "local", 1.0, 2.0)


def test_parse_thermal() -> None:
    z = parse_thermal("cpu-thermal=45123\ncpu-thermal=47000\ngpu=bad\nbattery=31\nweird=999999")
    assert z == {"cpu-thermal": 45.12, "cpu-thermal#1": 47.0, "battery": 31.0}


def test_status_table_with_export_failure_and_corrupt_file(tiny_models, tmp_path: Path, monkeypatch, capsys) -> None:
    import torch

    import edgekd.convert.torch_program as tp
    from edgekd.convert import export

    def broken(*a, **kw):  # noqa: ANN002, ANN003
        raise RuntimeError("simulated converter crash")

    monkeypatch.setattr(tp, "to_pt2", broken)
    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8)
    bundle = export(_tiny_cnn().eval(), (x[:1],), formats=("pt2", "pte"), precision=("fp32",), calibration=x,
                    out_dir=tmp_path / "bundle", model_name="tinycnn", progress=False, keep_going=True)
    assert [f.key for f in bundle.files] == ["pte/fp32/executorch"]
    assert bundle.extra["failed"][0]["key"] == "pt2/fp32/torch" and "simulated" in bundle.extra["failed"][0]["error"]
    assert not (tmp_path / "bundle" / bundle.extra["failed"][0]["path"]).exists()
    with pytest.raises(RuntimeError, match="simulated"):  # without keep_going the first failure raises
        export(_tiny_cnn().eval(), (x[:1],), formats=("pt2",), precision=("fp32",), out_dir=tmp_path / "b2",
               progress=False)

    bad = tmp_path / "bundle" / "bad.tflite"  # a corrupt file that the manifest lists
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00\xff" * 300)
    b = Bundle.load(tmp_path / "bundle")
    b.files.append(ModelFile("bad.tflite", "tflite", "fp32", "litert-torch", bad.stat().st_size, sha256_of(bad),
                             b.inputs, b.outputs))
    b.save()
    results = benchmark(tmp_path / "bundle", warmup=0, runs=3, threads=1, out_dir=tmp_path / "run")  # prints
    out = capsys.readouterr()
    assert [r.status for r in results] == [OK, DEVICE_FAILED, EXPORT_FAILED]
    table = out.out.splitlines()
    assert "status" in table[0] and "reason" in table[0] and table[-1] == "1/3 files ok"
    row = {line.split()[1] + "/" + line.split()[2]: line for line in table[2:5]}
    assert "ok" in row["pte/fp32"] and "failed on device" in row["tflite/fp32"] and "corrupt" not in table[0]
    assert "failed to export" in row["pt2/fp32"] and "simulated converter crash" in row["pt2/fp32"]
    assert "cannot load" in row["tflite/fp32"] or "bad.tflite" in row["tflite/fp32"]
    assert format_status(load_results(tmp_path / "run" / "results.jsonl")).endswith("1/3 files ok")
