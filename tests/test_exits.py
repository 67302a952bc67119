"""Early exits: placement, outputs, truncation (eager == exit head), .pte export, per-exit accuracy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgekd import data, models
from edgekd.errors import ConfigError
from edgekd.models.exits import ExitModel, default_exits, exit_accuracy, truncate


@pytest.mark.parametrize(("name", "expected"), [
    ("resnet8", ["layer1.0", "layer2.0"]),     # 3 blocks: N/3 -> 1st, N/2 -> 2nd
    ("resnet20", ["layer1.2", "layer2.0"]),    # 9 blocks: 3rd and 4th
    ("resnet56", ["layer1.8", "layer2.4"]),    # 27 blocks: 9th and 14th
])
def test_default_exits_by_depth(name: str, expected: list[str]) -> None:
    assert default_exits(models.create(name)) == expected


def test_forward_exits_and_truncate_agree() -> None:
    torch.manual_seed(0)
    m = ExitModel(models.create("resnet20", in_channels=1)).eval()
    x = torch.randn(3, 1, 8, 8)
    out = m.forward_exits(x)
    assert list(out.logits) == ["layer1.2", "layer2.0", "final"] == m.names
    assert all(z.shape == (3, 10) for z in out.logits.values())
    assert all(f.shape == (3, 64) for f in out.features.values())  # exits project to the classifier width
    assert torch.equal(m(x), out.logits["final"])
    for name in m.names:
        cut = truncate(m, name)
        torch.testing.assert_close(cut(x), out.logits[name], rtol=0, atol=1e-6)
    shallow = sum(p.numel() for p in truncate(m, "layer1.2").parameters())
    assert shallow < sum(p.numel() for p in m.backbone.parameters()) / 2  # the deep stages are gone
    with pytest.raises(ConfigError, match="no exit 'layer3.0'"):
        truncate(m, "layer3.0")
    with pytest.raises(ConfigError, match="is not a module"):
        ExitModel(models.create("resnet8"), exits=["layer9"])


def test_truncated_exit_exports_to_pte_and_accuracy(tmp_path: Path) -> None:
    from edgekd.convert import export

    digits = data.load("digits", limit=300)
    torch.manual_seed(0)
    m = ExitModel(models.create("resnet8", in_channels=1))
    acc = exit_accuracy(m, digits.val)
    assert set(acc) == {"layer1.0", "layer2.0", "final"} and all(0 <= a <= 1 for a in acc.values())
    x = digits.val.tensors[0][:16]
    bundle = export(truncate(m, "layer1.0"), (x[:1],), formats=("pte",), precision=("fp32",), calibration=x,
                    out_dir=tmp_path / "exit", progress=False)
    (f,) = bundle.files
    assert f.format == "pte" and (tmp_path / "exit" / f.path).stat().st_size > 0
    assert f.parity.max_abs_error < 1e-4
