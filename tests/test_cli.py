"""The CLI is a thin shell: bad input gives one clear line and a non-zero exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgekd.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert "edgekd 0." in capsys.readouterr().out


@pytest.mark.parametrize(("what", "expected"), [
    ("models", "resnet8x4"), ("models", "resnet8_plain"), ("methods", "kd"), ("datasets", "mnist5k"),
    ("targets", "local"), ("families", "resnet_plain"), ("methods", "mlkd"), ("methods", "reviewkd"),
    ("modifiers", "std=True"),
])
def test_list(what: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", what]) == 0
    assert expected in capsys.readouterr().out.split()


def test_list_formats_and_metrics_are_generated_from_their_tables(monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from edgekd.bench.metrics import METRICS
    from edgekd.cli import LISTS
    from edgekd.formats import FORMATS, Format

    row = Format("npy", "numpy", "npy", ("fp32",), "m:f", "m:g", "numpy", "NCHW", False, None, False)
    monkeypatch.setitem(FORMATS, row.key, row)  # a new row shows up with no change to the CLI
    assert main(["list", "formats"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    for f in FORMATS.values():
        assert any(w[:1] == [f.format] and w[1] == f.converter and "." + f.suffix in w for w in lines if w), f.key
    assert main(["list", "metrics"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == list(METRICS)
    assert {"formats", "metrics", "models", "strategies"} <= set(LISTS.names())
    with pytest.raises(SystemExit):
        main(["list", "nothing"])


def test_bench_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pte"
    r = run_cli("bench", str(missing), "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode != 0
    assert "nope.pte" in r.stderr + r.stdout
    assert "Traceback" not in r.stderr


def test_export_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "model.pt"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "model.pt" in err and "does not exist" in err


def test_unknown_method_lists_known(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgekd import models as M
    from edgekd.models.saved import save_model

    ckpt = save_model(M.create("resnet8", num_classes=10, in_channels=1), tmp_path / "t.pt", "resnet8",
                      num_classes=10, in_channels=1)
    rc = main(["distill", "--teacher", str(ckpt), "--student", "resnet8", "--method", "ce+kdd",
               "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "s"), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "kdd" in err and "kd" in err.split("known:")[1]


def test_corrupt_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a torch file")
    assert main(["export", str(bad), "--out", str(tmp_path / "b")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_train_then_export_cli(tmp_path: Path) -> None:
    """train (augmented) -> export -> bench through the CLI on the 8x8 digits (fp32 .pte only: fast)."""
    r = run_cli("train", "--model", "resnet8", "--data", "digits", "--epochs", "1", "--augment", "--out",
                str(tmp_path / "t"), "--no-progress")
    assert r.returncode == 0, r.stderr
    ckpt = tmp_path / "t" / "model.pt"
    assert ckpt.exists()
    r = run_cli("export", str(ckpt), "--formats", "pte", "--precisions", "fp32", "--out", str(tmp_path / "b"),
                "--no-progress")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b" / "edgekd.json").exists()
    r = run_cli("bench", str(tmp_path / "b"), "--runs", "5", "--warmup", "1", "--eval-data", "digits",
                "--eval-samples", "50", "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "pte" in r.stdout
    assert len((tmp_path / "run" / "results.jsonl").read_text().splitlines()) == 1


def test_distill_prune_qat_cli(tmp_path: Path) -> None:
    """distill --prune --qat: a pruned float model.pt that reloads, and an int8 bundle from the QAT graph."""
    # Trained enough that its top-1 decisions are not near-ties: a barely trained net's int8 agreement with
    # its fake-quant graph depends on the CPU's XNNPACK kernels (0.89 with 1+1+1 epochs on an AVX2-only EPYC).
    r = run_cli("train", "--model", "resnet8", "--data", "digits", "--epochs", "3", "--out", str(tmp_path / "t"),
                "--no-progress")
    assert r.returncode == 0, r.stderr
    r = run_cli("distill", "--teacher", str(tmp_path / "t" / "model.pt"), "--student", "resnet8", "--data", "digits",
                "--epochs", "2", "--ft-epochs", "2", "--prune", "0.5", "--qat", "--formats", "pte",
                "--out", str(tmp_path / "e"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "prune ratio 0.500" in r.stdout and "int8 from the QAT graph" in r.stdout
    import json

    from edgekd.edge.prune import channels_of
    from edgekd.models import create
    from edgekd.models.saved import load_model

    model, meta = load_model(tmp_path / "e" / "model.pt")
    full = channels_of(create("resnet8", num_classes=10, in_channels=1))
    assert meta["channels"] == channels_of(model) == {k: v // 2 for k, v in full.items()}
    files = json.loads((tmp_path / "e" / "bundle" / "edgekd.json").read_text())["files"]
    assert [(f["format"], f["precision"], f["extra"]["quantization"]) for f in files] == [("pte", "int8", "qat")]
    assert files[0]["parity"]["top1_agreement"] >= 0.9


def test_distill_budget_and_bad_edge_flags(tmp_path: Path) -> None:
    r = run_cli("train", "--model", "resnet8", "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "t"),
                "--no-progress")
    assert r.returncode == 0, r.stderr
    teacher = str(tmp_path / "t" / "model.pt")
    r = run_cli("distill", "--teacher", teacher, "--student", "resnet8", "--data", "digits", "--epochs", "2",
                "--ft-epochs", "1", "--budget", "params=50k", "--gradual", "--out", str(tmp_path / "b"),
                "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "budget params <= 50000" in r.stdout
    from edgekd.models import count_params
    from edgekd.models.saved import load_model

    assert count_params(load_model(tmp_path / "b" / "model.pt")[0]) <= 50_000
    r = run_cli("distill", "--teacher", teacher, "--student", "resnet8", "--data", "digits", "--prune", "0.5",
                "--budget", "params=50k", "--out", str(tmp_path / "x"), "--no-progress")
    assert r.returncode == 2 and "--prune and --budget" in r.stderr
    cfg = tmp_path / "sgd.yaml"
    cfg.write_text("optimizer: sgd\n")
    r = run_cli("distill", "--config", str(cfg), "--teacher", teacher, "--student", "resnet8", "--data", "digits",
                "--prune", "0.5", "--out", str(tmp_path / "y"), "--no-progress")
    assert r.returncode == 2 and "AdamW on the CPU" in r.stderr and "'optimizer': 'sgd'" in r.stderr
    r = run_cli("distill", "--teacher", teacher, "--student", "resnet8", "--data", "digits", "--gradual",
                "--out", str(tmp_path / "z"), "--no-progress")
    assert r.returncode == 2 and "--gradual needs a pruning target" in r.stderr


def test_self_distill_then_export_an_exit(tmp_path: Path) -> None:
    """distill --method self needs no teacher; the checkpoint keeps its exits; export --exit cuts there."""
    r = run_cli("distill", "--student", "resnet14", "--method", "self", "--data", "digits", "--epochs", "1",
                "--out", str(tmp_path / "s"), "--no-progress")
    assert r.returncode == 0, r.stderr
    from edgekd.models.exits import ExitModel
    from edgekd.models.saved import load_model

    model, _ = load_model(tmp_path / "s" / "model.pt")
    assert isinstance(model, ExitModel) and len(model.exits) == 2
    first = model.exits[0]
    r = run_cli("export", str(tmp_path / "s" / "model.pt"), "--exit", first, "--formats", "pte", "--precisions", "fp32",
                "--out", str(tmp_path / "b"), "--no-progress")
    assert r.returncode == 0, r.stderr
    import json

    manifest = json.loads((tmp_path / "b" / "edgekd.json").read_text())
    assert manifest["model_name"] == f"resnet14@{first}"
    whole = run_cli("export", str(tmp_path / "s" / "model.pt"), "--formats", "pte", "--precisions", "fp32",
                    "--out", str(tmp_path / "w"), "--no-progress")
    assert whole.returncode == 0, whole.stderr
    assert (tmp_path / "b" / "model_fp32.pte").stat().st_size < (tmp_path / "w" / "model_fp32.pte").stat().st_size
    r = run_cli("export", str(tmp_path / "s" / "model.pt"), "--exit", "layer9", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "no exit 'layer9'" in r.stderr


def test_one_converter_option_for_every_format_and_old_spellings_say_so_once(
        capsys: pytest.CaptureFixture[str]) -> None:
    from edgekd import cli
    from edgekd.errors import ConfigError

    cli._WARNED.clear()
    p = cli.build_parser()
    base = ["export", "m.pt", "--out", "b"]
    a = p.parse_args([*base, "--precision", "fp32", "--tflite-converter", "onnx2tf", "--precision", "int8"])
    assert a.precision == "int8" and cli._converters(a) == {"tflite": ("onnx2tf",)}
    err = capsys.readouterr().err
    assert err.count("--precision is deprecated, use --precisions") == 1
    assert err.count("--tflite-converter is deprecated, use --converter tflite=NAME") == 1
    a = p.parse_args([*base, "--converter", "tflite=litert-torch,onnx2tf", "--converter", "pte=executorch"])
    assert a.precision == "fp32,int8" and not capsys.readouterr().err
    assert cli._converters(a) == {"tflite": ("litert-torch", "onnx2tf"), "pte": ("executorch",)}
    assert "pt2=torch" in p._subparsers._group_actions[0].choices["export"].format_help()  # every format's choices
    with pytest.raises(ConfigError, match=r"unknown tflite converter 'tfl'; known: litert-torch, onnx2tf"):
        cli._converters(p.parse_args([*base, "--converter", "tflite=tfl"]))
    with pytest.raises(ConfigError, match="is not FORMAT=NAME"):
        cli._converters(p.parse_args([*base, "--converter", "onnx2tf"]))
    demo = p.parse_args(["demo", "--tflite-converter", "onnx2tf"])  # the demo's old flag maps the same way
    assert cli._converters(demo) == {"tflite": ("onnx2tf",)}


def test_export_plans_the_converters_it_is_given() -> None:
    from edgekd.convert import _plan
    from edgekd.errors import ConfigError

    jobs = _plan(("pte", "tflite"), ("fp32",), "litert-torch", False, {"tflite": ("litert-torch", "onnx2tf")})
    assert [(r.converter, name) for r, _, name in jobs] == [
        ("executorch", "model_fp32.pte"), ("litert-torch", "model_fp32_litert-torch.tflite"),
        ("onnx2tf", "model_fp32_onnx2tf.tflite")]
    assert [r.converter for r, _, _ in _plan(("tflite",), ("fp32",), "onnx2tf", False)] == ["onnx2tf"]
    # a misspelt format key or converter name is refused, not silently ignored (tflte would export the default)
    with pytest.raises(ConfigError, match="unknown format 'tflte'"):
        _plan(("tflite",), ("fp32",), "litert-torch", False, {"tflte": "onnx2tf"})
    with pytest.raises(ConfigError, match="unknown pte converter 'xnnpack'"):
        _plan(("tflite",), ("fp32",), "litert-torch", False, {"pte": "xnnpack"})


def test_distill_says_when_it_runs_the_edge_pipeline(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from edgekd import cli

    monkeypatch.setattr(cli, "_edge", lambda args, cfg: 0)
    assert main(["distill", "--student", "resnet8", "--qat", "--budget", "params=40000", "--out", "x"]) == 0
    assert "--qat, --budget given: running the edge pipeline" in capsys.readouterr().err
