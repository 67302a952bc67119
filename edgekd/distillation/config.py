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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.data.core import DataSplits
from edgekd.distillation.methods import build_objective, format_term, parse_terms
from edgekd.errors import ConfigError
from edgekd.settings import DEFAULT_METHOD, LoopSettings, MethodTerm, RunSettings, names
from edgekd.settings import check as check_setting

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from edgekd.bundle import Bundle
    from edgekd.distillation import DistillResult

STAGE = "distill/config"


@dataclass
class DistillConfig(RunSettings):
    """A whole distillation run: the fields of :class:`~edgekd.settings.RunSettings` (the models, the data,
    the method and the loop settings: the YAML keys and the ``edgekd distill`` flags), checked and turned
    into ``distill()``'s keyword arguments (:meth:`distill_kwargs`)."""

    @property
    def spec(self) -> str:
        """The method as a string, e.g. ``"ce:1 + kd:0.9(ls)"``."""
        return " + ".join(format_term(t.name, t.weight, t.options) for t in self.method)

    def method_kwargs(self) -> dict[str, dict[str, Any]]:
        """Options per method, in the nested form :func:`~edgekd.distillation.distill` takes."""
        return {t.name: dict(t.options) for t in self.method if t.options}

    def distill_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`~edgekd.distillation.distill` (everything but the models and data):
        the method, the loop settings and the methods' options."""
        return {"method": [(t.name, t.weight) for t in self.method],
                **{n: getattr(self, n) for n in names(LoopSettings)}, **self.method_kwargs()}

    def override(self, **values: Any) -> DistillConfig:
        """A copy with every non-None value replaced (CLI flags over the file).

        A ``method`` string replaces the terms; options of methods that stay are kept.
        """
        given = {k: v for k, v in values.items() if v is not None}
        if isinstance(given.get("method"), str):
            kept = {t.name: t.options for t in self.method}
            given["method"] = [MethodTerm(n, w, {**kept.get(n, {}), **mods}) for n, w, mods in parse_terms(given["method"])]
        return check(dataclasses.replace(self, **given))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "config") -> DistillConfig:
        """Check a plain mapping (as from YAML) and build the config; errors name ``source``."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: top level is {type(raw).__name__}, not a mapping", stage=STAGE,
                              hint="write `key: value` lines (teacher, student, data, method, ...)")
        _no_unknown(raw, [*names(cls), "options", "taps"], source)
        values = {k: check_setting(cls, k, raw[k], source, STAGE) for k in names(cls) if k in raw and k != "method"}
        terms = _terms(raw.get("method", DEFAULT_METHOD), source)
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


@dataclass
class RunResult:
    """What :func:`run` trained and where it saved it (``model.pt``; ``model_peer<i>.pt`` for peers; the int8
    bundle lowered from the QAT graph when :func:`edgekd.edge.pipeline.run_edge` ran with QAT)."""

    result: DistillResult
    model_path: Path
    peer_paths: list[Path] = field(default_factory=list)
    bundle: Bundle | None = None
    data: DataSplits | None = field(default=None, repr=False)  # the splits it trained on (for a bundle after it)


def prepare(cfg: DistillConfig, *, peers: int = 1, augment: bool = False
            ) -> tuple[DataSplits, nn.Module | list[nn.Module] | None, nn.Module | list[nn.Module], dict[str, int]]:
    """Load a run's data and teacher checkpoint(s) and build its student(s): ``(splits, teacher, student,
    model kwargs)``. A comma list of teachers is an ensemble; the student's initial weights follow ``seed``."""
    import torch

    from edgekd import data as D
    from edgekd import models as M
    from edgekd.models.saved import load_model

    splits = D.load(cfg.data, **data_options(cfg))
    if augment and isinstance(splits.train, D.ArrayImages) and cfg.augment is None:
        from edgekd.data.augment import augmented

        splits = augmented(splits)  # shifts, and mirrors where that keeps the label
    kw = {"num_classes": splits.num_classes, "in_channels": splits.in_channels}
    paths = [p.strip() for p in (cfg.teacher or "").split(",") if p.strip()]
    teachers = [load_model(p)[0] for p in paths]
    teacher = teachers[0] if len(teachers) == 1 else (teachers or None)
    torch.manual_seed(cfg.seed)  # the student's initial weights follow the seed too
    student = [M.create(cfg.student, **kw) for _ in range(peers)] if peers > 1 else M.create(cfg.student, **kw)  # type: ignore[arg-type]
    return splits, teacher, student, kw


def data_options(cfg: RunSettings) -> dict[str, Any]:
    """:func:`edgekd.data.load`'s keyword arguments from a run's settings."""
    return {"root": cfg.data_root, "seed": cfg.seed, "limit": cfg.limit, "image_size": cfg.image_size,
            "augment": cfg.augment, "channels": cfg.channels, "mean": _floats(cfg.mean, "mean"),
            "std": _floats(cfg.std, "std"), "num_workers": cfg.num_workers}


def _floats(text: str | None, what: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what}={text!r} is not a comma list of numbers", stage=STAGE,
                          hint=f"e.g. --{what} 0.5,0.5,0.5") from None


def require(cfg: DistillConfig, *, peers: int = 1) -> None:
    """Raise naming every setting the run lacks: ``student``, ``out``, and ``teacher`` when the method needs one."""
    needs_teacher = peers == 1 and build_objective([(t.name, t.weight) for t in cfg.method]).needs_teacher
    required = ("teacher", "student", "out") if needs_teacher else ("student", "out")
    missing = [f"--{k}" for k in required if getattr(cfg, k) is None]
    if missing:
        raise ConfigError(f"distill needs {', '.join(missing)}", stage="cli/distill",
                          hint="pass them as flags, or set them in the --config YAML (teacher:, student:, out:)")


def run(cfg: DistillConfig, *, peers: int = 1, teacher_weights: Sequence[float] | None = None,
        cache_teacher: bool | None = None, resume: bool = False, progress: bool = True,
        augment: bool = False, **recipe: Any) -> RunResult:
    """Run a whole :class:`DistillConfig` (``edgekd train`` / ``edgekd distill``): load, distil, and save the
    student as ``cfg.out/model.pt`` (a self-describing checkpoint, :mod:`edgekd.models.saved`).

    ``peers`` > 1 trains that many students together (online methods), saved as ``model_peer<i>.pt`` too;
    ``augment`` trains a built-in data set on shifted (and, where a mirror keeps the label, mirrored) images
    (:mod:`edgekd.data.augment`); image files follow ``cfg.augment``. The checkpoint records the data set and
    its preprocessing, so ``edgekd export`` rebuilds the same inputs.

    ``recipe``: ``distill()``'s recipe options (``qat``, ``prune``, ``budget``, ``ft_epochs``, ``importance``,
    ``gradual``: the edge pipeline, :func:`edgekd.edge.pipeline.run_edge`), passed on as they are; the
    checkpoint then records the pruning ratio (its widths are in the saved model).
    """
    from edgekd.distillation import distill
    from edgekd.distillation.recipes import given
    from edgekd.models.saved import save_model

    require(cfg, peers=peers)
    edge = bool(given({k: recipe.get(k) for k in ("qat", "prune", "budget")}))
    if edge:
        _edge_settings(cfg, peers)
    splits, teacher, student, kw = prepare(cfg, peers=peers, augment=augment)
    out = Path(cfg.out)  # type: ignore[arg-type]  (require() checked it)
    extra: dict[str, Any] = {} if cache_teacher is None else {"cache_teacher": cache_teacher}
    settings = cfg.distill_kwargs()
    if edge:  # several stages, AdamW on the CPU (checked), no checkpoints of its own
        settings = {k: v for k, v in settings.items() if k not in ("optimizer", "device")}
    else:
        extra.update(out_dir=out, resume=resume, teacher_weights=teacher_weights)
    res = distill(teacher, student, splits, progress=progress, **settings, **extra, **recipe)
    meta = {"data": cfg.data, "metrics": res.metrics, "preprocessing": splits.preprocessing().to_dict(),
            "data_options": {k: v for k, v in data_options(cfg).items() if k in ("root", "limit", "channels")}}
    if edge:
        meta.update(prune_ratio=res.ratio, qat=bool(recipe.get("qat")))
    peer_paths = [save_model(m, out / f"model_peer{i}.pt", cfg.student, meta=meta, **kw)  # type: ignore[arg-type]
                  for i, m in enumerate(res.models)] if peers > 1 else []
    path = save_model(res.model, out / "model.pt", cfg.student, meta=meta, **kw)  # type: ignore[arg-type]
    return RunResult(res, path, peer_paths, data=splits)


def _edge_settings(cfg: DistillConfig, peers: int) -> None:
    """Refuse the settings the edge pipeline cannot honour, before any data is loaded."""
    unsupported = {k: v for k, v in (("optimizer", cfg.optimizer), ("device", cfg.device)) if v not in ("adamw", "cpu")}
    if unsupported:
        raise ConfigError(f"--qat/--prune/--budget train with AdamW on the CPU, but the config asks for {unsupported}",
                          stage="cli/distill", hint="remove optimizer/device from the config for the edge pipeline")
    if peers > 1 or "," in (cfg.teacher or ""):
        raise ConfigError("--qat/--prune/--budget distil one student from one teacher", stage="cli/distill",
                          hint="pass a single --teacher checkpoint and no --peers")


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
        return [MethodTerm(n, w, mods) for n, w, mods in parse_terms(value)]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{source}: method must be a string or a non-empty list, got {value!r}", stage=STAGE,
                          hint="write method: 'ce:1 + kd:0.9' or a list of {name, weight, options}")
    pairs, options = [], []
    for item in value:
        if isinstance(item, str):
            parsed = parse_terms(item)
            pairs += [(n, w) for n, w, _ in parsed]
            options += [mods for _, _, mods in parsed]
            continue
        entry = _mapping(item, "each method entry", source)
        _no_unknown(entry, ["name", "weight", "options"], f"{source}: method entry {entry.get('name', '?')!r}")
        if "name" not in entry:
            raise ConfigError(f"{source}: method entry {item!r} has no name", stage=STAGE,
                              hint="write {name: kd, weight: 0.9}")
        pairs.append((entry["name"], entry.get("weight", 1.0)))
        options.append(_mapping(entry.get("options"), f"options of {entry['name']}", source))
    return [MethodTerm(n, w, {**mods, **o}) for (n, w, mods), o in zip(parse_terms(pairs), options, strict=True)]


def _taps(name: str, value: Any, source: str) -> dict[str, Any]:
    entry = _mapping(value, f"taps.{name}", source)
    _no_unknown(entry, ["student", "teacher"], f"{source}: taps.{name}")
    return {f"{side}_taps": entry[side] for side in ("student", "teacher") if side in entry}
