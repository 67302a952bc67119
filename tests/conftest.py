"""Shared fixtures: tiny real models built once per test session (no files are committed)."""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:  # pragma: no cover
    import torch

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "runtimes" / "python" / "edgekd_runner.py"


@dataclass(frozen=True)
class TinyModels:
    """A 2-conv CNN on 8x8 digits, trained for a few steps, in every format the runner reads."""

    pt2: Path
    pte: Path
    tflite: Path
    tflite_int8: Path
    inputs: Path  # x: (1, 1, 8, 8) float32
    eval: Path  # x: (N, 1, 8, 8) float32, y: (N,) int64
    eager_preds: np.ndarray  # eager PyTorch top-1 on the eval set
    eager_accuracy: float


def _tiny_cnn() -> torch.nn.Module:
    import torch

    class TinyCNN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.c2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
            self.fc = torch.nn.Linear(16, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.c2(torch.relu(self.c1(x))))
            return self.fc(x.mean((2, 3)))

    return TinyCNN()

def trained_tiny_cnn() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The tiny CNN trained on the first 1500 8x8 digits (seed 0), in eval mode, with all the digits (x, y)."""
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    x_all = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y_all = torch.tensor(digits.target)
    torch.manual_seed(0)
    model = _tiny_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(40):  # full-batch steps: enough for well above chance, well under a second
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x_all[:1500]), y_all[:1500]).backward()
        opt.step()
    return model.eval(), x_all, y_all


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """Export the tiny CNN with torch.export, ExecuTorch (XNNPACK) and litert-torch (fp32 and int8)."""
    import litert_torch
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    out = tmp_path_factory.mktemp("tiny_models")
    model, x_all, y_all = trained_tiny_cnn()
    x_eval, y_eval = x_all[1500:1560], y_all[1500:1560]
    with torch.no_grad():
        preds = model(x_eval).argmax(1).numpy()

    example = (x_eval[:1],)
    ep = torch.export.export(model, example)
    paths = {k: out / name for k, name in
             (("pt2", "tiny.pt2"), ("pte", "tiny.pte"), ("tflite", "tiny.tflite"), ("tflite_int8", "tiny_int8.tflite"))}
    torch.export.save(ep, paths["pt2"])
    paths["pte"].write_bytes(to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
    litert_torch.convert(model, example).export(str(paths["tflite"]))
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config())
    prepared = prepare_pt2e(torch.export.export(model, example).module(), quantizer)
    for i in range(32):
        prepared(x_all[i : i + 1])
    q = convert_pt2e(prepared, fold_quantize=False)
    litert_torch.convert(q, example, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(paths["tflite_int8"]))

    np.savez(out / "inputs.npz", x=x_eval[:1].numpy())
    np.savez(out / "eval.npz", x=x_eval.numpy(), y=y_eval.numpy().astype(np.int64))
    return TinyModels(**paths, inputs=out / "inputs.npz", eval=out / "eval.npz", eager_preds=preds,
                      eager_accuracy=float((preds == y_eval.numpy()).mean()))


@pytest.fixture(scope="session")
def runner_module() -> ModuleType:
    """The device runner imported as a module (for its pure-numpy helpers)."""
    spec = importlib.util.spec_from_file_location("edgekd_runner", RUNNER)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["edgekd_runner"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Under CI (``CI=true``) a skipped test is a failure: CI installs every tool the tests need
    (scripts/system-deps.sh), so a skip there means a missing install step, not a green test."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and report.skipped \
            and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI (a missing install step?): {report.longrepr}"
