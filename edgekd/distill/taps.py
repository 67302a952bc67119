"""Record intermediate module outputs by dotted path through forward hooks (models stay unedited).

::

    with Taps(student, ["layer3", "fc"]) as taps:
        logits = student(x)
        feats = taps["layer3"]          # the output of student.layer3 in that forward pass

Each forward pass overwrites the previous record; the hooks are removed when the block exits,
even on error.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

from edgekd.errors import ConfigError


class Taps:
    """Context manager that keeps the latest output of each named module of ``model``."""

    def __init__(self, model: nn.Module, paths: Sequence[str]) -> None:
        modules = dict(model.named_modules())
        for path in paths:
            if path not in modules:
                near = difflib.get_close_matches(path, list(modules), n=6, cutoff=0.5)
                top = [n for n, _ in model.named_children()]
                raise ConfigError(
                    f"{type(model).__name__} has no module {path!r}; "
                    f"nearby: {', '.join(near) or '(none)'}; top level: {', '.join(top)}",
                    stage="distill/taps", hint="name a module by its dotted path from model.named_modules()")
        self.model = model
        self.paths = list(dict.fromkeys(paths))
        self._modules = {p: modules[p] for p in self.paths}
        self._handles: list[RemovableHandle] = []
        self.outputs: dict[str, Any] = {}

    def __enter__(self) -> Taps:
        for path, module in self._modules.items():
            self._handles.append(module.register_forward_hook(self._recorder(path)))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _recorder(self, path: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self.outputs[path] = output

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
