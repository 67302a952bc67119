"""PT2E int8 quantization: PTQ leaves the model unchanged and stays close to it; QAT trains and converts."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from edgekd.errors import ConfigError, ExportError
from edgekd.quantization import convert_qat, prepare_qat, quantize


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def _quantized_ops(gm: torch.fx.GraphModule) -> int:
    return sum("quantize_per" in str(n.target) for n in gm.graph.nodes)


def test_quantize_leaves_model_unchanged_and_tracks_it() -> None:
    torch.manual_seed(0)
    model = TinyCNN().train()
    before = copy.deepcopy(model.state_dict())
    x = torch.rand(1, 1, 8, 8)
    q = quantize(model, (x,), torch.rand(16, 1, 8, 8))
    assert model.training, "quantize must not switch the caller's model to eval mode"
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"quantize changed {k}"
    assert _quantized_ops(q) >= 3  # input, conv/relu output, linear output
    model.eval()
    with torch.no_grad():
        err = (q(x) - model(x)).abs().max().item()
    assert err < 0.1 * (1 + model(x).abs().max().item())


def test_quantize_accepts_batches_and_rejects_empty() -> None:
    model = TinyCNN().eval()
    x = torch.rand(1, 1, 8, 8)
    loader = [(torch.rand(4, 1, 8, 8), torch.zeros(4)) for _ in range(2)]
    assert _quantized_ops(quantize(model, (x,), loader)) >= 3
    with pytest.raises(ConfigError, match="calibration is empty"):
        quantize(model, (x,), torch.rand(0, 1, 8, 8))


def test_quantize_untraceable_model_names_torch_export() -> None:
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if x.sum() > 0 else x  # data-dependent control flow

    with pytest.raises(ExportError, match="torch.export could not trace Branchy"):
        quantize(Branchy(), (torch.rand(1, 1, 8, 8),), torch.rand(4, 1, 8, 8))


def test_qat_prepares_trains_a_step_and_converts() -> None:
    torch.manual_seed(0)
    model = TinyCNN()
    x = torch.rand(4, 1, 8, 8)  # QAT trains at the traced batch size
    prepared = prepare_qat(model, (x,))
    opt = torch.optim.SGD(prepared.parameters(), lr=0.1)
    w0 = [p.detach().clone() for p in prepared.parameters()]
    loss = nn.functional.cross_entropy(prepared(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(w0, prepared.parameters(), strict=True))
    q = convert_qat(prepared)
    assert _quantized_ops(q) >= 3
    assert q(x).shape == (4, 10)


def test_an_unknown_observer_stops_the_export_before_any_file(tmp_path) -> None:  # noqa: ANN001
    from edgekd.convert import export

    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ConfigError, match="unknown calibration observer 'histgram'"):
        export(net, (torch.zeros(1, 4),), formats=("pte",), precision=("fp32",), out_dir=tmp_path / "b",
               observer="histgram")
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_resnet_and_mobilenet_reject_a_width_that_is_not_positive() -> None:
    from edgekd import models

    for name in ("resnet", "mobilenetv2"):
        with pytest.raises(ConfigError, match="width multiplier must be > 0"):
            models.create(name, width=0.0)
