"""One export per model family (torchvision, Hugging Face) at a tiny size: every file runs in its runtime.

Each family writes two files, alternating across families so that both formats are covered in both
precisions: fp32 in one format (judged by the default parity thresholds, and on XNNPACK) and int8 in the
other (PT2E calibration with the fast histogram observer; XNNPACK or litert-torch lowering). Random-init
models decide nothing, so int8 parity is recorded, not judged, here (``benchmarks/zoo_export.py`` judges
it on trained models). Hugging Face's initialisation (std 0.02) gives near-zero logits, so every model
is re-initialised with PyTorch's default layer init first. Models are built at tiny widths and 32-64 px.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from edgekd import export
from edgekd.errors import ConfigError
from edgekd.models import create


def _tv_resnet() -> nn.Module:
    from torchvision.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=5, width_per_group=64)


def _tv_convnext() -> nn.Module:
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    return ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, 64, 1), CNBlockConfig(64, None, 1)],
                    num_classes=5)


def _tv_vit() -> nn.Module:
    from torchvision.models import VisionTransformer

    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                             num_classes=5)


# family -> (builder, input size, int8 format; fp32 is exported in the other format)
FAMILIES: dict[str, tuple[Callable[[], nn.Module], int, str]] = {
    "tv:resnet": (_tv_resnet, 32, "pte"),
    "tv:mobilenet_v2": (lambda: create("tv:mobilenet_v2", num_classes=5, width_mult=0.35), 32, "tflite"),
    "tv:mobilenet_v3": (lambda: create("tv:mobilenet_v3_small", num_classes=5, width_mult=0.5), 32, "pte"),
    "tv:efficientnet": (lambda: create("tv:efficientnet_b0", num_classes=5, width_mult=0.25, depth_mult=0.25), 32,
                        "tflite"),
    "tv:shufflenet_v2": (lambda: create("tv:shufflenet_v2_x0_5", num_classes=5), 32, "pte"),
    "tv:squeezenet": (lambda: create("tv:squeezenet1_1", num_classes=5), 48, "tflite"),
    "tv:mnasnet": (lambda: create("tv:mnasnet0_5", num_classes=5), 32, "pte"),
    "tv:regnet": (lambda: create("tv:regnet_y_400mf", num_classes=5), 32, "tflite"),
    "tv:convnext": (_tv_convnext, 64, "pte"),  # at 32 px the last stage is 1×1 and litert-torch 0.10 fails
    "tv:vit": (_tv_vit, 32, "tflite"),
    "hf:mobilenet_v2": (lambda: create("hf:mobilenet_v2", num_classes=5, depth_multiplier=0.35, image_size=32), 32,
                        "tflite"),
    "hf:efficientnet": (lambda: create("hf:efficientnet_b0", num_classes=5, width_coefficient=0.25,
                                       depth_coefficient=0.25, image_size=32), 32, "pte"),
    "hf:resnet": (lambda: create("hf:resnet18", num_classes=5, hidden_sizes=[8, 16, 32, 64], embedding_size=8,
                                 depths=[1, 1, 1, 1]), 32, "tflite"),
    "hf:convnext": (lambda: create("hf:convnext_tiny", num_classes=5, hidden_sizes=[8, 16, 32, 64],
                                   depths=[1, 1, 1, 1]), 64, "pte"),
    "hf:mobilevit": (lambda: create("hf:mobilevit_xxs", num_classes=5, image_size=64), 64, "tflite"),
    "hf:vit": (lambda: create("hf:vit_tiny", num_classes=5, num_hidden_layers=2, image_size=32, patch_size=8), 32,
               "pte"),
}


def _reinit(model: nn.Module) -> nn.Module:
    """PyTorch's default init for every layer that has one: logits far from zero, so top-1 means something."""
    for m in model.modules():
        if hasattr(m, "reset_parameters") and m is not model:
            m.reset_parameters()
    return model


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_exports_and_runs(family: str, tmp_path: Path) -> None:
    build, size, int8_format = FAMILIES[family]
    fp32_format = "tflite" if int8_format == "pte" else "pte"
    torch.manual_seed(0)
    model = _reinit(build()).eval()
    x = torch.randn(24, 3, size, size)
    bundle = export(model, (x[:1],), formats=(fp32_format,), precision=("fp32",), parity_data=x[16:],
                    out_dir=tmp_path / "fp32", progress=False)
    (f,) = bundle.files  # fp32 passes the default thresholds (export checks them) and runs on XNNPACK
    assert f.format == fp32_format and f.parity.passed, (f.key, f.parity)
    part = f.extra["partition"]
    assert part["delegated_ops"] > 0 and part["partitions"] >= 1, (f.key, part)
    int8 = export(model, (x[:1],), formats=(int8_format,), precision=("int8",), calibration=x[:16],
                  parity_data=x[16:], out_dir=tmp_path / "int8", progress=False, check_parity=False)
    (q,) = int8.files
    assert q.precision == "int8" and q.bytes > 0 and q.parity.n_samples == 8
    assert {"write", "parity", "cpu"} <= set(q.extra["seconds"])  # where the seconds went
    assert q.extra["seconds"]["cpu"] > 0
    assert int8.extra["torch_export_s"] is not None  # one torch.export served the int8 path


class _DataDependent(nn.Module):
    """Returns only the logits above their mean: the output length depends on the input values."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.fc(x.flatten(1))
        return z[z > z.mean()].reshape(1, -1)


def test_data_dependent_output_shape_is_named(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x = torch.randn(12, 1, 4, 4)
    with pytest.raises(ConfigError, match=r"(?s)output shape depends on its input: \(1, \d\) for the example "
                                          r"input but \(1, \d\).*fix: make forward\(\) return one shape"):
        export(_DataDependent(), (x[:1],), formats=("pte",), precision=("fp32",), parity_data=x,
               out_dir=tmp_path / "b", progress=False)


class _Tuple(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.fc(x.flatten(1))
        return z, z.softmax(-1)


def test_tuple_output_exports_its_logits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = _Tuple().eval()
    x = torch.randn(8, 1, 4, 4)
    b = export(m, (x[:1],), formats=("pt2",), precision=("fp32",), parity_data=x, out_dir=tmp_path / "b",
               progress=False)
    assert b.outputs[0].shape == (1, 3) and b.files[0].parity.passed
    assert isinstance(m(x), tuple)  # the caller's model is left as it was
