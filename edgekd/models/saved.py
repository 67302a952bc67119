"""Save and load a trained model as a small self-describing checkpoint.

A saved model records the registry name and the keyword arguments that rebuild it, so
``load_model(path)`` needs no code from the user: ``{"edgekd_model": 1, "name", "kwargs",
"state_dict", "meta"}``. The CLI stages (`edgekd train`, `distill`, `export`) pass these files along.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.errors import ModelFileError

FORMAT_VERSION = 1


def save_model(model: nn.Module, path: str | Path, name: str, *, meta: dict[str, Any] | None = None,
               **kwargs: Any) -> Path:
    """Write ``model``'s weights with the registry ``name`` and ``kwargs`` that rebuild it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"edgekd_model": FORMAT_VERSION, "name": name, "kwargs": kwargs,
                "state_dict": model.state_dict(), "meta": meta or {}}, path)
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
    model.load_state_dict(blob["state_dict"])
    meta = dict(blob.get("meta", {}))
    meta.setdefault("name", blob["name"])
    meta.setdefault("kwargs", blob["kwargs"])
    return model.eval(), meta
