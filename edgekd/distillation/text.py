"""Task-agnostic distillation of sentence encoders: no labels, no accuracy, a frozen teacher.

::

    teacher = load_hf_encoder()                       # all-MiniLM-L6-v2, offline
    data = load_text("fortunes", teacher.tokenizer, max_length=32, n_train=4000)
    student = create("minilm_l3_h192", max_length=32)
    result = edgekd.distill(teacher, student, data, method="minilm_v2 + emb_mse", epochs=3)  # distill_text
    result.metrics  # val cosine / top-k neighbour agreement with the teacher

The loop is the :class:`~edgekd.distillation.trainer.Trainer`'s (seeding, progress, checkpoints,
exact resume, DDP); :class:`TextStrategy` says what differs from image classification: items are
token ids only, the objective is any registered composition (``build_objective``, e.g.
``"minilm_v1 + emb_mse"``) bound to the two encoders, and the score is agreement with the teacher
(:func:`edgekd.eval.embeddings.compare_embeddings`), the best epoch kept by the val top-k
neighbour overlap.

The teacher is frozen and deterministic (eval mode), so its outputs (the embedding and the
tapped Q/K/V) come from one :class:`~edgekd.distillation.cache.TeacherCache` over the train ids,
features stored in ``cache_dtype``; pass one to several runs to share it (the teacher's val/test
embeddings are then also computed once, by the first run: :meth:`TeacherCache.held_out`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from edgekd.data.text import TextSplits
from edgekd.distillation.cache import TeacherCache
from edgekd.distillation.losses.minilm import bind_objective
from edgekd.distillation.methods import Objective, build_objective
from edgekd.distillation.recipes import given, register_recipe
from edgekd.distillation.result import DistillResult
from edgekd.distillation.strategies.base import Losses
from edgekd.distillation.strategies.offline import OfflineStrategy
from edgekd.distillation.trainer import TrainConfig, Trainer
from edgekd.errors import ConfigError
from edgekd.eval.embeddings import compare_embeddings
from edgekd.files import atomic_path
from edgekd.settings import DEFAULT_TEXT_METHOD

STAGE = "distill/text"


class TextStrategy(OfflineStrategy):
    """A student sentence encoder follows a frozen teacher encoder on unlabelled token ids.

    The objective's MiniLM terms are bound to both models first (their taps depend on the layers), so
    a head count that does not divide a width fails before any teacher output is computed.
    """

    kind = "text"
    score = "val_topk_overlap"

    def __init__(self, student: nn.Module, teacher: nn.Module, objective: Objective,
                 cache: TeacherCache | None = None, *, k: int = 10, cache_dtype: torch.dtype = torch.float16,
                 progress: bool = False) -> None:
        bind_objective(objective, student, teacher)
        super().__init__(student, objective, teacher, cache=cache)
        self.k, self.cache_dtype, self.progress = k, cache_dtype, progress

    def _cache(self, teacher: nn.Module, device: str, train: Dataset) -> TeacherCache:
        taps = self.objective.teacher_taps
        if isinstance(self.cache_option, TeacherCache):
            return self.cache_option.ensure(teacher, train, taps)
        return TeacherCache(teacher, train, taps=taps, device=device, feature_dtype=self.cache_dtype,
                            progress=self.progress)

    def setup(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], data: Any) -> None:
        self.student_mode(False)
        with torch.no_grad():
            ctx = self.context(*batch, epoch=0, step=0)
        self.student_mode(True)
        self.objective.setup(ctx, len(data.train))

    def step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, epoch: int, step: int
             ) -> tuple[Losses, dict[str, torch.Tensor]]:
        losses, parts = super().step(x, y, idx, epoch, step)
        loss = losses[0][1]
        if not torch.isfinite(loss):
            raise ConfigError(f"loss became {float(loss)} at step {step} ({self.objective.spec})", stage=STAGE,
                              hint="lower lr, or check the teacher's outputs (cache_dtype=torch.float32)")
        return losses, parts

    @torch.no_grad()
    def agreement(self, data: TextSplits, split: str) -> dict[str, float]:
        """Cosine and top-k neighbour agreement with the teacher on ``split`` (``"val"``/``"test"``)."""
        ids = getattr(data, split)
        assert self.cache is not None and self.teacher is not None  # set by enter()/the constructor
        teacher_emb = self.cache.held_out(self.teacher, split, ids)
        return compare_embeddings(self.student, teacher_emb, ids, k=self.k).to_dict()

    def validate(self, data: Any, device: str) -> dict[str, float]:
        return {f"val_{n}": v for n, v in self.agreement(data, "val").items() if n not in ("n", "k")}


TextDistillResult = DistillResult  # the one result type (edgekd.distillation.result); old name kept


def distill_text(teacher: nn.Module, student: nn.Module, data: TextSplits,
                 method: str | Sequence[tuple[str, float]] | Mapping[str, float] = DEFAULT_TEXT_METHOD, *,
                 epochs: int = 3, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.01,
                 warmup: float = 0.06, seed: int = 0, k: int = 10, progress: bool = True,
                 teacher_cache: TeacherCache | None = None, cache_dtype: torch.dtype = torch.float16,
                 out_dir: str | Path | None = None, resume: bool = False,
                 on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
                 **method_kwargs: Any) -> DistillResult:
    """Train a copy of ``student`` to follow ``teacher`` on ``data.train`` token ids with ``method``.

    AdamW with linear warm-up over the first ``warmup`` fraction of steps, then cosine decay to 0,
    gradients clipped to norm 1, the last partial batch dropped. After each epoch the val split is
    scored (cosine, top-``k`` neighbour overlap); at the end the test split too. ``out_dir`` holds the
    trainer's ``checkpoint.pt`` (``resume=True`` continues it) and the final weights as ``student.pt``.
    The ``student`` passed in is not modified; the teacher is restored to its mode and flags.
    """
    if len(data.train) < batch_size:
        raise ConfigError(f"{len(data.train)} training sentences are fewer than one batch of {batch_size}",
                          stage=STAGE, hint="lower batch_size or load more text")
    model = copy.deepcopy(student).train()
    objective = build_objective(method, **method_kwargs)
    strategy = TextStrategy(model, teacher, objective, teacher_cache, k=k, cache_dtype=cache_dtype, progress=progress)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                         progress=progress, out_dir=Path(out_dir) if out_dir is not None else None, resume=resume,
                         warmup=warmup, clip_grad_norm=1.0, drop_last=True)
    trainer = Trainer(None, data, objective, config, strategy=strategy, on_epoch_end=on_epoch_end)
    history = trainer.fit()
    model.eval()
    test = strategy.agreement(data, "test")
    metrics = {**{k_: v for k_, v in history[-1].items() if k_.startswith("val_")},
               **{f"test_{n}": v for n, v in test.items()}}
    ckpt = None
    if out_dir is not None:
        ckpt = Path(out_dir) / "student.pt"
        with atomic_path(ckpt, stage=STAGE, what="the student checkpoint") as tmp:
            torch.save(model.state_dict(), tmp)
    return DistillResult(model=model, history=history, metrics=metrics, method=objective.spec,
                         objective=objective, checkpoint=ckpt, name="text")


@register_recipe
class TextRecipe:
    """``distill()`` on :class:`~edgekd.data.text.TextSplits`: :func:`distill_text` (its own loop defaults: lr 1e-3,
    warm-up, clipping; ``k``, ``warmup``, ``cache_dtype`` are its keywords)."""

    name = "text"
    summary = "token ids (TextSplits): a sentence encoder follows the teacher's (distill_text)"
    order = 0
    options = ()

    @staticmethod
    def claims(data: Any, options: Mapping[str, Any]) -> bool:
        return isinstance(data, TextSplits)

    @staticmethod
    def run(teacher: Any, student: Any, data: Any, method: Any, *, config: TrainConfig | None = None,
            cache_teacher: Any = None, teacher_weights: Any = None, qat: bool = False, prune: Any = None,
            budget: Any = None, **kw: Any) -> DistillResult:
        refused = given({"qat": qat, "prune": prune, "budget": budget, "teacher_weights": teacher_weights,
                         "cache_teacher=True/False": None if cache_teacher is None or isinstance(cache_teacher, TeacherCache)
                         else True})
        if refused:
            raise ConfigError(f"text distillation does not take {', '.join(refused)}", stage=STAGE,
                              hint="distil the encoder first, then quantize or export it; share a teacher cache "
                                   "by passing a TeacherCache")
        if config is not None:
            kw = {**{f: getattr(config, f) for f in ("epochs", "batch_size", "lr", "weight_decay", "seed", "progress",
                                                     "out_dir", "resume")}, **kw}
        if isinstance(cache_teacher, TeacherCache):
            kw["teacher_cache"] = cache_teacher
        method = DEFAULT_TEXT_METHOD if method is None else method
        return distill_text(teacher, student, data, method, **kw)
