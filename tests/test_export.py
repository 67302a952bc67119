"""Export stage end to end with the real converters and runtimes on a tiny digits CNN.

Bundles are exported once per module (onnx2tf and litert-torch are slow to import and convert).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.bundle import MANIFEST, sha256_of
from edgekd.convert import Bundle, _plan, export, format_of
from edgekd.errors import ConfigError, ExportError, ParityError


class TinyCNN(nn.Module):
    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.bn(self.conv(x)))))
        return self.fc(x.mean((2, 3)))


def _digits(channels: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A TinyCNN trained for ~1 s on sklearn's 8×8 digits (so int8 parity is meaningful)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1).repeat(1, channels, 1, 1)
    y = torch.tensor(d.target)
    torch.manual_seed(0)
    model = TinyCNN(channels)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(150):
        i = torch.randint(0, 1500, (64,))
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), x, y


@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    return _digits(1)


@pytest.fixture(scope="module")
def bundle(digits, tmp_path_factory) -> Bundle:  # type: ignore[no-untyped-def]
    model, x, y = digits
    return export(model, (x[:1],), formats=("pte", "tflite", "pt2"), calibration=x[:48],
                  parity_data=(x[1500:1580], y[1500:1580]), labels=[str(i) for i in range(10)],
                  out_dir=tmp_path_factory.mktemp("bundle"), progress=False)


@pytest.fixture(scope="module")
def onnx2tf_bundle(tmp_path_factory) -> Bundle:
    """3-channel 4-D input: the case where onnx2tf would download sample images. Sockets are blocked."""
    model, x, y = _digits(3)

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted during export")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", no_network)
        mp.setattr(socket, "create_connection", no_network)
        return export(model, (x[:1],), formats=("tflite",), tflite_converter="onnx2tf", calibration=x[:48],
                      parity_data=(x[1500:1580], y[1500:1580]), out_dir=tmp_path_factory.mktemp("o2t"),
                      progress=False)


EXPECTED = {
    "pte/fp32/executorch", "pte/int8/executorch", "tflite/fp32/litert-torch", "tflite/int8/litert-torch",
    "pt2/fp32/torch",
}


def test_every_file_exports_runs_and_passes_parity(bundle: Bundle) -> None:
    assert {f.key for f in bundle.files} == EXPECTED
    for f in bundle.files:
        p = f.parity
        assert p is not None and p.passed and p.n_samples == 80, f.key
        assert p.accuracy_eager is not None and p.accuracy_eager > 0.5, "the fixture model should have learned"
        if f.precision == "fp32":
            assert p.max_abs_error < 1e-4 and p.top1_agreement == 1.0, f.key
        else:
            assert p.top1_agreement >= 0.9 and p.accuracy is not None, f.key
            assert p.accuracy >= p.accuracy_eager - 0.03, f.key


def test_manifest_round_trips_and_hashes_match(bundle: Bundle) -> None:
    loaded = Bundle.load(bundle.root)
    assert loaded.to_dict() == bundle.to_dict()
    loaded.verify()
    for f in loaded.files:
        path = loaded.path_of(f)
        assert path.name == f"model_{f.precision}.{f.format}"
        assert sha256_of(path) == f.sha256 and path.stat().st_size == f.bytes
        assert format_of(path) == f.format
    assert loaded.inputs[0].shape == (1, 1, 8, 8) and loaded.inputs[0].layout == "NCHW"
    assert loaded.labels == [str(i) for i in range(10)]


def test_file_tensor_specs_describe_the_files_own_view(bundle: Bundle) -> None:
    lit8 = bundle.file("tflite/int8/litert-torch")
    assert lit8.inputs[0].dtype == "int8" and lit8.inputs[0].quantization is not None
    assert lit8.outputs[0].dtype == "int8" and lit8.outputs[0].quantization is not None
    assert lit8.extra["float_compute_ops"] == [], "litert-torch int8 should be int8 end to end"
    assert bundle.file("pte/int8/executorch").inputs[0].dtype == "float32"


def test_pte_records_partition_coverage(bundle: Bundle) -> None:
    cov = bundle.file("pte/fp32/executorch").extra["partition"]
    assert cov["delegated_ops"] >= 4  # conv, bn (folded by XNNPACK), conv, linear, relu...
    assert cov["non_delegated_ops"] == sum(cov["non_delegated"].values())
    assert cov["partitions"] == 1 and bundle.file("pte/int8/executorch").extra["partition"]["partitions"] == 1


class TinyResNet(nn.Module):
    """Stem, an identity residual block, a strided block with a 1x1 projection, global mean, linear:
    every op kind of the CIFAR ResNets edgekd benchmarks, at toy size."""

    def __init__(self) -> None:
        super().__init__()

        def cbr(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))

        self.stem, self.a1, self.a2 = cbr(1, 8), cbr(8, 8), cbr(8, 8)
        self.b1, self.b2, self.proj = cbr(8, 16, 2), cbr(16, 16), cbr(8, 16, 2, k=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(x + self.a2(torch.relu(self.a1(x))))
        x = torch.relu(self.proj(x) + self.b2(torch.relu(self.b1(x))))
        return self.fc(x.mean((2, 3)))


def test_int8_pte_is_one_static_int8_xnnpack_partition(tmp_path: Path) -> None:
    """The property that makes ExecuTorch int8 run at TFLite int8's speed (RESULTS.md, "ExecuTorch int8 vs TFLite int8"): the
    whole graph is ONE XNNPACK partition, nothing runs in ExecuTorch's portable kernels, every conv
    and linear runs as a static int8 XNNPACK operator (QS8 activations, per-channel QC8 weights: the
    ``qs8_qc8w`` micro-kernels), and float appears only at the two ends (one Convert in, one out)."""
    from edgekd.convert.executorch import to_pte, xnnpack_operators

    torch.manual_seed(0)
    model = TinyResNet().eval()
    x = torch.randn(33, 1, 12, 12)
    path = tmp_path / "m.pte"
    cov = to_pte(model, (x[:1],), path, precision="int8", calibration=x[1:])["partition"]
    assert cov["partitions"] == 1, cov
    assert cov["non_delegated_ops"] == 0, cov["non_delegated"]
    ops = xnnpack_operators(path)
    assert ops["outside"] == {}, f"ops outside the XNNPACK delegate: {ops['outside']}"
    compute = {k: n for k, n in ops["delegated"].items() if k.startswith(("Convolution", "Fully Connected"))}
    assert sum(compute.values()) == 7, ops["delegated"]  # 6 convs + fc (a 1x1 conv may run as FC)
    assert all("QC8" in k and "F32" not in k and "QD8" not in k for k in compute), compute
    assert ops["delegated"].get("Convert (NC)") == 2, ops["delegated"]


def test_onnx2tf_is_offline_nhwc_and_passes_parity(onnx2tf_bundle: Bundle) -> None:
    files = {f.key: f for f in onnx2tf_bundle.files}
    assert set(files) == {"tflite/fp32/onnx2tf", "tflite/int8/onnx2tf"}
    for f in files.values():
        assert f.inputs[0].layout == "NHWC" and f.inputs[0].shape == (1, 8, 8, 3)
        assert f.parity is not None and f.parity.passed
    assert files["tflite/int8/onnx2tf"].inputs[0].dtype == "int8"
    assert onnx2tf_bundle.inputs[0].layout == "NCHW"  # the logical view stays PyTorch's


def test_parity_failure_raises_and_writes_no_manifest(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, x, _ = digits
    with pytest.raises(ParityError, match=r"model_fp32\.pt2: fp32 top-1 agreement 1\.000 < 1\.01"):
        export(model, (x[:1],), formats=("pt2",), precision=("fp32",), parity_data=x[:8],
               thresholds={"fp32": {"top1_agreement": 1.01}}, out_dir=tmp_path, progress=False)
    assert not (tmp_path / MANIFEST).exists()


def test_unsupported_op_names_converter_and_op(tmp_path: Path) -> None:
    class Inverse(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.inv(x.reshape(1, 8, 8)).reshape(1, 64)

    with pytest.raises(ExportError, match=r"litert-torch .*linalg_inv") as err:
        export(Inverse(), (torch.rand(1, 1, 8, 8) + torch.eye(8),), formats=("tflite",), precision=("fp32",),
               out_dir=tmp_path, progress=False)
    assert "onnx2tf" in str(err.value)  # the fix suggests the other converter


def test_runtime_refusing_a_written_file_is_an_export_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file the runtime will not load (e.g. a TFLite interpreter check) names the file, stage and fix."""
    import edgekd.convert.torch_program as tp

    def refuse(path: Path, layout: str) -> None:
        raise RuntimeError("tensorflow/lite/kernels/activations.cc: output->params.scale not near 1.f / 256\nmore")

    monkeypatch.setattr(tp, "pt2_runner", refuse)
    with pytest.raises(ExportError, match=r"model_fp32\.pt2 was written, but torch's pt2 runtime cannot run it "
                                          r"\(fp32\): tensorflow/lite.*1\.f / 256") as err:
        export(TinyCNN(), (torch.rand(1, 1, 8, 8),), formats=("pt2",), precision=("fp32",), out_dir=tmp_path,
               progress=False)
    assert err.value.stage == "export/pt2" and "fp32" in str(err.value.hint)
    assert (tmp_path / "model_fp32.pt2").exists() and not (tmp_path / MANIFEST).exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"formats": ("onnx",)}, "unknown format 'onnx'; known: pt2, pte, tflite"),
        ({"precision": ("int4",)}, "unknown precision 'int4'"),
        ({"tflite_converter": "tflite-magic"}, "unknown tflite converter 'tflite-magic'"),
        ({"precision": ("int8",)}, "int8 export needs calibration"),
    ],
)
def test_bad_arguments_are_config_errors(kwargs: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        export(TinyCNN(), (torch.rand(1, 1, 8, 8),), out_dir=tmp_path, progress=False, **kwargs)
    assert not (tmp_path / MANIFEST).exists()


def test_wrong_example_shape_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot run on example_inputs of shape \(1, 3, 8, 8\)"):
        export(TinyCNN(1), (torch.rand(1, 3, 8, 8),), out_dir=tmp_path, progress=False)


def test_both_tflite_converters_get_tagged_names() -> None:
    jobs = _plan(("tflite", "pt2"), ("fp32", "int8"), ("litert-torch", "onnx2tf"), has_calibration=True)
    names = [name for _, _, name in jobs]
    assert names == ["model_fp32_litert-torch.tflite", "model_int8_litert-torch.tflite",
                     "model_fp32_onnx2tf.tflite", "model_int8_onnx2tf.tflite", "model_fp32.pt2"]


def test_export_does_not_mutate_model(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, x, _ = digits
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        export(model, (x[:1],), formats=("pt2",), precision=("fp32",), parity_data=x[:4], out_dir=tmp_path,
               progress=False)
        assert model.training
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
        assert json.loads((tmp_path / MANIFEST).read_text())["files"][0]["format"] == "pt2"
    finally:
        model.eval()
    assert np.isfinite(before["conv.weight"].numpy()).all()


@pytest.mark.parametrize(("dims", "keepdim", "rank", "rewritten"), [
    ((2, 3), False, 4, 1), ((-1, -2), False, 4, 1),  # the heads XNNPACK would leave outside
    ((2, 3), True, 4, 0), ((1,), False, 4, 0), ((1, 2), False, 3, 0),  # already fine / not a spatial mean
])
def test_keepdim_spatial_means_rewrites_only_spatial_means_and_keeps_values(
        dims: tuple[int, ...], keepdim: bool, rank: int, rewritten: int) -> None:
    from edgekd.convert.executorch import keepdim_spatial_means
    from edgekd.quantization import capture

    class Head(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x).mean(dims, keepdim=keepdim) * 2

    x = torch.randn((2, 3, 5, 4)[:rank])
    gm = capture(Head(), (x,))
    assert keepdim_spatial_means(gm) == rewritten
    torch.testing.assert_close(gm(x), Head()(x))
    means = [n for n in gm.graph.nodes if n.target == torch.ops.aten.mean.dim]
    assert len(means) == 1 and (means[0].args[2] if len(means[0].args) > 2 else False) == (keepdim or rewritten == 1)
