"""What ``edgekd list models`` shows: every model name with its family, and what each family supports.

Family-level facts come from the declarations (:mod:`edgekd.models.contract`), so listing builds no
model: stages are measured only when a model is created (``contract_of``).
"""

from __future__ import annotations

from typing import Any

from edgekd.models._registry import MODELS, NAMESPACES, list_models
from edgekd.models.contract import Family, families


def family_of_name(name: str) -> str:
    """The family a registry name belongs to (``""`` when none is declared)."""
    prefix, sep, rest = name.partition(":")
    if sep:
        return NAMESPACES.get(prefix).family(rest)
    module = getattr(MODELS.get(name), "__module__", "")
    return next((f.name for f in families() if (f.module and f.module == module) or name in f.models), "")


def model_rows(namespace: str = "all") -> list[dict[str, str]]:
    """``{"name", "family"}`` per registered model (``namespace``: ``"all"``, ``"zoo"``, ``"tv"``, ``"hf"``)."""
    names = list_models(None if namespace == "zoo" else namespace)
    return [{"name": n, "family": family_of_name(n)} for n in names]


def family_row(f: Family) -> dict[str, Any]:
    """What a family supports: taps (stages + embedding), pruning, exits, input, knobs."""
    return {"family": f.name, "source": f.source,
            "taps": "stage:K, embedding" if f.input_kind == "image" else "module paths",
            "prune": "yes" if f.prune is not None else "no", "prune_note": f.prune_note,
            "exits": "no" if f.exits_note else "yes",
            "exits_note": f.exits_note, "input": f.input_size, "knobs": "; ".join(k.describe() for k in f.knobs)}


def family_rows() -> list[dict[str, Any]]:
    return [family_row(f) for f in families()]
