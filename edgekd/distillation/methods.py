"""The method registry: distillation losses, how they compose, and the per-step context they read.

A method is a :class:`DistillLoss` subclass registered with ``@register_method("name")`` in one
file under ``edgekd/distillation/losses/`` (every module there is imported automatically). It declares
what it needs (``needs_teacher``, ``student_taps``/``teacher_taps`` as dotted module paths) and
turns a :class:`StepContext` into a scalar loss. Methods compose as weighted sums::

    "kd"                  -> [("kd", 1.0)]
    "ce+kd"               -> [("ce", 1.0), ("kd", 1.0)]
    "ce:1 + kd:0.9"       -> [("ce", 1.0), ("kd", 0.9)]

Options reach a loss's constructor either prefixed with its name (``kd_T=4.0``) or nested
(``kd={"T": 4.0}``); :func:`build_objective` checks both against the constructor's signature.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from edgekd.errors import ConfigError
from edgekd.registry import Registry

STAGE = "distill/method"


@dataclass
class StepContext:
    """Everything a loss may read at one training step (features keyed by tap path)."""

    student_logits: torch.Tensor
    teacher_logits: torch.Tensor | None
    targets: torch.Tensor
    indices: torch.Tensor | None = None  # positions in the train split (contrastive losses)
    student_features: dict[str, Any] = field(default_factory=dict)
    teacher_features: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    step: int = 0  # global optimiser step
    inputs: torch.Tensor | None = None


class DistillLoss(nn.Module):
    """Base class of every method. Subclasses set the class attributes and implement ``forward``.

    ``setup`` runs once, before the optimiser is built, on a probe batch: a loss that owns
    trainable adapters (whose shapes depend on feature widths) creates them there, and they are
    trained with the student.
    """

    needs_teacher: bool = True
    student_taps: Sequence[str] = ()
    teacher_taps: Sequence[str] = ()
    strategy: str = "offline"  # how networks train for this loss: a key of strategies.STRATEGIES

    def setup(self, ctx: StepContext, num_train: int) -> None:
        """Create shape-dependent submodules from a probe batch (default: nothing)."""

    def forward(self, ctx: StepContext) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


L = TypeVar("L", bound=type[DistillLoss])
METHODS: Registry[type[DistillLoss]] = Registry("method")


def register_method(name: str) -> Callable[[L], L]:
    """Class decorator: ``@register_method("kd") class KDLoss(DistillLoss): ...``."""
    return METHODS.register(name)  # type: ignore[return-value]


def methods() -> list[str]:
    """Names of every registered method."""
    return METHODS.names()


_TERM = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*(?::\s*(\S+?))?\s*$", re.IGNORECASE)


def _weight(name: str, raw: Any) -> float:
    try:
        w = float(raw)
    except (TypeError, ValueError):
        w = math.nan
    if not math.isfinite(w) or w < 0:
        raise ConfigError(f"weight {raw!r} of method {name!r} is not a finite number >= 0", stage=STAGE,
                          hint=f"write it as '{name}:0.9'")
    return w


def parse_method(spec: str | Sequence[tuple[str, float]] | Mapping[str, float]) -> list[tuple[str, float]]:
    """Parse ``"ce:1 + kd:0.9"`` (or a mapping / list of pairs) into ``[(name, weight), ...]``."""
    if isinstance(spec, str):
        pairs: list[tuple[str, Any]] = []
        for part in spec.split("+"):
            m = _TERM.match(part)
            if not m:
                raise ConfigError(f"cannot parse {part.strip()!r} in method {spec!r}", stage=STAGE,
                                  hint=f"write terms as 'name' or 'name:weight' joined by '+'; known: {', '.join(methods())}")
            pairs.append((m.group(1), 1.0 if m.group(2) is None else m.group(2)))
    else:
        pairs = list(spec.items()) if isinstance(spec, Mapping) else [tuple(p) for p in spec]
    out: list[tuple[str, float]] = []
    for name, raw in pairs:
        key = str(name).strip().lower()
        if key not in METHODS:
            raise ConfigError(f"unknown method {name!r}; known: {', '.join(methods())}", stage=STAGE,
                              hint="use one of the known names, e.g. 'ce+kd'")
        if any(key == k for k, _ in out):
            raise ConfigError(f"method {key!r} appears twice in {spec!r}", stage=STAGE,
                              hint="give each method once, with its weight")
        out.append((key, _weight(key, raw)))
    if not out:
        raise ConfigError("empty method", stage=STAGE, hint=f"name at least one of: {', '.join(methods())}")
    return out


def split_method_kwargs(names: Sequence[str], kwargs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Route ``kd_T=4.0`` / ``kd={"T": 4.0}`` to each named method's options."""
    routed: dict[str, dict[str, Any]] = {n: {} for n in names}
    for key, value in kwargs.items():
        if key in routed and isinstance(value, Mapping):
            routed[key].update(value)
            continue
        owner = max((n for n in names if key.startswith(n + "_")), key=len, default=None)
        if owner is None:
            raise ConfigError(f"option {key!r} belongs to no method in use ({', '.join(names)})", stage=STAGE,
                              hint="prefix a method option with its method name, e.g. kd_T=4.0, "
                                   "or pass kd={'T': 4.0}")
        routed[owner][key[len(owner) + 1:]] = value
    return routed


def _instantiate(name: str, options: dict[str, Any]) -> DistillLoss:
    cls = METHODS.get(name)
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ConfigError(f"method {name!r} has no option {', '.join(unknown)}", stage=STAGE,
                          hint=f"its options are: {', '.join(params) or '(none)'}, passed as {name}_<option>=...")
    return cls(**options)


class Objective(nn.Module):
    """A weighted sum of method losses; also owns their trainable adapters (``parameters()``)."""

    def __init__(self, terms: Sequence[tuple[str, float, DistillLoss]]) -> None:
        super().__init__()
        self.losses = nn.ModuleDict({name: loss for name, _, loss in terms})
        self.weights = {name: w for name, w, _ in terms}

    @property
    def needs_teacher(self) -> bool:
        return any(loss.needs_teacher for loss in self.losses.values())

    @property
    def student_taps(self) -> list[str]:
        return list(dict.fromkeys(t for loss in self.losses.values() for t in loss.student_taps))

    @property
    def teacher_taps(self) -> list[str]:
        return list(dict.fromkeys(t for loss in self.losses.values() for t in loss.teacher_taps))

    @property
    def spec(self) -> str:
        """The composition as a canonical string, e.g. ``"ce:1 + kd:0.9"``."""
        return " + ".join(f"{n}:{w:g}" for n, w in self.weights.items())

    def setup(self, ctx: StepContext, num_train: int) -> None:
        for loss in self.losses.values():
            loss.setup(ctx, num_train)

    def forward(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the weighted total and each term's *unweighted* value (detached)."""
        parts = {name: loss(ctx) for name, loss in self.losses.items()}
        total: torch.Tensor = sum(self.weights[n] * v for n, v in parts.items())  # type: ignore[assignment]
        return total, {n: v.detach() for n, v in parts.items()}


def build_objective(method: str | Sequence[tuple[str, float]] | Mapping[str, float] = "ce+kd",
                    **method_kwargs: Any) -> Objective:
    """Parse ``method``, route ``method_kwargs`` and instantiate each loss."""
    pairs = parse_method(method)
    routed = split_method_kwargs([n for n, _ in pairs], method_kwargs)
    return Objective([(n, w, _instantiate(n, routed[n])) for n, w in pairs])
