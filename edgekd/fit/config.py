"""The settings of ``edgekd.fit`` / ``edgekd fit``, declared once: the keyword arguments and the CLI flags.

Axis settings take a comma list on the command line and a list (or the same comma text) from Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgekd.errors import ConfigError
from edgekd.settings import setting

STAGE = "fit/config"


def _items(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, int | float):
        return [value]
    return list(value)


def axis(cast: Callable[[Any], Any], what: str) -> Callable[[Any], tuple[Any, ...] | None]:
    """A parser of a comma list (or a sequence) into a tuple of ``cast`` values; None stays None."""

    def parse(value: Any) -> tuple[Any, ...] | None:
        if value is None:
            return None
        try:
            return tuple(cast(v) for v in _items(value))
        except (TypeError, ValueError):
            raise ConfigError(f"cannot read {what} {value!r}", stage=STAGE,
                              hint=f"write a comma list of {what}, e.g. "
                                   f"{'0.5,1' if cast is float else '1,2' if cast is int else 'a,b'}") from None

    parse.__name__ = f"{what}_list"
    return parse


texts, floats, ints = axis(str, "names"), axis(float, "numbers"), axis(int, "integers")


@dataclass
class FitSettings:
    """What :func:`edgekd.fit` searches, how it measures and how it trains."""

    target: tuple[str, ...] = setting("local", "where to measure: local, ssh://user@host, adb://SERIAL; a comma "
                                      "list measures every candidate on all of them in parallel", parse=texts)
    budget: tuple[str, ...] | None = setting(None, "what the student must meet: latency_ms=X (p50 on the slowest "
                                             "target), bytes=N[KB|MB] (file), params=N[k|m]; a comma list: all",
                                             parse=texts)
    families: tuple[str, ...] | None = setting(None, "student families (resnet, resnet_plain, mobilenetv2, tv:…) or "
                                               "registered model names (default: the zoo's and torchvision's "
                                               "where present)", parse=texts)
    widths: tuple[float, ...] | None = setting(None, "width multipliers (default: each family's own)", parse=floats)
    depths: tuple[int, ...] | None = setting(None, "depths, for families that have one (default: each family's)",
                                             parse=ints)
    resolutions: tuple[int, ...] | None = setting(None, "square input sizes the student may take (default: the "
                                                  "data's size only; the images are resized for it)", parse=ints)
    formats: tuple[str, ...] = setting("pte,tflite", "file formats", parse=texts)
    precisions: tuple[str, ...] = setting("fp32,int8", "precisions", parse=texts)
    threads: tuple[int, ...] = setting("1", "runtime threads", parse=ints)
    modules: tuple[str, ...] = setting("", "Python modules or .py files to import first: their "
                                       "@register_model students become families", parse=texts)
    require: str | None = setting(None, "more gates, as edgekd bench --require (e.g. peak_mem_mb<=20,accuracy>=0.9): "
                                  "applied to every candidate's measurement, and to the final benchmark")
    proxies: int = setting(6, "candidates on or near the measured front that get a proxy run")
    proxy_epochs: int = setting(1, "epochs of each proxy run")
    proxy_limit: int | None = setting(None, "proxy runs train on at most this many train images (default: all)")
    epochs: int = setting(10, "epochs of the chosen student's full distillation")
    ft_epochs: int = setting(2, "with --qat/--prune: epochs of the KD + QAT (or fine-tune) stage after pruning")
    prune: float | None = setting(None, "prune this fraction of each block's inner channels during the full run")
    method: str = setting("ce+kd", "distillation method of the proxies and the full run (`edgekd list methods`)")
    batch_size: int = setting(128, "batch size")
    lr: float | None = setting(None, "peak learning rate (default: AdamW's 2e-3)")
    seed: int = setting(0, "seed of the data split, the initial weights and the data order")
    runs: int = setting(100, "timed runs per measurement")
    warmup: int = setting(10, "untimed runs before timing")
    retries: int = setting(3, "an unstable measurement is repeated this many times; its p50s must agree")
    agree: float = setting(0.05, "how close (relative range) the repeated p50s of an unstable candidate must be")
    runner: str = setting("auto", "device runner: auto, python or native", choices=("auto", "python", "native"))
    timing_lock: str | None = setting(None, "hold an exclusive lock on this file while measuring, so fits and other "
                                      "timing runs on this host sharing it measure one at a time")
    table: str | None = setting(None, "the latency table (default: $EDGEKD_CACHE_DIR or ~/.cache/edgekd/fit.sqlite)")
    data_root: str | None = setting(None, "folder holding the data set files, where it needs one")
    out: str = setting("fit", "output folder: fit.json, the student, its bundle, the final benchmark, the report")

    def __post_init__(self) -> None:
        from edgekd.settings import settings

        for f in settings(type(self)):
            parse = f.metadata.get("parse")
            if parse is not None:
                setattr(self, f.name, parse(getattr(self, f.name)) if getattr(self, f.name) is not None else None)
        for name in ("proxies", "proxy_epochs", "epochs", "runs", "retries"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1", stage=STAGE)
        if not self.target:
            raise ConfigError("no target given", stage=STAGE, hint="pass target='local' (or ssh://, adb://)")


def settings_of(kwargs: dict[str, Any]) -> tuple[FitSettings, dict[str, Any]]:
    """``(settings, the rest)`` from keyword arguments; a near miss of a setting's name is an error."""
    import difflib

    from edgekd.settings import names

    known = names(FitSettings)
    mine = {k: v for k, v in kwargs.items() if k in known}
    rest = {k: v for k, v in kwargs.items() if k not in known}
    for k in rest:
        close = difflib.get_close_matches(k, known, n=1)
        if close:
            raise ConfigError(f"unknown fit setting {k!r}; did you mean {close[0]!r}?", stage=STAGE,
                              hint=f"the settings are: {', '.join(known)}")
    return FitSettings(**mine), rest
