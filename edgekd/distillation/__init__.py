"""Distillation: ``distill(teacher, student, data, method="ce + kd:9(ls)") -> DistillResult``.

``method`` composes registered losses with weights (``"kd"``, ``"ce+kd"``, ``"ce:0.1 + kd:0.9"``;
:func:`methods` lists them). The default, ``"ce + kd:9(ls)"`` (:data:`~edgekd.settings.DEFAULT_METHOD`), is KD
on standardized logits at T = 2: it does not fight a confident teacher's logit scale (plain ``"ce+kd"`` at
T = 4 lost to the student alone from a teacher trained elsewhere; RESULTS.md). Extra keyword arguments configure the losses, prefixed with the
method's name or nested::

    distill(teacher, student, data, method="ce:0.1+kd:0.9", kd_T=4.0)
    distill(teacher, student, data, method="ce:0.1+kd:0.9", kd={"T": 4.0})

:func:`train` is the same loop without a teacher (method ``"ce"``).

Strategies (:mod:`edgekd.distillation.strategies`) pick how networks train together, from the method:

    distill([t1, t2], student, data, method="ce+ensemble", teacher_weights=[2, 1])  # multi-teacher
    distill(None, [net1, net2], data, method="dml")      # online peers (also "afd"); result.models
    distill(None, student, data, method="self")          # early exits (edgekd.models.exits)

Recipes (:mod:`edgekd.distillation.recipes`) are what is more than one strategy; ``distill()`` hands them the
calls they claim, and they return the same :class:`DistillResult`:

    distill(teacher, student, text_splits)                # sentence encoders (edgekd.distillation.text)
    edgekd.distill(teacher, student, data, qat=True, prune=0.5)   # the edge pipeline (edgekd.edge)

Offline KD caches the teacher's logits and tapped features by default when that is exact and fits
in memory (``cache_teacher``).
Under ``torchrun`` the same call trains data-parallel (:mod:`edgekd.distillation.parallel`; a torchrun entry: :mod:`edgekd.distillation.ddp`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from torch import nn
from torch.utils.data import Dataset

from edgekd.data.core import DataSplits
from edgekd.data.loading import as_splits
from edgekd.distillation import losses as _losses  # noqa: F401  (fills the method registry)
from edgekd.distillation.cache import TeacherCache
from edgekd.distillation.methods import (
    DistillLoss,
    Objective,
    StepContext,
    build_objective,
    methods,
    parse_method,
    register_method,
)
from edgekd.distillation.recipes import RECIPES, claimed, given, register_recipe
from edgekd.distillation.result import DistillResult
from edgekd.distillation.strategies import EnsembleTeacher, Strategy, make_strategy
from edgekd.distillation.taps import Taps
from edgekd.distillation.trainer import TrainConfig, Trainer
from edgekd.errors import ConfigError
from edgekd.eval.classification import evaluate
from edgekd.settings import DEFAULT_METHOD

if TYPE_CHECKING:
    from edgekd.data.text import TextSplits

__all__ = [
    "DistillLoss",
    "DistillResult",
    "EnsembleTeacher",
    "Objective",
    "RECIPES",
    "StepContext",
    "Strategy",
    "Taps",
    "TeacherCache",
    "TrainConfig",
    "Trainer",
    "build_objective",
    "distill",
    "evaluate",
    "make_strategy",
    "methods",
    "parse_method",
    "register_recipe",
    "register_method",
    "train",
]


def distill(teacher: nn.Module | Sequence[nn.Module] | None, student: nn.Module | Sequence[nn.Module],
            data: DataSplits | Dataset | str | Sequence[Dataset] | TextSplits,
            method: str | Sequence[tuple[str, float]] | Mapping[str, float] | None = None, *,
            qat: bool = False, prune: float | None = None, budget: Any = None,
            on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
            cache_teacher: bool | TeacherCache | None = None, teacher_weights: Sequence[float] | None = None,
            config: TrainConfig | None = None, **kwargs: Any) -> DistillResult:
    """Train a copy of ``student`` on ``data`` with ``method``, against a frozen ``teacher``.

    ``method`` None is the recipe's own default: :data:`~edgekd.settings.DEFAULT_METHOD` for images,
    :data:`~edgekd.settings.DEFAULT_TEXT_METHOD` for text.

    The loop settings are :class:`TrainConfig`'s fields, passed as keywords (``epochs=10``,
    ``batch_size=128``, ``lr``, ``optimizer="adamw"``, ``weight_decay``, ``seed=0``, ``device="cpu"``,
    ``progress=True``, ``out_dir``, ``resume``, ``schedule_span``, ...) or as ``config=`` (keywords
    override it); every other keyword is a method option (``kd_T=4.0``). ``lr`` None picks 2e-3 for
    AdamW, 0.05 for SGD. With ``out_dir``, checkpoints go to ``out_dir/checkpoint.pt`` and
    ``resume=True`` continues an interrupted run exactly; ``schedule_span=(a, b)`` runs only the part of
    the cosine learning-rate schedule from fraction ``a`` to ``b`` (a long schedule split over calls).

    ``data`` is :class:`~edgekd.data.DataSplits` (:func:`edgekd.data.load`), a data set name or ``"folder:PATH"``,
    or any map-style ``Dataset`` of ``(image, label)`` (a ``(train, val[, test])`` tuple of them;
    :func:`edgekd.data.from_datasets` splits one by a seeded stratified draw of indices).

    The ``student`` passed in is not modified (a deep copy is trained and returned); the teacher
    is put back in its original mode and ``requires_grad`` flags afterwards. ``teacher`` may be a list
    (an :class:`EnsembleTeacher` with ``teacher_weights``, at the method's temperature); ``student`` a
    list of peers for online methods (``"dml"``, ``"afd"``). ``cache_teacher``: None caches teacher
    outputs when exact and under 1 GiB, True insists, False never, or a :class:`TeacherCache` to reuse.

    The one training entry point: the arguments pick the recipe (:mod:`edgekd.distillation.recipes`), and every
    one returns a :class:`DistillResult`:

    - ``data`` a :class:`~edgekd.data.text.TextSplits` (token ids): task-agnostic distillation of a sentence
      encoder (:func:`edgekd.distillation.text.distill_text`; its keywords: ``k``, ``warmup``, ``cache_dtype``);
    - ``qat=True``, ``prune=RATIO`` or ``budget="latency_ms=2"`` (``params=…``, ``bytes=…``, or an
      :class:`edgekd.edge.Budget`): the edge pipeline (:class:`edgekd.edge.pipeline.EdgePipeline`, registered by
      ``edgekd.edge``, which ``edgekd.distill`` imports): KD for ``epochs`` → channel pruning (none with ``qat``
      alone) → KD + QAT, or KD fine-tune + PTQ, for ``ft_epochs`` (default 2); ``result.prepared`` (the QAT graph
      to lower), ``int8_model``, ``ratio``, ``stages``. The QAT stage alone, for a student already trained, is
      :func:`edgekd.edge.qat.distill_qat`.
    """
    chosen = {"qat": qat, "prune": prune, "budget": budget}
    recipe = claimed(data, chosen)
    if recipe is not None:
        return recipe.run(teacher, student, data, method, on_epoch_end=on_epoch_end, cache_teacher=cache_teacher,
                          teacher_weights=teacher_weights, config=config, **chosen, **kwargs)
    if given(chosen):
        raise ConfigError(f"{', '.join(given(chosen))}: no recipe is registered for them; they are the edge "
                          "pipeline's, which registers when edgekd.edge is imported", stage="distill",
                          hint="call edgekd.distill(...) (it imports edgekd.edge), or `import edgekd.edge` first")
    method = DEFAULT_METHOD if method is None else method  # None: each recipe's own default
    config, method_kwargs = TrainConfig.split(kwargs, config)
    data = as_splits(data, seed=config.seed)
    objective = build_objective(method, **method_kwargs)
    if isinstance(teacher, Sequence):
        T = next((float(loss.T) for loss in objective.losses.values() if hasattr(loss, "T")), 1.0)
        teacher = EnsembleTeacher(list(teacher), teacher_weights, T=T, features=objective.teacher_taps)
    nets = list(student) if isinstance(student, Sequence) else [student]
    hooked = [n for net in nets for n, p in net.named_parameters() if getattr(p, "_backward_hooks", None)]
    if hooked:  # deepcopy does not copy tensor hooks: e.g. models.adder.adaptive_lr would silently do nothing
        warnings.warn(f"distill() trains a copy of the student, and the gradient hooks on its parameters "
                      f"{', '.join(hooked[:3])}{' …' if len(hooked) > 3 else ''} do not carry over to the copy; "
                      "to keep them, train the module itself with Trainer(student, data, build_objective(...), "
                      "TrainConfig(...)).fit()", UserWarning, stacklevel=2)
    model = [copy.deepcopy(s) for s in student] if isinstance(student, Sequence) else copy.deepcopy(student)
    model, teacher = _logits_models(model, teacher, data)
    strategy = make_strategy(objective, model, teacher, cache_teacher)
    trainer = Trainer(None, data, objective, config, strategy=strategy, on_epoch_end=on_epoch_end)
    history = trainer.fit()
    last = history[-1]
    evals = strategy.eval_models()
    tests = {k: evaluate(m, data.test, device=config.device) for k, m in evals.items()}
    metrics = {"val_acc": last["val_acc"], "val_loss": last["val_loss"], "best_val_acc": trainer.best["val_acc"],
               "best_epoch": trainer.best["epoch"]}
    best = next(iter(evals))
    if len(evals) > 1:
        best = max(evals, key=lambda k: last[f"val_acc_{k}"])
        metrics.update({f"{m}_{k}": last[f"{m}_{k}"] for k in evals for m in ("val_acc", "val_loss")})
        metrics.update({f"test_{m}_{k}": tests[k][m] for k in evals for m in ("acc", "loss")})
    metrics.update({"test_acc": tests[best]["acc"], "test_loss": tests[best]["loss"]})
    return DistillResult(model=evals[best], history=history, metrics=metrics, checkpoint=trainer.checkpoint_path,
                         best_path=trainer.best_path, method=objective.spec, objective=objective,
                         models=list(evals.values()))


def _logits_models(model: Any, teacher: Any, data: DataSplits) -> tuple[Any, Any]:
    """Students (copies) and teacher whose forward returns an output object or a tuple (a Hugging Face
    classifier, ``(logits, aux)``) are given one that returns the logits Tensor (:func:`edgekd.models.logits_only`;
    module paths and parameters unchanged). Checked with one eval-mode pass on one train sample."""
    from edgekd.models.logits import logits_only, returns_tensor

    if len(data.train) == 0:
        return model, teacher
    item = data.train[0]
    x = (item[0] if isinstance(item, (tuple, list)) else item).unsqueeze(0)

    def fix(net: Any, in_place: bool) -> Any:
        if isinstance(net, nn.Module) and not isinstance(net, EnsembleTeacher) and not returns_tensor(net, x):
            return logits_only(net, in_place=in_place)
        return net

    students = [fix(m, True) for m in model] if isinstance(model, list) else fix(model, True)
    return students, fix(teacher, False)


def train(student: nn.Module, data: DataSplits | Dataset | str | Sequence[Dataset], **kw: Any) -> DistillResult:
    """Plain supervised training (method ``"ce"``, no teacher); options as :func:`distill`."""
    return distill(None, student, data, kw.pop("method", "ce"), **kw)


from edgekd.distillation import text as _text  # noqa: E402, F401  (registers the text recipe)
