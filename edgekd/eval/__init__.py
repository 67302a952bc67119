"""Evaluation beyond top-1 accuracy: sentence-embedding agreement with a teacher."""

from __future__ import annotations

from edgekd.eval.embeddings import EmbeddingAgreement, compare_embeddings, embed, retrieval_agreement

__all__ = ["EmbeddingAgreement", "compare_embeddings", "embed", "retrieval_agreement"]
