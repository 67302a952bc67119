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
    ("targets", "local"),
])
def test_list(what: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", what]) == 0
    assert expected in capsys.readouterr().out.split()


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
    """train -> export -> bench through the CLI on the 8x8 digits (fp32 .pte only: fast)."""
    r = run_cli("train", "--model", "resnet8", "--data", "digits", "--epochs", "1", "--out",
                str(tmp_path / "t"), "--no-progress")
    assert r.returncode == 0, r.stderr
    ckpt = tmp_path / "t" / "model.pt"
    assert ckpt.exists()
    r = run_cli("export", str(ckpt), "--formats", "pte", "--precision", "fp32", "--out", str(tmp_path / "b"),
                "--no-progress")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b" / "edgekd.json").exists()
    r = run_cli("bench", str(tmp_path / "b"), "--runs", "5", "--warmup", "1", "--eval-data", "digits",
                "--eval-samples", "50", "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "pte" in r.stdout
    assert len((tmp_path / "run" / "results.jsonl").read_text().splitlines()) == 1
