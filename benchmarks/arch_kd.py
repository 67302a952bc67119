"""Edge-friendly architectures by distillation, on Fashion-MNIST: plain CNNs and AdderNets.

1. Residual Distillation: ResNet teacher (trained first), the same plain CNN trained alone, and
   the plain CNN trained by ``resdistill`` (frozen-teacher epoch, then joint); plus, when
   :func:`edgekd.edge.prune.prune` works, the distilled plain CNN pruned by 30% and 60%.
2. PKKD: an AdderNet student trained with ``pkkd`` alongside its CNN twin (from scratch).

Every model is exported to .pte and .tflite, fp32 and int8, and run by the same harness
(latency p50, peak memory, accuracy); the exported graphs' op counts are recorded.

    python benchmarks/arch_kd.py --budget small   # ~10 min on 2 CPU cores (subset, few epochs)
    python benchmarks/arch_kd.py --budget full    # full data, deeper nets, more epochs

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
from _common import write_results  # noqa: E402

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Budget:
    limit: int | None
    depth: int
    adder_depth: int
    adder_limit: int | None
    epochs: int
    adder_epochs: int
    runs: int


BUDGETS = {"small": Budget(limit=2000, depth=20, adder_depth=8, adder_limit=1000, epochs=2, adder_epochs=1, runs=30),
           "full": Budget(limit=None, depth=56, adder_depth=20, adder_limit=10000, epochs=15, adder_epochs=10,
                          runs=200)}


def op_counts(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Histogram of ATen ops in the ``torch.export`` graph of ``model`` (eval mode)."""
    ep = torch.export.export(copy.deepcopy(model).eval(), (x,))
    return dict(collections.Counter(str(n.target).removeprefix("aten.") for n in ep.graph.nodes
                                    if n.op == "call_function"))


def main(argv: list[str] | None = None) -> int:
    from edgekd import data as D
    from edgekd import models as M
    from edgekd.bench.harness import benchmark
    from edgekd.distill import TrainConfig, Trainer, build_objective, distill, evaluate, train
    from edgekd.distill.strategies import ProgressiveStrategy
    from edgekd.errors import EdgekdError
    from edgekd.export import export

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", choices=sorted(BUDGETS), default="small")
    ap.add_argument("--work", default=str(HERE / "results" / "arch_kd_work"))
    ap.add_argument("--out", default=str(HERE / "results" / "arch_kd.json"))
    args = ap.parse_args(argv)
    b, work, t0 = BUDGETS[args.budget], Path(args.work), time.perf_counter()
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
    torch.manual_seed(0)
    alone = train(M.create(plain, **kw), splits, epochs=b.epochs, **opts)
    acc[f"{plain} alone"] = alone.metrics["test_acc"]
    log(f"{plain} alone: {acc[f'{plain} alone']:.4f}")
    torch.manual_seed(0)
    rd = distill(teacher.model, M.create(plain, **kw), splits, "resdistill", epochs=b.epochs,
                 resdistill_freeze_epochs=max(1, b.epochs // 2), **opts)
    trained[f"{plain} resdistill"], acc[f"{plain} resdistill"] = rd.model, rd.metrics["test_acc"]
    log(f"{plain} resdistill: {acc[f'{plain} resdistill']:.4f}")
    prune_note = None
    try:
        from edgekd.edge.prune import prune

        for ratio in (0.3, 0.6):
            name = f"{plain} resdistill pruned {int(ratio * 100)}%"
            small = prune(rd.model, ratio)
            torch.manual_seed(0)
            ft = distill(teacher.model, small, splits, "resdistill", epochs=1, resdistill_freeze_epochs=1, **opts)
            trained[name], acc[name] = ft.model, ft.metrics["test_acc"]
            log(f"{name} (+1 epoch resdistill): {acc[name]:.4f}")
    except (ImportError, EdgekdError, RuntimeError) as e:
        prune_note = f"pruning skipped: {type(e).__name__}: {e}"
        log(prune_note)

    # 2. PKKD ----------------------------------------------------------------------------------
    adder, cnn = f"resnet{b.adder_depth}_adder", f"resnet{b.adder_depth}"
    asplits = D.load("fashion_mnist", seed=0, limit=b.adder_limit)
    torch.manual_seed(0)
    objective = build_objective("pkkd")
    strategy = ProgressiveStrategy(M.create(adder, **kw), M.create(cnn, **kw), objective)
    Trainer(None, asplits, objective, TrainConfig(epochs=b.adder_epochs, batch_size=128, progress=False,
                                                  optimizer="sgd", lr=0.05), strategy=strategy).fit()
    trained[f"{adder} pkkd"] = strategy.student
    acc[f"{adder} pkkd"] = evaluate(strategy.student, splits.test)["acc"]
    acc[f"{cnn} (PKKD co-trained teacher)"] = evaluate(strategy.teacher, splits.test)["acc"]
    log(f"{adder} pkkd: {acc[f'{adder} pkkd']:.4f}; its CNN teacher {acc[f'{cnn} (PKKD co-trained teacher)']:.4f}")

    # export + benchmark -----------------------------------------------------------------------
    x_test, y_test = D.as_tensors(splits.test)
    x1, calib = x_test[:1], D.calibration_sample(splits.train, n=128, seed=0)
    eval_data = (x_test[:500].numpy(), y_test[:500].numpy())
    rows: list[dict[str, Any]] = []
    ops: dict[str, dict[str, int]] = {}
    for name, model in trained.items():
        model = model.eval()
        ops[name] = op_counts(model, x1)
        slug = name.replace(" ", "_").replace("%", "")
        try:
            bundle = export(model, (x1,), formats=("pte", "tflite"), precision=("fp32", "int8"),
                            calibration=calib, out_dir=work / slug, model_name=slug, check_parity=False,
                            parity_data=(x_test[:200], y_test[:200]), progress=False)
        except EdgekdError as e:
            rows.append({"model": name, "key": "export", "error": str(e)})
            log(f"{name}: export failed: {e}")
            continue
        for r in benchmark(bundle, warmup=5, runs=b.runs, threads=1, eval_data=eval_data,
                           out_dir=work / slug / "bench", progress=False):
            rows.append({"model": name, "key": r.key, "kb": round(r.bytes / 1024, 1), "accuracy": r.accuracy,
                         "p50_ms": r.latency_ms.p50 if r.latency_ms else None, "peak_mem_mb": r.peak_mem_mb,
                         "error": r.error})
        log(f"{name}: exported and measured")

    lines = ["| model | eager test acc | file | KB | runtime acc | p50 ms | peak MB |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        f = (lambda v, fmt: format(v, fmt) if v is not None else "-")  # noqa: E731
        lines.append(f"| {r['model']} | {acc.get(r['model'], float('nan')):.4f} | {r['key']} | {f(r.get('kb'), '.1f')} "
                     f"| {f(r.get('accuracy'), '.4f')} | {f(r.get('p50_ms'), '.3f')} | {f(r.get('peak_mem_mb'), '.1f')} |"
                     + (f" ERROR: {str(r['error'])[:80]}" if r.get("error") else ""))
    for k in (f"{plain} alone", f"{cnn} (PKKD co-trained teacher)"):
        lines.append(f"| {k} | {acc[k]:.4f} | (not exported) | | | | |")
    table = "\n".join(lines)
    print("\n" + table)
    for name, hist in ops.items():
        print(f"ops {name}: " + ", ".join(f"{k}×{v}" for k, v in sorted(hist.items())))
    write_results(args.out, "arch_kd", {
           "budget": args.budget, "data": "fashion_mnist", "train_images": len(splits.train), "adder_train_images": len(asplits.train),  # type: ignore[arg-type]
           "config": b.__dict__, "test_acc": acc, "rows": rows, "ops": ops, "prune_note": prune_note,
           "table_md": table, "wall_s": time.perf_counter() - t0})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
