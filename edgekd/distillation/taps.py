"""Record intermediate module outputs by dotted path through forward hooks (models stay unedited).

::

    with Taps(student, ["layer3", "fc"]) as taps:
        logits = student(x)
        feats = taps["layer3"]          # the output of student.layer3 in that forward pass

Each forward pass overwrites the previous record; the hooks are removed when the block exits,
even on error.

``"<path>@prerelu"`` records the *pre-activation* output of ``path`` instead: the input of the
last ``nn.ReLU`` called inside it, which must be what ``path`` returns (e.g. ``"layer3@prerelu"``
of a ResNet: the last block's ``bn2(conv2(·)) + shortcut`` before its ReLU, the features of Heo et
al.'s margin loss). The input is cloned before an in-place ReLU overwrites it, and gradients flow
through it. A module that does not end in a ReLU is a clear error on the first forward pass.
``"<path>@input"`` records the module's (first) input instead of its output (e.g. ``"fc@input"``:
the pooled embedding a classifier reads, where the pooling is a function call, not a module), and
``"<path>@avg"`` its output averaged over H×W (an N×C×H×W map → N×C).

Symbolic taps resolve through the model's family contract (:mod:`edgekd.models.contract`):
``"stage:-2"`` (the second deepest stage), ``"stage:-1@prerelu"``, ``"embedding"`` (the pooled
feature the classifier reads). The output is recorded under the name asked for, so a loss that
asks for ``"stage:-2"`` reads ``taps["stage:-2"]`` whatever module that is in this model.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from edgekd.errors import ConfigError
from edgekd.models.contract import is_symbolic, nearby_modules, resolve_tap

PRERELU = "@prerelu"
INPUT = "@input"
AVG = "@avg"
SUFFIXES = (PRERELU, INPUT, AVG)


def _split(tap: str) -> tuple[str, str]:
    """``"layer3@prerelu"`` → ``("layer3", "@prerelu")``; a path without a known suffix → ``(path, "")``."""
    for suffix in SUFFIXES:
        if tap.endswith(suffix):
            return tap[: -len(suffix)], suffix
    return tap, ""


class Taps:
    """Context manager that keeps the latest output (or pre-ReLU output) of each named module."""

    def __init__(self, model: nn.Module, paths: Sequence[str]) -> None:
        modules = dict(model.named_modules())
        self.model = model
        self.paths = list(dict.fromkeys(paths))
        #: tap as asked for -> the concrete ``path[@suffix]`` it records in this model
        self.resolved = {tap: resolve_tap(model, tap) if is_symbolic(tap) and _split(tap)[0] not in modules else tap
                         for tap in self.paths}  # a module literally named so (an ensemble's mirror) wins
        for tap, concrete in self.resolved.items():
            path, _ = _split(concrete)
            if path not in modules:
                shown = path if tap == concrete else f"{path} (from {tap!r})"
                raise ConfigError(f"{type(model).__name__} has no module {shown!r}; {nearby_modules(model, path)}",
                                  stage="distill/taps", hint="name a module by its dotted path from model.named_modules()")
        self._modules = {tap: modules[_split(c)[0]] for tap, c in self.resolved.items()}
        for tap, module in self._modules.items():
            if _split(self.resolved[tap])[1] == PRERELU and not any(isinstance(m, nn.ReLU) for m in module.modules()):
                raise ConfigError(f"{tap!r}: {type(module).__name__} at {_split(self.resolved[tap])[0]!r} has no "
                                  "nn.ReLU inside", stage="distill/taps",
                                  hint="tap a stage or block that ends in an nn.ReLU module")
        self._handles: list[RemovableHandle] = []
        self.outputs: dict[str, Any] = {}

    def __enter__(self) -> Taps:
        for path, module in self._modules.items():
            suffix = _split(self.resolved[path])[1]
            if suffix == PRERELU:
                self._prerelu(path, module)
            elif suffix == INPUT:
                self._handles.append(module.register_forward_pre_hook(self._input_recorder(path)))
            else:
                self._handles.append(module.register_forward_hook(self._recorder(path, pool=suffix == AVG)))
        return self

    def _prerelu(self, tap: str, module: nn.Module) -> None:
        """Hooks for ``tap`` = ``path@prerelu``: every ReLU inside keeps a clone of its input and
        its output; ``path``'s own hook checks that its output is the last ReLU's."""
        relus = [m for m in module.modules() if isinstance(m, nn.ReLU)]
        last: dict[str, Any] = {}

        def before(_m: nn.Module, inputs: tuple[Any, ...]) -> None:
            last["input"] = inputs[0].clone()  # an in-place ReLU overwrites its input

        def after(_m: nn.Module, _inputs: Any, output: Any) -> None:
            last["output"] = output

        def done(_m: nn.Module, _inputs: Any, output: Any) -> None:
            if "output" not in last or last["output"] is not output:
                raise ConfigError(f"{tap!r}: the output of {tap.removesuffix(PRERELU)!r} is not the output of "
                                  "its last ReLU, so it has no pre-ReLU form", stage="distill/taps",
                                  hint="tap a stage or block whose forward ends with an nn.ReLU module")
            self.outputs[tap] = last.pop("input")
            last.clear()

        for relu in relus:
            self._handles += [relu.register_forward_pre_hook(before), relu.register_forward_hook(after)]
        self._handles.append(module.register_forward_hook(done))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _recorder(self, path: str, pool: bool = False) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if pool and isinstance(output, torch.Tensor) and output.dim() == 4:
                output = output.mean((2, 3))
            self.outputs[path] = output

        return hook

    def _input_recorder(self, path: str) -> Any:
        def hook(_module: nn.Module, inputs: tuple[Any, ...]) -> None:
            self.outputs[path] = inputs[0] if inputs else None

        return hook

    def close(self) -> None:
        """Remove every hook (safe to call twice)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def clear(self) -> None:
        """Forget the recorded outputs (the hooks stay)."""
        self.outputs.clear()

    def __getitem__(self, path: str) -> Any:
        if path not in self.outputs:
            why = "it is not tapped" if path not in self._modules else "no forward pass has run yet"
            raise ConfigError(f"no output recorded for {path!r}: {why}", stage="distill/taps",
                              hint=f"tapped: {', '.join(self.paths)}; run the model inside the `with` block")
        return self.outputs[path]

    @property
    def active(self) -> bool:
        """Whether the hooks are installed."""
        return bool(self._handles)
