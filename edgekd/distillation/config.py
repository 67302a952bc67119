"""Distillation runs as YAML: plain data (``yaml.safe_load``) checked into typed dataclasses.

::

    teacher: runs/teacher/model.pt      # checkpoint from `edgekd train`
    student: resnet8                    # `edgekd list models`
    data: digits                        # `edgekd list datasets`; data_root, limit, seed
    method:                             # or one string: "ce:1 + kd:0.9 + crd:0.8"
      - {name: ce, weight: 1.0}
      - {name: kd, weight: 0.9, options: {T: 4}}
      - {name: crd, weight: 0.8, options: {k: 4096}}
    taps:                               # optional: per-method tap overrides
      fitnet: {student: [layer2], teacher: [layer2]}
    epochs: 10
    lr: 0.002
    out: runs/kd

``edgekd distill --config run.yaml`` runs it (flags given on the command line win); from Python::

    cfg = load_config("run.yaml")
    distill(teacher, student, data, **cfg.distill_kwargs())

Unknown keys, unknown methods, negative weights and options a loss does not take are
:class:`~edgekd.errors.ConfigError` naming the file, the key and what is allowed. Paths are
relative to the working directory. Nothing in the file is executed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.distillation.methods import build_objective, parse_method
from edgekd.errors import ConfigError

STAGE = "distill/config"


@dataclass
class MethodTerm:
    """One weighted loss of the objective, with its constructor options (e.g. ``{"T": 4}``)."""

    name: str
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)


def _default_method() -> list[MethodTerm]:
    return [MethodTerm("ce"), MethodTerm("kd")]


@dataclass
class DistillConfig:
    """A whole distillation run. ``teacher`` is a checkpoint path, ``student`` a model name."""

    teacher: str | None = None
    student: str | None = None
    data: str = "mnist5k"
    data_root: str | None = None
    limit: int | None = None
    seed: int = 0
    method: list[MethodTerm] = field(default_factory=_default_method)
    epochs: int = 10
    batch_size: int = 128
    lr: float | None = None
    optimizer: str = "adamw"
    weight_decay: float | None = None
    device: str = "cpu"
    out: str | None = None

    @property
    def spec(self) -> str:
        """The method as a string, e.g. ``"ce:1 + kd:0.9"``."""
        return " + ".join(f"{t.name}:{t.weight:g}" for t in self.method)

    def method_kwargs(self) -> dict[str, dict[str, Any]]:
        """Options per method, in the nested form :func:`~edgekd.distillation.distill` takes."""
        return {t.name: dict(t.options) for t in self.method if t.options}

    def distill_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`~edgekd.distillation.distill` (everything but the models and data)."""
        return {"method": [(t.name, t.weight) for t in self.method], "epochs": self.epochs,
                "batch_size": self.batch_size, "lr": self.lr, "optimizer": self.optimizer,
                "weight_decay": self.weight_decay, "seed": self.seed, "device": self.device,
                **self.method_kwargs()}

    def override(self, **values: Any) -> DistillConfig:
        """A copy with every non-None value replaced (CLI flags over the file).

        A ``method`` string replaces the terms; options of methods that stay are kept.
        """
        given = {k: v for k, v in values.items() if v is not None}
        if isinstance(given.get("method"), str):
            kept = {t.name: t.options for t in self.method}
            given["method"] = [MethodTerm(n, w, dict(kept.get(n, {}))) for n, w in parse_method(given["method"])]
        return check(dataclasses.replace(self, **given))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "config") -> DistillConfig:
        """Check a plain mapping (as from YAML) and build the config; errors name ``source``."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: top level is {type(raw).__name__}, not a mapping", stage=STAGE,
                              hint="write `key: value` lines (teacher, student, data, method, ...)")
        _no_unknown(raw, [f.name for f in dataclasses.fields(cls)] + ["options", "taps"], source)
        values = {f.name: _typed(f.name, raw[f.name], source) for f in dataclasses.fields(cls)
                  if f.name in raw and f.name != "method"}
        terms = _terms(raw.get("method", "ce+kd"), source)
        by_name = {t.name: t for t in terms}
        for key in ("options", "taps"):
            section = raw.get(key) or {}
            if not isinstance(section, Mapping):
                raise ConfigError(f"{source}: {key} must map method names to settings", stage=STAGE,
                                  hint=f"e.g. {key}: {{fitnet: {{...}}}}")
            for name, opts in section.items():
                if name not in by_name:
                    raise ConfigError(f"{source}: {key}.{name} names a method not in use "
                                      f"({', '.join(by_name)})", stage=STAGE, hint=f"add {name} to method, or drop it")
                by_name[name].options.update(_taps(name, opts, source) if key == "taps" else _mapping(opts, f"{key}.{name}", source))
        return check(cls(**values, method=terms), source)


def load_config(path: str | Path) -> DistillConfig:
    """Read a YAML file (plain data only) into a checked :class:`DistillConfig`."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist", stage=STAGE, hint="pass --config PATH to a YAML file")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {e}", stage=STAGE,
                          hint="plain YAML only (no !tags); see examples/*.yaml") from None
    return DistillConfig.from_dict(raw or {}, source=str(p))


def check(cfg: DistillConfig, source: str = "config") -> DistillConfig:
    """Validate the method and its options by building the objective (cheap: no adapters yet)."""
    try:
        build_objective([(t.name, t.weight) for t in cfg.method], **cfg.method_kwargs())
    except ConfigError as e:
        raise ConfigError(f"{source}: {e.message}", stage=e.stage, hint=e.hint) from None
    return cfg


# -- parsing helpers -------------------------------------------------------------------------------
_TYPES: dict[str, tuple[type, ...]] = {
    "teacher": (str,), "student": (str,), "data": (str,), "data_root": (str,), "limit": (int,), "seed": (int,),
    "epochs": (int,), "batch_size": (int,), "lr": (int, float), "optimizer": (str,),
    "weight_decay": (int, float), "device": (str,), "out": (str,),
}


def _typed(key: str, value: Any, source: str) -> Any:
    kinds = _TYPES[key]
    if value is None or (isinstance(value, kinds) and not isinstance(value, bool)):
        return float(value) if float in kinds and value is not None else value
    names = " or ".join(k.__name__ for k in kinds)
    raise ConfigError(f"{source}: {key} is {value!r} ({type(value).__name__}), expected {names}", stage=STAGE,
                      hint=f"write e.g. `{key}: {'1' if int in kinds else 'name'}`")


def _no_unknown(raw: Mapping[str, Any], known: list[str], where: str) -> None:
    unknown = [str(k) for k in raw if k not in known]
    if unknown:
        raise ConfigError(f"{where}: unknown key {', '.join(map(repr, unknown))}; known keys: {', '.join(known)}",
                          stage=STAGE, hint="fix the spelling or remove the key")


def _mapping(value: Any, what: str, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: {what} must be a mapping, got {value!r}", stage=STAGE,
                          hint="write options as `{T: 4}`")
    return {str(k): v for k, v in value.items()}


def _terms(value: Any, source: str) -> list[MethodTerm]:
    """``"ce:1 + kd:0.9"`` or a list of ``"kd:0.9"`` / ``{name, weight, options}`` items."""
    if isinstance(value, str):
        return [MethodTerm(n, w) for n, w in parse_method(value)]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{source}: method must be a string or a non-empty list, got {value!r}", stage=STAGE,
                          hint="write method: 'ce:1 + kd:0.9' or a list of {name, weight, options}")
    pairs, options = [], []
    for item in value:
        if isinstance(item, str):
            parsed = parse_method(item)
            pairs += parsed
            options += [{} for _ in parsed]
            continue
        entry = _mapping(item, "each method entry", source)
        _no_unknown(entry, ["name", "weight", "options"], f"{source}: method entry {entry.get('name', '?')!r}")
        if "name" not in entry:
            raise ConfigError(f"{source}: method entry {item!r} has no name", stage=STAGE,
                              hint="write {name: kd, weight: 0.9}")
        pairs.append((entry["name"], entry.get("weight", 1.0)))
        options.append(_mapping(entry.get("options"), f"options of {entry['name']}", source))
    return [MethodTerm(n, w, o) for (n, w), o in zip(parse_method(pairs), options, strict=True)]


def _taps(name: str, value: Any, source: str) -> dict[str, Any]:
    entry = _mapping(value, f"taps.{name}", source)
    _no_unknown(entry, ["student", "teacher"], f"{source}: taps.{name}")
    return {f"{side}_taps": entry[side] for side in ("student", "teacher") if side in entry}
