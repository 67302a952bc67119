"""KD + QAT: the student trains with PT2E fake quantization while it distils from the float teacher.

::

    r = edgekd.distill(teacher, student, data, "ce:0.1+kd:0.9+fitnet:1", qat=True, epochs=3)  # distill_qat
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

The loop is the :class:`~edgekd.distillation.trainer.Trainer`'s, with :class:`QATStrategy`: a PT2E
graph switches mode through torchao's ``move_exported_model_to_eval``/``_train`` (not ``.eval()``),
and its features are graph outputs, not hooks; the teacher side (frozen, cached or tapped) is offline
KD's. So QAT gets progress, checkpoints and resume, DDP and the teacher cache like any other run.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edgekd.convert.qat import Logits, set_mode
from edgekd.data.core import DataSplits
from edgekd.distillation.cache import TeacherCache
from edgekd.distillation.methods import Objective, StepContext, build_objective
from edgekd.distillation.result import DistillResult
from edgekd.distillation.strategies.offline import OfflineStrategy
from edgekd.distillation.taps import Taps
from edgekd.distillation.trainer import TrainConfig, Trainer
from edgekd.errors import ConfigError, ExportError
from edgekd.eval.classification import evaluate
from edgekd.extras import requires

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
    with requires("executorch", "KD + QAT (PT2E fake quantization)"):
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


def evaluate_graph(gm: torch.fx.GraphModule, dataset: Dataset, batch_size: int = 512) -> dict[str, float]:
    """Top-1 accuracy and cross-entropy of a ``(logits, ...)`` graph (eval mode, then train mode)."""
    set_mode(gm, train=False)
    try:
        return graph_accuracy(gm, dataset, batch_size)
    finally:
        set_mode(gm, train=True)


@torch.no_grad()
def graph_accuracy(gm: torch.fx.GraphModule, dataset: Dataset, batch_size: int = 512) -> dict[str, float]:
    """:func:`~edgekd.eval.evaluate` for a ``(logits, ...)`` graph, in the mode it is in."""
    return evaluate(Logits(gm), dataset, batch_size, keep_mode=True)


QATResult = DistillResult  # the one result type (edgekd.distillation.result); old name kept


class QATStrategy(OfflineStrategy):
    """Offline KD into a fake-quantized graph that returns ``(logits, *features)`` (:func:`prepare_qat_features`).

    The student's features are the graph's extra outputs (hooks cannot reach into a flat graph); the
    teacher is frozen, cached or tapped exactly as in offline KD. A PT2E graph switches train/eval
    mode through torchao (``.train()`` does not work on it), and is validated by :func:`evaluate_graph`.
    """

    kind = "qat"

    def __init__(self, graph: torch.fx.GraphModule, taps: Sequence[str], objective: Objective,
                 teacher: nn.Module | None = None, cache: bool | TeacherCache | None = None) -> None:
        super().__init__(graph, objective, teacher, cache=cache)
        self.taps = list(taps)
        self._training = True  # prepare_qat_features returns the graph in train mode

    def student_mode(self, train: bool) -> None:
        if train != self._training:  # each switch rewrites the graph (~1-2 s): only when it changes
            set_mode(self.student, train)  # type: ignore[arg-type]
            self._training = train

    def enter(self, stack: ExitStack, device: str, train: Dataset) -> None:
        self.enter_teacher(stack, device, train)  # no hooks on the graph: its features are outputs

    def context(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, epoch: int, step: int) -> StepContext:
        t_logits, t_feats = self.teacher_outputs(x, idx)
        out = self.student(x)
        return StepContext(student_logits=out[0], teacher_logits=t_logits, targets=y, indices=idx,
                           student_features=dict(zip(self.taps, out[1:], strict=True)),
                           teacher_features=t_feats, epoch=epoch, step=step, inputs=x)

    def validate(self, data: Any, device: str) -> dict[str, float]:
        self.student_mode(False)  # the next epoch switches back
        r = graph_accuracy(self.student, data.val)  # type: ignore[arg-type]
        return {"val_acc": r["acc"], "val_loss": r["loss"]}


def distill_qat(teacher: nn.Module | None, student: nn.Module, data: DataSplits, method: str = "ce:0.1+kd:0.9", *,
                epochs: int = 3, batch_size: int = 128, lr: float = 2e-3, weight_decay: float = 0.0,
                seed: int = 0, labelled_per_batch: int = 0, val_every: int = 1, num_workers: int | None = None,
                per_channel: bool = True,
                progress: bool = False, cache: bool | TeacherCache | None = None, out_dir: str | Path | None = None,
                resume: bool = False,
                on_epoch_end: Callable[[dict[str, Any]], None] | None = None, **method_kwargs: Any) -> DistillResult:
    """Distil ``teacher`` into a fake-quantized copy of ``student`` (``student`` is not changed).

    ``method`` composes registered losses exactly as :func:`edgekd.distillation.distill` (e.g.
    ``"ce:0.1+kd:0.9+fitnet:1"`` with ``fitnet_student_taps=["layer2"]``); the student's taps are
    traced as extra outputs, the teacher's are recorded by hooks on the float teacher. Starts from
    the student's current weights (QAT is a fine-tuning stage: give it a trained student). ``lr``
    matches distill()'s AdamW default, so the joint and sequential fine-tunes compare fairly; no
    weight decay, the last partial batch is dropped; ``labelled_per_batch``, ``val_every`` and ``num_workers`` as distill()'s
    (mixed batches of a transfer set; validate every N-th epoch). The loop is the Trainer's: progress, ``out_dir``
    checkpoints and ``resume=True``, DDP, and the teacher cache: ``cache`` as ``distill``'s
    ``cache_teacher`` (None: cache when exact and small; a :class:`~edgekd.distillation.TeacherCache`
    of ``teacher`` over ``data.train`` is checked by fingerprint and widened to the objective's taps).
    """
    if batch_size < 2:
        raise ConfigError(f"batch_size={batch_size} must be >= 2 (BatchNorm in train mode)", stage=STAGE)
    objective = build_objective(method, **method_kwargs)
    if objective.needs_teacher and teacher is None:
        raise ConfigError(f"method {objective.spec!r} needs a teacher and none was given", stage=STAGE,
                          hint="pass the float teacher, or method='ce' for plain QAT")
    torch.manual_seed(seed)
    probe_x = next(iter(DataLoader(data.train, batch_size=batch_size)))[0]
    gm = prepare_qat_features(student, (probe_x,), objective.student_taps, per_channel=per_channel)
    strategy = QATStrategy(gm, objective.student_taps, objective, teacher, cache=cache)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                         labelled_per_batch=labelled_per_batch, val_every=val_every, num_workers=num_workers,
                         progress=progress,
                         out_dir=Path(out_dir) if out_dir is not None else None, resume=resume, drop_last=True)
    trainer = Trainer(None, data, objective, config, strategy=strategy, on_epoch_end=on_epoch_end)
    history = trainer.fit()
    test = evaluate_graph(gm, data.test)
    metrics = {"val_acc": history[-1]["val_acc"], "test_acc": test["acc"], "test_loss": test["loss"]}
    return DistillResult(model=Logits(gm), history=history, metrics=metrics, checkpoint=trainer.checkpoint_path,
                         method=objective.spec, objective=objective,
                         prepared=gm, taps=list(objective.student_taps), name="qat")
