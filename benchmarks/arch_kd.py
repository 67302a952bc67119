"""Edge-friendly architectures by distillation, on Fashion-MNIST: plain CNNs and AdderNets.

1. Residual Distillation: ResNet teacher (trained first), the same plain CNN trained alone, and
   the plain CNN trained by ``resdistill`` (frozen-teacher epoch, then joint); plus, when
   :func:`edgekd.edge.prune.prune` works, the distilled plain CNN pruned by 30% and 60%.
2. PKKD: an AdderNet student trained with ``pkkd`` alongside its CNN twin (from scratch), and the
   same AdderNet trained alone (cross-entropy, the paper's adaptive learning-rate scaling): PKKD's gain.

resdistill runs as in the authors' code: margin loss on pre-ReLU features and the routed losses'
weight faded by a cosine to 0 over the epochs (:func:`resdistill_opts`); ``--ablation`` compares
that with resdistill's default pooled-feature MSE and with a constant weight.

Every model is exported to .pte and .tflite, fp32 and int8, and run by the same harness
(latency p50, peak memory, accuracy); the exported graphs' op counts are recorded.

    python benchmarks/arch_kd.py --budget small   # ~10 min on 2 CPU cores (subset, few epochs)
    python benchmarks/arch_kd.py --budget medium  # ~60 min on 1 core under load (depth 32, 9k train images, 6 epochs)
    python benchmarks/arch_kd.py --budget full    # full data, deeper nets, more epochs
    python benchmarks/arch_kd.py --budget medium --latency-only --latency-rounds 7  # re-time a finished run
    python benchmarks/arch_kd.py --budget medium --ablation --threads 2  # resdistill's feature term × fade

At the end every exported file is timed again side by side (``--latency-rounds`` interleaved rounds;
the JSON keeps every round, the ratio table uses each file's best round).

``--threads`` sets torch's intra-op threads for training (default 1); the benchmark harness runs
every file with 1 thread. Per-phase wall times land in the JSON under ``phase_s``.

Writes ``benchmarks/results/arch_kd.json`` and prints a Markdown table for RESULTS.md.
"""

from __future__ import annotations

import argparse
import collections
import copy
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import side_by_side, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Budget:
    """``limit``/``adder_limit``: images per source split (None: all); ``freeze_epochs`` of the
    ``epochs`` resdistill ones keep the teacher frozen (None: half); ``runs``: timed runs per file."""

    limit: int | None
    depth: int
    adder_depth: int
    adder_limit: int | None
    epochs: int
    adder_epochs: int
    runs: int
    freeze_epochs: int | None = None
    prune_epochs: int = 1


# as the authors' code: the routed branches fade out by a cosine, reaching 0 in the last epoch, and the
# feature term is the margin loss on pre-ReLU features (resdistill's default is the pooled MSE: --ablation)
def resdistill_opts(epochs: int) -> dict[str, Any]:
    return {"resdistill_fade_epochs": max(1, epochs - 1), "resdistill_fade_to": 0.0, "resdistill_feat_kind": "margin"}


# medium was sized from measured 1-thread step times (batch 128, 28x28) on the 2-core VM under load:
# resnet32 0.55 s, resnet32_plain 0.57 s, resdistill-32 1.26 s frozen / 1.54 s joint, pkkd resnet8 2.1 s;
# the 2026-12-01 run took 61 min (phase_s in results/arch_kd.json)
BUDGETS = {"small": Budget(limit=2000, depth=20, adder_depth=8, adder_limit=1000, epochs=2, adder_epochs=1, runs=30),
           "medium": Budget(limit=10000, depth=32, adder_depth=8, adder_limit=5000, epochs=6, adder_epochs=8,
                            runs=100, prune_epochs=2),
           "full": Budget(limit=None, depth=56, adder_depth=20, adder_limit=10000, epochs=15, adder_epochs=10,
                          runs=200)}


def op_counts(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Histogram of ATen ops in the ``torch.export`` graph of ``model`` (eval mode)."""
    ep = torch.export.export(copy.deepcopy(model).eval(), (x,))
    return dict(collections.Counter(str(n.target).removeprefix("aten.") for n in ep.graph.nodes
                                    if n.op == "call_function"))


def slug(name: str) -> str:
    """The bundle folder of a model name."""
    return name.replace(" ", "_").replace("%", "").replace("(", "").replace(")", "")


def measure_side_by_side(names: list[str], work: Path, runs: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Every file of every exported model's bundle, interleaved (``_common.side_by_side``), keyed ``model|file``."""
    from edgekd.bundle import Bundle

    files = {}
    for name in names:
        if (work / slug(name) / "edgekd.json").exists():
            bundle = Bundle.load(work / slug(name))
            files.update({f"{name}|{f.key}": bundle.path_of(f) for f in bundle.files})
    return side_by_side(files, work / "side_by_side", rounds=rounds, runs=runs)


def ratio_table(latency: dict[str, dict[str, Any]], pairs: list[tuple[str, str]]) -> str:
    """Markdown: for each (baseline, candidate) pair and file, the best-of-rounds p50 and the median peak
    memory of each (side by side) and their ratios (> 1: the candidate is faster / smaller)."""
    lines = ["| baseline → candidate | file | baseline p50 ms | candidate p50 ms | speed-up | baseline peak MB "
             "| candidate peak MB | memory ratio |", "|---|---|---|---|---|---|---|---|"]
    for base, cand in pairs:
        for key in sorted(k.split("|", 1)[1] for k in latency if k.startswith(f"{base}|")):
            a, b = latency.get(f"{base}|{key}"), latency.get(f"{cand}|{key}")
            if not (a and b and a["p50_ms_min"] and b["p50_ms_min"]):
                continue
            mem = (f"{a['peak_mem_mb']:.1f} | {b['peak_mem_mb']:.1f} | {a['peak_mem_mb'] / b['peak_mem_mb']:.2f}×"
                   if a["peak_mem_mb"] and b["peak_mem_mb"] else "— | — | —")
            lines.append(f"| {base} → {cand} | {key} | {a['p50_ms_min']:.3f} | {b['p50_ms_min']:.3f} | "
                         f"{a['p50_ms_min'] / b['p50_ms_min']:.3g}× | {mem} |")
    return "\n".join(lines)


def pairs_of(b: Budget) -> list[tuple[str, str]]:
    plain, res = f"resnet{b.depth}_plain", f"resnet{b.depth}"
    adder, cnn = f"resnet{b.adder_depth}_adder", f"resnet{b.adder_depth}"
    return [(res, f"{plain} resdistill"), (f"{cnn} (PKKD co-trained teacher)", f"{adder} pkkd")]


def rewrite(out: Path, result: dict[str, Any]) -> None:
    """Write an updated finished run back to ``out``: today's machine facts, the training date kept."""
    keep = {k: v for k, v in result.items() if k not in ("benchmark", "date", "machine", "processor", "cpu_count",
                                                          "torch_threads", "gpu", "machine_facts")}
    write_results(out, "arch_kd", {**keep, "trained_on": result.get("trained_on", result.get("date"))})


def latency_only(args: argparse.Namespace, b: Budget) -> int:
    """``--latency-only``: re-measure a finished run's bundles side by side and add that to its JSON."""
    import json

    out = Path(args.out)
    if not out.exists():
        raise SystemExit(f"arch_kd: {out} does not exist; run the benchmark first (without --latency-only)")
    result = json.loads(out.read_text())
    names = list(dict.fromkeys(r["model"] for r in result["rows"]))
    t = time.perf_counter()
    latency = measure_side_by_side(names, Path(args.work), b.runs, max(1, args.latency_rounds))
    table = ratio_table(latency, pairs_of(b))
    print(table)
    result.update({"latency_side_by_side": latency, "latency_rounds": max(1, args.latency_rounds),
                   "latency_table_md": table, "latency_side_by_side_s": time.perf_counter() - t})
    rewrite(out, result)
    return 0


def adder_alone(name: str, splits: Any, b: Budget) -> nn.Module:
    """The AdderNet trained alone: cross-entropy with the paper's adaptive lr, on the PKKD run's images,
    epochs and optimiser. Trainer trains this very module, so the lr hooks apply (``train()`` would
    train a copy without them)."""
    from edgekd import models as M
    from edgekd.distillation import TrainConfig, Trainer, build_objective
    from edgekd.models.adder import adaptive_lr

    torch.manual_seed(0)
    model = M.create(name, num_classes=splits.num_classes, in_channels=splits.in_channels)
    handles = adaptive_lr(model)
    try:
        Trainer(model, splits, build_objective("ce"), TrainConfig(epochs=b.adder_epochs, batch_size=128, progress=False,
                                                                  optimizer="sgd", lr=0.05)).fit()
    finally:
        for h in handles:
            h.remove()
    return model


ABLATION = {  # resdistill variants: feature term × routed-weight fade; the main run is "margin, fade"
    "margin, constant": {"resdistill_feat_kind": "margin", "fade": False},
    "mse, fade": {"resdistill_feat_kind": "mse", "fade": True},
    "mse, constant": {"resdistill_feat_kind": "mse", "fade": False},
}


def only_adder_alone(args: argparse.Namespace, b: Budget) -> int:
    """``--adder-alone``: (re)train only the AdderNet-alone baseline and update its accuracy in ``--out``."""
    import json

    from edgekd import data as D
    from edgekd.distillation import evaluate

    out = Path(args.out)
    if not out.exists():
        raise SystemExit(f"arch_kd: {out} does not exist; run the benchmark first (without --adder-alone)")
    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    splits = D.load("fashion_mnist", seed=0, limit=b.limit)
    name = f"resnet{b.adder_depth}_adder"
    model = adder_alone(name, D.load("fashion_mnist", seed=0, limit=b.adder_limit), b)
    result = json.loads(out.read_text())
    result["test_acc"][f"{name} alone"] = evaluate(model, splits.test)["acc"]
    result.setdefault("phase_s", {})[f"train {name} alone"] = round(time.perf_counter() - t, 1)
    print(f"{name} alone (CE, adaptive lr): {result['test_acc'][f'{name} alone']:.4f}")
    rewrite(out, result)
    return 0


def ablation(args: argparse.Namespace, b: Budget) -> int:
    """``--ablation``: the budget's teacher (same seed and recipe as the main run, so the same weights
    at the same thread count: compare its accuracy with the main run's), then resdistill with each
    :data:`ABLATION` variant (the main run has the plain net alone and "margin, fade"); writes
    ``--out`` with ``_ablation`` appended."""
    from edgekd import data as D
    from edgekd import models as M
    from edgekd.distillation import distill, train

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    splits = D.load("fashion_mnist", seed=0, limit=b.limit)
    kw = {"num_classes": splits.num_classes, "in_channels": splits.in_channels}
    opts = {"batch_size": 128, "progress": False, "optimizer": "sgd", "lr": 0.05}
    res, plain = f"resnet{b.depth}", f"resnet{b.depth}_plain"
    torch.manual_seed(0)
    teacher = train(M.create(res, **kw), splits, epochs=b.epochs, **opts)
    acc = {f"{res} teacher": teacher.metrics["test_acc"]}
    print(f"[{time.perf_counter() - t0:6.0f}s] teacher {acc[f'{res} teacher']:.4f}", flush=True)
    freeze = b.freeze_epochs if b.freeze_epochs is not None else max(1, b.epochs // 2)
    for name, variant in ABLATION.items():
        options = {**(resdistill_opts(b.epochs) if variant["fade"] else {}),
                   **{k: v for k, v in variant.items() if k != "fade"}}
        torch.manual_seed(0)
        rd = distill(teacher.model, M.create(plain, **kw), splits, "resdistill", epochs=b.epochs,
                     resdistill_freeze_epochs=freeze, **options, **opts)
        acc[f"resdistill ({name})"] = rd.metrics["test_acc"]
        print(f"[{time.perf_counter() - t0:6.0f}s] resdistill ({name}): {rd.metrics['test_acc']:.4f}", flush=True)
    lines = ["| model | test acc |", "|---|---|", *(f"| {k} | {v:.4f} |" for k, v in acc.items())]
    print("\n" + "\n".join(lines))
    out = Path(args.out)
    write_results(out.with_name(out.stem + "_ablation.json"), "arch_kd_ablation", {
        "budget": args.budget, "config": b.__dict__, "threads": args.threads, "variants": ABLATION,
        "freeze_epochs": freeze, "test_acc": acc, "table_md": "\n".join(lines), "wall_s": time.perf_counter() - t0})
    return 0


def main(argv: list[str] | None = None) -> int:
    from edgekd import data as D
    from edgekd import models as M
    from edgekd.bench.harness import benchmark
    from edgekd.convert import export
    from edgekd.distillation import TrainConfig, Trainer, build_objective, distill, evaluate, train
    from edgekd.distillation.strategies import ProgressiveStrategy
    from edgekd.errors import EdgekdError

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", choices=sorted(BUDGETS), default="small")
    ap.add_argument("--work", default=str(HERE / "results" / "arch_kd_work"))
    ap.add_argument("--out", default=str(HERE / "results" / "arch_kd.json"))
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for training (default 1)")
    ap.add_argument("--latency-rounds", type=int, default=3,
                    help="re-measure every exported file in this many interleaved rounds at the end (0: skip)")
    ap.add_argument("--latency-only", action="store_true",
                    help="only re-measure the bundles of a finished run (in --work) side by side; update --out")
    ap.add_argument("--adder-alone", action="store_true",
                    help="only (re)train the AdderNet-alone baseline and update its accuracy in --out")
    ap.add_argument("--ablation", action="store_true",
                    help="only the teacher and resdistill's feature-term × fade variants (writes <out>_ablation.json)")
    args = ap.parse_args(argv)
    if args.latency_only:
        return latency_only(args, BUDGETS[args.budget])
    if args.threads < 1:
        ap.error(f"--threads {args.threads} must be >= 1")
    if args.ablation:
        return ablation(args, BUDGETS[args.budget])
    if args.adder_alone:
        return only_adder_alone(args, BUDGETS[args.budget])
    torch.set_num_threads(args.threads)
    b, work, t0 = BUDGETS[args.budget], Path(args.work), time.perf_counter()
    phase_s: dict[str, float] = {}
    last = [t0]

    def phase(name: str) -> None:
        now = time.perf_counter()
        phase_s[name] = round(now - last[0], 1)
        last[0] = now
    splits = D.load("fashion_mnist", seed=0, limit=b.limit)
    kw = {"num_classes": splits.num_classes, "in_channels": splits.in_channels}
    opts = {"batch_size": 128, "progress": False, "optimizer": "sgd", "lr": 0.05}
    trained: dict[str, nn.Module] = {}
    acc: dict[str, float] = {}

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f}s] {msg}", flush=True)

    # 1. residual distillation -----------------------------------------------------------------
    res, plain = f"resnet{b.depth}", f"resnet{b.depth}_plain"
    torch.manual_seed(0)
    teacher = train(M.create(res, **kw), splits, epochs=b.epochs, **opts)
    trained[res], acc[res] = teacher.model, teacher.metrics["test_acc"]
    log(f"{res} teacher: test acc {acc[res]:.4f}")
    phase(f"train {res} teacher")
    torch.manual_seed(0)
    alone = train(M.create(plain, **kw), splits, epochs=b.epochs, **opts)
    acc[f"{plain} alone"] = alone.metrics["test_acc"]
    log(f"{plain} alone: {acc[f'{plain} alone']:.4f}")
    phase(f"train {plain} alone")
    torch.manual_seed(0)
    freeze = b.freeze_epochs if b.freeze_epochs is not None else max(1, b.epochs // 2)
    rd = distill(teacher.model, M.create(plain, **kw), splits, "resdistill", epochs=b.epochs,
                 resdistill_freeze_epochs=freeze, **resdistill_opts(b.epochs), **opts)
    trained[f"{plain} resdistill"], acc[f"{plain} resdistill"] = rd.model, rd.metrics["test_acc"]
    log(f"{plain} resdistill ({freeze} frozen + {b.epochs - freeze} joint epochs): {acc[f'{plain} resdistill']:.4f}")
    phase(f"train {plain} resdistill")
    prune_notes: list[str] = []
    for ratio in (0.3, 0.6):
        name = f"{plain} resdistill pruned {int(ratio * 100)}%"
        try:
            from edgekd.edge.prune import prune

            small = prune(rd.model, ratio)
            torch.manual_seed(0)
            ft = distill(teacher.model, small, splits, "resdistill", epochs=b.prune_epochs,
                         resdistill_freeze_epochs=b.prune_epochs, **resdistill_opts(b.prune_epochs), **opts)
            trained[name], acc[name] = ft.model, ft.metrics["test_acc"]
            log(f"{name} (+{b.prune_epochs} epoch(s) resdistill, teacher frozen): {acc[name]:.4f}")
        except (ImportError, EdgekdError, RuntimeError) as e:
            prune_notes.append(f"{name} skipped: {type(e).__name__}: {e}")
            log(prune_notes[-1])
        phase(f"prune+finetune {int(ratio * 100)}%")

    # 2. PKKD ----------------------------------------------------------------------------------
    adder, cnn = f"resnet{b.adder_depth}_adder", f"resnet{b.adder_depth}"
    asplits = D.load("fashion_mnist", seed=0, limit=b.adder_limit)
    torch.manual_seed(0)
    objective = build_objective("pkkd")
    strategy = ProgressiveStrategy(M.create(adder, **kw), M.create(cnn, **kw), objective)
    Trainer(None, asplits, objective, TrainConfig(epochs=b.adder_epochs, batch_size=128, progress=False,
                                                  optimizer="sgd", lr=0.05), strategy=strategy).fit()
    twin = f"{cnn} (PKKD co-trained teacher)"
    trained[f"{adder} pkkd"], trained[twin] = strategy.student, strategy.teacher
    acc[f"{adder} pkkd"] = evaluate(strategy.student, splits.test)["acc"]
    acc[twin] = evaluate(strategy.teacher, splits.test)["acc"]
    log(f"{adder} pkkd ({len(asplits.train)} images x {b.adder_epochs} epochs): {acc[f'{adder} pkkd']:.4f}; "
        f"its CNN teacher {acc[twin]:.4f}")
    phase(f"train {adder} pkkd")
    acc[f"{adder} alone"] = evaluate(adder_alone(adder, asplits, b), splits.test)["acc"]
    log(f"{adder} alone (CE, adaptive lr): {acc[f'{adder} alone']:.4f}")
    phase(f"train {adder} alone")

    # export + benchmark -----------------------------------------------------------------------
    x_test, y_test = D.as_tensors(splits.test)
    x1, calib = x_test[:1], D.calibration_sample(splits.train, n=128, seed=0)
    eval_data = (x_test[:500].numpy(), y_test[:500].numpy())
    rows: list[dict[str, Any]] = []
    ops: dict[str, dict[str, int]] = {}
    for name, model in trained.items():
        model = model.eval()
        try:
            ops[name] = op_counts(model, x1)
        except Exception as e:  # noqa: BLE001 - op counts are informative; keep exporting
            ops[name] = {}
            log(f"{name}: op count failed: {type(e).__name__}: {e}")
        try:
            bundle = export(model, (x1,), formats=("pte", "tflite"), precision=("fp32", "int8"),
                            calibration=calib, out_dir=work / slug(name), model_name=slug(name), check_parity=False,
                            parity_data=(x_test[:200], y_test[:200]), progress=False)
        except EdgekdError as e:
            rows.append({"model": name, "key": "export", "error": str(e)})
            log(f"{name}: export failed: {e}")
            phase(f"export+bench {name}")
            continue
        try:
            results = benchmark(bundle, warmup=5, runs=b.runs, threads=1, eval_data=eval_data,
                                out_dir=work / slug(name) / "bench", progress=False)
        except EdgekdError as e:
            rows.append({"model": name, "key": "bench", "error": str(e)})
            log(f"{name}: benchmark failed: {e}")
            phase(f"export+bench {name}")
            continue
        for r in results:
            rows.append({"model": name, "key": r.key, "kb": round(r.bytes / 1024, 1), "accuracy": r.accuracy,
                         "p50_ms": r.latency_ms.p50 if r.latency_ms else None, "peak_mem_mb": r.peak_mem_mb,
                         "error": r.error})
        log(f"{name}: exported and measured")
        phase(f"export+bench {name}")

    lines = ["| model | eager test acc | file | KB | runtime acc | p50 ms | peak MB |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        f = (lambda v, fmt: format(v, fmt) if v is not None else "-")  # noqa: E731
        lines.append(f"| {r['model']} | {acc.get(r['model'], float('nan')):.4f} | {r['key']} | {f(r.get('kb'), '.1f')} "
                     f"| {f(r.get('accuracy'), '.4f')} | {f(r.get('p50_ms'), '.3f')} | {f(r.get('peak_mem_mb'), '.1f')} |"
                     + (f" ERROR: {str(r['error'])[:80]}" if r.get("error") else ""))
    lines.append(f"| {plain} alone | {acc[f'{plain} alone']:.4f} | (not exported: same graph as resdistill) | | | | |")
    lines.append(f"| {adder} alone | {acc[f'{adder} alone']:.4f} | (not exported: same graph as pkkd) | | | | |")
    table = "\n".join(lines)
    print("\n" + table)
    for name, hist in ops.items():
        print(f"ops {name}: " + ", ".join(f"{k}×{v}" for k, v in sorted(hist.items())))
    latency: dict[str, dict[str, Any]] = {}
    latency_table = ""
    if args.latency_rounds > 0:
        latency = measure_side_by_side(list(trained), work, b.runs, args.latency_rounds)
        latency_table = ratio_table(latency, pairs_of(b))
        print("\n" + latency_table)
        phase("latency side by side")
    write_results(args.out, "arch_kd", {
           "latency_side_by_side": latency, "latency_rounds": args.latency_rounds, "latency_table_md": latency_table,
           "budget": args.budget, "data": "fashion_mnist", "train_images": len(splits.train), "adder_train_images": len(asplits.train),  # type: ignore[arg-type]
           "config": b.__dict__, "resdistill_opts": resdistill_opts(b.epochs), "threads": args.threads, "test_acc": acc, "rows": rows, "ops": ops,
           "prune_note": "; ".join(prune_notes) or None, "phase_s": phase_s, "table_md": table,
           "wall_s": time.perf_counter() - t0})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
