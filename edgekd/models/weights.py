"""Weights for ``tv:`` / ``hf:`` models from a local file, and ``in_channels`` other than 3.

Nothing is downloaded: ``create("tv:resnet18", weights="resnet18.pth")`` reads a state-dict file
(``torch.save(model.state_dict())``, a ``{"state_dict": ...}`` / ``{"model": ...}`` checkpoint, an
edgekd checkpoint or a ``.safetensors`` file). A file made for another class count (ImageNet's
1000) loads everything but the classifier, which keeps its fresh initialisation (a warning names
it). Any other missing, unexpected or mis-shaped key is an error naming them.

``in_channels`` (the digit sets are grey): the stem convolution is *adapted*, not the images
repeated — timm's ``adapt_input_conv`` rule: for one channel the stem's RGB filters are summed
(exactly what the RGB stem computes on a grey image repeated three times); for C > 3 the RGB
filters are tiled and scaled by 3/C. A file's 3-channel stem is adapted the same way on load.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.errors import ModelFileError

STAGE = "models/weights"


def adapt_input_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A conv weight ``(O, 3, kh, kw)`` for ``in_channels`` inputs (see the module docstring)."""
    w = weight.detach()
    if w.shape[1] == in_channels:
        return w.clone()
    if in_channels == 1:
        return w.sum(1, keepdim=True)
    reps = -(-in_channels // w.shape[1])
    return w.repeat(1, reps, 1, 1)[:, :in_channels] * (w.shape[1] / in_channels)


def adapt_stem(model: nn.Module, stem: str, in_channels: int) -> None:
    """Replace the ``nn.Conv2d`` at ``stem`` with one taking ``in_channels`` inputs, in place."""
    conv = model.get_submodule(stem)
    if not isinstance(conv, nn.Conv2d):
        raise ModelFileError(f"the stem {stem!r} of {type(model).__name__} is a {type(conv).__name__}, not a Conv2d",
                             stage=STAGE, hint="pass in_channels=3 and repeat grey images to RGB")
    if conv.in_channels == in_channels:
        return
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        new.weight.copy_(adapt_input_weight(conv.weight, in_channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    parent, _, leaf = stem.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"weights file {path} does not exist", stage=STAGE,
                             hint="pass weights= a local state-dict file (torch.save(model.state_dict(), path)); "
                                  "edgekd never downloads weights")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            blob: Any = load_file(str(path))
        else:
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch / safetensors raise several types for foreign or truncated files
        raise ModelFileError(f"cannot read weights file {path} ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                             stage=STAGE, hint="save it with torch.save(model.state_dict(), path)") from None
    for key in ("state_dict", "model"):
        if isinstance(blob, dict) and isinstance(blob.get(key), dict):
            blob = blob[key]
    if not isinstance(blob, dict) or not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise ModelFileError(f"{path} holds no state dict (a mapping of names to tensors)", stage=STAGE,
                             hint="save it with torch.save(model.state_dict(), path)")
    return blob


def load_weights(model: nn.Module, path: str | Path, *, stem: str, classifier: str) -> None:
    """Load ``path`` into ``model`` (in place): the stem adapted, a foreign classifier skipped."""
    state = read_state_dict(path)
    own = model.state_dict()
    stem_w = f"{stem}.weight"
    if stem_w in state and stem_w in own and state[stem_w].shape != own[stem_w].shape \
            and state[stem_w].dim() == 4 and state[stem_w].shape[0] == own[stem_w].shape[0]:
        state = {**state, stem_w: adapt_input_weight(state[stem_w], own[stem_w].shape[1])}
    head = f"{classifier}."
    skipped = sorted(k for k, v in state.items() if k.startswith(head) and k in own and v.shape != own[k].shape)
    if skipped:
        warnings.warn(f"{Path(path).name}: {', '.join(skipped)} made for another class count; the classifier "
                      f"{classifier!r} keeps its fresh initialisation", UserWarning, stacklevel=3)
        state = {k: v for k, v in state.items() if k not in skipped}
    bad = sorted(k for k, v in state.items() if k in own and v.shape != own[k].shape)
    missing = sorted(set(own) - set(state) - set(skipped))
    unexpected = sorted(set(state) - set(own))
    if bad or missing or unexpected:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (f" (+{len(keys) - 4})" if len(keys) > 4 else "")

        parts = [f"{what}: {few(keys)}" for what, keys in (("shape differs", bad), ("missing", missing),
                                                             ("unexpected", unexpected)) if keys]
        raise ModelFileError(f"{Path(path).name} does not fit {type(model).__name__} ({'; '.join(parts)})",
                             stage=STAGE, hint="pass the weights of this same architecture and options "
                                               "(width, depth, ...) as created here")
    model.load_state_dict(state, strict=False)
