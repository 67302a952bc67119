"""Models: registry errors, forward + torch.export of every model, plain twins, FLOP counting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd import models
from edgekd.errors import ConfigError, RegistryError
from edgekd.models.resnet import ResNet


def test_registry_lists_families() -> None:
    names = models.list_models()
    for expected in ("resnet8", "resnet8_plain", "resnet8x4", "resnet32x4_plain", "resnet110",
                     "mobilenetv2_x0_5", "mobilenetv2_x1_0"):
        assert expected in names


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(RegistryError, match=r"unknown model 'resnet9'; known: .*resnet8, .*resnet8x4"):
        models.create("resnet9")


def test_unknown_option_names_the_options() -> None:
    with pytest.raises(ConfigError, match=r"(?s)no option width.*num_classes, in_channels"):
        models.create("resnet8", width=2)


# The deepest ResNets repeat resnet32's blocks and take 5-15 s each to export: marked slow.
_DEEP = ("resnet44", "resnet56", "resnet110")
# Image CNNs built from conv/bn/relu/add/pool/linear. The AdderNet (`*_adder`, tests/test_adder.py) and
# BERT-style (`minilm_*`, tests/test_minilm.py) families have their own op sets and inputs.
_CNNS = [n for n in models.list_models() if not (n.endswith("_adder") or n.startswith("minilm_"))]
_ALL = [pytest.param(n, marks=pytest.mark.slow) if n.split("_")[0] in _DEEP else n for n in _CNNS]


def test_families_are_covered() -> None:
    """Every registered model is either an image CNN checked below or has its own family test."""
    others = set(models.list_models()) - set(_CNNS)
    assert others and all(n.endswith("_adder") or n.startswith("minilm_") for n in others)
    assert {"resnet8", "resnet8_plain", "mobilenetv2_x0_5"} <= set(_CNNS)


@pytest.mark.parametrize("name", _ALL)
def test_forward_and_torch_export(name: str) -> None:
    torch.manual_seed(0)
    model = models.create(name, num_classes=7, in_channels=1).eval()
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        eager = model(x)
    assert eager.shape == (1, 7)
    ep = torch.export.export(model, (x,))
    torch.testing.assert_close(ep.module()(x), eager)
    allowed = {"aten.conv2d.default", "aten.batch_norm.default", "aten.relu_.default", "aten.hardtanh_.default",
               "aten.add.Tensor", "aten.adaptive_avg_pool2d.default", "aten.flatten.using_ints",
               "aten.linear.default"}
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert ops <= allowed, ops - allowed


@pytest.mark.parametrize("size", [8, 32])
def test_resnet_input_sizes_and_features(size: int) -> None:
    model = models.create("resnet8", num_classes=10, in_channels=3).eval()
    x = torch.randn(2, 3, size, size)
    assert model(x).shape == (2, 10)
    assert model.forward_features(x).shape == (2, model.num_features) == (2, 64)


def _adds(model: nn.Module) -> int:
    ep = torch.export.export(model.eval(), (torch.randn(1, 3, 16, 16),))
    return sum("add" in str(n.target) and "addmm" not in str(n.target)
               for n in ep.graph.nodes if n.op == "call_function")


@pytest.mark.parametrize("name", ["resnet8", "resnet20", "resnet8x4"])
def test_plain_twin_has_no_shortcuts(name: str) -> None:
    res, plain = models.create(name), models.create(f"{name}_plain")
    assert _adds(res) == 3 * (res.layer1.__len__())  # one add per block
    assert _adds(plain) == 0
    projections = sum(p.numel() for n, p in res.named_parameters() if ".downsample." in n)
    assert projections > 0
    assert models.count_params(plain) == models.count_params(res) - projections
    assert [n for n, _ in plain.named_children()] == [n for n, _ in res.named_children()]


def test_flops_on_known_layers() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert models.flops(conv, (1, 3, 8, 8)) == 2 * (8 * 8 * 8) * (3 * 3 * 3)
    dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert models.flops(dw, (1, 8, 8, 8)) == 2 * (8 * 8 * 8) * 9
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 2))
    assert models.flops(net, (1, 3, 2, 2)) == 2 * (12 * 5 + 5 * 2)
    assert models.count_params(net) == 12 * 5 + 5 + 5 * 2 + 2


def test_flops_keeps_model_state() -> None:
    model = models.create("resnet8")
    model.train()
    f28 = models.flops(model, (1, 3, 28, 28))
    assert model.training and not any(m._forward_hooks for m in model.modules())
    assert f28 > models.flops(model, (1, 3, 8, 8)) > 0
    assert isinstance(model, ResNet)
