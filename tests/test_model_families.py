"""Model families: contracts (stages, embedding, pruning, exits, knobs), `tv:`/`hf:` create/list/weights, taps.

Every family is built small (width multipliers, few layers, 32-64 px inputs) so the whole file runs in
well under a minute of CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgekd import models
from edgekd.distillation import StepContext, Taps, build_objective
from edgekd.errors import ConfigError, ModelFileError, RegistryError
from edgekd.models import contract_of, create, family_of
from edgekd.models.catalog import family_of_name, family_rows, model_rows
from edgekd.models.contract import FAMILIES, resolve_tap

# One small instance per family with a contract: (registry name, create kwargs).
SMALL: dict[str, tuple[str, dict]] = {
    "zoo:resnet_cifar": ("resnet8", {}),
    "zoo:mobilenetv2_cifar": ("mobilenetv2_x0_25", {}),
    "zoo:resnet_adder": ("resnet8_adder", {}),
    "tv:resnet": ("tv:resnet18", {}),
    "tv:mobilenet_v2": ("tv:mobilenet_v2", {"width_mult": 0.35}),
    "tv:mobilenet_v3": ("tv:mobilenet_v3_small", {"width_mult": 0.5}),
    "tv:efficientnet": ("tv:efficientnet_b0", {"width_mult": 0.25, "depth_mult": 0.25}),
    "tv:shufflenet_v2": ("tv:shufflenet_v2_x0_5", {}),
    "tv:squeezenet": ("tv:squeezenet1_1", {}),
    "tv:mnasnet": ("tv:mnasnet0_5", {}),
    "tv:regnet": ("tv:regnet_y_400mf", {}),
    "tv:convnext": ("tv:convnext_tiny", {}),
    "tv:vit": ("tv_vit_small", {}),  # torchvision's builders are ViT-B and up: built from its class below
    "hf:mobilenet_v2": ("hf:mobilenet_v2", {"depth_multiplier": 0.35, "image_size": 64}),
    "hf:efficientnet": ("hf:efficientnet_b0", {"width_coefficient": 0.25, "depth_coefficient": 0.25,
                                               "image_size": 64}),
    "hf:resnet": ("hf:resnet18", {"hidden_sizes": [8, 16, 32, 64], "embedding_size": 8, "depths": [1, 1, 1, 1]}),
    "hf:convnext": ("hf:convnext_tiny", {"hidden_sizes": [8, 16, 32, 64], "depths": [1, 1, 1, 1]}),
    "hf:mobilevit": ("hf:mobilevit_xxs", {"image_size": 64}),
    "hf:vit": ("hf:vit_tiny", {"num_hidden_layers": 4, "image_size": 32, "patch_size": 8}),
}
IMAGE_FAMILIES = sorted(f for f in SMALL)


def test_every_image_family_has_a_small_instance_here() -> None:
    """Families are found automatically; a new one must be added to SMALL (and so gets these tests)."""
    declared = {n for n in FAMILIES if FAMILIES.get(n).input_kind == "image"}
    assert declared == set(SMALL), declared ^ set(SMALL)
    assert {"zoo:bert"} <= set(FAMILIES)  # token models declare a family too


def _build(name: str, kw: dict) -> nn.Module:
    if name == "tv_vit_small":
        from torchvision.models import VisionTransformer

        from edgekd.models.weights import adapt_stem

        m = VisionTransformer(image_size=32, patch_size=8, num_layers=4, num_heads=2, hidden_dim=32, mlp_dim=64,
                              num_classes=5)
        adapt_stem(m, "conv_proj", 1)
        return m
    return create(name, num_classes=5, in_channels=1, **kw)


@pytest.fixture(scope="module")
def built() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {fam: _build(name, kw) for fam, (name, kw) in SMALL.items()}


@pytest.mark.parametrize("fam", IMAGE_FAMILIES)
def test_contract_stages_embedding_and_taps(fam: str, built: dict[str, nn.Module]) -> None:
    model = built[fam].eval()
    assert family_of(model).name == fam
    c = contract_of(model)
    assert len(c.features) >= 2 and all(f.channels > 0 for f in c.features)
    strides = [f.reduction for f in c.features]
    assert strides == sorted(strides)  # shallow to deep
    if FAMILIES.get(fam).pick == "reduction":
        assert len(set(strides)) == len(strides)  # one stage per stride (timm's rule)
    size = c.input_size if FAMILIES.get(fam).pick == "reduction" else getattr(
        getattr(model, "config", None), "image_size", None) or model.image_size
    size = min(size, 64)
    x = torch.randn(2, 1, size, size)
    taps = ["stage:0", "stage:-2", "stage:-1", "embedding"]
    with Taps(model, taps) as t, torch.no_grad():
        y = model(x)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 5)
    for k, feat in ((0, c.features[0]), (-1, c.features[-1])):
        out = t[f"stage:{k}"]
        assert out.shape[0] == 2 and feat.channels in (out.shape[1], out.shape[-1])
    emb = t["embedding"]
    assert emb.reshape(2, -1).shape[1] == emb.shape[1] and emb.dim() in (2, 4)  # N×C (or N×C×1×1)
    assert resolve_tap(model, "stage:-1") == c.features[-1].module
    assert resolve_tap(model, "features.3") == "features.3"  # a module path is left alone


def test_knobs_are_declared_for_the_searched_families() -> None:
    rows = {r["family"]: r for r in family_rows()}
    for fam in ("tv:mobilenet_v2", "tv:mobilenet_v3", "tv:efficientnet", "hf:vit", "zoo:resnet_cifar"):
        assert "width" in rows[fam]["knobs"] or "depth" in rows[fam]["knobs"], fam
    eff = FAMILIES.get("tv:efficientnet").knobs
    assert {k.kwarg for k in eff} == {"width_mult", "depth_mult"}
    small = create("tv:efficientnet_b0", num_classes=3, width_mult=0.25, depth_mult=0.25)  # the knobs build
    big = create("tv:efficientnet_b0", num_classes=3)
    assert models.count_params(small) < models.count_params(big) / 8


def test_tv_grey_stem_equals_rgb_model_on_repeated_grey(tmp_path: Path) -> None:
    torch.manual_seed(0)
    rgb = create("tv:mobilenet_v3_small", num_classes=4, width_mult=0.5).eval()
    path = tmp_path / "rgb.pth"
    torch.save(rgb.state_dict(), path)
    grey = create("tv:mobilenet_v3_small", num_classes=4, width_mult=0.5, in_channels=1, weights=str(path)).eval()
    assert grey.features[0][0].in_channels == 1
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(grey(x), rgb(x.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-5)


def test_tv_weights_from_file_other_class_count_and_errors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = create("tv:resnet18", num_classes=1000)
    path = tmp_path / "imagenet.pth"
    torch.save({"state_dict": m.state_dict()}, path)
    with pytest.warns(UserWarning, match=r"fc\.weight.*another class count"):
        ten = create("tv:resnet18", num_classes=10, weights=str(path))
    torch.testing.assert_close(ten.layer4[1].conv2.weight, m.layer4[1].conv2.weight)
    assert ten.fc.out_features == 10
    with pytest.raises(ModelFileError, match=r"does not fit ResNet \(missing: bn1\.bias.*unexpected: 0\.bn1"):
        other = tmp_path / "layer1.pth"  # the weights of one stage, not of the model
        torch.save(create("tv:resnet18", num_classes=10).layer1.state_dict(), other)
        create("tv:resnet18", num_classes=10, weights=str(other))
    with pytest.raises(ModelFileError, match="(?s)does not exist.*never downloads"):
        create("tv:resnet18", weights=str(tmp_path / "nope.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ModelFileError, match="cannot read weights file"):
        create("tv:resnet18", weights=str(tmp_path / "junk.pth"))


def test_unknown_names_and_options_are_clear() -> None:
    with pytest.raises(ConfigError, match=r"(?s)unknown torchvision model 'mobilenet_v9'.*mobilenet_v3_small"):
        create("tv:mobilenet_v9")
    with pytest.raises(ConfigError, match=r"tv:resnet18 rejected the options \['width_mult'\]"):
        create("tv:resnet18", width_mult=0.5)
    with pytest.raises(ConfigError, match=r"(?s)unknown Hugging Face model 'vit_huge'.*hf:vit_tiny"):
        create("hf:vit_huge")
    with pytest.raises(ConfigError, match="hf:vit_tiny takes no option colour"):
        create("hf:vit_tiny", colour=1)
    with pytest.raises(RegistryError, match=r"unknown model namespace 'timm'; known: hf, tv"):
        create("timm:resnet18")


def test_hf_logits_tensor_weights_round_trip_and_grey_stem(tmp_path: Path) -> None:
    torch.manual_seed(0)
    kw = {"num_hidden_layers": 2, "image_size": 32, "patch_size": 8}
    m = create("hf:vit_tiny", num_classes=3, in_channels=1, **kw).eval()
    assert type(m).__name__ == "ViTForImageClassification" and isinstance(m, nn.Module)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        y = m(x)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 3)
    from safetensors.torch import save_file

    save_file(m.state_dict(), str(tmp_path / "vit.safetensors"))
    again = create("hf:vit_tiny", num_classes=3, in_channels=1, weights=str(tmp_path / "vit.safetensors"), **kw)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), y)
    assert "vit.embeddings.patch_embeddings.projection.weight" in m.state_dict()  # HF's own module paths


def test_list_shows_namespaces_families_and_support(capsys: pytest.CaptureFixture[str]) -> None:
    from edgekd.cli import main

    names = [r["name"] for r in model_rows("all")]
    assert {"resnet8", "tv:mobilenet_v3_small", "tv:convnext_tiny", "hf:vit_tiny", "hf:mobilenet_v2"} <= set(names)
    assert family_of_name("tv:mnasnet1_0") == "tv:mnasnet" and family_of_name("resnet8_adder") == "zoo:resnet_adder"
    assert models.list_models() == models.MODELS.names()  # the zoo alone, as before
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("tv:mobilenet_v3 "))
    assert row.split()[3:5] == ["no", "yes"]  # not prunable, takes exits
    assert "tv:mobilenet_v3: no pruning: squeeze-excitation" in out


@pytest.mark.parametrize("fam", ["tv:resnet", "tv:mobilenet_v2", "tv:mnasnet", "hf:mobilenet_v2",
                                 "zoo:mobilenetv2_cifar"])
def test_prunable_families_prune_and_reload(fam: str, built: dict[str, nn.Module], tmp_path: Path) -> None:
    from edgekd.edge.prune import channels_of, prune
    from edgekd.models.saved import load_model, save_model

    model = built[fam].eval()
    small = prune(model, 0.5).eval()
    assert models.count_params(small) < models.count_params(model)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert small(x).shape == (1, 5)
    name, kw = SMALL[fam]
    save_model(small, tmp_path / "p.pt", name, num_classes=5, in_channels=1, **kw)
    back, meta = load_model(tmp_path / "p.pt")
    assert meta["channels"] == channels_of(small)
    with torch.no_grad():
        torch.testing.assert_close(back(x), small(x))


def test_unprunable_family_says_why(built: dict[str, nn.Module]) -> None:
    from edgekd.edge.prune import prune

    with pytest.raises(ConfigError, match=r"(?s)family tv:mobilenet_v3 cannot be pruned: squeeze-excitation.*tv:resnet"):
        prune(built["tv:mobilenet_v3"], 0.5)
    with pytest.raises(ConfigError, match="belongs to no registered model family"):
        prune(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)), 0.5)


def test_exits_from_the_contract(built: dict[str, nn.Module]) -> None:
    from edgekd.models.exits import ExitModel

    em = ExitModel(built["tv:resnet"])
    assert all(e.startswith("layer") for e in em.exits) and len(em.exits) == 2
    out = em.eval().forward_exits(torch.randn(1, 1, 64, 64))
    assert set(out.logits) == {*em.exits, "final"}
    with pytest.raises(ConfigError, match="token blocks, not conv feature maps"):
        ExitModel(built["hf:vit"])


def test_symbolic_taps_errors() -> None:
    m = create("resnet8", in_channels=1)
    with pytest.raises(ConfigError, match=r"has 3 stages \(layer1, layer2, layer3\)"):
        resolve_tap(m, "stage:5")
    with pytest.raises(ConfigError, match="not an integer"):
        resolve_tap(m, "stage:last")
    with pytest.raises(ConfigError, match=r"(?s)belongs to no registered model family.*dotted path"):
        Taps(nn.Sequential(nn.Conv2d(1, 2, 3)), ["stage:-1"])


def test_default_feature_losses_bridge_a_tv_student_and_a_zoo_teacher(built: dict[str, nn.Module]) -> None:
    """fitnet/at/rkd/sp/crd with default taps: each net's own stages and embedding, widths bridged."""
    student, teacher = built["tv:mobilenet_v3"].train(), create("resnet8", num_classes=5, in_channels=1)
    obj = build_objective("fitnet+at+rkd+sp+crd")
    x = torch.randn(6, 1, 32, 32)
    with Taps(student, obj.student_taps) as s_taps, Taps(teacher, obj.teacher_taps) as t_taps:
        ctx = StepContext(student(x), teacher(x), torch.zeros(6, dtype=torch.long), indices=torch.arange(6),
                          student_features=s_taps.outputs, teacher_features=t_taps.outputs)
        obj.setup(ctx, num_train=6)
        total, parts = obj(ctx)
    total.backward()
    assert torch.isfinite(total) and set(parts) == {"fitnet", "at", "rkd", "sp", "crd"}
    fit = obj.losses["fitnet"].regressors[0]  # student stage:-2 (24 ch at width 0.5) -> teacher layer2 (32)
    assert fit.weight.shape[:2] == (32, contract_of(student).features[-2].channels)


def test_logits_only_keeps_paths_and_distill_accepts_tuple_models() -> None:
    from edgekd import data, distill
    from edgekd.models import logits_only

    class Aux(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            z = self.body(x)
            return z, z.detach()

    m = Aux()
    view = logits_only(m)
    assert isinstance(view(torch.randn(2, 1, 8, 8)), torch.Tensor) and view.body is m.body
    assert [n for n, _ in view.named_modules()] == [n for n, _ in m.named_modules()]
    splits = data.load("digits", limit=120)
    r = distill(None, Aux(), splits, "ce", epochs=1, batch_size=32, progress=False)
    assert 0.0 <= r.metrics["test_acc"] <= 1.0


def test_ensemble_and_online_peers_use_contract_taps() -> None:
    """An ensemble of teachers averages each one's own stage:-2; AFD/feat_l1 peers default to stage:-1."""
    from edgekd.distillation.strategies.ensemble import EnsembleTeacher

    torch.manual_seed(0)
    a, b = create("resnet8", in_channels=1), create("resnet8", in_channels=1)
    ens = EnsembleTeacher([a, b], T=1.0, features=["stage:-2"]).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad(), Taps(ens, ["stage:-2"]) as t, Taps(a, ["layer2"]) as ta, Taps(b, ["layer2"]) as tb:
        ens(x)
        a(x)
        b(x)
        torch.testing.assert_close(t["stage:-2"], 0.5 * ta["layer2"] + 0.5 * tb["layer2"])
    assert build_objective("afd").student_taps == ["stage:-1"]
    assert build_objective("feat_l1").student_taps == ["stage:-1"]
