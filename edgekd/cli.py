"""``edgekd`` command line: a thin shell over the Python API (each subcommand parses, calls, prints).

    edgekd demo [--quick] [--out DIR]
    edgekd list models|methods|modifiers|datasets|strategies|targets
    edgekd train   --model resnet20 --data mnist5k --epochs 5 --out runs/teacher
    edgekd distill --teacher runs/teacher/model.pt --student resnet8 --method ce+kd --out runs/kd
    edgekd distill --student resnet8 --peers 2 --method dml --out runs/dml
    edgekd distill --config examples/distill_crd.yaml --epochs 2
    edgekd distill --teacher runs/teacher/model.pt --student resnet8 --qat --budget params=40000 --out runs/edge
    edgekd export  runs/kd/model.pt --data mnist5k --formats pte,tflite --precision fp32,int8 --out bundle
    edgekd export  runs/self/model.pt --exit layer1.2 --formats pte --precision fp32 --out bundle_exit1
    edgekd bench   bundle --target local --threads 2 --runs 100 --eval-data mnist5k
    edgekd bench   bundle --target ssh://pi@raspberrypi --target adb://SERIAL --out runs/b1
    edgekd devices [--target ssh://pi@raspberrypi]
    edgekd bench   bundle --mlperf --require accuracy>=0.97,p50_ms<=2      # CI gate: exit 3 on a miss
    edgekd bench   model.pte --sustained 300 --interval 10                  # latency + temperature curve
    edgekd report  runs/b1 [runs/b2 ...]

Library noise (torch/TensorFlow warnings, absl/oneDNN/cpuinfo lines) is kept off the terminal;
``--verbose`` shows it.

Errors on bad input are one clear message (stage, thing, fix) and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edgekd.errors import EdgekdError
from edgekd.settings import RunSettings, add_flags, given


def _terminal():  # noqa: ANN202  (a text stream)
    """edgekd's own messages reach the user's terminal even while library noise is kept off it."""
    from edgekd.quiet import terminal

    return terminal()


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


# -- subcommands -----------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from edgekd.demo import DemoConfig, run_demo

    cfg = DemoConfig.quick() if args.quick else DemoConfig()
    if args.tflite_converter:
        cfg = DemoConfig(**{**cfg.__dict__, "tflite_converter": args.tflite_converter})
    results = run_demo(args.out, cfg, progress=not args.no_progress)
    return 1 if any(r.error for r in results) else 0



def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "models":
        from edgekd.models import list_models as names
    elif args.what == "methods":
        from edgekd.distillation import methods as names
    elif args.what == "modifiers":
        from edgekd.distillation.methods import modifiers as names
    elif args.what == "datasets":
        from edgekd.data import list_datasets as names
    elif args.what == "strategies":
        from edgekd.distillation.strategies import STRATEGIES

        names = STRATEGIES.names
    else:
        from edgekd.bench.targets import list_targets as names
    print("\n".join(names()))
    return 0


def _print_run(r) -> int:  # noqa: ANN001  (a distillation.config.RunResult)
    print(" ".join(f"{k}={v:.4f}" for k, v in r.result.metrics.items() if isinstance(v, float)))
    print(f"saved {r.model_path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from edgekd.distillation.config import DistillConfig, MethodTerm, run

    cfg = DistillConfig(student=args.model, method=[MethodTerm("ce")]).override(**given(args, RunSettings))
    return _print_run(run(cfg, resume=args.resume, progress=not args.no_progress, augment=args.augment))


def cmd_distill(args: argparse.Namespace) -> int:
    """``--config run.yaml`` gives every setting; flags given on the command line override it."""
    from edgekd.distillation.config import DistillConfig, load_config, run

    cfg = (load_config(args.config) if args.config else DistillConfig()).override(**given(args, RunSettings))
    if args.qat or args.prune is not None or args.budget or args.gradual:
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
    r = e.pipeline
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
    from edgekd.convert.checkpoint import export_checkpoint

    converters = _csv(args.tflite_converter)
    bundle = export_checkpoint(args.checkpoint, args.out, data=args.data, data_root=args.data_root, seed=args.seed,
                               limit=args.limit, formats=_csv(args.formats), precision=_csv(args.precision),
                               tflite_converter=converters[0] if len(converters) == 1 else converters,
                               calibration=args.calibration, parity_samples=args.parity_samples, name=args.name,
                               exit=args.exit, android_assets=args.android_assets, progress=not args.no_progress,
                               keep_going=args.keep_going)
    for f in bundle.files:
        p = f.parity
        acc = f"acc {100 * p.accuracy:.2f}%" if p and p.accuracy is not None else ""
        err = f"max|err| {p.max_abs_error:.2e}  top-1 agree {100 * p.top1_agreement:.1f}%" if p else ""
        print(f"{f.path:34s} {f.bytes / 1024:9.1f} KB  {err}  {acc}")
    for f in bundle.extra.get("failed", []):
        print(f"{f['path']:34s} FAILED TO EXPORT: {f['error']}")
    print(f"wrote {bundle.root / 'edgekd.json'}")
    if args.android_assets:
        print(f"copied the bundle into {args.android_assets}")
    return 1 if bundle.extra.get("failed") else 0


def _eval_data(spec: str | None, args: argparse.Namespace):
    """``--eval-data`` is an .npz (x, y) or a data set name whose test split is used."""
    if spec is None or spec.endswith(".npz"):
        return spec
    from edgekd import data as D

    splits = D.load(spec, root=args.data_root, seed=args.seed)
    x, y = D.as_tensors(splits.test)
    n = args.eval_samples
    return x[:n].numpy(), y[:n].numpy()


def cmd_bench(args: argparse.Namespace) -> int:
    from edgekd.bench.gate import GATE_EXIT, check, parse_require
    from edgekd.bench.harness import benchmark
    from edgekd.bench.pool import bench_pool
    from edgekd.bench.report import format_status

    requirements = parse_require(args.require) if args.require else []  # a bad spec fails before any run
    if len(args.target) > 1 and (args.repeat > 1 or args.sustained):
        from edgekd.errors import ConfigError

        raise ConfigError("--repeat and --sustained measure one target at a time", stage="bench",
                          hint="pass a single --target with them")
    kw = dict(warmup=args.warmup, runs=args.runs, threads=args.threads, eval_data=_eval_data(args.eval_data, args),
              out_dir=args.out or args.resume, files=_csv(args.files) if args.files else None,
              resume=bool(args.resume), timeout_s=args.timeout, progress=not args.no_progress, runner=args.runner,
              min_runs=args.min_runs, min_duration=args.min_duration, mlperf=args.mlperf)
    if len(args.target) == 1:
        results = benchmark(args.model, target=args.target[0], profile=args.profile, repeat=args.repeat,
                            sustained=args.sustained, interval=args.interval, print_table=False, **kw)
    else:  # several targets in parallel, one shared results.jsonl
        results = bench_pool(args.model, args.target, **kw)
    for url in dict.fromkeys(r.target for r in results):
        if len(args.target) > 1:
            print(f"\n== {url.split('?')[0]}")
        print(format_status([r for r in results if r.target == url]))
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
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"error: {r.model}: {r.error}", file=_terminal())
    misses = check(results, requirements)
    for m in misses:
        print(f"edgekd: requirement missed: {m}", file=_terminal())
    if requirements and not misses:
        print(f"all {len(results)} files meet {args.require}")
    return GATE_EXIT if misses else 1 if failed else 0


def cmd_devices(args: argparse.Namespace) -> int:
    import json

    from edgekd.bench.devices import format_devices, list_devices

    rows = list_devices(args.target or (), discover=not args.no_discover)
    print(json.dumps(rows, indent=1, default=str) if args.json else format_devices(rows))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from edgekd.bench.html_report import write_html_report

    runs = args.run_dir
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
    d.add_argument("--tflite-converter", choices=("litert-torch", "onnx2tf"), default=None)
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)

    ls = sub.add_parser("list", help="list registered names")
    ls.add_argument("what", choices=("models", "methods", "modifiers", "datasets", "strategies", "targets"))
    ls.set_defaults(func=cmd_list)

    t = sub.add_parser("train", help="train a model from scratch (cross-entropy)")
    t.add_argument("--model", required=True, help="model name (`edgekd list models`)")
    t.add_argument("--augment", action="store_true",
                   help="train on randomly shifted (±2 px) and mirrored images: a teacher that does not "
                        "memorise its train set, so its soft labels carry more for KD")
    add_flags(t, RunSettings, skip=("teacher", "student", "method", "out"))
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
    e.add_argument("--precision", default="fp32,int8", help="comma list of fp32, int8")
    e.add_argument("--tflite-converter", default="litert-torch", help="litert-torch, onnx2tf, or both (comma)")
    e.add_argument("--calibration", type=int, default=128, help="calibration samples for int8")
    e.add_argument("--parity-samples", type=int, default=200)
    e.add_argument("--name", default=None, help="model name in the bundle (default: the architecture)")
    e.add_argument("--exit", default=None, metavar="NAME",
                   help="export a self-distilled model cut at this early exit (e.g. layer1.2; 'final' = whole)")
    e.add_argument("--out", required=True, help="bundle folder")
    e.add_argument("--android-assets", default=None, metavar="DIR",
                   help="also copy the bundle's .pte/.tflite files, edgekd.json and sample images into an "
                        "Android app's assets folder, e.g. android_demo/app/src/main/assets")
    e.add_argument("--keep-going", action="store_true",
                   help="a file that fails to export is recorded in edgekd.json (and shown by bench) instead of "
                        "stopping the export")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=cmd_export)

    b = sub.add_parser("bench", help="benchmark a bundle or a model file on a target")
    b.add_argument("model", help=f"bundle folder, or a {'/'.join(suffixes())} file")
    b.add_argument("--target", action="append", default=None,
                   help="local (default), ssh://user@host[:port], adb://SERIAL; repeat to run targets in parallel")
    b.add_argument("--warmup", type=int, default=10)
    b.add_argument("--runs", type=int, default=100)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--eval-data", default=None, help="an .npz with x and y, or a data set name (test split)")
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
    m.add_argument("--min-duration", type=float, default=0.0, metavar="SECONDS",
                   help="go on timing past --runs until this many seconds of timed runs")
    m.add_argument("--mlperf", action="store_true",
                   help="MLPerf Mobile's publishable minimum: at least 1024 runs and 60 s per file")
    m.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="measure each file N times; says whether the p50s agree within 5%%")
    m.add_argument("--sustained", type=float, default=0.0, metavar="SECONDS",
                   help="time back to back for this long, with latency and temperature every --interval s")
    m.add_argument("--interval", type=float, default=10.0, metavar="SECONDS", help="sustained mode's step")
    b.add_argument("--require", default=None, metavar="SPEC",
                   help="CI gate, e.g. accuracy>=0.97,p50_ms<=2: exit 3 naming each file that misses it "
                        "(metrics: accuracy, p50_ms, p90_ms, p99_ms, mean_ms, trimmed_mean_ms, cv, load_ms, "
                        "warm_load_ms, first_ms, peak_mem_mb, size_kb)")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=cmd_bench)

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
