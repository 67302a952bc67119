"""``tv:NAME``: torchvision's classification builders, with their family contracts.

``create("tv:mobilenet_v3_small", num_classes=10, in_channels=1, weights="mnv3.pth")`` calls
``torchvision.models.get_model(name, weights=None, num_classes=...)`` (every classification builder of
``torchvision.models.list_models(module=torchvision.models)``), adapts the stem for ``in_channels``
and loads ``weights`` from a local file (:mod:`edgekd.models.weights`; nothing is downloaded).
Builder keywords pass through (``width_mult=0.5`` for MobileNetV2/V3, ``dropout``, ...); edgekd adds
``width_mult`` / ``depth_mult`` to the EfficientNet B-series and ``alpha`` to MnasNet (torchvision's
own classes take them, its builders fix them per variant).

Families (timm-style contracts, see :mod:`edgekd.models.contract`): ResNet (and Wide/ResNeXt),
MobileNetV2, MobileNetV3, EfficientNet (V1/V2), ShuffleNetV2, SqueezeNet, MnasNet, RegNet, ConvNeXt,
ViT. Other builders (AlexNet, VGG, DenseNet, GoogLeNet, Inception, Swin, MaxViT) are created but have
no contract (taps by module path only, no ``in_channels`` adaptation or weights matching). Prunable: ResNet (dense 3×3 convs), MobileNetV2, MnasNet.

torchvision is imported on first use (a few seconds), never by ``import edgekd.models``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from edgekd.errors import ConfigError
from edgekd.models._registry import Namespace, register_namespace
from edgekd.models.contract import (
    Candidates,
    Family,
    Knob,
    chain,
    named,
    quarters,
    register_family,
    sequential_children,
)
from edgekd.models.weights import adapt_stem, load_weights

STAGE = "models/tv"
_TV = "torchvision.models"


def _tv() -> Any:
    import torchvision.models  # a core dependency, imported on first use (seconds)

    return torchvision.models


def builders() -> list[str]:
    """Every torchvision classification builder name."""
    return sorted(_tv().list_models(module=_tv()))



def _without_last(root: str) -> Candidates:
    """The children of ``root`` except its last (the 1×1 head conv before pooling, not a stage)."""
    return lambda m: sequential_children(root)(m)[:-1]


# -- pruning rules -------------------------------------------------------------------------------------------
def _resnet_groups(model: nn.Module) -> list:
    from torchvision.models.resnet import BasicBlock, Bottleneck

    from edgekd.models.channels import inner_block_groups

    groups = inner_block_groups(model, (BasicBlock,), [("conv1", "bn1", "conv2")])
    dense = [g for g in inner_block_groups(model, (Bottleneck,), [("conv1", "bn1", "conv2"), ("conv2", "bn2", "conv3")])
             if all(model.get_submodule(c).groups == 1 for c in (g.producers[0][0], g.consumers[0]))]
    return groups + dense


def _mobilenet_v2_groups(model: nn.Module) -> list:
    from torchvision.models.mobilenetv2 import InvertedResidual

    from edgekd.models.channels import inverted_residual_groups

    return inverted_residual_groups(model, InvertedResidual, "conv.0.0|conv.0.1", "conv.1.0|conv.1.1", "conv.2",
                                    head=("features.18", "features.18.0", "features.18.1", "classifier.1"),
                                    has_expand=lambda b: len(b.conv) == 4)


def _mnasnet_groups(model: nn.Module) -> list:
    from torchvision.models.mnasnet import _InvertedResidual

    from edgekd.models.channels import inverted_residual_groups

    return inverted_residual_groups(model, _InvertedResidual, "layers.0|layers.1", "layers.3|layers.4", "layers.6",
                                    head=("layers.14", "layers.14", "layers.15", "classifier.1"))


# -- families ------------------------------------------------------------------------------------------------
def _fam(name: str, classes: tuple[str, ...], match: Callable[[str], bool], **kw: Any) -> Family:
    fam = register_family(Family(name=f"tv:{name}", classes=tuple(f"{_TV}.{c}" for c in classes), **kw))
    _MATCHERS.append((match, fam.name))
    return fam


_MATCHERS: list[tuple[Callable[[str], bool], str]] = []
_SE = "squeeze-excitation ties each block's expanded channels to its SE layers"

_fam("resnet", ("resnet.ResNet",), lambda n: n.startswith(("resnet", "wide_resnet", "resnext")),
     candidates=named("layer1", "layer2", "layer3", "layer4"), embedding="avgpool", stem="conv1", classifier="fc",
     prune=_resnet_groups,
     knobs=(Knob("depth", variants={18: "tv:resnet18", 34: "tv:resnet34", 50: "tv:resnet50", 101: "tv:resnet101",
                                    152: "tv:resnet152"}),
            Knob("width", variants={1: "tv:resnet50", 2: "tv:wide_resnet50_2"})))
_fam("mobilenet_v2", ("mobilenetv2.MobileNetV2",), lambda n: n == "mobilenet_v2",
     candidates=_without_last("features"), embedding="classifier.1@input", stem="features.0.0",
     classifier="classifier.1", prune=_mobilenet_v2_groups,
     knobs=(Knob("width", kwarg="width_mult", values=(0.35, 0.5, 0.75, 1.0, 1.4)),))
_fam("mobilenet_v3", ("mobilenetv3.MobileNetV3",), lambda n: n.startswith("mobilenet_v3"),
     candidates=_without_last("features"), embedding="avgpool", stem="features.0.0", classifier="classifier.3",
     prune_note=_SE,
     knobs=(Knob("width", kwarg="width_mult", values=(0.5, 0.75, 1.0)),
            Knob("depth", variants={"small": "tv:mobilenet_v3_small", "large": "tv:mobilenet_v3_large"})))
_fam("efficientnet", ("efficientnet.EfficientNet",), lambda n: n.startswith("efficientnet"),
     candidates=_without_last("features"), embedding="avgpool", stem="features.0.0", classifier="classifier.1",
     prune_note=_SE,
     knobs=(Knob("width", kwarg="width_mult", values=(0.5, 0.75, 1.0, 1.1, 1.2)),
            Knob("depth", kwarg="depth_mult", values=(0.5, 0.75, 1.0, 1.2, 1.4))))
_fam("shufflenet_v2", ("shufflenetv2.ShuffleNetV2",), lambda n: n.startswith("shufflenet_v2"),
     candidates=named("conv1", "maxpool", "stage2", "stage3", "stage4"), embedding="fc@input", stem="conv1.0",
     classifier="fc", prune_note="channel split and shuffle tie channels across branches",
     knobs=(Knob("width", variants={0.5: "tv:shufflenet_v2_x0_5", 1.0: "tv:shufflenet_v2_x1_0",
                                    1.5: "tv:shufflenet_v2_x1_5", 2.0: "tv:shufflenet_v2_x2_0"}),))
_fam("squeezenet", ("squeezenet.SqueezeNet",), lambda n: n.startswith("squeezenet"),
     candidates=sequential_children("features"), embedding="features@avg", stem="features.0",
     classifier="classifier.1", prune_note="Fire modules have no batch norm to rank or cut channels with",
     knobs=(Knob("depth", variants={"1_0": "tv:squeezenet1_0", "1_1": "tv:squeezenet1_1"}),))
_fam("mnasnet", ("mnasnet.MNASNet",), lambda n: n.startswith("mnasnet"),
     candidates=named(*(f"layers.{i}" for i in range(14))), embedding="classifier.1@input", stem="layers.0",
     classifier="classifier.1", prune=_mnasnet_groups,
     knobs=(Knob("width", kwarg="alpha", values=(0.5, 0.75, 1.0, 1.3)),))
_fam("regnet", ("regnet.RegNet",), lambda n: n.startswith("regnet"),
     candidates=chain(named("stem"), sequential_children("trunk_output")), embedding="avgpool", stem="stem.0",
     classifier="fc", prune_note="group convolutions (and SE in RegNetY) tie channels within each block",
     knobs=(Knob("width", variants={"400mf": "tv:regnet_y_400mf", "800mf": "tv:regnet_y_800mf",
                                    "1_6gf": "tv:regnet_y_1_6gf", "3_2gf": "tv:regnet_y_3_2gf"}),))
_fam("convnext", ("convnext.ConvNeXt",), lambda n: n.startswith("convnext"),
     candidates=sequential_children("features"), embedding="classifier.2@input", stem="features.0.0",
     classifier="classifier.2", prune_note="LayerNorm + linear MLP blocks (channel surgery cuts conv + batch norm)",
     knobs=(Knob("width", variants={"tiny": "tv:convnext_tiny", "small": "tv:convnext_small",
                                    "base": "tv:convnext_base"}),))
_fam("vit", ("vision_transformer.VisionTransformer",), lambda n: n.startswith("vit_"),
     candidates=quarters("encoder.layers"), pick="all", embedding="heads@input", stem="conv_proj",
     classifier="heads.head", prune_note="attention and MLP widths are not conv channel groups",
     exits=lambda m: [], exits_note="token blocks, not conv feature maps",
     knobs=(Knob("width", variants={"b": "tv:vit_b_16", "l": "tv:vit_l_16"}),))

def family(name: str) -> str:
    """The family of builder ``name`` (``""`` when none is declared)."""
    return next((fam for match, fam in _MATCHERS if match(name)), "")


def _efficientnet(name: str, num_classes: int, kw: dict[str, Any]) -> nn.Module:
    """EfficientNet-B* with ``width_mult`` / ``depth_mult`` (the builders fix them per variant)."""
    from torchvision.models import efficientnet as E

    base = {"efficientnet_b0": (1.0, 1.0, 0.2), "efficientnet_b1": (1.0, 1.1, 0.2), "efficientnet_b2": (1.1, 1.2, 0.3),
            "efficientnet_b3": (1.2, 1.4, 0.3)}
    if name not in base:
        raise ConfigError(f"tv:{name} takes no width_mult/depth_mult", stage=STAGE,
                          hint=f"use one of {', '.join('tv:' + b for b in base)} with width_mult/depth_mult")
    w, d, drop = base[name]
    setting, last = E._efficientnet_conf(name, width_mult=kw.pop("width_mult", w), depth_mult=kw.pop("depth_mult", d))
    return E.EfficientNet(setting, kw.pop("dropout", drop), last_channel=last, num_classes=num_classes, **kw)


def create(name: str, *, num_classes: int = 10, in_channels: int = 3, weights: str | None = None,
           **kw: Any) -> nn.Module:
    """Build ``tv:name`` (see the module docstring)."""
    tv = _tv()
    known = builders()
    if name not in known:
        raise ConfigError(f"unknown torchvision model {name!r}", stage=STAGE,
                          hint=f"pick one of: {', '.join(known)} (`edgekd list models`)")
    try:
        if name.startswith("efficientnet_b") and ({"width_mult", "depth_mult"} & set(kw)):
            model = _efficientnet(name, num_classes, kw)
        elif name.startswith("mnasnet") and "alpha" in kw:
            model = tv.MNASNet(kw.pop("alpha"), num_classes=num_classes, **kw)
        else:
            model = tv.get_model(name, weights=None, num_classes=num_classes, **kw)
    except TypeError as e:
        params = [p for p in inspect.signature(tv.get_model(name, weights=None).__class__.__init__).parameters
                  if p not in ("self", "kwargs")]
        raise ConfigError(f"tv:{name} rejected the options {sorted(kw)}: {e}", stage=STAGE,
                          hint=f"its class takes: {', '.join(params)}") from None
    fam_name = family(name)
    from edgekd.models.contract import FAMILIES

    fam = FAMILIES.get(fam_name) if fam_name else None
    if in_channels != 3:
        if fam is None:
            raise ConfigError(f"tv:{name} has no declared stem, so in_channels={in_channels} cannot be adapted",
                              stage=STAGE, hint="pass in_channels=3 and repeat grey images to RGB")
        adapt_stem(model, fam.stem, in_channels)
    if weights is not None:
        if fam is None:
            raise ConfigError(f"tv:{name} has no declared family, so weights cannot be matched", stage=STAGE,
                              hint="load them yourself: model.load_state_dict(torch.load(path))")
        load_weights(model, weights, stem=fam.stem, classifier=fam.classifier)
    return model


register_namespace(Namespace("tv", "torchvision classification builders", builders, create, family))
