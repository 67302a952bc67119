"""MiniLM v1 and v2: task-agnostic distillation of a transformer's last self-attention module.

Both losses read the query/key/value projections ``(N, L, D)`` of one teacher layer and one
student layer (forward hooks on the ``query``/``key``/``value`` Linears, see
:mod:`edgekd.models.bert`), split them into heads, turn them into row-stochastic ``L × L``
relations and match the teacher's relations with a KL divergence. Padding keys are masked out of
each softmax and padding query rows out of the average, with the mask ``ids != pad_token_id``
computed from the token ids in ``ctx.inputs``.

The functional cores :func:`minilm_v1_loss` and :func:`minilm_v2_loss` take tensors; the registered
methods ``"minilm_v1"`` / ``"minilm_v2"`` find their taps after :meth:`MiniLMLoss.bind` with the
student and teacher (any model with ``qkv_paths(layer)``, ``num_heads`` and ``pad_token_id``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from edgekd.distillation.methods import DistillLoss, StepContext, register_method
from edgekd.errors import ConfigError

_NEG = -1e9  # finite "minus infinity": exp() underflows to exactly 0 and no NaN can appear in the KL


def _heads(x: torch.Tensor, heads: int, what: str) -> torch.Tensor:
    """``(N, L, D)`` → ``(N, heads, L, D / heads)``."""
    n, length, d = x.shape
    if d % heads:
        raise ConfigError(f"{what} width {d} is not divisible by {heads} heads", stage="distill/minilm",
                          hint="pick a head / relation-head count that divides both hidden sizes "
                               "(e.g. 12 for 384 and 192; 16 or 32 for 384 and 256)")
    return x.reshape(n, length, heads, d // heads).transpose(1, 2)


def log_relation(a: torch.Tensor, b: torch.Tensor, heads: int, key_mask: torch.Tensor | None = None,
                 what: str = "relation") -> torch.Tensor:
    r"""``log softmax(A_h B_h^T / \sqrt{d_h})`` per head: ``(N, L, D)`` ×2 → ``(N, heads, L, L)``.

    ``key_mask`` ``(N, L)`` (True/1 = real token) removes padding keys from each softmax.
    """
    ah, bh = _heads(a, heads, what), _heads(b, heads, what)
    scores = ah @ bh.transpose(-1, -2) / math.sqrt(ah.shape[-1])
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask.bool()[:, None, None, :], _NEG)
    return torch.log_softmax(scores, dim=-1)


def relation_kl(log_t: torch.Tensor, log_s: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    r"""Mean over (batch, head, valid query row) of :math:`\mathrm{KL}(p_t \| p_s)` along the last dim.

    With padding, every real token of the batch weighs the same (a long sentence counts more than a
    short one). The papers write the loss for one sentence, :math:`\frac{1}{A|x|}\sum_a\sum_t`;
    they do not say how sentences of different lengths are batched. Without padding both agree.
    """
    kl = (log_t.exp() * (log_t - log_s)).sum(-1)  # (N, H, L)
    if key_mask is None:
        return kl.mean()
    rows = key_mask.to(kl.dtype)[:, None, :].expand_as(kl)
    return (kl * rows).sum() / rows.sum().clamp_min(1.0)


def minilm_v1_loss(s_qkv: Sequence[torch.Tensor], t_qkv: Sequence[torch.Tensor], heads: int,
                   key_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(attention-distribution KL, value-relation KL) for one layer pair with ``heads`` heads each."""
    (sq, sk, sv), (tq, tk, tv) = s_qkv, t_qkv
    att = relation_kl(log_relation(tq, tk, heads, key_mask, "teacher Q/K"),
                      log_relation(sq, sk, heads, key_mask, "student Q/K"), key_mask)
    val = relation_kl(log_relation(tv, tv, heads, key_mask, "teacher V"),
                      log_relation(sv, sv, heads, key_mask, "student V"), key_mask)
    return att, val


def minilm_v2_loss(s_qkv: Sequence[torch.Tensor], t_qkv: Sequence[torch.Tensor], relation_heads: int,
                   key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of the Q-Q, K-K and V-V relation KLs, each re-split into ``relation_heads`` heads."""
    total = torch.zeros((), device=s_qkv[0].device)
    for name, s, t in zip("QKV", s_qkv, t_qkv, strict=True):
        total = total + relation_kl(log_relation(t, t, relation_heads, key_mask, f"teacher {name}"),
                                    log_relation(s, s, relation_heads, key_mask, f"student {name}"), key_mask)
    return total


class MiniLMLoss(DistillLoss):
    """Shared plumbing: layer choice, binding to models (tap paths, heads), the padding mask."""

    needs_teacher = True
    name = "minilm"

    def __init__(self, student_layer: int = -1, teacher_layer: int = -1) -> None:
        super().__init__()
        self.student_layer, self.teacher_layer = int(student_layer), int(teacher_layer)
        self.student_taps: tuple[str, ...] = ()
        self.teacher_taps: tuple[str, ...] = ()
        self.student_heads = self.teacher_heads = 0
        self.student_width = self.teacher_width = 0
        self.pad_token_id = 0

    def bind(self, student: nn.Module, teacher: nn.Module) -> None:
        """Resolve the tap paths and head counts from the two models (before training starts)."""
        for who, m in (("student", student), ("teacher", teacher)):
            if not hasattr(m, "qkv_paths") or not hasattr(m, "num_heads"):
                raise ConfigError(f"{self.name} needs a BERT-style {who} exposing qkv_paths() and num_heads; "
                                  f"got {type(m).__name__}", stage=f"distill/{self.name}",
                                  hint="use edgekd.models.create('minilm_l3_h192') / load_hf_encoder()")
        self.student_taps = tuple(student.qkv_paths(self.student_layer))  # type: ignore[operator]
        self.teacher_taps = tuple(teacher.qkv_paths(self.teacher_layer))  # type: ignore[operator]
        self.student_heads, self.teacher_heads = int(student.num_heads), int(teacher.num_heads)  # type: ignore[arg-type]
        self.student_width = int(getattr(student, "hidden_size", 0))
        self.teacher_width = int(getattr(teacher, "hidden_size", 0))
        self.pad_token_id = int(getattr(student, "pad_token_id", 0))
        self.check_heads()

    def check_heads(self) -> None:
        """Raise when the bound models cannot use this loss (default: any head counts)."""

    def features(self, ctx: StepContext) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor | None]:
        if not self.student_taps:
            raise ConfigError(f"{self.name} is not bound to a student and a teacher", stage=f"distill/{self.name}",
                              hint="call loss.bind(student, teacher) (edgekd.distillation.text.distill_text does)")
        if not ctx.teacher_features:
            raise ConfigError(f"{self.name} needs teacher features but no teacher ran", stage=f"distill/{self.name}",
                              hint="pass a teacher")
        s = [ctx.student_features[p] for p in self.student_taps]
        t = [ctx.teacher_features[p].to(s[0].dtype) for p in self.teacher_taps]
        mask = ctx.inputs != self.pad_token_id if ctx.inputs is not None else None
        return s, t, mask


@register_method("minilm_v1")
class MiniLMv1Loss(MiniLMLoss):
    r"""MiniLM: last-layer self-attention distributions plus value relations.

    .. math::

        L = \frac{1}{A_h |x|} \sum_{a=1}^{A_h} \sum_{t=1}^{|x|}
              \mathrm{KL}\big(A^T_{a,t} \,\|\, A^S_{a,t}\big)
          + \frac{1}{A_h |x|} \sum_{a=1}^{A_h} \sum_{t=1}^{|x|}
              \mathrm{KL}\big(VR^T_{a,t} \,\|\, VR^S_{a,t}\big),

    with :math:`A_a = \mathrm{softmax}(Q_a K_a^\top / \sqrt{d_k})` and
    :math:`VR_a = \mathrm{softmax}(V_a V_a^\top / \sqrt{d_k})` per head :math:`a`, :math:`d_k` each
    model's own head size. Teacher and student need the same number of heads :math:`A_h`; their
    hidden sizes may differ (relations are :math:`|x| \times |x|`).

    Paper: Wang, Wei, Dong, Bao, Yang, Zhou, "MiniLM: Deep Self-Attention Distillation for
    Task-Agnostic Compression of Pre-Trained Transformers", NeurIPS 2020,
    https://arxiv.org/abs/2002.10957. The paper uses the teacher's last layer; ``teacher_layer``
    lets you pick another (MiniLM v2's finding is that an upper-middle layer can be better).

    Args:
        student_layer / teacher_layer: layer indices (negative counts from the end; default last).
        value_weight: weight of the value-relation term (paper: 1).

    Options: ``method="minilm_v1 + emb_mse"``, ``minilm_v1_teacher_layer=-1``.
    """

    name = "minilm_v1"

    def __init__(self, student_layer: int = -1, teacher_layer: int = -1, value_weight: float = 1.0) -> None:
        super().__init__(student_layer, teacher_layer)
        self.value_weight = float(value_weight)

    def check_heads(self) -> None:
        if self.student_heads != self.teacher_heads:
            raise ConfigError(f"minilm_v1 needs equal head counts; student has {self.student_heads}, "
                              f"teacher {self.teacher_heads}", stage="distill/minilm_v1",
                              hint="use method 'minilm_v2' (relation heads decouple the counts) or a student "
                                   f"with {self.teacher_heads} heads, e.g. minilm_l3_h192")

    def forward(self, ctx: StepContext) -> torch.Tensor:
        s, t, mask = self.features(ctx)
        att, val = minilm_v1_loss(s, t, self.student_heads, mask)
        return att + self.value_weight * val


@register_method("minilm_v2")
class MiniLMv2Loss(MiniLMLoss):
    r"""MiniLMv2: multi-head self-attention relation distillation (Q-Q, K-K, V-V).

    .. math::

        L = \sum_{i \in \{Q, K, V\}} \frac{1}{A_r |x|} \sum_{a=1}^{A_r} \sum_{t=1}^{|x|}
              \mathrm{KL}\big(R^T_{i,a,t} \,\|\, R^S_{i,a,t}\big),
        \qquad R_{i,a} = \mathrm{softmax}\big(A_{i,a} A_{i,a}^\top / \sqrt{d_r}\big),

    where :math:`A_{i}` (the concatenated queries, keys or values of one layer) is re-split into
    :math:`A_r` *relation heads* of size :math:`d_r = d_h / A_r` (each model its own
    :math:`d_h`), so teacher and student head counts may differ.

    Paper: Wang, Bao, Huang, Dong, Wei, "MiniLMv2: Multi-Head Self-Attention Relation Distillation
    for Compressing Pretrained Transformers", Findings of ACL 2021, https://arxiv.org/abs/2012.15828.
    The paper distils the student's last layer from an upper-middle teacher layer for large
    teachers (e.g. layer 21 of 24) and the last layer for base-size ones; default here: last.

    Args:
        relation_heads: :math:`A_r`; must divide both hidden sizes (default 12: 384 and 192).
        student_layer / teacher_layer: layer indices (negative counts from the end).

    Options: ``method="minilm_v2 + emb_mse"``, ``minilm_v2_relation_heads=16``, ``minilm_v2_teacher_layer=-2``.
    """

    name = "minilm_v2"

    def __init__(self, relation_heads: int = 12, student_layer: int = -1, teacher_layer: int = -1) -> None:
        super().__init__(student_layer, teacher_layer)
        if relation_heads < 1:
            raise ConfigError(f"relation_heads={relation_heads} must be >= 1", stage="distill/minilm_v2",
                              hint="pass minilm_v2_relation_heads=12")
        self.relation_heads = int(relation_heads)

    def check_heads(self) -> None:
        """Fail at bind time (before the teacher runs) when the relation heads do not divide both widths."""
        for who, width in (("student", self.student_width), ("teacher", self.teacher_width)):
            if width and width % self.relation_heads:
                raise ConfigError(f"minilm_v2: {who} hidden size {width} is not divisible by "
                                  f"{self.relation_heads} relation heads", stage="distill/minilm_v2",
                                  hint="pick minilm_v2_relation_heads dividing both hidden sizes "
                                       f"({self.student_width} and {self.teacher_width})")

    def forward(self, ctx: StepContext) -> torch.Tensor:
        s, t, mask = self.features(ctx)
        return minilm_v2_loss(s, t, self.relation_heads, mask)

    def extra_repr(self) -> str:
        return f"relation_heads={self.relation_heads}, student_layer={self.student_layer}, " \
               f"teacher_layer={self.teacher_layer}"


def bind_objective(objective: Any, student: nn.Module, teacher: nn.Module | None) -> None:
    """Bind every MiniLM term of ``objective`` to the models (no-op for other terms)."""
    for loss in objective.losses.values():
        if isinstance(loss, MiniLMLoss):
            if teacher is None:
                raise ConfigError(f"{loss.name} needs a teacher", stage=f"distill/{loss.name}",
                                  hint="pass a teacher, or use method='emb_mse' without MiniLM terms")
            loss.bind(student, teacher)
