"""KD + QAT: the student trains with PT2E fake quantization while it distils from the float teacher.

::

    r = distill_qat(teacher, student, data, method="ce:0.1+kd:0.9+fitnet:1", epochs=3)
    files = write_int8(r.prepared, (x1,), "out/")        # edgekd.convert.qat: real int8 .pte and .tflite

How the pieces fit:

1. **Features on the QAT graph.** Forward hooks by module path do not survive ``torch.export``
   (the graph is flat). :class:`FeatureOutputs` runs the student under
   :class:`~edgekd.distillation.taps.Taps` *while it is traced*, so every tapped feature becomes an
   extra graph output: ``(logits, *features)``. Feature losses then read them by path as usual.
2. **Any batch size.** The student is exported with a dynamic batch dim
   (``torch.export.Dim``), so the fake-quantized graph trains at the loader's batch size and
   evaluates on a partial last batch.
3. **Fake quant.** ``prepare_qat_pt2e`` with ExecuTorch's ``XNNPACKQuantizer``
   (``is_qat=True``, symmetric int8, per-channel weights): weights and activations are rounded to
   int8 in the forward pass and the straight-through estimator carries gradients (Jacob et al.,
   "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
   Inference", CVPR 2018, https://arxiv.org/abs/1712.05877).
4. **Loss.** The registered methods of :mod:`edgekd.distillation` compose as in ``distill()``; the
   objective's trainable adapters (e.g. FitNet regressors) train with the student.
5. **Convert.** Lowering is the convert stage's (:mod:`edgekd.convert.qat`): ``convert_graph``
   drops the feature outputs and runs ``convert_pt2e``; ``write_int8`` lowers the result to an
   XNNPACK int8 ``.pte`` and, through litert-torch, to an int8-in/int8-out ``.tflite`` (both from
   the *same* trained fake-quant parameters); ``edgekd.export(..., qat=graph)`` does both and
   checks parity against the graph.

The loop is edgekd's own (not :class:`~edgekd.distillation.trainer.Trainer`): that Trainer calls
``model.eval()``, which a PT2E graph does not support (``move_exported_model_to_eval`` is needed),
and it taps features by hooks. See the report for the Trainer hook that would let it run this.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edgekd.convert.qat import set_mode
from edgekd.data.core import DataSplits, WithIndices
from edgekd.distillation.cache import TeacherCache
from edgekd.distillation.methods import StepContext, build_objective
from edgekd.distillation.taps import Taps
from edgekd.errors import ConfigError, ExportError

STAGE = "edge/qat"


class FeatureOutputs(nn.Module):
    """``forward(x) -> (logits, *features)``: the outputs of ``paths`` become real outputs.

    Tracing this with ``torch.export`` keeps the features, as the hooks run during tracing.
    """

    def __init__(self, model: nn.Module, paths: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.paths = list(paths)
        Taps(model, self.paths)  # fail early with a clear error on a wrong path

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with Taps(self.model, self.paths) as taps:
            logits = self.model(x)
            return (logits, *[taps[p] for p in self.paths])


def prepare_qat_features(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], taps: Sequence[str] = (),
                         *, per_channel: bool = True) -> torch.fx.GraphModule:
    """Export ``(logits, *taps)`` of a copy of ``model`` with a dynamic batch and insert fake quant.

    ``model`` is not changed. The result is in train mode and returns a tuple.
    """
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    from edgekd.quantization import _quantizer

    wrapped = FeatureOutputs(copy.deepcopy(model).train(), taps)
    x = example_inputs[0]
    if x.shape[0] < 2:  # a batch of 1 would be specialised as a constant
        x = torch.cat([x, x])
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    try:
        ep = torch.export.export(wrapped, (x, *example_inputs[1:]), dynamic_shapes=({0: batch},))
    except Exception as e:  # torch raises many types
        raise ExportError(f"torch.export could not trace {type(model).__name__} with a dynamic batch: "
                          f"{str(e).splitlines()[0][:300]}", stage=STAGE,
                          hint="remove batch-size-dependent Python code from forward()") from e
    return prepare_qat_pt2e(ep.module(), _quantizer(per_channel, is_qat=True))


@torch.no_grad()
def evaluate_graph(gm: torch.fx.GraphModule, dataset: Dataset, batch_size: int = 512) -> dict[str, float]:
    """Top-1 accuracy and cross-entropy of a ``(logits, ...)`` graph (eval mode, then train mode)."""
    set_mode(gm, train=False)
    correct, loss, n = 0, 0.0, 0
    for x, y, *_ in DataLoader(dataset, batch_size=batch_size):
        out = gm(x)
        logits = out[0] if isinstance(out, (tuple, list)) else out
        loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
    set_mode(gm, train=True)
    return {"acc": correct / max(n, 1), "loss": loss / max(n, 1)}


@dataclass
class QATResult:
    """The trained fake-quant graph (returns ``(logits, *features)``), its history and metrics."""

    prepared: torch.fx.GraphModule
    taps: list[str]
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    objective: nn.Module | None = None


def distill_qat(teacher: nn.Module | None, student: nn.Module, data: DataSplits, method: str = "ce:0.1+kd:0.9", *,
                epochs: int = 3, batch_size: int = 128, lr: float = 2e-3, weight_decay: float = 0.0,
                seed: int = 0, per_channel: bool = True, progress: bool = False,
                cache: TeacherCache | None = None, **method_kwargs: Any) -> QATResult:
    """Distil ``teacher`` into a fake-quantized copy of ``student`` (``student`` is not changed).

    ``method`` composes registered losses exactly as :func:`edgekd.distillation.distill` (e.g.
    ``"ce:0.1+kd:0.9+fitnet:1"`` with ``fitnet_student_taps=["layer2"]``); the student's taps are
    traced as extra outputs, the teacher's are recorded by hooks on the float teacher. Starts from
    the student's current weights (QAT is a fine-tuning stage: give it a trained student). ``lr``
    matches distill()'s AdamW default, so the joint and sequential fine-tunes compare fairly.
    ``cache``: a :class:`~edgekd.distillation.TeacherCache` of ``teacher`` over ``data.train`` (checked
    by fingerprint, widened to the objective's taps): the teacher's outputs are read by sample index
    instead of running the teacher every step.
    """
    if epochs < 1 or batch_size < 2:
        raise ConfigError(f"epochs={epochs} and batch_size={batch_size} must be >= 1 and >= 2", stage=STAGE)
    objective = build_objective(method, **method_kwargs)
    if objective.needs_teacher and teacher is None:
        raise ConfigError(f"method {objective.spec!r} needs a teacher and none was given", stage=STAGE,
                          hint="pass the float teacher, or method='ce' for plain QAT")
    torch.manual_seed(seed)
    s_taps, t_taps = objective.student_taps, objective.teacher_taps
    train = WithIndices(data.train)
    probe_x, probe_y, probe_i = next(iter(DataLoader(train, batch_size=batch_size)))
    gm = prepare_qat_features(student, (probe_x,), s_taps, per_channel=per_channel)
    teacher_mode = teacher.training if teacher is not None else False
    if teacher is not None:
        teacher.eval()
    if cache is not None and teacher is not None and objective.needs_teacher:
        cache.ensure(teacher, data.train, t_taps)
    else:
        cache = None

    def step_ctx(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, epoch: int, step: int) -> StepContext:
        out = gm(x)
        t_logits, t_feats = None, {}
        if cache is not None:
            t_logits, t_feats = cache[idx], cache.features(idx, t_taps)
        elif teacher is not None and objective.needs_teacher:
            with torch.no_grad(), Taps(teacher, t_taps) as tt:
                t_logits = teacher(x)
                t_feats = {p: tt[p] for p in t_taps}
        return StepContext(student_logits=out[0], teacher_logits=t_logits, targets=y,
                           student_features=dict(zip(s_taps, out[1:], strict=True)),
                           teacher_features=t_feats, epoch=epoch, step=step, inputs=x, indices=idx)

    try:
        gen = torch.Generator().manual_seed(seed)
        loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=gen, drop_last=True)
        objective.setup(step_ctx(probe_x, probe_y, probe_i, 0, 0), len(data.train))
        params = list(gm.parameters()) + list(objective.parameters())
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * max(1, len(loader)))
        history: list[dict[str, Any]] = []
        step = 0
        for epoch in range(epochs):
            t0, total, parts_sum, n = time.perf_counter(), 0.0, {}, 0
            for x, y, idx in loader:
                loss, parts = objective(step_ctx(x, y, idx, epoch, step))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                total += float(loss.detach())
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + float(v)
                n += 1
            val = evaluate_graph(gm, data.val)
            row = {"epoch": epoch, "loss": total / max(n, 1), **{f"loss_{k}": v / max(n, 1) for k, v in parts_sum.items()},
                   "val_acc": val["acc"], "val_loss": val["loss"], "seconds": time.perf_counter() - t0}
            history.append(row)
            if progress:
                print(f"[qat] epoch {epoch + 1}/{epochs} loss {row['loss']:.4f} val_acc {row['val_acc']:.4f}")
    finally:
        if teacher is not None:
            teacher.train(teacher_mode)
    test = evaluate_graph(gm, data.test)
    metrics = {"val_acc": history[-1]["val_acc"], "test_acc": test["acc"], "test_loss": test["loss"]}
    return QATResult(prepared=gm, taps=s_taps, history=history, metrics=metrics, objective=objective)
