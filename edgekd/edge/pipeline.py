"""Pipelines: the joint edge-aware recipe and the sequential baseline, on the same data and epochs.

=============  ===========================================================================
``joint``      KD (``kd_epochs``) → prune (ratio, or the one a budget picks) → KD **+ QAT**
               (``ft_epochs``; the teacher guides the pruned, fake-quantized student) → int8.
               ``gradual=True``: the KD stage itself prunes, in steps between its epochs, so
               the student reaches the final widths under distillation (Zhu & Gupta, 2017, "To
               prune, or not to prune", with channels instead of weights); same total epochs
``sequential`` KD (``kd_epochs``) → prune (same ratio) → fine-tune with ``finetune_method``
               (``ft_epochs``, default CE: the classic prune → fine-tune) → PTQ int8
``ptq_only``   KD (``kd_epochs + ft_epochs``), no pruning → PTQ int8
=============  ===========================================================================

Every stage returns new models; the student passed in is not changed, and every pipeline returns the one
result type, :class:`~edgekd.distillation.DistillResult` (``int8_model``, ``prepared``, ``ratio``, ``stages``).
``edgekd.distill(..., qat=True, prune=0.5, budget="latency_ms=2")`` runs :func:`joint`; so does the CLI
(``edgekd distill … --qat --prune 0.5``, through :func:`parse_edge_options` and
:func:`edgekd.distillation.config.run`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from edgekd.data.core import DataSplits, as_tensors, calibration_sample
from edgekd.distillation.cache import TeacherCache
from edgekd.distillation.recipes import given, register_recipe
from edgekd.distillation.result import DistillResult, staged
from edgekd.edge.budget import Budget, BudgetResult, LatencyTable, cost_fn, fit_budget, parse_budget, verify
from edgekd.edge.prune import channels_of, prune, prune_to
from edgekd.errors import ConfigError
from edgekd.settings import DEFAULT_METHOD

if TYPE_CHECKING:
    from edgekd.distillation.config import DistillConfig, RunResult

STAGE = "edge/pipeline"


@dataclass(frozen=True)
class EdgeOptions:
    """What to do beyond distillation: QAT, a pruning ratio, or a budget that picks the ratio."""

    qat: bool = False
    prune: float | None = None
    budget: Budget | None = None
    importance: str = "l1"
    latency_precision: str = "int8"  # how a latency budget's table is measured (.pte)
    gradual: bool = False  # prune step by step during the KD stage (joint(gradual=True))


def parse_edge_options(qat: bool = False, prune: float | None = None, budget: str | None = None,
                       importance: str = "l1", gradual: bool = False) -> EdgeOptions:
    """The CLI's ``--qat --prune R --budget KIND=VALUE --prune-importance l1|bn --gradual`` as options."""
    if gradual and prune is None and budget is None:
        raise ConfigError("--gradual needs a pruning target", stage="cli/distill",
                          hint="add --prune RATIO or --budget KIND=VALUE")
    if prune is not None and budget is not None:
        raise ConfigError("--prune and --budget both set the pruning ratio", stage=STAGE,
                          hint="pass --prune RATIO or --budget KIND=VALUE (the ratio is then searched)")
    if prune is not None and not 0.0 <= prune < 1.0:
        raise ConfigError(f"--prune {prune} must be in [0, 1)", stage=STAGE, hint="e.g. --prune 0.5")
    if importance not in ("l1", "bn"):
        raise ConfigError(f"unknown importance {importance!r}; known: bn, l1", stage=STAGE)
    return EdgeOptions(qat=qat, prune=prune, budget=parse_budget(budget) if budget else None, importance=importance,
                       gradual=gradual)


PipelineResult = DistillResult  # the one result type (edgekd.distillation.result); old name kept


PTQ_BATCH = 50  # PT2E PTQ graphs keep the traced batch size


@torch.no_grad()
def _acc(model: nn.Module, data: DataSplits, batch: int = PTQ_BATCH) -> float:
    """Test accuracy in batches of exactly ``batch`` (the last one padded by repetition)."""
    x, y = as_tensors(data.test)
    correct = 0
    for i in range(0, len(y), batch):
        xb = x[i : i + batch]
        k = len(xb)
        if k < batch:
            xb = torch.cat([xb, xb[:1].expand(batch - k, *xb.shape[1:])])
        correct += int((model(xb)[:k].argmax(1) == y[i : i + k]).sum())
    return correct / max(len(y), 1)


def _ptq(model: nn.Module, data: DataSplits, n_calib: int = 250) -> nn.Module:
    from edgekd.quantization import quantize

    calib = calibration_sample(data.train, n_calib)
    return quantize(model, (calib[:PTQ_BATCH],), calib)


def choose_ratio(model: nn.Module, opts: EdgeOptions, example: torch.Tensor, *, table: LatencyTable | None = None,
                 calibration: torch.Tensor | None = None, check: bool = True) -> tuple[float, BudgetResult | None]:
    """The pruning ratio: ``opts.prune``, or the least pruning that meets ``opts.budget``.

    A latency budget without ``table`` measures one (int8 .pte at ratios 0, 0.5, 0.85 by the
    harness), and ``check`` measures the chosen model with the harness (``measured_margin``).
    """
    if opts.budget is None:
        return float(opts.prune or 0.0), None
    from edgekd.edge.budget import measure_latency_ms

    ex = (example[:1],)
    prec = opts.latency_precision

    def measure(m: nn.Module) -> float:
        return measure_latency_ms(m, ex, calibration=calibration, precision=prec, runs=50)

    if opts.budget.kind == "latency_ms" and table is None:
        table = LatencyTable.measure([prune(model, r, opts.importance) for r in (0.0, 0.5, 0.85)], ex,
                                     calibration=calibration, precision=prec)
    result = fit_budget(lambda r: prune(model, r, opts.importance), opts.budget, cost_fn(opts.budget, table))
    if check and opts.budget.kind == "latency_ms":
        verify(result, prune(model, result.value, opts.importance), measure)
    return result.value, result


def distill_stage(teacher: nn.Module, student: nn.Module, data: DataSplits, *, kd_epochs: int = 3,
                  method: str = "ce:0.1+kd:0.9", batch_size: int = 128, seed: int = 0, progress: bool = False,
                  cache: TeacherCache | None = None, **method_kwargs: Any) -> DistillResult:
    """The first stage of :func:`joint` and :func:`sequential` (the same for both): KD for ``kd_epochs``.

    Run it once and pass it to both as ``kd=`` to compare them from one distilled student.
    """
    from edgekd.distillation import distill

    return distill(teacher, student, data, method, epochs=kd_epochs, batch_size=batch_size, seed=seed,
                   progress=progress, cache_teacher=cache, **method_kwargs)


def gradual_stage(teacher: nn.Module, student: nn.Module, data: DataSplits, ratio: float, *, kd_epochs: int = 3,
                  importance: str = "l1", method: str = "ce:0.1+kd:0.9", batch_size: int = 128, seed: int = 0,
                  progress: bool = False, cache: TeacherCache | None = None,
                  **method_kwargs: Any) -> tuple[DistillResult, nn.Module]:
    """KD for ``kd_epochs`` with pruning steps between epochs: widths fall linearly to those of ``ratio``.

    The cuts come after epochs 1 … ``kd_epochs − 1`` (after the only epoch when ``kd_epochs`` is 1),
    so the last KD epoch already trains at the final widths. One cosine learning-rate schedule spans
    the whole stage (each epoch runs its part of it, ``schedule_span``); the optimizer restarts after
    each cut (the parameters changed shape). The final widths equal one-shot ``prune(student,
    ratio)``'s, so the result is the same architecture as :func:`sequential`'s. Returns the last
    epoch's result and the pruned model.
    """
    from edgekd.distillation import distill

    if kd_epochs < 1:
        raise ConfigError(f"gradual pruning needs kd_epochs >= 1 to prune between, got {kd_epochs}", stage=STAGE,
                          hint="pass kd_epochs=3 (cuts after epochs 1 and 2, the last epoch at the final widths)")
    full, final = channels_of(student), channels_of(prune(student, ratio, importance))  # type: ignore[arg-type]
    steps = max(kd_epochs - 1, 1)
    model, history, r = student, [], None
    for k in range(1, kd_epochs + 1):
        r = distill(teacher, model, data, method, epochs=1, batch_size=batch_size, seed=seed + 7919 * (k - 1),
                    progress=progress, cache_teacher=cache, schedule_span=((k - 1) / kd_epochs, k / kd_epochs),
                    **method_kwargs)
        model = r.model
        if k <= steps:
            counts = {g: round(full[g] - k / steps * (full[g] - final[g])) for g in full}
            model = prune_to(model, counts, importance)  # type: ignore[arg-type]
        history += [{**row, "epoch": k, "channels": sum(channels_of(r.model).values()),
                     "channels_after": sum(channels_of(model).values())} for row in r.history]
    assert r is not None  # kd_epochs >= 1
    r.history = history
    return r, model


def joint(teacher: nn.Module, student: nn.Module, data: DataSplits, opts: EdgeOptions, *, kd_epochs: int = 3,
          ft_epochs: int = 2, method: str = "ce:0.1+kd:0.9", batch_size: int = 128, seed: int = 0,
          table: LatencyTable | None = None, progress: bool = False, kd: DistillResult | None = None,
          cache: TeacherCache | None = None, gradual: bool = False, **method_kwargs: Any) -> DistillResult:
    """KD → prune → KD+QAT (or KD fine-tune + PTQ when ``opts.qat`` is False); see the module docstring.

    ``kd``: a :func:`distill_stage` result to start from instead of distilling ``student`` again;
    ``cache``: a :class:`~edgekd.distillation.TeacherCache` of ``teacher`` over ``data.train``, shared by every stage;
    ``gradual``: prune step by step during the KD stage (:func:`gradual_stage`) instead of once after it.
    """
    from edgekd.convert.qat import convert_graph
    from edgekd.distillation import distill
    from edgekd.edge.qat import distill_qat

    calib = calibration_sample(data.train, 256)
    if gradual:
        if kd is not None:
            raise ConfigError("gradual pruning runs its own KD stage; it cannot start from a distilled kd=",
                              stage=STAGE, hint="pass kd=None with gradual=True (or gradual=False to reuse kd)")
        # the ratio depends only on the architecture (params, bytes, latency), so the untrained student decides it
        ratio, budget = choose_ratio(student, opts, calib, table=table, calibration=calib)
        kd, pruned = gradual_stage(teacher, student, data, ratio, kd_epochs=kd_epochs, importance=opts.importance,
                                   method=method, batch_size=batch_size, seed=seed, progress=progress, cache=cache,
                                   **method_kwargs)
    else:
        if kd is None:
            kd = distill_stage(teacher, student, data, kd_epochs=kd_epochs, method=method, batch_size=batch_size,
                               seed=seed, progress=progress, cache=cache, **method_kwargs)
        ratio, budget = choose_ratio(kd.model, opts, calib, table=table, calibration=calib)
        pruned = prune(kd.model, ratio, opts.importance)  # type: ignore[arg-type]
    history = {"kd": kd.history}
    ft: DistillResult
    if opts.qat:
        ft = distill_qat(teacher, pruned, data, method, epochs=ft_epochs, batch_size=batch_size, seed=seed,
                         progress=progress, cache=cache, **method_kwargs)
        assert ft.prepared is not None  # distill_qat's graph
        int8, prepared, history["qat"] = convert_graph(ft.prepared), ft.prepared, ft.history
        float_model = pruned
    else:
        ft = distill(teacher, pruned, data, method, epochs=ft_epochs, batch_size=batch_size, seed=seed,
                     progress=progress, cache_teacher=cache, **method_kwargs)
        float_model, prepared, history["finetune"] = ft.model, None, ft.history
        int8 = _ptq(float_model, data)
    metrics = {"kd_fp32_acc": kd.metrics["test_acc"], "int8_acc": _acc(int8, data)}
    if not opts.qat:
        metrics["fp32_acc"] = ft.metrics["test_acc"]
    return _result("joint", ft, float_model, int8, prepared, ratio, metrics, history, budget)


def sequential(teacher: nn.Module, student: nn.Module, data: DataSplits, ratio: float, *, kd_epochs: int = 3,
               ft_epochs: int = 2, method: str = "ce:0.1+kd:0.9", finetune_method: str = "ce",
               importance: str = "l1", batch_size: int = 128, seed: int = 0, progress: bool = False,
               kd: DistillResult | None = None, cache: TeacherCache | None = None,
               **method_kwargs: Any) -> DistillResult:
    """KD → prune → fine-tune (``finetune_method``) → PTQ; see the module docstring (``kd``, ``cache``: as :func:`joint`)."""
    from edgekd.distillation import build_objective, distill

    if kd is None:
        kd = distill_stage(teacher, student, data, kd_epochs=kd_epochs, method=method, batch_size=batch_size,
                           seed=seed, progress=progress, cache=cache, **method_kwargs)
    pruned = prune(kd.model, ratio, importance)  # type: ignore[arg-type]
    ft_kwargs = method_kwargs if finetune_method == method else {}
    needs_teacher = build_objective(finetune_method, **ft_kwargs).needs_teacher
    ft = distill(teacher if needs_teacher else None, pruned, data, finetune_method, epochs=ft_epochs,
                 batch_size=batch_size, seed=seed, progress=progress, cache_teacher=cache if needs_teacher else None,
                 **ft_kwargs)
    int8 = _ptq(ft.model, data)
    metrics = {"kd_fp32_acc": kd.metrics["test_acc"], "fp32_acc": ft.metrics["test_acc"], "int8_acc": _acc(int8, data)}
    return _result("sequential", ft, ft.model, int8, None, ratio, metrics, {"kd": kd.history, "finetune": ft.history})


def ptq_only(teacher: nn.Module, student: nn.Module, data: DataSplits, *, kd_epochs: int = 3, ft_epochs: int = 2,
             method: str = "ce:0.1+kd:0.9", batch_size: int = 128, seed: int = 0, progress: bool = False,
             cache: TeacherCache | None = None, **method_kwargs: Any) -> DistillResult:
    """KD for ``kd_epochs + ft_epochs`` (same budget of epochs), no pruning, then PTQ."""
    kd = distill_stage(teacher, student, data, kd_epochs=kd_epochs + ft_epochs, method=method, batch_size=batch_size,
                       seed=seed, progress=progress, cache=cache, **method_kwargs)
    int8 = _ptq(kd.model, data)
    metrics = {"kd_fp32_acc": kd.metrics["test_acc"], "fp32_acc": kd.metrics["test_acc"], "int8_acc": _acc(int8, data)}
    return _result("ptq_only", kd, kd.model, int8, None, 0.0, metrics, {"kd": kd.history})


def _result(name: str, last: DistillResult, float_model: nn.Module, int8: nn.Module,
            prepared: torch.fx.GraphModule | None, ratio: float, metrics: dict[str, float],
            stages: dict[str, list[dict[str, Any]]], budget: BudgetResult | None = None) -> DistillResult:
    """A pipeline's :class:`DistillResult`: its last stage's objective, every stage's history."""
    return DistillResult(model=float_model, history=staged(stages), metrics=metrics, method=last.method,
                         objective=last.objective, prepared=prepared, int8_model=int8, ratio=ratio,
                         budget=budget, stages=stages, name=name,
                         taps=last.taps if prepared is not None else [])


@register_recipe
class EdgePipeline:
    """``distill(..., qat=True | prune=RATIO | budget="latency_ms=2")``: :func:`joint` — KD for ``epochs`` → prune
    (the ratio given, or the least that meets the budget) → KD + QAT for ``ft_epochs`` (default 2), or KD
    fine-tune + PTQ without ``qat``. Its other keywords: ``importance`` (``l1``/``bn``), ``gradual``, ``table``."""

    name = "edge"
    summary = "KD -> prune -> KD + QAT, or KD fine-tune + PTQ (joint)"
    order = 10
    options = ("qat", "prune", "budget")

    @staticmethod
    def claims(data: Any, options: Mapping[str, Any]) -> bool:
        return bool(given({k: options.get(k) for k in EdgePipeline.options}))

    @staticmethod
    def run(teacher: Any, student: Any, data: Any, method: Any, *, qat: bool = False, prune: float | None = None,
            budget: str | Budget | None = None, config: Any = None, cache_teacher: Any = None,
            on_epoch_end: Any = None, teacher_weights: Any = None, **kw: Any) -> DistillResult:
        from edgekd.data.loading import as_splits
        from edgekd.distillation import TeacherCache as _Cache
        from edgekd.distillation import parse_method

        refused = given({"teacher_weights": teacher_weights, "on_epoch_end": on_epoch_end,
                         "a list of teachers or students":
                         True if isinstance(teacher, Sequence) or isinstance(student, Sequence) else None})
        if refused:
            raise ConfigError(f"the edge pipeline (qat/prune/budget) does not take {', '.join(refused)}", stage=STAGE,
                              hint="distil one student from one teacher; read result.stages for every stage's epochs")
        if config is not None:  # a TrainConfig: the fields set away from their defaults
            kw = {**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                     if getattr(config, f.name) != f.default}, **kw}
        kw = {k: v for k, v in kw.items() if v is not None}  # unset loop settings: each stage's own default
        data = as_splits(data, seed=kw.get("seed", 0))
        method = DEFAULT_METHOD if method is None else method
        for name in {n for n, _ in parse_method(method)} & set(kw):  # nested options: kd={...} is joint()'s own kd=
            if isinstance(kw[name], Mapping):
                kw.update({f"{name}_{k}": v for k, v in kw.pop(name).items()})
        importance, gradual = kw.pop("importance", "l1"), kw.pop("gradual", False)
        if isinstance(budget, Budget):
            opts = EdgeOptions(qat=qat, prune=prune, budget=budget, importance=importance, gradual=gradual)
        else:
            opts = parse_edge_options(qat, prune, budget, importance=importance, gradual=gradual)
        cache = cache_teacher if isinstance(cache_teacher, _Cache) else None
        return joint(teacher, student, data, opts, kd_epochs=kw.pop("epochs", 3), method=method, cache=cache, **kw)


def run_edge(cfg: DistillConfig, opts: EdgeOptions, *, ft_epochs: int = 2, formats: Sequence[str] = ("pte", "tflite"),
             peers: int = 1, progress: bool = True) -> RunResult:
    """``edgekd distill --qat/--prune/--budget``: the run config through the one entry point
    (:func:`edgekd.distillation.config.run` with ``qat``/``prune``/``budget``: KD for ``cfg.epochs`` → prune →
    KD + QAT for ``ft_epochs``; the pruned float student saved as ``cfg.out/model.pt``, recording its widths),
    then, after QAT, the int8 ``formats`` lowered from the trained graph into ``cfg.out/bundle``, parity-checked
    against that graph on 200 test samples (``result.bundle``)."""
    from edgekd.convert import export
    from edgekd.distillation.config import run

    r = run(cfg, peers=peers, progress=progress, qat=opts.qat, prune=opts.prune, budget=opts.budget,
            importance=opts.importance, gradual=opts.gradual, ft_epochs=ft_epochs)
    if r.result.prepared is not None:
        splits = r.data
        assert splits is not None  # run() records its splits
        x_test, y_test = as_tensors(splits.test, n=200)
        r.bundle = export(r.result.model, (x_test[:1],), formats=formats, precision=("int8",), out_dir=Path(cfg.out) / "bundle",  # type: ignore[arg-type]
                          labels=list(splits.labels), preprocessing=splits.preprocessing(), model_name=cfg.student,
                          parity_data=(x_test, y_test), qat=r.result.prepared, progress=progress)
    return r
