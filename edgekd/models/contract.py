"""What a model family promises: the stages a feature loss may tap, its pruning rules, exits, input size, knobs.

As timm's ``feature_info``: a family (the CIFAR ResNets, torchvision's MobileNetV3, Hugging Face's
ConvNeXt, ...) is registered beside its code with :func:`register_family`, and
:func:`contract_of` gives any model of it a :class:`Contract`::

    c = contract_of(models.create("tv:mobilenet_v3_small", num_classes=10))
    [(f.module, f.channels, f.reduction) for f in c.features]
    # [('features.0', 16, 2), ('features.1', 16, 4), ('features.3', 24, 8), ('features.8', 48, 16), ('features.11', 96, 32)]

``features`` are found by one probe forward pass (at the native size, capped at 64): among the family's
*candidate* modules (its stage blocks, in depth order) the last one at each output stride is a
stage, exactly timm's rule (a stage is where the resolution is about to drop). Channels and stride
are measured, so a width multiplier, a pruned copy or ``in_channels=1`` change nothing here.

Losses name taps symbolically, resolved per model by :func:`resolve_tap`:

==================  =====================================================================
``stage:K``         the K-th stage (0 = shallowest, -1 = deepest), e.g. FitNet's ``stage:-2``
``embedding``       the pooled feature vector the classifier reads (CRD, RKD, SP)
``PATH``            any dotted module path (``features.12``, ``layer3``) for any model
==================  =====================================================================

A suffix carries over: ``stage:-1@prerelu`` is the deepest stage before its last ReLU (OFD).
Taps ending in ``@input`` record a module's *input* and ``@avg`` its output averaged over H×W
(see :mod:`edgekd.distillation.taps`).

Pruning (:mod:`edgekd.models.channels`) asks the family for its channel groups; a family that cannot
be pruned right (squeeze-excitation, channel shuffle, grouped convs tie channels across blocks)
says so and why. Knobs are the constructor keywords (or variants) that scale width, depth and
resolution, for a search over students to read.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from edgekd.errors import ConfigError
from edgekd.registry import Registry

STAGE = "models/contract"
STAGE_PREFIX = "stage:"
EMBEDDING = "embedding"


@dataclass(frozen=True)
class Feature:
    """One tappable stage: its module path, output channels and stride w.r.t. the input (timm's
    ``num_chs`` / ``reduction``). Token models (ViT) report the patch size as the stride."""

    module: str
    channels: int
    reduction: int


@dataclass(frozen=True)
class Knob:
    """A way to scale a family: a constructor keyword with sensible values, or variants by name.

    ``Knob("width", kwarg="width_mult", values=(0.5, 0.75, 1.0))`` →
    ``create(name, width_mult=0.5)``; ``Knob("depth", variants={18: "tv:resnet18", 34: "tv:resnet34"})`` →
    ``create(variants[18])``. ``resolution`` knobs name the input sizes the family takes. A knob may have
    both: ``values`` of its keyword (what :mod:`edgekd.fit` searches by default, for the family's models whose
    factory takes that keyword) and named ``variants`` (registry points of it).
    """

    name: str  # "width" | "depth" | "resolution" | ...
    kwarg: str | None = None
    values: tuple[Any, ...] = ()
    variants: dict[Any, str] = field(default_factory=dict)

    def describe(self) -> str:
        """``width: width_mult=0.5|0.75|1`` / ``depth: 18|34`` (variants) / ``resolution: 28|32``."""
        values = self.values if self.kwarg or not self.variants else tuple(self.variants)
        text = "|".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
        return f"{self.name}: {self.kwarg}={text}" if self.kwarg else f"{self.name}: {text}"


Candidates = Callable[[nn.Module], list[str]]


@dataclass(frozen=True)
class Family:
    """A model family's declaration (see the module docstring).

    Args:
        name: ``"zoo:resnet_cifar"``, ``"tv:mobilenet_v3"``, ``"hf:vit"``, ...
        classes: the classes it describes, as ``"module.QualName"`` (matched along the MRO, so no
            import is needed to register, and a subclass is covered).
        candidates: the modules, in depth order, that may be stages; ``pick="reduction"`` keeps the
            last one at each stride, ``pick="all"`` keeps them all (token models).
        embedding: the tap giving the pooled ``N×C`` feature the classifier reads.
        stem: the first convolution (what ``in_channels`` adapts; ``""``: the family handles it).
        classifier: the last layer (dropped when loading a file made for another class count).
        input_size: the native square input size (probe and export default).
        prune: the channel groups of a model (a list of :class:`edgekd.models.channels.ChannelGroup`), or None.
        prune_note: why a family is not prunable (shown by ``edgekd list models``).
        exits: blocks where early exits may go (default: every block of its nn.Sequential stages).
        exits_note: why a family takes no exits (declare ``exits=lambda m: []`` with it).
        knobs: width / depth / resolution knobs.
        models: registry names of the family (``module`` for zoo files: every name registered there).
        match: a further test on the instance, for a family that shares its class with another
            (preferred over the one without).
    """

    name: str
    classes: tuple[str, ...]
    candidates: Candidates
    embedding: str
    stem: str
    classifier: str
    input_size: int = 224
    pick: str = "reduction"
    prune: Callable[[nn.Module], list[Any]] | None = None
    prune_note: str = ""
    exits: Callable[[nn.Module], list[str]] | None = None
    exits_note: str = ""
    knobs: tuple[Knob, ...] = ()
    models: tuple[str, ...] = ()
    module: str = ""
    input_kind: str = "image"  # "image" (N, C, H, W) or "tokens" (N, L) ids
    match: Callable[[nn.Module], bool] | None = None  # narrows ``classes`` (e.g. a ResNet with adder layers)

    @property
    def source(self) -> str:
        return self.name.split(":", 1)[0]


@dataclass(frozen=True)
class Contract:
    """What :func:`contract_of` says about one model (see the module docstring)."""

    family: str
    features: tuple[Feature, ...]
    embedding: str
    input_size: int
    exits: tuple[str, ...]
    prunable: bool
    knobs: tuple[Knob, ...]

    def stage(self, k: int) -> Feature:
        """The ``k``-th stage (negative counts from the deepest)."""
        if not -len(self.features) <= k < len(self.features):
            raise ConfigError(f"{self.family} has {len(self.features)} stages; stage:{k} is out of range",
                              stage=STAGE, hint="use stage:0 .. stage:-1, or name a module by its dotted path")
        return self.features[k]


FAMILIES: Registry[Family] = Registry("family")


def register_family(family: Family) -> Family:
    """Register ``family`` (call it in the family's own file, beside the models)."""
    return FAMILIES.register(family.name)(family)


def _qualnames(model: nn.Module) -> list[str]:
    return [f"{c.__module__}.{c.__qualname__}" for c in type(model).__mro__]


def family_of(model: nn.Module) -> Family | None:
    """The registered family whose classes include ``model``'s class (or a base of it), or None.

    The most specific class wins; among families of one class, one whose ``match`` accepts the model
    is preferred to one without a ``match``."""
    for qual in _qualnames(model):  # the most specific class first
        fams = [f for f in families() if qual in f.classes and (f.match is None or f.match(model))]
        if fams:
            return sorted(fams, key=lambda f: f.match is None)[0]
    return None


def require_family(model: nn.Module, what: str) -> Family:
    fam = family_of(model)
    if fam is None:
        raise ConfigError(f"{type(model).__name__} belongs to no registered model family, so it has no {what}",
                          stage=STAGE,
                          hint="name modules by dotted path (e.g. fitnet_student_taps=['features.12']), build the "
                               "model with edgekd.models.create, or register a Family for its class "
                               "(edgekd.models.contract.register_family)")
    return fam


def probe_input(model: nn.Module, fam: Family, size: int | None = None) -> torch.Tensor:
    """A zero batch of one the family's stem takes: (1, in_channels, size, size)."""
    modules = dict(model.named_modules())
    stem = modules.get(fam.stem) if fam.stem else None
    channels = int(getattr(stem, "in_channels", 3))
    ref = next(model.parameters(), None)
    return torch.zeros(1, channels, size or fam.input_size, size or fam.input_size,
                       device=ref.device if ref is not None else "cpu")


def probe_size(model: nn.Module, fam: Family) -> int:
    """The input size of the probe pass: a token model's own image size (its position embeddings fix it),
    else the native size capped at 64 (enough for stride 32, and cheap)."""
    if fam.pick == "all":
        own = getattr(getattr(model, "config", None), "image_size", None) or getattr(model, "image_size", None)
        return int(own[0] if isinstance(own, (tuple, list)) else own or fam.input_size)
    return min(fam.input_size, 64)


@torch.no_grad()
def _stage_shapes(model: nn.Module, fam: Family, paths: Sequence[str], size: int) -> dict[str, tuple[int, ...]]:
    modules = dict(model.named_modules())
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for p in paths:
        def hook(_m: nn.Module, _i: Any, out: Any, p: str = p) -> None:
            if isinstance(out, torch.Tensor):
                shapes[p] = tuple(out.shape)
        handles.append(modules[p].register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(probe_input(model, fam, size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return shapes


def features_of(model: nn.Module, fam: Family | None = None) -> tuple[Feature, ...]:
    """The stages of ``model`` (one probe forward pass; see the module docstring)."""
    fam = fam or require_family(model, "stages")
    paths = fam.candidates(model)
    size = probe_size(model, fam)
    shapes = _stage_shapes(model, fam, paths, size)
    out: list[Feature] = []
    for p in paths:
        s = shapes.get(p)
        if s is None or len(s) < 3:
            continue
        if len(s) == 4:  # N, C, H, W; the stride as a power of two (ceil-mode pools give 224/13)
            feat = Feature(p, int(s[1]), 2 ** max(0, round(math.log2(size / s[2]))))
        else:  # N, L, C tokens: the stride of a token is the patch size
            patch = getattr(model, "patch_size", None) or getattr(getattr(model, "config", None), "patch_size", 1)
            feat = Feature(p, int(s[-1]), int(patch[0] if isinstance(patch, (tuple, list)) else patch or 1))
        if fam.pick == "reduction" and out and out[-1].reduction == feat.reduction:
            out[-1] = feat
        else:
            out.append(feat)
    if not out:
        raise ConfigError(f"{fam.name}: no candidate stage of {type(model).__name__} returned a feature map",
                          stage=STAGE, hint="name taps by dotted module path")
    return tuple(out)


def contract_of(model: nn.Module) -> Contract:
    """The :class:`Contract` of ``model`` (its family's declaration, measured on this instance)."""
    fam = require_family(model, "contract")
    feats = features_of(model, fam) if fam.input_kind == "image" else ()
    exits = tuple(fam.exits(model)) if fam.exits is not None else tuple(blocks(model))
    return Contract(family=fam.name, features=feats, embedding=fam.embedding, input_size=fam.input_size,
                    exits=exits, prunable=fam.prune is not None, knobs=fam.knobs)


def blocks(model: nn.Module) -> list[str]:
    """Dotted paths of the blocks in depth order (composite children of top-level ``nn.Sequential`` stages):
    where early exits go unless a family says otherwise."""
    return [f"{name}.{sub}" for name, stage in model.named_children() if isinstance(stage, nn.Sequential)
            for sub, block in stage.named_children() if any(True for _ in block.children())]


def is_symbolic(tap: str) -> bool:
    """Whether ``tap`` names a stage or the embedding instead of a module path."""
    base = tap.split("@", 1)[0]
    return base == EMBEDDING or base.startswith(STAGE_PREFIX)


def resolve_tap(model: nn.Module, tap: str) -> str:
    """``stage:K[@suffix]`` / ``embedding`` → this model's module path (a path is returned unchanged)."""
    if not is_symbolic(tap):
        return tap
    base, at, suffix = tap.partition("@")
    fam = require_family(model, f"stage to resolve the tap {tap!r} with")
    if base == EMBEDDING:
        path = fam.embedding
        return path + (at + suffix if suffix and "@" not in path else "")
    raw = base[len(STAGE_PREFIX):]
    try:
        k = int(raw)
    except ValueError:
        raise ConfigError(f"tap {tap!r}: stage index {raw!r} is not an integer", stage=STAGE,
                          hint="write stage:0 (shallowest) .. stage:-1 (deepest)") from None
    feats = features_of(model, fam)
    if not -len(feats) <= k < len(feats):
        raise ConfigError(f"tap {tap!r}: {fam.name} has {len(feats)} stages "
                          f"({', '.join(f.module for f in feats)})", stage=STAGE,
                          hint=f"use stage:0 .. stage:{len(feats) - 1} (or negative), or a dotted module path")
    return feats[k].module + (at + suffix if at else "")


def nearby_modules(model: nn.Module, path: str) -> str:
    """A hint listing module paths close to ``path`` and the top-level children."""
    modules = [n for n, _ in model.named_modules() if n]
    near = difflib.get_close_matches(path, modules, n=6, cutoff=0.5)
    top = [n for n, _ in model.named_children()]
    return f"nearby: {', '.join(near) or '(none)'}; top level: {', '.join(top)}"


def sequential_children(*roots: str) -> Candidates:
    """Candidates: the children of each ``nn.Sequential``/``ModuleList`` at ``roots`` (a root that is
    not a container is itself a candidate), in order."""
    def candidates(model: nn.Module) -> list[str]:
        modules = dict(model.named_modules())
        out: list[str] = []
        for root in roots:
            m = modules.get(root)
            if m is None:
                continue
            if isinstance(m, (nn.Sequential, nn.ModuleList)):
                out += [f"{root}.{name}" for name, _ in m.named_children()]
            else:
                out.append(root)
        return out

    return candidates


def chain(*parts: Candidates) -> Candidates:
    """Candidates: those of each part, in order (e.g. a stem module, then a container's children)."""
    return lambda m: [p for part in parts for p in part(m)]


def quarters(root: str) -> Candidates:
    """Candidates: the blocks at 1/4, 2/4, 3/4 and 4/4 depth of the container at ``root`` (the stages of
    a token model, whose blocks all have one stride)."""
    def candidates(model: nn.Module) -> list[str]:
        kids = sequential_children(root)(model)
        n = len(kids)
        return list(dict.fromkeys(kids[max(0, round(n * q / 4) - 1)] for q in (1, 2, 3, 4))) if n else []

    return candidates


def named(*paths: str) -> Candidates:
    """Candidates: exactly these module paths (those the model has)."""
    def candidates(model: nn.Module) -> list[str]:
        modules = dict(model.named_modules())
        return [p for p in paths if p in modules]

    return candidates


def families() -> list[Family]:
    """Every registered family (importing :mod:`edgekd.models` registers them all)."""
    return [FAMILIES.get(n) for n in FAMILIES]
