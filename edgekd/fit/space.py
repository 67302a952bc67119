"""The candidate space: architectures (family × width × depth × input resolution) and deployments
(format × precision × threads).

An architecture is a registry model name plus the constructor keywords that build it
(``models.create("resnet", depth=14, width=0.5)``) and, where the user allows it, an input
resolution; so every candidate (and the chosen student's checkpoint) is rebuilt by name, the way
:mod:`edgekd.models.saved` rebuilds any model. A search family is a registry model name; its knobs and
their default values are the ``width``/``depth`` knobs its model family declares
(:class:`edgekd.models.contract.Knob` with a keyword, for a factory that takes that keyword), else the
``width``/``depth`` parameters its factory declares (none: one candidate). A default family whose model is
not registered (the torchvision ones where torchvision does not import) is left out and named in
:attr:`Space.skipped`.
"""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from edgekd.errors import ConfigError
from edgekd.formats import PRECISIONS

STAGE = "fit/space"
AXES = ("width", "depth")  # the architecture knobs a family may have


@dataclass(frozen=True)
class Knobs:
    """What a search family varies: its registry ``model``, the keyword each knob sets (``{"width": "width_mult"}``)
    and each knob's default values."""

    model: str
    knobs: dict[str, str] = field(default_factory=dict)
    values: dict[str, tuple[Any, ...]] = field(default_factory=dict)


DEFAULT_FAMILIES = ("resnet", "mobilenetv2", "tv:mobilenet_v3_small", "tv:mobilenet_v2")


@dataclass(frozen=True)
class Arch:
    """One student architecture: ``family``, registry ``model``, constructor ``kwargs`` (sorted pairs) and
    the input ``resolution`` (height, width) it takes, or None for the data's own size."""

    family: str
    model: str
    kwargs: tuple[tuple[str, Any], ...] = ()
    resolution: tuple[int, int] | None = None

    @property
    def spec(self) -> str:
        """The canonical text of the architecture (a key of the latency table)."""
        return json.dumps({"model": self.model, "kwargs": dict(self.kwargs),
                           "resolution": list(self.resolution) if self.resolution else None}, sort_keys=True)

    @property
    def name(self) -> str:
        """``resnet(depth=14,width=0.5)``, ``@20x20`` appended at another resolution."""
        args = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.kwargs)
        return f"{self.model}({args})" + (f"@{self.resolution[0]}x{self.resolution[1]}" if self.resolution else "")

    def input_shape(self, in_channels: int, image_size: Sequence[int]) -> tuple[int, int, int, int]:
        h, w = self.resolution or tuple(image_size)
        return (1, in_channels, int(h), int(w))

    def build(self, num_classes: int, in_channels: int) -> nn.Module:
        """The untrained model (:func:`edgekd.models.create`)."""
        from edgekd.models import create

        return create(self.model, num_classes=num_classes, in_channels=in_channels, **dict(self.kwargs))


@dataclass(frozen=True, order=True)
class Deploy:
    """How a file runs: format, precision and runtime threads."""

    format: str
    precision: str
    threads: int

    @property
    def name(self) -> str:
        return f"{self.format}/{self.precision}/{self.threads}t"


def registered(name: str) -> bool:
    """Whether ``name`` is a registry model (``resnet``) or a model of a namespace (``tv:mobilenet_v2``)."""
    from edgekd.models import MODELS, list_models
    from edgekd.models._registry import NAMESPACES

    prefix, sep, _ = name.partition(":")
    return name in MODELS if not sep else prefix in NAMESPACES and name in list_models(prefix)


def knobs_of(name: str) -> Knobs:
    """The knobs of the search family ``name`` (a registry model name): the keyword knobs (width, depth) its
    model family declares, where the model's factory takes that keyword, else the factory's own ``width`` /
    ``depth`` parameters with their defaults (a model without them is a family of one)."""
    from edgekd.models import MODELS
    from edgekd.models.catalog import family_of_name
    from edgekd.models.contract import FAMILIES

    if not registered(name):
        raise ConfigError(f"unknown student family {name!r}", stage=STAGE,
                          hint=f"use one of {', '.join(DEFAULT_FAMILIES)} or a model name from `edgekd list models` "
                          "(register your own with edgekd.models.register_model and pass --import MODULE)")
    if ":" in name:  # a namespace's builder (torchvision's, Hugging Face's config) takes its family's keywords
        params, takes_any = {}, True
    else:
        params = dict(inspect.signature(MODELS.get(name)).parameters)
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    fam_name = family_of_name(name)
    declared = {k.name: k for k in (FAMILIES.get(fam_name).knobs if fam_name else ())
                if k.name in AXES and k.kwarg and k.values and (k.kwarg in params or takes_any)}
    if declared:
        return Knobs(name, {a: k.kwarg for a, k in declared.items()},  # type: ignore[misc]
                     {a: tuple(k.values) for a, k in declared.items()})
    knobs = {a: a for a in AXES if a in params}
    values = {a: (params[a].default,) for a in knobs if params[a].default is not inspect.Parameter.empty}
    return Knobs(name, knobs, values)


def _floats(values: Sequence[Any] | None, what: str) -> tuple[Any, ...] | None:
    if values is None:
        return None
    out = tuple(values)
    if not out:
        raise ConfigError(f"the {what} axis is empty", stage=STAGE, hint=f"give at least one {what}, or leave it out")
    return out


@dataclass
class Space:
    """The axes of a search; None on an architecture axis means each family's own values."""

    families: tuple[str, ...] | None = None
    widths: tuple[float, ...] | None = None
    depths: tuple[int, ...] | None = None
    resolutions: tuple[int, ...] | None = None  # square sizes; None: the data's size only
    formats: tuple[str, ...] = ("pte", "tflite")
    precisions: tuple[str, ...] = ("fp32", "int8")
    threads: tuple[int, ...] = (1,)
    skipped: list[str] = field(default_factory=list)  # default families whose model is not registered

    def __post_init__(self) -> None:
        from edgekd.formats import formats

        self.widths = _floats(self.widths, "width")
        self.depths = _floats(self.depths, "depth")
        self.resolutions = _floats(self.resolutions, "resolution")
        for what, values, known in (("format", self.formats, [f for f in formats() if f != "pt2"]),
                                    ("precision", self.precisions, list(PRECISIONS))):
            bad = [v for v in values if v not in known] or ([] if values else ["(none)"])
            if bad:
                raise ConfigError(f"unknown {what} {', '.join(map(repr, bad))}; known: {', '.join(known)}",
                                  stage=STAGE, hint=f"pass --{what}s as a comma list of {', '.join(known)}")
        if not self.threads or any(int(t) < 1 for t in self.threads):
            raise ConfigError(f"threads {self.threads} must be >= 1", stage=STAGE, hint="e.g. --threads 1,2")
        if any(int(r) < 1 for r in self.resolutions or ()):
            raise ConfigError(f"resolutions {self.resolutions} must be >= 1 pixel", stage=STAGE, hint="e.g. 20,28")

    def family_names(self) -> list[str]:

        if self.families is not None:
            if not self.families:
                raise ConfigError("no student family given", stage=STAGE,
                                  hint=f"e.g. --families {','.join(DEFAULT_FAMILIES)}")
            return list(self.families)
        names = [f for f in DEFAULT_FAMILIES if registered(f)]
        self.skipped = [f for f in DEFAULT_FAMILIES if f not in names]
        return names

    def archs(self, image_size: Sequence[int]) -> list[Arch]:
        """Every architecture, family by family (knob values in the order given)."""
        sizes: list[tuple[int, int] | None] = [None]
        if self.resolutions:
            own = tuple(int(s) for s in image_size)
            sizes = [None if (int(r), int(r)) == own else (int(r), int(r)) for r in self.resolutions]
        out: list[Arch] = []
        for name in self.family_names():
            fam = knobs_of(name)
            given = {"width": self.widths, "depth": self.depths}
            axes = [(fam.knobs[a], given[a] or fam.values.get(a, ())) for a in AXES if a in fam.knobs]
            axes = [(kw, vals) for kw, vals in axes if vals]
            for combo in itertools.product(*(vals for _, vals in axes)):
                kwargs = {**{kw: v for (kw, _), v in zip(axes, combo, strict=True)}}
                for size in dict.fromkeys(sizes):
                    out.append(Arch(name, fam.model, tuple(sorted(kwargs.items())), size))
        return list(dict.fromkeys(out))

    def deploys(self) -> list[Deploy]:
        return [Deploy(f, p, int(t)) for f in self.formats for p in self.precisions for t in self.threads]

    def describe(self) -> dict[str, Any]:
        return {"families": self.family_names(), "skipped_families": self.skipped, "widths": self.widths,
                "depths": self.depths, "resolutions": self.resolutions, "formats": list(self.formats),
                "precisions": list(self.precisions), "threads": [int(t) for t in self.threads]}
