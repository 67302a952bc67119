"""Save and load a trained model as a small self-describing checkpoint.

A saved model records the registry name and the keyword arguments that rebuild it, so
``load_model(path)`` needs no code from the user: ``{"edgekd_model": 1, "name", "kwargs",
"state_dict", "meta"}``, plus ``"channels"`` (kept channels per group) for a model made smaller by
:func:`edgekd.edge.prune.prune` (:mod:`edgekd.models.channels`), which is rebuilt at that width before its weights load, and
``"exits"`` for a self-distilled :class:`~edgekd.models.exits.ExitModel` (backbone + exit heads). The CLI stages (`edgekd train`, `distill`, `export`) pass these files along.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.errors import ModelFileError
from edgekd.files import atomic_path

FORMAT_VERSION = 1


def save_model(model: nn.Module, path: str | Path, name: str, *, meta: dict[str, Any] | None = None,
               **kwargs: Any) -> Path:
    """Write ``model``'s weights with the registry ``name`` and ``kwargs`` that rebuild it."""
    from edgekd.models import create

    path = Path(path)
    blob = {"edgekd_model": FORMAT_VERSION, "name": name, "kwargs": kwargs, "state_dict": model.state_dict(),
            "meta": meta or {}}
    from edgekd.models.exits import ExitModel

    if isinstance(model, ExitModel):  # self-distilled: the backbone's weights plus the exit heads
        blob["exits"] = list(model.exits)
        fresh = ExitModel(create(name, **kwargs), model.exits).state_dict()
    else:
        fresh = create(name, **kwargs).state_dict()
    if any(k in fresh and fresh[k].shape != v.shape for k, v in blob["state_dict"].items()):
        from edgekd.models.channels import channels_of

        blob["channels"] = channels_of(model)  # pruned: record the widths that rebuild it
    with atomic_path(path, stage="save", what="the model checkpoint") as tmp:
        torch.save(blob, tmp)
    return path


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_model`; returns ``(model in eval mode, meta)``."""
    from edgekd.models import create

    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model checkpoint {path} does not exist", stage="models",
                             hint="pass the model.pt written by `edgekd train` / `edgekd distill`")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise ModelFileError(f"cannot read {path} as an edgekd model checkpoint ({type(e).__name__}: {e})",
                             stage="models", hint="re-run the training stage that wrote it") from None
    if not isinstance(blob, dict) or "edgekd_model" not in blob:
        raise ModelFileError(f"{path} is a torch file but not an edgekd model checkpoint",
                             stage="models", hint="save models with edgekd.models.saved.save_model")
    model = create(blob["name"], **blob["kwargs"])
    if blob.get("channels"):
        from edgekd.models.channels import shrink_to

        model = shrink_to(model, blob["channels"])
    if blob.get("exits"):
        from edgekd.models.exits import ExitModel

        model = ExitModel(model, blob["exits"])
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise ModelFileError(f"{path}: its weights do not fit a {blob['name']}: {str(e).splitlines()[0]}",
                             stage="models", hint="re-save it with edgekd.models.saved.save_model") from None
    meta = dict(blob.get("meta", {}))
    meta.setdefault("name", blob["name"])
    meta.setdefault("kwargs", blob["kwargs"])
    if blob.get("channels"):
        meta.setdefault("channels", blob["channels"])
    return model.eval(), meta
