"""Settings declared once, as dataclass fields: their annotations and help text drive the YAML check
and the command-line flags, so a setting cannot exist in one place and be missing from the other.

::

    @dataclass
    class LoopSettings:
        epochs: int = setting(10, "training epochs")
        lr: float | None = setting(None, "peak learning rate")

    check(LoopSettings, "epochs", "ten", "run.yaml")   # ConfigError: run.yaml: epochs is 'ten' (str), expected int
    add_flags(parser, LoopSettings)                   # --epochs INT, --lr FLOAT (default None: "not given")

A field without help text (made with plain ``field``/a default) is internal: neither a YAML key nor a flag.
Only plain data types are supported (``int``, ``float``, ``str``, ``bool``, optionally ``| None``); a
field of another type names its command-line parser in ``setting(..., parse=...)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgekd.errors import ConfigError

HELP = "help"


def setting(default: Any = dataclasses.MISSING, help: str = "", *, choices: Sequence[str] | None = None,
            parse: Callable[[str], Any] | None = None, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that is also a YAML key and a ``--flag`` (see the module docstring)."""
    meta = {HELP: help, "choices": tuple(choices) if choices else None, "parse": parse}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def settings(cls: type) -> list[dataclasses.Field[Any]]:
    """The user-facing fields of a settings dataclass (those with help text): a subclass's own before those
    it inherits (a run's model and data before the loop's epochs), each class's in declaration order."""
    mro = cls.__mro__

    def depth(f: dataclasses.Field[Any]) -> int:
        return next(i for i, c in enumerate(mro) if f.name in c.__dict__.get("__annotations__", {}))

    return sorted((f for f in dataclasses.fields(cls) if f.metadata.get(HELP)), key=depth)


def names(cls: type) -> list[str]:
    """The YAML keys / flag names (``snake_case``) of :func:`settings`."""
    return [f.name for f in settings(cls)]


def _base(cls: type, name: str) -> tuple[tuple[type, ...], bool]:
    """The plain types a field accepts, and whether it accepts None."""
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    kinds = tuple(a for a in args if a is not type(None))
    return kinds, len(kinds) < len(args)


def check(cls: type, name: str, value: Any, source: str, stage: str = "config") -> Any:
    """``value`` for field ``name`` of ``cls`` as read from a file: checked against its annotation
    (an int is a fine float, a bool is not an int) or a :class:`ConfigError` naming the key and the type."""
    kinds, optional = _base(cls, name)
    if value is None and optional:
        return None
    ok = [k for k in kinds if isinstance(value, k) and (k is bool or not isinstance(value, bool))]
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if ok:
        return value
    want = " or ".join(["int", "float"] if float in kinds else [k.__name__ for k in kinds])
    example = "1" if int in kinds or float in kinds else "true" if bool in kinds else "name"
    raise ConfigError(f"{source}: {name} is {value!r} ({type(value).__name__}), expected {want}", stage=stage,
                      hint=f"write e.g. `{name}: {example}`")


def add_flags(parser: argparse.ArgumentParser | Any, cls: type, *, only: Sequence[str] | None = None,
              skip: Sequence[str] = (), help: dict[str, str] | None = None) -> None:
    """Add ``--flag`` for every setting of ``cls`` (``only`` those, minus ``skip``). Defaults are None,
    meaning "not given": the dataclass (or a YAML file) decides, and the help shows the dataclass default.
    ``help`` replaces a field's help text where the command line says more (e.g. a comma list)."""
    for f in settings(cls):
        if (only is not None and f.name not in only) or f.name in skip:
            continue
        kinds, _ = _base(cls, f.name)
        parse = f.metadata.get("parse") or (kinds[0] if kinds and kinds[0] in (int, float, str) else str)
        default = f.default if f.default is not dataclasses.MISSING else None
        text = (help or {}).get(f.name, f.metadata[HELP])
        text += f" (default: {default})" if default is not None else ""
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=parse, default=None,
                            choices=f.metadata.get("choices"), help=text,
                            metavar=None if f.metadata.get("choices") else f.name.upper())


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The settings of ``cls`` that ``args`` holds (None where a flag was not given)."""
    return {n: getattr(args, n) for n in names(cls) if hasattr(args, n)}


# -- the run settings, declared once ----------------------------------------------------------------
@dataclass
class MethodTerm:
    """One weighted loss of the objective, with its constructor options (e.g. ``{"T": 4}``)."""

    name: str
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)


#: The method ``distill()``, ``edgekd distill`` and a run file use when none is given: cross-entropy plus KD
#: on standardized logits (logit standardization, T = 2, weight 9: Sun et al.'s recipe). Plain ``"ce+kd"`` at
#: T = 4 lost to the student alone from a confident teacher trained elsewhere (benchmarks/external_teacher.py);
#: this one did not, there or with few labels (RESULTS.md).
DEFAULT_METHOD = "ce + kd:9(ls)"
#: The method for sentence encoders (``distill()`` on text): MiniLM v2 attention relations + embedding MSE.
DEFAULT_TEXT_METHOD = "minilm_v2 + emb_mse"
#: The int8 calibration observers (:mod:`edgekd.quantization`); here so the CLI can offer them without torch.
OBSERVERS = ("histogram", "minmax", "histogram_torchao")


def default_method() -> list[MethodTerm]:
    """:data:`DEFAULT_METHOD` as terms."""
    return [MethodTerm("ce"), MethodTerm("kd", 9.0, {"std": True})]


@dataclass
class LoopSettings:
    """The loop settings a run file (:class:`RunSettings`) or a command-line flag sets;
    :class:`~edgekd.distillation.trainer.TrainConfig` (what the loop reads, ``distill()``'s keywords) adds
    what only code sets."""

    epochs: int = setting(10, "training epochs")
    batch_size: int = setting(128, "batch size (the global batch under torchrun)")
    lr: float | None = setting(None, "peak learning rate (None: 2e-3 for AdamW, 0.05 for SGD)")
    optimizer: str = setting("adamw", "adamw, or sgd (momentum 0.9, Nesterov)", choices=("adamw", "sgd"))
    weight_decay: float | None = setting(None, "weight decay (None: 1e-2 for AdamW, 5e-4 for SGD)")
    seed: int = setting(0, "seed of the initial weights, the data order and every random draw")
    labelled_per_batch: int = setting(
        0, "with a transfer set (unlabelled train images have y=-1): this many labelled images in every batch, "
        "drawn in turn, the rest unlabelled; an epoch is one pass over the unlabelled ones (0: plain batches)")
    val_every: int = setting(1, "validate (and update best.pt) every N epochs; the last epoch always is")
    device: str = setting("cpu", "torch device: cpu, cuda, cuda:1, ...")
    num_workers: int | None = setting(
        None, "DataLoader worker processes that decode and augment images (default: 0 for in-memory data sets, "
        "else the CPU count, at most 8)")


@dataclass
class RunSettings(LoopSettings):
    """A whole run as plain data: the models, the data, the method, where to write, and the loop settings.
    The YAML keys and the ``edgekd train``/``distill`` flags; :class:`~edgekd.distillation.config.DistillConfig`
    checks them and runs them."""

    teacher: str | None = setting(None, "teacher checkpoint (model.pt from `edgekd train`)")
    student: str | None = setting(None, "student model name (`edgekd list models`)")
    data: str = setting("mnist5k", "data set name (`edgekd list datasets`), folder:PATH (one sub-folder of images "
                        "per class; train/ val/ test/ used when present) or csv:FILE (path,label rows)")
    data_root: str | None = setting(None, "folder holding the data set files, where it needs one")
    limit: int | None = setting(None, "use at most this many samples")
    image_size: int | None = setting(None, "model input size in pixels (image files: default 224, resized by the "
                                     "shorter side and centre-cropped; built-in sets: their own size)")
    augment: str | None = setting(
        None, "train-time augmentation: crop (random resized crop), flip, shift:N, joined with +, or none "
        "(default: crop+flip for image files, none for the built-in sets; never a mirror for digits)")
    channels: str | None = setting(None, "channel order images are converted to: RGB or GRAY (image files; default RGB)")
    mean: str | None = setting(None, "per-channel mean on the [0, 1] scale, e.g. 0.485,0.456,0.406 "
                               "(default: measured on a sample of the train split)")
    std: str | None = setting(None, "per-channel std on the [0, 1] scale, e.g. 0.229,0.224,0.225")
    method: list[MethodTerm] = setting(
        help=f"e.g. 'kd', 'ce+kd', 'ce:1 + kd:0.9 + crd:0.8' (`edgekd list methods`); default {DEFAULT_METHOD!r}",
        default_factory=default_method, parse=str)
    out: str | None = setting(None, "output folder (checkpoint.pt, model.pt)")
