"""``edgekd`` command line: a thin shell over the Python API (each subcommand parses, calls, prints).

    edgekd demo [--quick] [--out DIR]
    edgekd list models|methods|modifiers|datasets|strategies|targets|families|formats|metrics
    edgekd train   --model resnet20 --data mnist5k --epochs 5 --out runs/teacher
    edgekd train   --model resnet8 --data folder:photos/ --image-size 96 --epochs 5 --out runs/teacher
    edgekd distill --teacher runs/teacher/model.pt --student resnet8 --method ce+kd --out runs/kd
    edgekd distill --student resnet8 --peers 2 --method dml --out runs/dml
    edgekd distill --config examples/distill_crd.yaml --epochs 2
    edgekd distill --teacher runs/teacher/model.pt --student resnet8 --qat --budget params=40000 --out runs/edge
    edgekd export  runs/kd/model.pt --data mnist5k --formats pte,tflite --precisions fp32,int8 --out bundle
    edgekd export  runs/self/model.pt --exit layer1.2 --formats pte --precisions fp32 --out bundle_exit1
    edgekd bench   bundle --target local --threads 2 --runs 100 --eval-data mnist5k
    edgekd bench   bundle --target ssh://pi@raspberrypi --target adb://SERIAL --out runs/b1
    edgekd devices [--target ssh://pi@raspberrypi]
    edgekd bench   bundle --mlperf --require accuracy>=0.97,p50_ms<=2      # CI gate: exit 3 on a miss
    edgekd bench   model.pte --sustained 300 --interval 10                  # latency + temperature curve
    edgekd report  runs/b1 [runs/b2 ...]
    edgekd fit     --teacher runs/teacher/model.pt --data mnist5k --target local --budget latency_ms=0.2 --out runs/fit

Library noise (torch/TensorFlow warnings, absl/oneDNN/cpuinfo lines) is kept off the terminal;
``--verbose`` shows it.

Errors on bad input are one clear message (stage, thing, fix) and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path

from edgekd.errors import ConfigError, EdgekdError
from edgekd.registry import Registry
from edgekd.settings import OBSERVERS, RunSettings, add_flags, given

#: ``edgekd list WHAT``: one printer per registry or table, registered below (the choices come from here)
LISTS: Registry = Registry("list")


def _terminal():  # noqa: ANN202  (a text stream)
    """edgekd's own messages reach the user's terminal even while library noise is kept off it."""
    from edgekd.quiet import terminal

    return terminal()


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


_WARNED: set[str] = set()


class _Deprecated(argparse.Action):
    """An old option spelling, kept for one release: it works as before and says once what replaces it."""

    def __init__(self, *args, new: str, **kwargs) -> None:  # noqa: ANN002, ANN003  (argparse's own arguments)
        self.new = new
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        if option_string not in _WARNED:
            _WARNED.add(str(option_string))
            print(f"edgekd: {option_string} is deprecated, use {self.new} (the old spelling goes in the next release)",
                  file=_terminal())
        setattr(namespace, self.dest, values)


def _converters(args: argparse.Namespace) -> dict[str, tuple[str, ...]]:
    """``--converter FORMAT=NAME`` (repeatable), with the deprecated ``--tflite-converter NAME`` as ``tflite=NAME``."""
    from edgekd.formats import parse_converters

    specs = list(args.converter or [])
    if args.tflite_converter and not any(s.partition("=")[0].strip() == "tflite" for s in specs):
        specs.append(f"tflite={args.tflite_converter}")
    return parse_converters(specs)


def _converter_flags(p: argparse.ArgumentParser) -> None:
    """``--converter`` for every format of the table, and the old ``--tflite-converter``."""
    from edgekd.formats import converters, formats

    p.add_argument("--converter", action="append", default=None, metavar="FORMAT=NAME",
                   help="the converter of a format, repeatable; NAME,NAME writes both (default: the first): "
                        + "; ".join(f"{f}={'|'.join(converters(f))}" for f in formats()))
    p.add_argument("--tflite-converter", action=_Deprecated, new="--converter tflite=NAME", default=None,
                   help="deprecated: --converter tflite=NAME")


# -- subcommands -----------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from edgekd.demo import DemoConfig, run_demo

    cfg = DemoConfig.quick() if args.quick else DemoConfig()
    tflite = _converters(args).get("tflite", ())
    if len(tflite) > 1:
        raise ConfigError("the demo exports one .tflite converter", stage="cli/demo",
                          hint="pass --converter tflite=litert-torch or --converter tflite=onnx2tf")
    if tflite:
        cfg = DemoConfig(**{**cfg.__dict__, "tflite_converter": tflite[0]})
    results = run_demo(args.out, cfg, progress=not args.no_progress, timing_lock=args.timing_lock)
    return 1 if any(r.error for r in results) else 0


@LISTS.register("models")
def _list_models() -> int:
    """Every model name with its family, then what each family supports (taps, pruning, exits, knobs)."""
    from edgekd.models.catalog import family_rows, model_rows

    rows = model_rows("all")
    width = max(len(r["name"]) for r in rows) + 2
    print(f"{'model':{width}s}family")
    for r in rows:
        print(f"{r['name']:{width}s}{r['family'] or '-'}")
    print(f"\n{'family':24s}{'taps':20s}{'prune':7s}{'exits':7s}{'input':7s}knobs")
    notes = []
    for f in family_rows():
        print(f"{f['family']:24s}{f['taps']:20s}{f['prune']:7s}{f['exits']:7s}{f['input']!s:7s}{f['knobs']}")
        notes += [f"  {f['family']}: no pruning: {f['prune_note']}"] if f["prune_note"] else []
        notes += [f"  {f['family']}: no exits: {f['exits_note']}"] if f["exits_note"] else []
    print("\nwhy not:\n" + "\n".join(notes))
    print("\nmodels without a family take taps by module path only; `tv:`/`hf:` models take weights=PATH "
          "(a local file; nothing is downloaded)")
    return 0


@LISTS.register("families")
def _list_families() -> int:
    """The models ``edgekd fit`` can scale (their width/depth knobs, from their family's declaration), defaults first."""
    from edgekd.fit.space import DEFAULT_FAMILIES, knobs_of
    from edgekd.models import list_models

    print(f"{'family (--families)':30s}knobs (default values searched)")
    for name in dict.fromkeys([*(f for f in DEFAULT_FAMILIES if f in list_models("all")), *list_models("all")]):
        k = knobs_of(name)
        if any(len(v) > 1 for v in k.values.values()) or name in DEFAULT_FAMILIES:
            text = "  ".join(f"{a}: {kw}={'|'.join(f'{v:g}' if isinstance(v, float) else str(v) for v in k.values[a])}"
                             for a, kw in k.knobs.items() if a in k.values)
            print(f"{name + (' *' if name in DEFAULT_FAMILIES else ''):30s}{text or '-'}")
    print("\n* searched by default; any registered model name is a family (its factory's width/depth, if any)")
    return 0


def _print_names(where: str) -> int:
    """Print the names of ``"module:attr"``: a Registry, or a function returning names (imported only now)."""
    import importlib

    module, _, attr = where.partition(":")
    found = getattr(importlib.import_module(module), attr)
    print("\n".join(found.names() if isinstance(found, Registry) else found()))
    return 0


for _topic, _where in (("methods", "edgekd.distillation:methods"), ("modifiers", "edgekd.distillation.methods:modifiers"),
                       ("datasets", "edgekd.data:list_datasets"), ("strategies", "edgekd.distillation.strategies:STRATEGIES"),
                       ("targets", "edgekd.bench.targets:list_targets")):
    LISTS.register(_topic)(functools.partial(_print_names, _where))


@LISTS.register("recipes")
def _list_recipes() -> int:
    """The recipes ``distill()`` hands a call to, in the order it asks them, and what claims a call for each."""
    import edgekd.edge  # noqa: F401  (registers the edge pipeline)
    from edgekd.distillation.recipes import RECIPES

    for cls in sorted((RECIPES.get(n) for n in RECIPES), key=lambda r: (r.order, r.name)):
        claim = ", ".join(f"{o}=" for o in cls.options) or "its data type"
        print(f"{cls.name:8s}{claim:28s}{cls.summary}")
    print(f"{'(none)':8s}{'anything else':28s}one Strategy in the Trainer (`edgekd list strategies`)")
    return 0


@LISTS.register("formats")
def _list_formats() -> int:
    """One line per (format, converter) of the format table: what export writes and what runs it."""
    from edgekd.formats import FORMATS, converters

    head = ("format", "converter", "suffix", "precisions", "runner", "layout", "int8 I/O", "native", "QAT",
            "app", "extra")
    rows = [(f.format, f.converter + (" *" if converters(f.format)[0] == f.converter else ""), "." + f.suffix,
             ",".join(f.precisions), f.backend, f.layout, "yes" if f.int8_io else "-", "yes" if f.plugin else "-",
             "yes" if f.qat else "-", "yes" if f.app else "-", f.extra or "-") for f in FORMATS.values()]
    widths = [max(len(r[i]) for r in (head, *rows)) + 2 for i in range(len(head))]
    for r in (head, *rows):
        print("".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print("\n* the format's default converter (export --converter FORMAT=NAME picks another)")
    return 0


@LISTS.register("metrics")
def _list_metrics() -> int:
    """Every metric of the metrics table (``bench --require`` takes them), with its unit, direction and meaning."""
    from edgekd.bench.metrics import METRICS

    width = max(map(len, METRICS)) + 2
    print(f"{'metric':{width}s}{'unit':10s}{'better':8s}{'report column':15s}meaning")
    for m in METRICS.values():
        print(f"{m.name:{width}s}{m.unit:10s}{m.better:8s}{m.column or '-':15s}{m.meaning}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    return LISTS.get(args.what)()


def _print_run(r) -> int:  # noqa: ANN001  (a distillation.config.RunResult)
    print(" ".join(f"{k}={v:.4f}" for k, v in r.result.metrics.items() if isinstance(v, float)))
    print(f"saved {r.model_path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from edgekd.distillation.config import DistillConfig, MethodTerm, run

    settings = {**given(args, RunSettings), "augment": args.augment if isinstance(args.augment, str) else None}
    cfg = DistillConfig(student=args.model, method=[MethodTerm("ce")]).override(**settings)
    return _print_run(run(cfg, resume=args.resume, progress=not args.no_progress, augment=args.augment is True))


def cmd_distill(args: argparse.Namespace) -> int:
    """``--config run.yaml`` gives every setting; flags given on the command line override it."""
    from edgekd.distillation.config import DistillConfig, load_config, run

    cfg = (load_config(args.config) if args.config else DistillConfig()).override(**given(args, RunSettings))
    edge = [flag for flag, on in (("--qat", args.qat), ("--prune", args.prune is not None), ("--budget", args.budget),
                                  ("--gradual", args.gradual)) if on]
    if edge:
        print(f"edgekd distill: {', '.join(edge)} given: running the edge pipeline (KD -> prune -> KD+QAT -> int8 "
              f"bundle in OUT/bundle) instead of plain distillation", file=_terminal())
        return _edge(args, cfg)
    weights = [float(w) for w in _csv(args.teacher_weights)] if args.teacher_weights else None
    cache = None if args.cache_teacher == "auto" else args.cache_teacher == "on"
    return _print_run(run(cfg, peers=args.peers, teacher_weights=weights, cache_teacher=cache, resume=args.resume,
                          progress=not args.no_progress))


def _edge(args: argparse.Namespace, cfg) -> int:  # noqa: ANN001  (a DistillConfig)
    """``distill --qat/--prune/--budget``: the joint pipeline (KD → prune → KD+QAT), then the int8 bundle."""
    from edgekd.edge.pipeline import parse_edge_options, run_edge
    from edgekd.models import count_params

    opts = parse_edge_options(qat=args.qat, prune=args.prune, budget=args.budget, importance=args.prune_importance,
                              gradual=args.gradual)
    e = run_edge(cfg, opts, ft_epochs=args.ft_epochs, formats=_csv(args.formats), peers=args.peers,
                 progress=not args.no_progress)
    r = e.result
    print(f"prune ratio {r.ratio:.3f}  params {count_params(r.float_model)}  "
          + "  ".join(f"{k}={v:.4f}" for k, v in r.metrics.items()))
    if r.budget is not None:
        b = r.budget
        print(f"budget {b.budget.kind} <= {b.budget.limit:g}: cost {b.cost:g}, margin {b.margin:+.1%}"
              + (f", measured margin {b.measured_margin:+.1%}" if b.measured_margin is not None else ""))
    print(f"saved {e.model_path} (float, pruned)")
    if e.bundle is not None:
        for f in e.bundle.files:
            print(f"{f.path:24s} {f.bytes / 1024:8.1f} KB  top-1 agree with the QAT graph "
                  f"{100 * f.parity.top1_agreement:.1f}%  acc {100 * (f.parity.accuracy or 0):.2f}%")
        print(f"wrote {e.bundle.root / 'edgekd.json'} (int8 from the QAT graph)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from edgekd.convert import status_rows
    from edgekd.convert.checkpoint import export_checkpoint

    bundle = export_checkpoint(args.checkpoint, args.out, data=args.data, data_root=args.data_root, seed=args.seed,
                               limit=args.limit, formats=_csv(args.formats), precision=_csv(args.precision),
                               converter=_converters(args),
                               calibration=args.calibration, parity_samples=args.parity_samples, name=args.name,
                               exit=args.exit, android_assets=args.android_assets, progress=not args.no_progress,
                               keep_going=not args.fail_fast, observer=args.observer)
    print_status(status_rows(bundle))
    note = (bundle.extra.get("fp32_pte_vs_tflite") or {}).get("note")
    if note:
        print(f"WARNING: {note}")
    print(f"wrote {bundle.root / 'edgekd.json'}")
    if args.android_assets:
        print(f"copied the bundle into {args.android_assets}")
    return 1 if bundle.extra.get("failed") else 0


def print_status(rows: list[dict]) -> None:
    """The per-file status table of an export: every file tried, ok or failed (with the stage, error, fix)."""
    print(f"{'file':34s} {'status':7s} {'KB':>9s}  {'max|err|':>9s} {'top-1 agree':>11s} {'acc':>7s} {'s':>6s}")
    for r in rows:
        if r["status"] == "ok":
            err = f"{r['max_abs_error']:.2e}" if r["max_abs_error"] is not None else "-"
            agree = f"{100 * r['top1_agreement']:.1f}%" if r["top1_agreement"] is not None else "-"
            acc = f"{100 * r['accuracy']:.2f}%" if r["accuracy"] is not None else "-"
            secs = f"{r['seconds']:.1f}" if r["seconds"] else "-"
            print(f"{r['file']:34s} {'ok':7s} {r['kb']:9.1f}  {err:>9s} {agree:>11s} {acc:>7s} {secs:>6s}")
        else:
            print(f"{r['file']:34s} {'FAILED':7s} {r['stage']}: {r['error']}")
            if r.get("fix"):
                print(f"{'':42s} fix: {r['fix']}")


def _eval_data(spec: str | None, args: argparse.Namespace):
    """``--eval-data`` is an .npz (x, y), a data set name whose test split is used, or folder:PATH / csv:FILE:
    test-split images decoded here, which the runner preprocesses with the bundle's preprocessing."""
    if spec is None or spec.endswith(".npz"):
        return spec
    if spec.startswith(("folder:", "csv:")):
        from edgekd.bench.harness import eval_images
        from edgekd.bundle import Bundle
        from edgekd.formats import suffixes

        bundle = Bundle.load(args.model) if Path(args.model).suffix.lower() not in suffixes() else None
        return eval_images(spec, bundle, n=args.eval_samples, seed=args.seed)
    from edgekd import data as D

    splits = D.load(spec, root=args.data_root, seed=args.seed)
    x, y = D.as_tensors(splits.test, n=args.eval_samples)
    return x.numpy(), y.numpy()


def cmd_bench(args: argparse.Namespace) -> int:
    from edgekd.bench.gate import GATE_EXIT, check, parse_require
    from edgekd.bench.harness import benchmark
    from edgekd.bench.pool import bench_pool
    from edgekd.bench.report import format_status, speed_warnings

    requirements = parse_require(args.require) if args.require else []  # a bad spec fails before any run
    if len(args.target) > 1 and (args.repeat > 1 or args.sustained or args.timing_lock):
        from edgekd.errors import ConfigError

        raise ConfigError("--repeat, --sustained and --timing-lock measure one target at a time", stage="bench",
                          hint="pass a single --target with them")
    kw = dict(warmup=args.warmup, runs=args.runs, threads=args.threads, eval_data=_eval_data(args.eval_data, args),
              inputs=args.inputs,
              out_dir=args.out or args.resume, files=_csv(args.files) if args.files else None,
              resume=bool(args.resume), timeout_s=args.timeout, progress=not args.no_progress, runner=args.runner,
              min_runs=args.min_runs, min_duration=args.min_duration, mlperf=args.mlperf)
    if len(args.target) == 1:
        results = benchmark(args.model, target=args.target[0], profile=args.profile, repeat=args.repeat,
                            sustained=args.sustained, interval=args.interval, print_table=False,
                            timing_lock=args.timing_lock, **kw)
    else:  # several targets in parallel, one shared results.jsonl
        results = bench_pool(args.model, args.target, **kw)
    for url in dict.fromkeys(r.target for r in results):
        if len(args.target) > 1:
            print(f"\n== {url.split('?')[0]}")
        print(format_status([r for r in results if r.target == url]))
    for warning in speed_warnings(results):
        print(f"WARNING: {warning}")
    if args.sustained:
        from edgekd.bench.sustained import format_sustained

        for r in results:
            if r.sustained:
                print("\n" + format_sustained(r))
    if args.mlperf:
        short = [r for r in results if r.ok and r.spread and not r.spread.mlperf_ok()]
        for r in short:
            print(f"note: {r.model_name} {r.key}: {r.spread.n} runs over {r.spread.duration_s:.1f} s is short of "  # type: ignore[union-attr]
                  "MLPerf Mobile's 1024 queries / 60 s", file=_terminal())
    for r in results:  # what the runner changed or noticed (float64 input converted, NaN fed) and missing profiles
        for note in [*r.notes, *([f"no operator table: {r.profile_error}"] if r.profile_error else [])]:
            print(f"note: {Path(r.model).name} [{r.key}]: {note}", file=_terminal())
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"error: {r.model}: {r.error}", file=_terminal())
    misses = check(results, requirements)
    for m in misses:
        print(f"edgekd: requirement missed: {m}", file=_terminal())
    if requirements and not misses:
        print(f"all {len(results)} files meet {args.require}")
    return GATE_EXIT if misses else 1 if failed else 0


def cmd_fit(args: argparse.Namespace) -> int:
    """Search, distil, export, benchmark; exit 3 when the delivered student misses the budget on a target."""
    from edgekd.bench.gate import GATE_EXIT
    from edgekd.fit import fit
    from edgekd.fit.config import FitSettings
    from edgekd.fit.report import format_fit

    settings = {k: v for k, v in given(args, FitSettings).items() if v is not None}
    r = fit(args.teacher, args.data, qat=args.qat, strict_delegation=args.strict_delegation,
            search_only=args.search_only, resume=args.resume, progress=not args.no_progress,
            verbose=getattr(args, "verbose", False), **settings)
    if args.no_progress:
        print(format_fit(r.doc))
    print(f"wrote {r.out / 'fit.json'}" + (f", {r.doc['report']}" if r.doc.get("report") else ""))
    return 0 if args.search_only or r.passed else GATE_EXIT


def cmd_devices(args: argparse.Namespace) -> int:
    import json

    from edgekd.bench.devices import format_devices, list_devices

    rows = list_devices(args.target or (), discover=not args.no_discover)
    print(json.dumps(rows, indent=1, default=str) if args.json else format_devices(rows))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from edgekd.bench.html_report import write_html_report
    from edgekd.bench.results import RESULTS, load_results

    runs = args.run_dir
    for run in runs:  # rows of another edgekd version load; say what could not
        if note := load_results(Path(run) / RESULTS).describe():
            print(f"note: {note}", file=_terminal())
    print(f"wrote {write_html_report(runs if len(runs) > 1 else runs[0], args.out)}")
    return 0


# -- parser ----------------------------------------------------------------------------------------
def _add_run_flags(p: argparse.ArgumentParser, func: object) -> None:
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=func)


def build_parser() -> argparse.ArgumentParser:
    from edgekd._version import __version__
    from edgekd.formats import formats, suffixes

    p = argparse.ArgumentParser(prog="edgekd", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"edgekd {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="train, distil, export and benchmark on the embedded MNIST-5k")
    d.add_argument("--quick", action="store_true", help="tiny settings (about a minute; for tests)")
    d.add_argument("--out", default="edgekd-demo", help="output folder (default: edgekd-demo)")
    _converter_flags(d)
    d.add_argument("--timing-lock", default=None, metavar="FILE",
                   help="hold an exclusive lock (flock) on FILE during the benchmark stage only (training does not "
                        "take it): on a shared machine, timing runs that name the same FILE take turns")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)

    ls = sub.add_parser("list", help="list registered names")
    ls.add_argument("what", choices=LISTS.names())
    ls.set_defaults(func=cmd_list)

    t = sub.add_parser("train", help="train a model from scratch (cross-entropy)")
    t.add_argument("--model", required=True, help="model name (`edgekd list models`)")
    t.add_argument("--augment", nargs="?", const=True, default=None, metavar="SPEC",
                   help="train on randomly augmented images: a teacher that does not memorise its train set, so its "
                        "soft labels carry more for KD. Alone: shifts of ±2 px for the built-in sets (and mirror "
                        "images where that keeps the label: not the digits), crop+flip for image files; or a SPEC "
                        "such as crop+flip, shift:2, none")
    add_flags(t, RunSettings, skip=("teacher", "student", "method", "out", "augment"))
    t.add_argument("--out", required=True, help="output folder (checkpoint, model.pt)")
    _add_run_flags(t, cmd_train)

    d = sub.add_parser("distill", help="distil a student from a trained teacher")
    d.add_argument("--config", default=None, help="YAML run config (examples/*.yaml); flags override it")
    add_flags(d, RunSettings, help={
        "teacher": "teacher checkpoint (model.pt from `edgekd train`); a comma list is an ensemble"})
    d.add_argument("--teacher-weights", default=None, help="ensemble weights, e.g. 2,1")
    d.add_argument("--peers", type=int, default=1,
                   help="train K copies of --student together (online methods: --method dml or afd)")
    d.add_argument("--cache-teacher", choices=("auto", "on", "off"), default="auto",
                   help="reuse the teacher's logits and tapped features across epochs "
                        "(auto: when exact and under 1 GiB)")
    g = d.add_argument_group("edge objectives (joint pipeline: KD → prune → KD+QAT → int8 bundle)")
    g.add_argument("--qat", action="store_true",
                   help="fine-tune with fake quantization while distilling; writes OUT/bundle (int8)")
    g.add_argument("--prune", type=float, default=None, metavar="RATIO",
                   help="remove this fraction of each block's inner channels (physically smaller model)")
    g.add_argument("--budget", default=None, metavar="KIND=VALUE",
                   help="pick the pruning ratio that meets params=N, bytes=N or latency_ms=X")
    g.add_argument("--prune-importance", choices=("l1", "bn"), default="l1")
    g.add_argument("--gradual", action="store_true",
                   help="prune step by step during the KD epochs (widths fall linearly) instead of once after")
    g.add_argument("--ft-epochs", type=int, default=2, help="epochs of the fine-tune after pruning")
    g.add_argument("--formats", default="pte,tflite", help="int8 files to write after --qat")
    _add_run_flags(d, cmd_distill)

    e = sub.add_parser("export", help="export a checkpoint to a parity-checked .pte/.tflite bundle")
    e.add_argument("checkpoint", help="model.pt from `edgekd train` / `edgekd distill`")
    add_flags(e, RunSettings, only=("data_root", "limit", "seed"))
    e.add_argument("--data", default=None, help="data set for calibration and parity (default: the checkpoint's)")
    e.add_argument("--formats", default="pte,tflite", help=f"comma list of {', '.join(formats())}")
    e.add_argument("--precisions", dest="precision", default="fp32,int8", help="comma list of fp32, int8")
    e.add_argument("--precision", dest="precision", action=_Deprecated, new="--precisions",
                   default=argparse.SUPPRESS, help="deprecated: --precisions")
    _converter_flags(e)
    e.add_argument("--calibration", type=int, default=128, help="calibration samples for int8")
    e.add_argument("--parity-samples", type=int, default=200)
    e.add_argument("--name", default=None, help="model name in the bundle (default: the architecture)")
    e.add_argument("--exit", default=None, metavar="NAME",
                   help="export a self-distilled model cut at this early exit (e.g. layer1.2; 'final' = whole)")
    e.add_argument("--out", required=True, help="bundle folder")
    e.add_argument("--android-assets", default=None, metavar="DIR",
                   help="also copy the bundle's .pte/.tflite files, edgekd.json and sample images into an "
                        "Android app's assets folder, e.g. android_demo/app/src/main/assets")
    e.add_argument("--fail-fast", action="store_true",
                   help="stop at the first file that fails to export (default: keep going, record each failure in "
                        "edgekd.json, print a per-file status table and exit 1 if any failed)")
    e.add_argument("--keep-going", action="store_true", help=argparse.SUPPRESS)  # the default; kept for old scripts
    e.add_argument("--observer", default="histogram", choices=OBSERVERS,
                   help="int8 calibration observer (see edgekd.quantization)")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=cmd_export)

    from edgekd.bench.metrics import METRICS

    b = sub.add_parser("bench", help="benchmark a bundle or a model file on a target")
    b.add_argument("model", help=f"bundle folder, or a {'/'.join(suffixes())} file")
    b.add_argument("--target", action="append", default=None,
                   help="local (default), ssh://user@host[:port], adb://SERIAL; repeat to run targets in parallel")
    b.add_argument("--warmup", type=int, default=10)
    b.add_argument("--runs", type=int, default=100)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--eval-data", default=None,
                   help="an .npz with x and y, a data set name (test split), or folder:PATH / csv:FILE: test-split "
                        "images the runner preprocesses itself with the bundle's preprocessing")
    b.add_argument("--inputs", default=None, metavar="X.npz",
                   help="the input to time on, as an .npz with key x (the logical input: NCHW, the model's batch size; "
                        "float64 is converted to the model's dtype and NaN is fed as it is, each said in the result); "
                        "default: zeros of the model's input shape")
    b.add_argument("--eval-samples", type=int, default=1000)
    b.add_argument("--data-root", default=None)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--files", default=None, help="comma list of bundle file keys or paths to run")
    b.add_argument("--out", default=None, help="run folder (results.jsonl, summary.json)")
    b.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run")
    b.add_argument("--timeout", type=float, default=300.0, help="seconds per model file")
    b.add_argument("--runner", choices=("auto", "python", "native"), default="auto",
                   help="device runner: python (runtimes/python), native (the C++ runner, `make native`), or auto: "
                        "python where the target's Python has the runtime, else native (runtimes/README.md)")
    b.add_argument("--profile", action="store_true",
                   help="with the native runner, store a per-operator table of each file (ETDump / LiteRT profiler) "
                        "for edgekd report")
    m = b.add_argument_group("how long to measure (MLPerf Mobile / benchmark_model style)")
    m.add_argument("--min-runs", type=int, default=0, help="time at least this many runs (raises --runs)")
    m.add_argument("--min-duration", type=float, default=1.0, metavar="SECONDS",
                   help="go on timing past --runs until this many seconds of timed runs (default 1 s, as "
                        "benchmark_model's --min_secs: a sub-millisecond model gets thousands of runs, not 100; "
                        "0: exactly --runs)")
    m.add_argument("--mlperf", action="store_true",
                   help="MLPerf Mobile's publishable minimum: at least 1024 runs and 60 s per file")
    m.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="measure every file in N interleaved rounds (order reversed every other round); each row "
                        "gets its p50 range over the rounds and a noise group (same letter: same speed within "
                        "noise), and says whether the p50s agree within 5%%")
    m.add_argument("--sustained", type=float, default=0.0, metavar="SECONDS",
                   help="time back to back for this long, with latency and temperature every --interval s")
    m.add_argument("--interval", type=float, default=10.0, metavar="SECONDS", help="sustained mode's step")
    m.add_argument("--timing-lock", default=None, metavar="FILE",
                   help="hold an exclusive lock (flock) on FILE while measuring: timing runs that share a machine "
                        "and name the same FILE take turns (e.g. /tmp/edgekd-timing.lock)")
    b.add_argument("--require", default=None, metavar="SPEC",
                   help="CI gate, e.g. accuracy>=0.97,p50_ms<=2: exit 3 naming each file that misses it "
                        f"(metrics, `edgekd list metrics`: {', '.join(METRICS)})")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=cmd_bench)

    f = sub.add_parser("fit", help="pick the student that meets a latency budget on a device by measuring "
                                   "candidates there, distil it, export it and prove it meets the budget")
    from edgekd.fit.config import FitSettings

    f.add_argument("--teacher", required=True, help="teacher checkpoint (model.pt from `edgekd train`)")
    f.add_argument("--data", default="mnist5k", help="data set name (`edgekd list datasets`)")
    add_flags(f, FitSettings)
    f.add_argument("--qat", action="store_true", help="train the chosen student with KD + QAT (int8 only)")
    f.add_argument("--strict-delegation", action="store_true",
                   help="drop candidates with ops outside the XNNPACK delegate (default: flag them)")
    f.add_argument("--search-only", action="store_true",
                   help="stop after choosing: no full distillation, export or final benchmark")
    f.add_argument("--resume", action="store_true",
                   help="continue an interrupted fit in OUT (proxy runs and the full run's checkpoint are kept)")
    f.add_argument("--no-progress", action="store_true")
    f.set_defaults(func=cmd_fit)

    dv = sub.add_parser("devices", help="list reachable targets (local, adb devices, --target URLs) and their facts")
    dv.add_argument("--target", action="append", default=[], help="also describe this URL (e.g. ssh://pi@board)")
    dv.add_argument("--no-discover", action="store_true", help="only the --target URLs (no local, no adb devices)")
    dv.add_argument("--json", action="store_true", help="print the facts as JSON")
    dv.set_defaults(func=cmd_devices)

    rp = sub.add_parser("report", help="write an HTML page and PNGs for a run folder (opens without a server)")
    rp.add_argument("run_dir", nargs="+", help="run folder(s) holding results.jsonl; several are compared on one page")
    rp.add_argument("--out", default=None, help="output folder (default: RUN_DIR/report)")
    rp.set_defaults(func=cmd_report)
    p.add_argument("--verbose", "-v", action="store_true",
                   help="show the libraries' own output (warnings, absl/oneDNN/cpuinfo lines); also EDGEKD_VERBOSE=1")
    for sp in sub.choices.values():  # also accepted after the subcommand
        sp.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench" and args.target is None:
        args.target = ["local"]
    from edgekd.quiet import quiet

    with quiet(verbose=args.verbose) as log:
        try:
            code = int(args.func(args))
        except EdgekdError as e:
            print(f"edgekd: error: {e}", file=_terminal())
            code = 2
        except KeyboardInterrupt:
            print("edgekd: interrupted (results measured so far are in the run's results.jsonl)", file=_terminal())
            code = 130
        if code not in (0, 3) and log.path is not None and log.path.stat().st_size:
            log.keep = True
            print(f"edgekd: the libraries' own output is in {log.path} (or rerun with --verbose)", file=_terminal())
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
