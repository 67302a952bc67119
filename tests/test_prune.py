"""Structured pruning: stated channel counts, equality with the masked form, smaller and exportable."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgekd.edge.prune import apply, channel_groups, channels_of, masked, plan, prune, prune_to, shrink_to
from edgekd.errors import ConfigError
from edgekd.models import count_params, create, flops
from edgekd.models.saved import load_model, save_model


def _randomised(name: str) -> torch.nn.Module:
    """A model with non-trivial BN statistics, so a wrong slice changes the outputs."""
    torch.manual_seed(0)
    m = create(name, num_classes=10, in_channels=1)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-1, 1)
            mod.running_var.uniform_(0.5, 2)
            mod.weight.data.uniform_(0.1, 1)
            mod.bias.data.uniform_(-0.5, 0.5)
    return m.eval()


@pytest.mark.parametrize("name", ["resnet8", "resnet14_plain", "mobilenetv2_x0_25"])
@pytest.mark.parametrize("importance", ["l1", "bn"])
def test_pruned_equals_masked_and_is_smaller(name: str, importance: str) -> None:
    m = _randomised(name)
    p = plan(m, 0.5, importance)  # type: ignore[arg-type]
    small, full = apply(m, p).eval(), masked(m, p).eval()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        y_small, y_masked, y_orig = small(x), full(x), m(x)
    assert torch.allclose(y_small, y_masked, atol=1e-5)
    assert not torch.allclose(y_small, y_orig, atol=1e-3)  # the cut really removed something
    modules = dict(small.named_modules())
    for g in channel_groups(m):
        k = len(p.keep[g.name])
        assert k == round(p.original[g.name] * 0.5)
        for conv, bn in g.producers:
            assert modules[conv].out_channels == k and modules[bn].num_features == k
        for c in g.consumers:
            consumer = modules[c]
            assert (consumer.in_features if isinstance(consumer, torch.nn.Linear) else consumer.in_channels) == k
    assert count_params(small) < 0.7 * count_params(m)
    assert flops(small, (1, 1, 8, 8)) < 0.7 * flops(m, (1, 1, 8, 8))
    if importance == "l1":
        torch.export.export(small, (x[:1],))  # still a plain dense model


def test_keeps_the_most_important_channels() -> None:
    m = _randomised("resnet8")
    with torch.no_grad():
        m.layer1[0].bn1.weight.copy_(torch.arange(16, dtype=torch.float32))
    assert plan(m, 0.75, "bn").keep["layer1.0"] == [12, 13, 14, 15]
    assert plan(m, 0.0).channels() == plan(m, 0.0).original


def test_round_to_and_input_untouched() -> None:
    m = _randomised("resnet8")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    small = prune(m, 0.3, round_to=8)
    assert small.layer3[0].conv1.out_channels == 48 and small.layer1[0].conv1.out_channels == 8
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


@pytest.mark.parametrize("ratio", [-0.1, 1.0])
def test_bad_ratio(ratio: float) -> None:
    with pytest.raises(ConfigError, match="prune ratio"):
        plan(_randomised("resnet8"), ratio)


def test_unknown_family() -> None:
    with pytest.raises(ConfigError, match="no channel-pruning rules for Sequential"):
        prune(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3)), 0.5)


@pytest.mark.parametrize("name", ["resnet8", "mobilenetv2_x0_25"])
def test_pruned_model_saves_and_loads(name: str, tmp_path: Path) -> None:
    """A pruned checkpoint records its widths, so load_model rebuilds it without user code."""
    torch.manual_seed(0)
    small = prune(create(name, num_classes=10, in_channels=1), 0.5).eval()
    path = save_model(small, tmp_path / "m.pt", name, num_classes=10, in_channels=1)
    loaded, meta = load_model(path)
    assert meta["channels"] == channels_of(small) != channels_of(create(name, num_classes=10, in_channels=1))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), small(x))
    plain = save_model(create(name, num_classes=10, in_channels=1), tmp_path / "p.pt", name, num_classes=10,
                       in_channels=1)
    assert "channels" not in load_model(plain)[1]  # unpruned checkpoints stay as they were


def test_shrink_to_rejects_foreign_widths() -> None:
    with pytest.raises(ConfigError, match="do not fit"):
        shrink_to(create("resnet8", in_channels=1), {"layer1.0": 999, "layer2.0": 1, "layer3.0": 1})


def test_prune_to_keeps_the_most_important_to_stated_counts() -> None:
    m = _randomised("resnet8")
    with torch.no_grad():
        m.layer1[0].bn1.weight.copy_(torch.arange(16, dtype=torch.float32))
    counts = {k: max(1, v - 3) for k, v in channels_of(m).items()}
    counts["layer1.0"] = 5
    small = prune_to(m, counts, "bn")
    assert channels_of(small) == counts
    # without training in between, two steps keep the same channels as one cut to the final widths
    half = {k: (v + counts[k]) // 2 for k, v in channels_of(m).items()}
    stepped = prune_to(prune_to(m, half, "bn"), counts, "bn").state_dict()
    assert all(torch.equal(stepped[k], v) for k, v in small.state_dict().items())
    kept = plan(m, 0.0, "bn", counts=counts).keep["layer1.0"]
    assert kept == [11, 12, 13, 14, 15]
    with pytest.raises(ConfigError, match="cannot keep 17"):
        prune_to(m, {**counts, "layer1.0": 17})
    with pytest.raises(ConfigError, match="counts name groups"):
        prune_to(m, {"layer1.0": 4})
