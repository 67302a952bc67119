"""How closely a student's sentence embeddings follow the teacher's, on held-out text.

Two views, both computed on the same held-out token ids:

- **cosine**: :math:`\\cos(s_i, t_i)` between the student's and the teacher's embedding of each
  sentence (they must share a space: same width; see ``embed_dim`` in :mod:`edgekd.models.bert`).
- **retrieval agreement**: each sentence queries the other held-out sentences by cosine; the
  overlap of the student's top-k neighbours with the teacher's, :math:`|N^S_k \\cap N^T_k| / k`,
  averaged, and how often the nearest neighbour is the same. This needs no shared space (it
  compares neighbourhoods, not vectors), so it also scores students with any width.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.errors import ConfigError

STAGE = "eval/embeddings"


@torch.no_grad()
def embed(model: nn.Module, ids: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Embeddings ``(N, E)`` of ``model`` on ``ids`` in eval mode (the mode is restored afterwards)."""
    was = model.training
    model.eval()
    try:
        out = [model(ids[i:i + batch_size]).float() for i in range(0, len(ids), batch_size)]
    finally:
        model.train(was)
    return torch.cat(out) if out else torch.zeros((0, 0))


def retrieval_agreement(student: torch.Tensor, teacher: torch.Tensor, k: int = 10) -> tuple[float, float]:
    """(mean top-``k`` neighbour overlap, top-1 neighbour agreement) of two embedding sets of the same sentences."""
    n = len(student)
    if n != len(teacher) or n < 2:
        raise ConfigError(f"need two equally long embedding sets of >= 2 sentences, got {n} and {len(teacher)}",
                          stage=STAGE, hint="embed the same held-out sentences with both models")
    k = min(k, n - 1)

    def neighbours(e: torch.Tensor) -> torch.Tensor:
        e = F.normalize(e.float(), dim=-1)
        sim = e @ e.T
        sim.fill_diagonal_(-float("inf"))  # a sentence is not its own neighbour
        return sim.topk(k, dim=-1).indices

    ns, nt = neighbours(student), neighbours(teacher)
    hits = (ns[:, :, None] == nt[:, None, :]).any(-1).float().sum(-1) / k
    return float(hits.mean()), float((ns[:, 0] == nt[:, 0]).float().mean())


@dataclass(frozen=True)
class EmbeddingAgreement:
    """Student vs teacher on ``n`` held-out sentences (cosine is None when the widths differ)."""

    n: int
    k: int
    cosine_mean: float | None
    cosine_p10: float | None  # the 10th percentile: how bad the worse sentences are
    topk_overlap: float
    top1_agreement: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_embeddings(student: nn.Module | torch.Tensor, teacher: nn.Module | torch.Tensor,
                       ids: torch.Tensor | None = None, k: int = 10, batch_size: int = 128) -> EmbeddingAgreement:
    """Cosine and retrieval agreement of ``student`` with ``teacher`` (models run on ``ids``, or embeddings)."""
    s = student if isinstance(student, torch.Tensor) else embed(student, _need(ids), batch_size)
    t = teacher if isinstance(teacher, torch.Tensor) else embed(teacher, _need(ids), batch_size)
    cos = p10 = None
    if s.shape == t.shape:
        c = F.cosine_similarity(s.float(), t.float(), dim=-1)
        cos, p10 = float(c.mean()), float(torch.quantile(c, 0.1))
    overlap, top1 = retrieval_agreement(s, t, k)
    return EmbeddingAgreement(n=len(s), k=min(k, len(s) - 1), cosine_mean=cos, cosine_p10=p10,
                              topk_overlap=overlap, top1_agreement=top1)


def _need(ids: torch.Tensor | None) -> torch.Tensor:
    if ids is None:
        raise ConfigError("a model was given without token ids to run it on", stage=STAGE,
                          hint="pass ids=<int64 (N, L) held-out token ids>, or embeddings instead of models")
    return ids
