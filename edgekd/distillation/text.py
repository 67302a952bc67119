"""Task-agnostic distillation of sentence encoders: no labels, no accuracy, a frozen teacher.

::

    teacher = load_hf_encoder()                       # all-MiniLM-L6-v2, offline
    data = load_text("fortunes", teacher.tokenizer, max_length=32, n_train=4000)
    student = create("minilm_l3_h192", max_length=32)
    result = distill_text(teacher, student, data, method="minilm_v2 + emb_mse", epochs=3)
    result.metrics  # val cosine / top-k neighbour agreement with the teacher

Why not :class:`~edgekd.distillation.trainer.Trainer`: that loop is built around labelled
classification (``(x, y)`` items, cross-entropy/accuracy validation, best-by-``val_acc``). Here
items are token ids only and the score is agreement with the teacher
(:func:`edgekd.eval.embeddings.compare_embeddings`). This loop reuses the method registry
(``build_objective``: any registered loss composes, e.g. ``"minilm_v1 + emb_mse"``), :class:`Taps`,
the trainer's seeding and the strategies' :func:`freeze`/:func:`restore`.

The teacher is frozen and deterministic (eval mode), so its outputs (the embedding and the
tapped Q/K/V) are computed once for the whole train split and reused every epoch
(:class:`TeacherOutputs`, stored in ``cache_dtype``; pass one to several runs to share it: the
teacher's val/test embeddings are then also computed once, by the first run).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.data.text import TextSplits
from edgekd.distillation.losses.minilm import bind_objective
from edgekd.distillation.methods import Objective, StepContext, build_objective
from edgekd.distillation.strategies.base import freeze, restore
from edgekd.distillation.taps import Taps
from edgekd.distillation.trainer import seed_everything
from edgekd.errors import ConfigError
from edgekd.eval.embeddings import compare_embeddings, embed

STAGE = "distill/text"


@dataclass
class TeacherOutputs:
    """The frozen teacher's embedding and tapped features for every row of ``ids``."""

    ids: torch.Tensor
    embeddings: torch.Tensor
    features: dict[str, torch.Tensor]
    held_out: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    def covers(self, ids: torch.Tensor, paths: Sequence[str]) -> bool:
        return _same(self.ids, ids) and set(paths) <= set(self.features)

    def held_out_embeddings(self, teacher: nn.Module, split: str, ids: torch.Tensor) -> torch.Tensor:
        """The teacher's embeddings of a val/test ``split``, computed on first use and kept for later runs."""
        hit = self.held_out.get(split)
        if hit is not None and _same(hit[0], ids):
            return hit[1]
        emb = embed(teacher, ids)
        self.held_out[split] = (ids, emb)
        return emb


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.equal(a, b))


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, ids: torch.Tensor, paths: Sequence[str], batch_size: int = 64,
                    cache_dtype: torch.dtype = torch.float16, progress: bool = False) -> TeacherOutputs:
    """Run the (frozen) ``teacher`` over ``ids`` once; keep its embeddings and the outputs at ``paths``."""
    from tqdm.auto import tqdm

    state = freeze(teacher, "cpu")
    embs: list[torch.Tensor] = []
    feats: dict[str, list[torch.Tensor]] = {p: [] for p in paths}
    try:
        with Taps(teacher, paths) as taps:
            for i in tqdm(range(0, len(ids), batch_size), desc="teacher", disable=not progress, leave=False):
                embs.append(teacher(ids[i:i + batch_size]).float())
                for p in paths:
                    feats[p].append(taps[p].to(cache_dtype))
    finally:
        restore(teacher, state)
    return TeacherOutputs(ids=ids, embeddings=torch.cat(embs),
                          features={p: torch.cat(v) for p, v in feats.items()})


@dataclass
class TextDistillResult:
    """The trained student (last epoch), per-epoch history and final val/test agreement with the teacher."""

    model: nn.Module
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    method: str = ""
    objective: Objective | None = field(default=None, repr=False)
    checkpoint: Path | None = None


def distill_text(teacher: nn.Module, student: nn.Module, data: TextSplits,
                 method: str | Sequence[tuple[str, float]] | Mapping[str, float] = "minilm_v2 + emb_mse", *,
                 epochs: int = 3, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.01,
                 warmup: float = 0.06, seed: int = 0, k: int = 10, progress: bool = True,
                 teacher_cache: TeacherOutputs | None = None, cache_dtype: torch.dtype = torch.float16,
                 out_dir: str | Path | None = None,
                 on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
                 **method_kwargs: Any) -> TextDistillResult:
    """Train a copy of ``student`` to follow ``teacher`` on ``data.train`` token ids with ``method``.

    AdamW with linear warm-up over the first ``warmup`` fraction of steps, then cosine decay to 0.
    After each epoch the val split is scored (cosine, top-``k`` neighbour overlap); at the end the
    test split too. ``out_dir`` saves the final student weights as ``student.pt``. The
    ``student`` passed in is not modified; the teacher is restored to its mode and flags.
    """
    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"epochs={epochs} and batch_size={batch_size} must be >= 1", stage=STAGE)
    if len(data.train) < batch_size:
        raise ConfigError(f"{len(data.train)} training sentences are fewer than one batch of {batch_size}",
                          stage=STAGE, hint="lower batch_size or load more text")
    seed_everything(seed)
    model = copy.deepcopy(student).train()
    objective = build_objective(method, **method_kwargs)
    bind_objective(objective, model, teacher)
    paths = objective.teacher_taps
    cache = teacher_cache if teacher_cache is not None and teacher_cache.covers(data.train, paths) else \
        teacher_outputs(teacher, data.train, paths, cache_dtype=cache_dtype, progress=progress)
    params = [p for p in (*model.parameters(), *objective.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = len(data.train) // batch_size
    total = epochs * steps_per_epoch
    ramp = max(1, int(warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / ramp if s < ramp else
                                              0.5 * (1 + math.cos(math.pi * (s - ramp) / max(1, total - ramp))))
    teacher_val = cache.held_out_embeddings(teacher, "val", data.val)
    history: list[dict[str, Any]] = []
    gen = torch.Generator().manual_seed(seed)
    step = 0
    from tqdm.auto import tqdm

    with Taps(model, objective.student_taps) as taps:
        for epoch in range(epochs):
            t0, sums = time.perf_counter(), {}
            order = torch.randperm(len(data.train), generator=gen)[: steps_per_epoch * batch_size]
            bar = tqdm(order.view(steps_per_epoch, batch_size), desc=f"epoch {epoch + 1}/{epochs}",
                       disable=not progress, leave=True, dynamic_ncols=True)
            model.train()
            for idx in bar:
                ids = data.train[idx]
                out = model(ids)
                ctx = StepContext(student_logits=out, teacher_logits=cache.embeddings[idx],
                                  targets=torch.empty(0, dtype=torch.long), indices=idx, inputs=ids,
                                  student_features=dict(taps.outputs),
                                  teacher_features={p: cache.features[p][idx] for p in paths},
                                  epoch=epoch, step=step)
                loss, parts = objective(ctx)
                if not torch.isfinite(loss):
                    raise ConfigError(f"loss became {float(loss)} at step {step} ({objective.spec})", stage=STAGE,
                                      hint="lower lr, or check the teacher's outputs (cache_dtype=torch.float32)")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                step += 1
                for name, v in {"loss": loss.detach(), **parts}.items():
                    sums[name] = sums.get(name, 0.0) + float(v)
                bar.set_postfix(loss=f"{sums['loss'] / (bar.n + 1):.4f}", refresh=False)
            bar.close()
            val = compare_embeddings(model, teacher_val, data.val, k=k)
            row = {"epoch": epoch + 1, **{f"train_{n}": v / steps_per_epoch for n, v in sums.items()},
                   **{f"val_{n}": v for n, v in val.to_dict().items() if n not in ("n", "k")},
                   "lr": opt.param_groups[0]["lr"], "time_s": time.perf_counter() - t0}
            history.append(row)
            if on_epoch_end is not None:
                on_epoch_end(row)
    model.eval()
    test = compare_embeddings(model, cache.held_out_embeddings(teacher, "test", data.test), data.test, k=k)
    metrics = {**{k_: v for k_, v in history[-1].items() if k_.startswith("val_")},
               **{f"test_{n}": v for n, v in test.to_dict().items()}}
    ckpt = None
    if out_dir is not None:
        ckpt = Path(out_dir) / "student.pt"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), ckpt)
    return TextDistillResult(model=model, history=history, metrics=metrics, method=objective.spec,
                             objective=objective, checkpoint=ckpt)
