"""Embedding regression: make the student's sentence embedding equal the teacher's."""

from __future__ import annotations

import torch

from edgekd.distillation.methods import DistillLoss, StepContext, register_method
from edgekd.errors import ConfigError


@register_method("emb_mse")
class EmbeddingMSELoss(DistillLoss):
    r"""Squared distance between student and teacher embeddings, summed over dims, averaged over the batch.

    .. math::

        L = \frac{1}{N} \sum_{i=1}^{N} \lVert s_i - t_i \rVert_2^2

    with student output :math:`s` and teacher output :math:`t` (``ctx.student_logits`` /
    ``ctx.teacher_logits``: here sentence embeddings). For L2-normalised embeddings this equals
    :math:`2 - 2\cos(s_i, t_i)`. (Summing over dims rather than averaging keeps the scale
    independent of the width, comparable with KL terms.)

    Paper: Reimers, Gurevych, "Making Monolingual Sentence Embeddings Multilingual using Knowledge
    Distillation", EMNLP 2020, https://arxiv.org/abs/2004.09813 (MSE to the teacher's embedding).

    Options: ``method="emb_mse"`` (the baseline), or with MiniLM: ``"minilm_v2 + emb_mse"``.
    """

    needs_teacher = True

    def forward(self, ctx: StepContext) -> torch.Tensor:
        if ctx.teacher_logits is None:
            raise ConfigError("emb_mse needs teacher embeddings but no teacher was given", stage="distill/emb_mse",
                              hint="pass a teacher")
        s, t = ctx.student_logits, ctx.teacher_logits.to(ctx.student_logits.dtype)
        if s.shape != t.shape:
            raise ConfigError(f"student embedding {tuple(s.shape)} and teacher embedding {tuple(t.shape)} differ",
                              stage="distill/emb_mse",
                              hint=f"create the student with embed_dim={t.shape[-1]} (a projection after pooling)")
        return (s - t).pow(2).sum(-1).mean()
