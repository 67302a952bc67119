"""``fit(teacher, data, target=…, budget=…)``: the search and the delivery, composed of the existing stages.

1. **Check** the settings, the budget (:func:`edgekd.edge.budget.parse_budget`), the ``require`` terms,
   the targets (reachable, their fingerprint and runtime), the data and the teacher (its class count and
   input must fit the data) — before any work.
2. **Candidates** (:mod:`edgekd.fit.space`): each architecture is built untrained; for each format and
   precision its file's coverage comes from the latency table or from an untrained export
   (:mod:`edgekd.fit.coverage`); each deployment's latency on each target from the table or the bench
   harness (:mod:`edgekd.fit.measure`). Everything is kept as it finishes.
3. **Select** (:mod:`edgekd.fit.select`): verdicts, the impossible-budget message, the proxy set.
4. **Proxies** (:mod:`edgekd.fit.proxy`): short distillations, each appended to ``OUT/proxies.jsonl``.
5. **Deliver** the chosen one: the full distillation (:func:`edgekd.distill`, or the edge pipeline
   :func:`edgekd.edge.pipeline.joint` with ``qat``/``prune``), ``OUT/model.pt``, the parity-checked
   bundle ``OUT/bundle`` (:func:`edgekd.export`), the final benchmark on every target (``OUT/results.jsonl``)
   gated by the budget and ``require`` (:mod:`edgekd.bench.gate`), ``OUT/fit.json`` and the HTML report.

``resume=True`` continues in the same ``OUT``: proxies already run are read back, the full
distillation continues from its checkpoint; measurements and exports come from the latency table
whether or not ``resume`` is given.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.bench.gate import Miss, Requirement, check, parse_require
from edgekd.bench.results import BenchResult
from edgekd.bundle import Bundle
from edgekd.data.core import DataSplits, calibration_sample
from edgekd.edge.budget import Budget, parse_budget
from edgekd.errors import ConfigError, DataError, EdgekdError
from edgekd.fit.config import FitSettings, settings_of
from edgekd.fit.coverage import Exporter
from edgekd.fit.measure import Guard, Measurer, file_lock
from edgekd.fit.proxy import Proxies, ProxyResult, Resized, Schedule, at_resolution, resize_images
from edgekd.fit.select import Candidate, choose, classify, fronts, impossible, proxy_set
from edgekd.fit.space import Arch, Space
from edgekd.fit.store import LatencyStore

STAGE = "fit"
FIT_JSON = "fit.json"
PROXIES = "proxies.jsonl"
EVAL_SAMPLES = 1000  # test images the final benchmark scores on the device


@dataclass
class FitResult:
    """What :func:`fit` found and delivered; ``doc`` is what ``OUT/fit.json`` holds."""

    out: Path
    chosen: Candidate
    candidates: list[Candidate]
    proxies: list[ProxyResult]
    fronts: dict[str, list[int]]
    model: nn.Module | None = None
    model_path: Path | None = None
    bundle: Bundle | None = None
    bench: list[BenchResult] = field(default_factory=list)
    misses: list[Miss] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    doc: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """The final benchmark ran on every target and met the budget and every requirement."""
        return bool(self.bench) and not self.misses and all(r.ok for r in self.bench)


def _say(progress: bool, text: str) -> None:
    if progress:
        from edgekd.quiet import terminal

        print(f"fit: {text}", file=terminal(), flush=True)


def import_modules(names: tuple[str, ...]) -> None:
    """Import each module name or ``.py`` file (their ``@register_model`` factories become families); a file
    already imported by an earlier call is not run again (its models are registered)."""
    import hashlib

    for name in names:
        path = Path(name)
        try:
            if path.suffix == ".py":
                if not path.is_file():
                    raise FileNotFoundError(name)
                key = "edgekd_fit_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
                if key in sys.modules:
                    continue
                spec = importlib.util.spec_from_file_location(key, path)
                module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
                spec.loader.exec_module(module)  # type: ignore[union-attr]
                sys.modules[key] = module
            else:
                importlib.import_module(name)
        except (ImportError, FileNotFoundError, SyntaxError) as e:
            raise ConfigError(f"cannot import student module {name!r}: {type(e).__name__}: {e}", stage=STAGE,
                              hint="pass a module on sys.path (my_models) or a .py file that registers models "
                                   "with @edgekd.models.register_model") from None


def check_teacher(teacher: nn.Module, splits: DataSplits) -> None:
    """The teacher must take the data's images and predict its classes; else a DataError saying which."""
    x = splits.val.tensors[0][:2]  # type: ignore[attr-defined]
    was = teacher.training
    try:
        teacher.eval()
        with torch.no_grad():
            y = teacher(x)
    except Exception as e:  # noqa: BLE001  (any failure to run is the same bad input)
        raise DataError(f"the teacher cannot run on {splits.name} images of shape {tuple(x.shape[1:])}: "
                        f"{str(e).splitlines()[0][:200]}", stage=STAGE,
                        hint=f"distil from a teacher trained on {splits.name} (edgekd train --data {splits.name})"
                        ) from None
    finally:
        teacher.train(was)
    if not isinstance(y, torch.Tensor) or y.ndim != 2 or y.shape[1] != splits.num_classes:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise DataError(f"the teacher predicts {got[1] if isinstance(got, tuple) and len(got) == 2 else got} classes "
                        f"but {splits.name} has {splits.num_classes} ({', '.join(map(str, splits.labels[:5]))}"
                        f"{', …' if len(splits.labels) > 5 else ''})", stage=STAGE,
                        hint=f"use a teacher trained on {splits.name}'s {splits.num_classes} classes "
                             f"(edgekd train --data {splits.name}), or the data set the teacher was trained on")


def _load(teacher: nn.Module | str | Path, data: DataSplits | str, s: FitSettings) -> tuple[nn.Module, DataSplits]:
    from edgekd import data as D
    from edgekd.models.saved import load_model

    splits = data if isinstance(data, DataSplits) else D.load(str(data), root=s.data_root, seed=s.seed)
    model = teacher if isinstance(teacher, nn.Module) else load_model(teacher)[0]
    check_teacher(model, splits)
    return model, splits


def _check_out(out: Path, resume: bool) -> None:
    if out.exists() and any(out.iterdir()) and not resume:
        raise ConfigError(f"{out} already holds files (an earlier fit?)", stage=STAGE,
                          hint="pass --resume (resume=True) to continue it, or another --out; measurements are "
                               "reused from the latency table either way")
    out.mkdir(parents=True, exist_ok=True)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` atomically (a temporary name, then a rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, path)


def _read_proxies(path: Path, schedule: str) -> dict[str, ProxyResult]:
    """The proxy runs of ``OUT/proxies.jsonl`` made with the same stated schedule, by architecture spec."""
    done: dict[str, ProxyResult] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            d = json.loads(line)
            if d.get("schedule") == schedule:
                done[d["arch"]] = ProxyResult(**{k: d[k] for k in ProxyResult.__dataclass_fields__})
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut off by an interruption
    return done


def _append(path: Path, doc: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(doc) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _candidates(space: Space, splits: DataSplits, exporter: Exporter, measurer: Measurer, strict: bool,
                progress: bool, on_event: Callable[[str, dict[str, Any]], None], out: list[Candidate]) -> None:
    """Build, export (or look up) and measure (or look up) every candidate into ``out`` (as they are made, so
    an interrupted search still lists what it had); see the module docstring."""
    from tqdm.auto import tqdm

    from edgekd.models.complexity import count_params, flops

    archs, deploys = space.archs(splits.image_size), space.deploys()
    pairs = list(dict.fromkeys((d.format, d.precision) for d in deploys))
    calib_native = calibration_sample(splits.train, 12, seed=0)  # 8 to calibrate int8, 4 for parity
    bar = tqdm(archs, desc="fit: candidates", unit="arch", disable=not progress, leave=False)
    for arch in bar:
        bar.set_postfix_str(arch.name)
        shape = arch.input_shape(splits.in_channels, splits.image_size)
        try:
            torch.manual_seed(0)
            model = arch.build(splits.num_classes, splits.in_channels)
            params, fl = count_params(model), flops(model, shape)
        except Exception as e:  # noqa: BLE001  (a bad knob value, a model that does not take this input)
            why = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}" if str(e) else type(e).__name__
            out += [Candidate(arch, d, shape, build_error=why) for d in deploys]
            continue
        calib = resize_images(calib_native, arch.resolution)
        for fmt, prec in pairs:
            group = [Candidate(arch, d, shape, params, fl) for d in deploys if (d.format, d.precision) == (fmt, prec)]
            out += group
            cov = exporter.known(arch, shape, fmt, prec)
            for c in group:
                c.coverage = cov
                c.measured = measurer.known(arch, shape, c.deploy)
            missing = {c.deploy: [t.url for t in measurer.targets if t.url not in c.measured] for c in group}
            if cov is not None and (not cov.ok or (strict and cov.fallback) or not any(missing.values())):
                continue
            bundle = exporter.bundle(arch, fmt, prec) if cov is not None else None
            if bundle is None:
                bundle, cov = exporter.export(arch, model, shape, fmt, prec, calib)
                on_event("exported", {"arch": arch.name, "format": fmt, "precision": prec, "ok": cov.ok,
                                      "error": cov.error})
                for c in group:
                    c.coverage = cov
            if bundle is None or not cov.ok or (strict and cov.fallback):
                continue
            for c in group:
                if missing[c.deploy]:
                    c.measured.update(measurer.measure(bundle, str(cov.file_key), arch, shape, c.deploy,
                                                       missing[c.deploy]))
    bar.close()


def _final(teacher: nn.Module, chosen: Candidate, splits: DataSplits, s: FitSettings, out: Path, *, qat: bool,
           resume: bool, progress: bool, method_options: dict[str, Any]) -> tuple[nn.Module, Bundle, dict[str, float]]:
    """The chosen student's full run, saved, and its parity-checked bundle."""
    from edgekd.convert import export
    from edgekd.data import as_tensors
    from edgekd.distillation import distill
    from edgekd.models.saved import save_model

    arch, d = chosen.arch, chosen.deploy
    data = at_resolution(splits, arch.resolution)
    t = teacher if arch.resolution is None else Resized(teacher, tuple(splits.image_size))
    torch.manual_seed(s.seed)
    student = arch.build(splits.num_classes, splits.in_channels)
    loop = {"batch_size": s.batch_size, "seed": s.seed, "progress": progress, **method_options}
    prepared = None
    if qat or s.prune is not None:
        from edgekd.edge.pipeline import EdgeOptions, joint

        r = joint(t, student, data, EdgeOptions(qat=qat, prune=s.prune), kd_epochs=s.epochs, ft_epochs=s.ft_epochs,
                  method=s.method, **({"lr": s.lr} if s.lr is not None else {}), **loop)
        model, prepared, metrics = r.float_model, r.prepared, dict(r.metrics)
        metrics["prune_ratio"] = r.ratio
    else:
        r = distill(t, student, data, s.method, epochs=s.epochs, lr=s.lr, out_dir=out / "final", resume=resume
                    and (out / "final" / "checkpoint.pt").exists(), **loop)
        model, metrics = r.model, {k: float(v) for k, v in r.metrics.items()}
    kw = {"num_classes": splits.num_classes, "in_channels": splits.in_channels, **dict(arch.kwargs)}
    save_model(model, out / "model.pt", arch.model, meta={"data": splits.name, "metrics": metrics, "fit": arch.spec},
               **kw)
    x_test, y_test = as_tensors(data.test)
    calib = calibration_sample(data.train, 128, seed=s.seed)
    bundle = export(model, (x_test[:1],), formats=(d.format,), precision=(d.precision,), calibration=calib,
                    parity_data=(x_test[:200], y_test[:200]), labels=list(splits.labels),
                    preprocessing=data.preprocessing(), model_name=arch.name, out_dir=out / "bundle", qat=prepared,
                    progress=progress)
    return model, bundle, metrics


@dataclass
class _Run:
    """One fit's checked inputs and the stages' state (see :func:`fit`)."""

    s: FitSettings
    budgets: list[Budget]
    requirements: list[Requirement]
    method_options: dict[str, Any]
    space: Space
    teacher: nn.Module
    splits: DataSplits
    out: Path
    targets: list[Any]
    store: LatencyStore
    measurer: Measurer
    exporter: Exporter
    schedule: Schedule
    qat: bool
    strict: bool
    resume: bool
    progress: bool
    emit: Callable[[str, dict[str, Any]], None]

    def document(self, cands: list[Candidate], **kw: Any) -> dict[str, Any]:
        from edgekd.fit.report import document

        return document(cands, settings=self.s, space=self.space, budgets=self.budgets,
                        requirements=self.requirements, schedule=self.schedule, splits=self.splits,
                        measurer=self.measurer, exporter=self.exporter, store=self.store, qat=self.qat,
                        strict=self.strict, **kw)


def _prepare(teacher: nn.Module | str | Path, data: DataSplits | str, settings: dict[str, Any], *, qat: bool,
             strict: bool, resume: bool, progress: bool, verbose: bool,
             emit: Callable[[str, dict[str, Any]], None], guard: Guard | None) -> _Run:
    """Check everything that can be checked before any work (module docstring, step 1)."""
    from edgekd.bench.targets import get_target
    from edgekd.distillation import build_objective

    s, method_options = settings_of(settings)
    if not s.budget:
        raise ConfigError("fit needs a budget", stage=STAGE, hint="pass budget='latency_ms=2' (or bytes=…, params=…)")
    budgets = [parse_budget(b) for b in s.budget]
    requirements = parse_require(s.require) if s.require else []
    build_objective(s.method, **method_options)  # an unknown method or option fails now
    import_modules(s.modules)
    precisions = s.precisions
    if qat:
        if "int8" not in precisions:
            raise ConfigError("--qat trains an int8 student, but int8 is not among the precisions", stage=STAGE,
                              hint="add int8 to --precisions (or drop --qat)")
        precisions = ("int8",)
    space = Space(s.families, s.widths, s.depths, s.resolutions, s.formats, precisions, s.threads)
    space.archs((8, 8))  # unknown families fail now
    teacher_model, splits = _load(teacher, data, s)
    out = Path(s.out)
    _check_out(out, resume)
    targets = [get_target(u) for u in s.target]
    store = LatencyStore(s.table)
    guard = guard or (file_lock(s.timing_lock) if s.timing_lock else None)
    measurer = Measurer(store, targets, out / "measure", runs=s.runs, warmup=s.warmup, retries=s.retries,
                        agree=s.agree, runner=s.runner, guard=guard, on_event=emit)
    schedule = Schedule(s.proxy_epochs, s.method, s.batch_size, s.lr, s.seed, s.proxy_limit,
                        tuple(sorted(method_options.items())))
    return _Run(s, budgets, requirements, method_options, space, teacher_model, splits, out, targets, store,
                measurer, Exporter(store, out / "candidates", verbose=verbose), schedule, qat, strict, resume,
                progress, emit)


def _search(run: _Run, cands: list[Candidate], timings: dict[str, float], t0: float) -> tuple[Candidate,
                                                                                              list[ProxyResult]]:
    """Candidates, verdicts, proxies, the choice (module docstring, steps 2-4); ``cands`` fills as it goes."""
    ex, ms = run.exporter, run.measurer
    _say(run.progress, f"{len(run.space.archs(run.splits.image_size))} architectures x {len(run.space.deploys())} "
                       f"deployments on {', '.join(t.url.split('?')[0] for t in run.targets)}; latency table "
                       f"{run.store.path}")
    _candidates(run.space, run.splits, ex, ms, run.strict, run.progress, run.emit, cands)
    timings["candidates"] = time.perf_counter() - t0
    _say(run.progress, f"exported {ex.exported} file(s) ({ex.reused} known), measured {ms.measured} "
                       f"({ms.reused} from the table) in {timings['candidates']:.0f} s")
    classify(cands, run.budgets, run.requirements, run.strict)
    if not any(c.feasible for c in cands):
        raise impossible(cands, run.budgets, run.space.describe(), [t.url for t in run.targets])
    t1 = time.perf_counter()
    proxies = _run_proxies(cands, run.teacher, run.splits, run.schedule, run.s, run.out, run.resume, run.progress,
                           run.emit)
    timings["proxies"] = time.perf_counter() - t1
    chosen = choose(cands)
    timings["search"] = time.perf_counter() - t0
    return chosen, proxies


def fit(teacher: nn.Module | str | Path, data: DataSplits | str, *, target: str | Any = "local",
        budget: str | Any = None, qat: bool = False, strict_delegation: bool = False, search_only: bool = False,
        resume: bool = False, progress: bool = True, verbose: bool = False,
        on_event: Callable[[str, dict[str, Any]], None] | None = None, measure_guard: Guard | None = None,
        **kwargs: Any) -> FitResult:
    """Pick the student that meets ``budget`` on ``target`` by measuring candidates there, distil it, prove it.

    Args:
        teacher: a trained model, or the path of a checkpoint (``edgekd train``'s ``model.pt``).
        data: a :class:`~edgekd.data.core.DataSplits` or a data set name (``mnist5k``).
        target: ``"local"``, ``"ssh://user@host"``, ``"adb://SERIAL"``, or several (measured in parallel).
        budget: ``"latency_ms=2"`` (p50 on the slowest target), ``"bytes=100KB"``, ``"params=50k"``, or a list.
        qat: train the chosen student with quantization-aware KD (int8 deployments only).
        strict_delegation: drop candidates with ops outside the XNNPACK delegate (default: flag them).
        search_only: stop after choosing (no full distillation, export or final benchmark).
        resume: continue in an ``out`` folder that holds an earlier, interrupted fit.
        on_event: called as ``on_event(kind, info)`` after each export (``"exported"``), measurement
            (``"measured"``) and proxy run (``"proxy"``).
        measure_guard: a context manager factory entered around every measurement (search and final
            benchmark); default: a lock on ``timing_lock`` when given (:func:`edgekd.fit.measure.file_lock`).
        **kwargs: the :class:`~edgekd.fit.config.FitSettings` (``families``, ``widths``, ``depths``,
            ``resolutions``, ``formats``, ``precisions``, ``threads``, ``proxies``, ``proxy_epochs``,
            ``epochs``, ``method``, ``require``, ``prune``, ``table``, ``out``, ...); any other keyword is an
            option of the method (``kd_T=4``).

    Returns:
        a :class:`FitResult`; ``passed`` says whether the final benchmark met the budget on every target.
    """
    from edgekd.fit.report import final_section, format_fit

    t0 = time.perf_counter()
    run = _prepare(teacher, data, {"target": target, "budget": budget, **kwargs}, qat=qat, strict=strict_delegation,
                   resume=resume, progress=progress, verbose=verbose, emit=on_event or (lambda _k, _i: None),
                   guard=measure_guard)
    cands: list[Candidate] = []
    timings: dict[str, float] = {}
    try:
        chosen, proxies = _search(run, cands, timings, t0)
    except (EdgekdError, KeyboardInterrupt) as e:
        classify(cands, run.budgets, run.requirements, run.strict)
        for c in cands:
            if not c.measured and c.verdict == "failed on device":  # never reached: not a device failure
                c.verdict, c.reason = "not measured", "the search stopped before measuring it"
        write_json(run.out / FIT_JSON, run.document(cands, status="interrupted" if isinstance(e, KeyboardInterrupt)
                                                    else "failed", error=str(e) or type(e).__name__, timings=timings))
        raise
    front = fronts(cands, [t.url for t in run.targets])
    for i in {i for ids in front.values() for i in ids}:
        cands[i].role = "front"
    chosen.role = "chosen"
    _say(progress, f"chose {chosen.name}: proxy val acc {100 * chosen.proxy.val_acc:.2f}%, "  # type: ignore[union-attr]
                   f"p50 {chosen.worst_p50:.3g} ms (search {timings['search']:.0f} s)")
    result = FitResult(run.out, chosen, cands, proxies, front, timings_s=timings)
    if not search_only:
        t2 = time.perf_counter()
        result.model, result.bundle, result.metrics = _final(run.teacher, chosen, run.splits, run.s, run.out, qat=qat,
                                                             resume=resume, progress=progress,
                                                             method_options=run.method_options)
        result.model_path = run.out / "model.pt"
        with run.measurer.guard():
            result.bench, result.misses = _final_bench(result.bundle, run.targets, chosen, run.splits, run.s,
                                                       run.budgets, run.requirements, run.out, progress)
        timings["final"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0
    ex, ms = run.exporter, run.measurer
    result.counts = {"exported": ex.exported, "exports_reused": ex.reused, "measured": ms.measured,
                     "stored": ms.stored, "measurements_reused": ms.reused}
    final = None if search_only else final_section(result.metrics, result.model_path, result.bundle, result.bench,
                                                   result.misses, result.passed)
    result.doc = run.document(cands, status="done" if search_only or result.passed else "missed", timings=timings,
                              chosen=chosen, fronts=front, final=final)
    write_json(run.out / FIT_JSON, result.doc)
    if result.bench:
        from edgekd.bench.html_report import write_html_report

        result.doc["report"] = str(write_html_report(run.out))
        write_json(run.out / FIT_JSON, result.doc)
    if progress:
        print(format_fit(result.doc))
    return result


def _run_proxies(cands: list[Candidate], teacher: nn.Module, splits: DataSplits, schedule: Schedule,
                 s: FitSettings, out: Path, resume: bool, progress: bool,
                 emit: Callable[[str, dict[str, Any]], None]) -> list[ProxyResult]:
    """Proxy runs for :func:`proxy_set` (read back from ``OUT/proxies.jsonl`` when resuming), attached to
    every feasible deployment of their architecture."""
    chosen = proxy_set(cands, s.proxies)
    path = out / PROXIES
    stated = schedule.describe(len(splits.train))
    done = _read_proxies(path, stated) if resume else {}
    runner = Proxies(teacher, splits, schedule, progress=False)
    results: dict[Arch, ProxyResult] = {}
    _say(progress, f"proxy runs for {len(chosen)} candidate(s) on or near the front: {stated}")
    for c in chosen:
        r = done.get(c.arch.spec)
        if r is None:
            torch.manual_seed(schedule.seed)
            r = runner.run(c.arch, c.arch.build(splits.num_classes, splits.in_channels))
            _append(path, {**r.__dict__, "schedule": stated})
        results[c.arch] = r
        emit("proxy", {"arch": r.name, "val_acc": r.val_acc, "seconds": r.seconds})
        _say(progress, f"  {r.name}: val {100 * r.val_acc:.2f}%  ({r.seconds:.0f} s)")
    for c in cands:
        if c.feasible and c.arch in results:
            c.proxy = results[c.arch]
            c.role = c.role or "proxied"
    return list(results.values())


def _final_bench(bundle: Bundle, targets: list[Any], chosen: Candidate, splits: DataSplits, s: FitSettings,
                 budgets: list[Budget], requirements: list[Requirement], out: Path, progress: bool
                 ) -> tuple[list[BenchResult], list[Miss]]:
    """Benchmark the delivered file on every target with the test images; gate it by the budget and ``require``."""
    from edgekd.bench.harness import benchmark
    from edgekd.bench.pool import bench_pool
    from edgekd.data import as_tensors

    x, y = as_tensors(at_resolution(splits, chosen.arch.resolution).test)
    kw = dict(warmup=s.warmup, runs=s.runs, threads=chosen.deploy.threads, eval_data=(x[:EVAL_SAMPLES].numpy(),
              y[:EVAL_SAMPLES].numpy()), out_dir=out, progress=progress, runner=s.runner)
    rows = (benchmark(bundle, targets[0], print_table=False, **kw) if len(targets) == 1  # type: ignore[arg-type]
            else bench_pool(bundle, targets, **kw))  # type: ignore[arg-type]
    gates = [*requirements]
    for b in budgets:
        if b.kind == "latency_ms":
            gates.append(Requirement("p50_ms", "<=", b.limit))
        elif b.kind == "bytes":
            gates.append(Requirement("size_kb", "<=", b.limit / 1024))
    return rows, check(rows, gates)
