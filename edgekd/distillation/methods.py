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
A *modifier* in parentheses after a term sets one option by a short registered name:
``"ce + kd:9(ls)"`` is ``kd`` with ``kd_std=True`` (logit standardization,
:mod:`edgekd.distillation.losses.logit_std`); :func:`modifiers` lists them.

A loss that reads augmented copies of the batch names them in ``views`` (MLKD's ``("strong",)``):
the strategy makes each view from the batch on the tensor path (:data:`edgekd.data.augment.VIEWS`),
runs the student and the teacher (live: a cached teacher saw only the plain batch) on it, and puts
``(student logits, teacher logits)`` in :attr:`StepContext.views`.
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
from edgekd.settings import DEFAULT_METHOD

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
    views: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = field(default_factory=dict)  # name -> (s, t)


class DistillLoss(nn.Module):
    """Base class of every method. Subclasses set the class attributes and implement ``forward``.

    ``setup`` runs once, before the optimiser is built, on a probe batch: a loss that owns
    trainable adapters (whose shapes depend on feature widths) creates them there, and they are
    trained with the student.
    """

    needs_teacher: bool = True
    student_taps: Sequence[str] = ()
    teacher_taps: Sequence[str] = ()
    views: Sequence[str] = ()  # augmented views of the batch it reads (keys of edgekd.data.augment.VIEWS)
    strategy: str = "offline"  # how networks train for this loss: a key of strategies.STRATEGIES

    def setup(self, ctx: StepContext, num_train: int) -> None:
        """Create shape-dependent submodules from a probe batch (default: nothing)."""

    def forward(self, ctx: StepContext) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def linear_ramp(epoch: int, warmup: int) -> float:
    """A term's warm-up factor at 0-based ``epoch``: ``min((epoch + 1) / warmup, 1)``, 1 when ``warmup`` is 0
    (mdistiller's ``min(epoch / warmup, 1)`` with epochs counted from 1: DKD, ReviewKD, and edgekd's
    ``warmup`` options of AT and the online methods)."""
    return 1.0 if warmup <= 0 else min((epoch + 1) / warmup, 1.0)


L = TypeVar("L", bound=type[DistillLoss])
METHODS: Registry[type[DistillLoss]] = Registry("method")


def register_method(name: str) -> Callable[[L], L]:
    """Class decorator: ``@register_method("kd") class KDLoss(DistillLoss): ...``."""
    return METHODS.register(name)  # type: ignore[return-value]


def methods() -> list[str]:
    """Names of every registered method."""
    return METHODS.names()


@dataclass(frozen=True)
class Modifier:
    """A short tag after a term that sets one constructor option: ``kd:9(ls)`` is ``kd`` with ``std=True``."""

    name: str
    option: str
    value: Any = True
    doc: str = ""


MODIFIERS: Registry[Modifier] = Registry("modifier")


def register_modifier(name: str, option: str, value: Any = True, doc: str = "") -> Modifier:
    """Register ``(name)`` as shorthand for the option ``option=value`` of any loss that takes it."""
    mod = Modifier(name.lower(), option, value, doc)
    MODIFIERS.register(mod.name)(mod)
    return mod


def modifiers() -> list[str]:
    """Names of every registered modifier, with the option each sets (``ls: std=True``)."""
    return [f"{n}: {MODIFIERS.get(n).option}={MODIFIERS.get(n).value!r}" for n in MODIFIERS.names()]


_TERM = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*(?::\s*([^\s()]+))?\s*(?:\(([^()]*)\))?\s*$", re.IGNORECASE)
_NAME = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*(?:\(([^()]*)\))?\s*$", re.IGNORECASE)


def _weight(name: str, raw: Any) -> float:
    try:
        w = float(raw)
    except (TypeError, ValueError):
        w = math.nan
    if not math.isfinite(w) or w < 0:
        raise ConfigError(f"weight {raw!r} of method {name!r} is not a finite number >= 0", stage=STAGE,
                          hint=f"write it as '{name}:0.9'")
    return w


def _modifier_options(name: str, raw: str | None, spec: Any) -> dict[str, Any]:
    """The options the modifiers ``raw`` (``"ls"``, ``"ls, x"``) of term ``name`` set."""
    options: dict[str, Any] = {}
    for tag in (t.strip().lower() for t in (raw or "").split(",")):
        if not tag:
            continue
        if tag not in MODIFIERS:
            raise ConfigError(f"unknown modifier ({tag}) of {name!r} in method {spec!r}; known: "
                              f"{', '.join(MODIFIERS.names()) or '(none)'}", stage=STAGE,
                              hint="write e.g. 'ce + kd:9(ls)' (ls: logit standardization)")
        mod = MODIFIERS.get(tag)
        options[mod.option] = mod.value
    return options


def parse_terms(spec: str | Sequence[tuple[str, float]] | Mapping[str, float]
                ) -> list[tuple[str, float, dict[str, Any]]]:
    """Parse ``"ce:1 + kd:9(ls)"`` (or a mapping / list of pairs) into ``[(name, weight, options), ...]``:
    the options are what the term's modifiers set (``{"std": True}`` for ``(ls)``)."""
    triples: list[tuple[str, Any, str | None]] = []
    if isinstance(spec, str):
        for part in spec.split("+"):
            m = _TERM.match(part)
            if not m:
                raise ConfigError(f"cannot parse {part.strip()!r} in method {spec!r}", stage=STAGE,
                                  hint=f"write terms as 'name', 'name:weight' or 'name:weight(modifier)' joined "
                                       f"by '+'; known: {', '.join(methods())}")
            triples.append((m.group(1), 1.0 if m.group(2) is None else m.group(2), m.group(3)))
    else:
        for name, raw in (list(spec.items()) if isinstance(spec, Mapping) else [tuple(p) for p in spec]):
            m = _NAME.match(str(name))
            triples.append((m.group(1), raw, m.group(2)) if m else (str(name), raw, None))
    out: list[tuple[str, float, dict[str, Any]]] = []
    for name, raw, mods in triples:
        key = str(name).strip().lower()
        if key not in METHODS:
            raise ConfigError(f"unknown method {name!r}; known: {', '.join(methods())}", stage=STAGE,
                              hint="use one of the known names, e.g. 'ce+kd'")
        if any(key == k for k, _, _ in out):
            raise ConfigError(f"method {key!r} appears twice in {spec!r}", stage=STAGE,
                              hint="give each method once, with its weight")
        out.append((key, _weight(key, raw), _modifier_options(key, mods, spec)))
    if not out:
        raise ConfigError("empty method", stage=STAGE, hint=f"name at least one of: {', '.join(methods())}")
    return out


def parse_method(spec: str | Sequence[tuple[str, float]] | Mapping[str, float]) -> list[tuple[str, float]]:
    """Parse ``"ce:1 + kd:0.9"`` (or a mapping / list of pairs) into ``[(name, weight), ...]``
    (a term's modifiers are options: :func:`parse_terms` returns them too)."""
    return [(n, w) for n, w, _ in parse_terms(spec)]


def format_term(name: str, weight: float, options: Mapping[str, Any]) -> str:
    """``"kd:9(ls)"``: a term as :func:`parse_terms` reads it, with the modifiers its ``options`` match."""
    tags = [n for n in MODIFIERS.names() if MODIFIERS.get(n).option in options
            and options[MODIFIERS.get(n).option] == MODIFIERS.get(n).value]
    return f"{name}:{weight:g}" + (f"({','.join(tags)})" if tags else "")


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


def _instantiate(name: str, options: dict[str, Any], from_modifiers: Mapping[str, Any] | None = None) -> DistillLoss:
    cls = METHODS.get(name)
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    mods = dict(from_modifiers or {})
    for option in sorted(set(mods) - set(params)):
        tags = [n for n in MODIFIERS.names() if MODIFIERS.get(n).option == option]
        takers = [m for m in methods() if option in inspect.signature(METHODS.get(m).__init__).parameters]
        raise ConfigError(f"modifier ({', '.join(tags)}) does not apply to {name!r}: it sets {option}, an option "
                          f"only {', '.join(takers)} take", stage=STAGE, hint=f"drop it from {name!r}")
    clash = sorted(k for k in set(mods) & set(options) if options[k] != mods[k])
    if clash:
        raise ConfigError(f"method {name!r}: its modifier sets {', '.join(f'{k}={mods[k]!r}' for k in clash)} but "
                          f"the options say {', '.join(f'{k}={options[k]!r}' for k in clash)}", stage=STAGE,
                          hint="give each setting once")
    options = {**mods, **options}
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
    def views(self) -> list[str]:
        """The augmented views any term reads (:attr:`DistillLoss.views`)."""
        return list(dict.fromkeys(v for loss in self.losses.values() for v in loss.views))

    @property
    def spec(self) -> str:
        """The composition as a canonical string, e.g. ``"ce:1 + kd:0.9(ls)"``."""
        def options(loss: DistillLoss) -> dict[str, Any]:
            return {m.option: getattr(loss, m.option) for m in map(MODIFIERS.get, MODIFIERS.names())
                    if hasattr(loss, m.option)}

        return " + ".join(format_term(n, w, options(self.losses[n])) for n, w in self.weights.items())

    def setup(self, ctx: StepContext, num_train: int) -> None:
        for loss in self.losses.values():
            loss.setup(ctx, num_train)

    def forward(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the weighted total and each term's *unweighted* value (detached)."""
        parts = {name: loss(ctx) for name, loss in self.losses.items()}
        total: torch.Tensor = sum(self.weights[n] * v for n, v in parts.items())  # type: ignore[assignment]
        return total, {n: v.detach() for n, v in parts.items()}


def build_objective(method: str | Sequence[tuple[str, float]] | Mapping[str, float] = DEFAULT_METHOD,
                    **method_kwargs: Any) -> Objective:
    """Parse ``method``, route ``method_kwargs`` and instantiate each loss."""
    terms = parse_terms(method)
    routed = split_method_kwargs([n for n, _, _ in terms], method_kwargs)
    return Objective([(n, w, _instantiate(n, routed[n], mods)) for n, w, mods in terms])
