"""``hf:NAME``: Hugging Face ``transformers`` image classifiers, built from a config (never from a hub).

``create("hf:vit_tiny", num_classes=10, in_channels=1, weights="vit.safetensors")`` builds
``ViTForImageClassification(ViTConfig(...))`` from the preset's config updated with ``num_labels``,
``num_channels`` (the stem takes ``in_channels`` natively) and any config keyword you pass
(``hidden_size=256``, ``image_size=160``, ``depth_multiplier=0.5``: the width/depth/resolution knobs);
``weights`` is a local state-dict or ``.safetensors`` file (:mod:`edgekd.models.weights`).
``from_pretrained`` is never called and nothing is downloaded. Its ``forward`` returns the logits
Tensor (:func:`edgekd.models.logits.logits_only`), module paths stay Hugging Face's.

Presets (a config name and its overrides): MobileNetV2 (``mobilenet_v2``, width 1.0, 224, PyTorch-style
symmetric padding: ``tf_padding=False``, see ``PRESETS``),
EfficientNet (``efficientnet_b0``..``b3``), ResNet (``resnet18``, ``resnet50``), ConvNeXt
(``convnext_tiny``), MobileViT (``mobilevit_s``, ``_xs``, ``_xxs``), ViT (``vit_tiny``: 192 wide, 12
layers, 3 heads, patch 16; ``vit_small``; ``vit_base``). A config built with random initialisation
gives near-zero logits; train before judging int8 parity.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from edgekd.errors import ConfigError
from edgekd.extras import requires
from edgekd.models._registry import Namespace, register_namespace
from edgekd.models.contract import (
    Family,
    Knob,
    chain,
    named,
    quarters,
    register_family,
    sequential_children,
)
from edgekd.models.logits import logits_only
from edgekd.models.weights import load_weights

STAGE = "models/hf"
_T = "transformers.models"


@dataclass(frozen=True)
class Preset:
    family: str  # the Family name, also the transformers module: "mobilenet_v2"
    config: str  # config class name
    model: str  # ForImageClassification class name
    overrides: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    # tf_padding=False: PyTorch's symmetric padding instead of TF's "SAME" pad ops. litert-torch 0.10's int8
    # layout pass fails on the quantized pads ("Attempting to convert non-NHWC compatible node to NHWC:
    # dequantize_per_tensor_…"); pass tf_padding=True for TF-ported checkpoints (then export its int8
    # .tflite with onnx2tf, or use the .pte).
    "mobilenet_v2": Preset("mobilenet_v2", "MobileNetV2Config", "MobileNetV2ForImageClassification",
                           {"depth_multiplier": 1.0, "image_size": 224, "tf_padding": False}),
    **{f"efficientnet_b{i}": Preset("efficientnet", "EfficientNetConfig", "EfficientNetForImageClassification",
                                    {"width_coefficient": w, "depth_coefficient": d, "image_size": s,
                                     "dropout_rate": p})
       for i, (w, d, s, p) in enumerate(((1.0, 1.0, 224, 0.2), (1.0, 1.1, 240, 0.2), (1.1, 1.2, 260, 0.3),
                                         (1.2, 1.4, 300, 0.3)))},
    "resnet18": Preset("resnet", "ResNetConfig", "ResNetForImageClassification",
                       {"layer_type": "basic", "depths": [2, 2, 2, 2], "hidden_sizes": [64, 128, 256, 512],
                        "embedding_size": 64}),
    "resnet50": Preset("resnet", "ResNetConfig", "ResNetForImageClassification", {}),
    "convnext_tiny": Preset("convnext", "ConvNextConfig", "ConvNextForImageClassification",
                            {"depths": [3, 3, 9, 3], "hidden_sizes": [96, 192, 384, 768]}),
    "mobilevit_s": Preset("mobilevit", "MobileViTConfig", "MobileViTForImageClassification", {}),
    "mobilevit_xs": Preset("mobilevit", "MobileViTConfig", "MobileViTForImageClassification",
                           {"hidden_sizes": [96, 120, 144], "neck_hidden_sizes": [16, 32, 48, 64, 80, 96, 384]}),
    "mobilevit_xxs": Preset("mobilevit", "MobileViTConfig", "MobileViTForImageClassification",
                            {"hidden_sizes": [64, 80, 96], "neck_hidden_sizes": [16, 16, 24, 48, 64, 80, 320],
                             "expand_ratio": 2.0}),
    "vit_tiny": Preset("vit", "ViTConfig", "ViTForImageClassification",
                       {"hidden_size": 192, "num_hidden_layers": 12, "num_attention_heads": 3,
                        "intermediate_size": 768, "image_size": 224, "patch_size": 16}),
    "vit_small": Preset("vit", "ViTConfig", "ViTForImageClassification",
                        {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6,
                         "intermediate_size": 1536, "image_size": 224, "patch_size": 16}),
    "vit_base": Preset("vit", "ViTConfig", "ViTForImageClassification", {"image_size": 224, "patch_size": 16}),
}


def _transformers() -> Any:
    with requires("text", "hf: models (Hugging Face transformers image classifiers)"):
        import transformers

    return transformers


def _vit_layers(model: nn.Module) -> list[str]:
    root = "vit.layers" if "vit.layers" in dict(model.named_modules()) else "vit.encoder.layer"
    return quarters(root)(model)



def _mobilenet_v2_groups(model: nn.Module) -> list:
    from transformers.models.mobilenet_v2.modeling_mobilenet_v2 import MobileNetV2InvertedResidual

    from edgekd.models.channels import inverted_residual_groups

    return inverted_residual_groups(model, MobileNetV2InvertedResidual,
                                    "expand_1x1.convolution|expand_1x1.normalization",
                                    "conv_3x3.convolution|conv_3x3.normalization", "reduce_1x1.convolution",
                                    head=("mobilenet_v2.conv_1x1", "mobilenet_v2.conv_1x1.convolution",
                                          "mobilenet_v2.conv_1x1.normalization", "classifier"))


def _fam(name: str, model_cls: str, **kw: Any) -> Family:
    return register_family(Family(name=f"hf:{name}", classes=(f"{_T}.{name}.modeling_{name}.{model_cls}",), **kw))


_fam("mobilenet_v2", "MobileNetV2ForImageClassification",
     candidates=chain(named("mobilenet_v2.conv_stem"), sequential_children("mobilenet_v2.layer")),
     embedding="classifier@input", stem="mobilenet_v2.conv_stem.first_conv.convolution", classifier="classifier",
     prune=_mobilenet_v2_groups, exits=sequential_children("mobilenet_v2.layer"),
     knobs=(Knob("width", kwarg="depth_multiplier", values=(0.35, 0.5, 0.75, 1.0, 1.4)),
            Knob("resolution", kwarg="image_size", values=(96, 128, 160, 192, 224))))
_fam("efficientnet", "EfficientNetForImageClassification",
     candidates=chain(named("efficientnet.embeddings"), sequential_children("efficientnet.encoder.blocks")),
     embedding="classifier@input", stem="efficientnet.embeddings.convolution", classifier="classifier",
     prune_note="squeeze-excitation ties each block's expanded channels to its SE layers",
     exits=sequential_children("efficientnet.encoder.blocks"),
     knobs=(Knob("width", kwarg="width_coefficient", values=(0.5, 0.75, 1.0, 1.1, 1.2)),
            Knob("depth", kwarg="depth_coefficient", values=(0.5, 0.75, 1.0, 1.2, 1.4)),
            Knob("resolution", kwarg="image_size", values=(128, 160, 192, 224, 240))))
_fam("resnet", "ResNetForImageClassification",
     candidates=sequential_children("resnet.encoder.stages"), embedding="classifier.1@input",
     stem="resnet.embedder.embedder.convolution", classifier="classifier.1",
     prune_note="not declared (use tv:resnet*, whose blocks are prunable)",
     exits=sequential_children("resnet.encoder.stages"),
     knobs=(Knob("depth", kwarg="depths", values=([1, 1, 1, 1], [2, 2, 2, 2], [3, 4, 6, 3])),
            Knob("width", kwarg="hidden_sizes", values=([32, 64, 128, 256], [64, 128, 256, 512]))))
_fam("convnext", "ConvNextForImageClassification",
     candidates=sequential_children("convnext.encoder.stages"), embedding="classifier@input",
     stem="convnext.embeddings.patch_embeddings", classifier="classifier",
     prune_note="LayerNorm + linear MLP blocks (channel surgery cuts conv + batch norm)",
     exits=sequential_children("convnext.encoder.stages"),
     knobs=(Knob("depth", kwarg="depths", values=([2, 2, 6, 2], [3, 3, 9, 3])),
            Knob("width", kwarg="hidden_sizes", values=([48, 96, 192, 384], [96, 192, 384, 768]))))
_fam("mobilevit", "MobileViTForImageClassification",
     candidates=chain(named("mobilevit.conv_stem"), sequential_children("mobilevit.encoder.layer")),
     embedding="classifier@input", stem="mobilevit.conv_stem.convolution", classifier="classifier",
     prune_note="transformer blocks fold channels into patches",
     exits=lambda m: [], exits_note="mixes conv and transformer stages; name exit blocks explicitly",
     knobs=(Knob("width", variants={"xxs": "hf:mobilevit_xxs", "xs": "hf:mobilevit_xs", "s": "hf:mobilevit_s"}),
            Knob("resolution", kwarg="image_size", values=(128, 160, 192, 224, 256))))
_fam("vit", "ViTForImageClassification", candidates=_vit_layers, pick="all", embedding="classifier@input",
     stem="vit.embeddings.patch_embeddings.projection", classifier="classifier",
     prune_note="attention and MLP widths are not conv channel groups",
     exits=lambda m: [], exits_note="token blocks, not conv feature maps",
     knobs=(Knob("width", kwarg="hidden_size", values=(192, 384, 768)),
            Knob("depth", kwarg="num_hidden_layers", values=(6, 8, 12)),
            Knob("resolution", kwarg="image_size", values=(96, 160, 224))))


def names() -> list[str]:
    return sorted(PRESETS)


def family(name: str) -> str:
    return f"hf:{PRESETS[name].family}" if name in PRESETS else ""


def create(name: str, *, num_classes: int = 10, in_channels: int = 3, weights: str | None = None,
           **kw: Any) -> nn.Module:
    """Build ``hf:name`` (see the module docstring)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown Hugging Face model {name!r}", stage=STAGE,
                          hint=f"pick one of: {', '.join('hf:' + n for n in names())} (`edgekd list models`)")
    p = PRESETS[name]
    t = _transformers()
    config_cls, model_cls = getattr(t, p.config), getattr(t, p.model)
    allowed = set(config_cls().to_dict())
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise ConfigError(f"hf:{name} takes no option {', '.join(unknown)}", stage=STAGE,
                          hint=f"options are {p.config} fields, e.g. {', '.join(sorted(p.overrides) or sorted(allowed)[:6])}")
    opts = {**p.overrides, **kw, "num_labels": num_classes, "num_channels": in_channels}
    if p.family == "efficientnet":  # the last 1×1 conv's width follows the width coefficient (HF reads hidden_dim)
        opts.setdefault("hidden_dim", _round_filters(1280, opts["width_coefficient"]))
    try:
        config = config_cls(**opts)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"hf:{name}: {p.config} rejected {sorted(kw)}: {e}", stage=STAGE,
                          hint=f"see {p.config}'s fields: {', '.join(sorted(inspect.signature(config_cls).parameters))}") from None
    model = logits_only(model_cls(config), in_place=True)
    if weights is not None:
        from edgekd.models.contract import FAMILIES

        fam = FAMILIES.get(f"hf:{p.family}")
        load_weights(model, weights, stem=fam.stem, classifier=fam.classifier)
    return model


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's channel rounding (transformers' ``round_filters``)."""
    c = channels * width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * c else new)


register_namespace(Namespace("hf", "Hugging Face transformers image classifiers (from a config)", names, create,
                             family))
