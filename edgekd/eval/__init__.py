"""Evaluation: top-1 accuracy and cross-entropy of a classifier, sentence-embedding agreement with a teacher."""

from __future__ import annotations

from edgekd.eval.classification import evaluate
from edgekd.eval.embeddings import EmbeddingAgreement, compare_embeddings, embed, retrieval_agreement

__all__ = ["EmbeddingAgreement", "compare_embeddings", "embed", "evaluate", "retrieval_agreement"]
