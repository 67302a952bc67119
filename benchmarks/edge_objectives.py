"""Joint (KD → prune → KD+QAT) vs sequential (KD → prune → fine-tune → PTQ) vs PTQ-only on Fashion-MNIST.

Same teacher, student, data, epochs and seeds for every pipeline. Per seed the KD stage is run
once and shared by ``joint`` and both ``sequential`` pipelines (it is the same computation for all
three), so those differ only in what follows it; the ``gradual`` pipelines run their own KD stage
(it prunes), of the same length. One teacher cache (logits) serves every stage:

============================  ================================================================================
``joint``                     prune → fine-tune with the KD objective **under fake quantization** → int8
``joint (gradual)``           its own KD stage that prunes between epochs (widths fall linearly to the
                              same final widths), then the same fake-quantized KD fine-tune → int8
``joint (gradual, no QAT)``   the same gradual KD stage, then a float KD fine-tune → PTQ int8 (the
                              ablation that separates pruning under KD from QAT; joint (gradual)'s float twin)
``sequential (kd ft)``        prune → fine-tune with the same KD objective in float → PTQ int8
``sequential (ce ft)``        prune → fine-tune with cross-entropy (the classic recipe) → PTQ int8
``ptq_only``                  KD for ``kd_epochs + ft_epochs``, no pruning → PTQ int8 (the unpruned reference)
============================  ================================================================================

For each pipeline and seed: the int8 model's test accuracy in PyTorch; for the first seed, the
int8 ``.pte`` (ExecuTorch/XNNPACK) and ``.tflite`` (LiteRT) files' bytes, p50 latency from the
bench harness and accuracy run by the real runtimes; at the end those files are measured again side by
side (``--latency-rounds`` interleaved rounds, best p50 of the rounds): the table's latencies are these. Each
finished (pipeline, seed) is appended to ``<work>/runs.jsonl`` at once; ``--resume`` goes on from
there. Writes
``benchmarks/results/edge_objectives.json`` and prints a table for ``benchmarks/RESULTS.md``::

    python benchmarks/edge_objectives.py --budget small     # minutes (4k images, 1 seed)
    python benchmarks/edge_objectives.py --budget medium    # 20k images, 3 seeds (~1 h on 2 shared cores)
    python benchmarks/edge_objectives.py --budget medium --teacher benchmarks/results/kd_methods_work_full/teacher.pt
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import side_by_side, write_results  # noqa: E402

from edgekd.bench.harness import benchmark  # noqa: E402
from edgekd.convert import export  # noqa: E402
from edgekd.convert.parity import file_accuracy  # noqa: E402
from edgekd.convert.qat import write_int8  # noqa: E402
from edgekd.data import load  # noqa: E402
from edgekd.distillation import TeacherCache, evaluate, train  # noqa: E402
from edgekd.edge.pipeline import EdgeOptions, PipelineResult, distill_stage, joint, ptq_only, sequential  # noqa: E402
from edgekd.models import count_params, create  # noqa: E402
from edgekd.models.saved import load_model  # noqa: E402

HERE = Path(__file__).resolve().parent
MODES: dict[str, dict[str, Any]] = {
    "small": {"limit": 4000, "teacher_epochs": 3, "kd_epochs": 2, "ft_epochs": 2, "seeds": [0], "eval_n": 1000,
              "runs": 50, "batch_size": 128},
    # 20k images (18k train): 3 seeds of every pipeline fit in about an hour on 2 shared CPU cores
    "medium": {"limit": 20000, "teacher_epochs": 3, "kd_epochs": 3, "ft_epochs": 1, "seeds": [0, 1, 2],
               "reference_seeds": 1, "eval_n": 2000, "runs": 100, "batch_size": 128},
    "full": {"limit": None, "teacher_epochs": 8, "kd_epochs": 6, "ft_epochs": 4, "seeds": [0, 1, 2],
             "eval_n": 10000, "runs": 200, "batch_size": 128},
}
PIPELINES = ("joint", "joint (gradual)", "joint (gradual, no QAT)", "sequential (kd ft)", "sequential (ce ft)",
             "ptq_only")
OWN_KD_STAGE = ("joint (gradual)", "joint (gradual, no QAT)", "ptq_only")  # pipelines that do not start from the shared KD stage
SLUG = str.maketrans({" ": "_", "(": None, ")": None, ",": None})


def _files(result: PipelineResult, data: Any, out: Path) -> dict[str, Path]:
    ex = (data.test.tensors[0][:1],)
    if result.prepared is not None:
        return write_int8(result.prepared, ex, out, converted=result.int8_model)
    from edgekd.data.core import calibration_sample

    bundle = export(result.float_model, ex, formats=("pte", "tflite"), precision=("int8",),
                    calibration=calibration_sample(data.train, 256), out_dir=out, progress=False)
    return {f.format: bundle.path_of(f) for f in bundle.files}


def _measure(result: PipelineResult, data: Any, out: Path, cfg: dict[str, Any], threads: int) -> dict[str, Any]:
    """Bytes, p50 (harness) and runtime accuracy of the pipeline's int8 .pte and .tflite."""
    x, y = data.test.tensors
    n = min(cfg["eval_n"], len(y))
    row: dict[str, Any] = {}
    for fmt, path in _files(result, data, out).items():
        (b,) = benchmark(path, "local", warmup=10, runs=cfg["runs"], threads=threads, out_dir=out / f"bench_{fmt}",
                         progress=False)
        row[f"{fmt}_bytes"] = path.stat().st_size
        row[f"{fmt}_p50_ms"] = b.latency_ms.p50 if b.latency_ms else None
        row[f"{fmt}_int8_acc"] = file_accuracy(path, x[:n], y[:n])
    return row


def _teacher(args: argparse.Namespace, cfg: dict[str, Any], data: Any) -> tuple[torch.nn.Module, str, float]:
    if args.teacher:
        model, meta = load_model(args.teacher)
        return model.eval(), meta["name"], evaluate(model, data.test)["acc"]
    r = train(create("resnet14", num_classes=10, in_channels=1), data, epochs=cfg["teacher_epochs"], progress=True)
    return r.model.eval(), "resnet14", r.metrics["test_acc"]


def _float_twin(rows: list[dict[str, Any]], row: dict[str, Any]) -> float | None:
    """Accuracy of the fp32 model of the same size and recipe as ``row``'s int8 model (same seed).

    Sequential and PTQ-only: their own float model. Joint: the float model of ``sequential (kd ft)``,
    which is the joint recipe without fake quantization; likewise joint (gradual): the float model of
    ``joint (gradual, no QAT)``.
    """
    twins = {"joint": "sequential (kd ft)", "joint (gradual)": "joint (gradual, no QAT)"}
    if row["pipeline"] not in twins:
        return row.get("fp32_acc")
    twin = next((r for r in rows if r["pipeline"] == twins[row["pipeline"]] and r["seed"] == row["seed"]), None)
    return twin.get("fp32_acc") if twin else None


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds per pipeline; file figures from the seed that measured them."""
    out = []
    for name in PIPELINES:
        rs = [r for r in rows if r["pipeline"] == name]
        if not rs:
            continue
        s: dict[str, Any] = {"pipeline": name, "seeds": len(rs), "prune_ratio": rs[0]["prune_ratio"],
                             "params": rs[0]["params"]}
        for k in ("kd_fp32_acc", "fp32_acc", "int8_acc_torch"):
            vals = [r[k] for r in rs if r.get(k) is not None]
            if vals:
                s[f"{k}_mean"] = statistics.mean(vals)
                s[f"{k}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        s["int8_vs_kd_student"] = statistics.mean(r["int8_acc_torch"] / r["kd_fp32_acc"] for r in rs)
        ratios = [r["int8_acc_torch"] / ref for r in rs if (ref := _float_twin(rows, r))]
        s["int8_vs_fp32_twin"] = statistics.mean(ratios) if ratios else None
        measured = next((r for r in rs if "pte_bytes" in r), {})
        s.update({k: v for k, v in measured.items() if k.startswith(("pte_", "tflite_"))})
        out.append(s)
    return out


def table(summary: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`summarize` rows (accuracy in %, bytes in KB, latency in ms)."""
    def f(v: float | None, scale: float = 1.0, fmt: str = ".2f") -> str:
        return "—" if v is None else format(scale * v, fmt)

    head = ("| pipeline | prune | params | fp32 KD student % | int8 % (torch, mean ± std) | int8 / fp32 twin | "
            ".pte % | .pte KB | .pte p50 ms | .tflite % | .tflite KB | .tflite p50 ms |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in summary:
        lines.append(
            f"| {r['pipeline']} | {r['prune_ratio']:.2f} | {r['params']} | {f(r.get('kd_fp32_acc_mean'), 100)} | "
            f"{f(r['int8_acc_torch_mean'], 100)} ± {f(r['int8_acc_torch_std'], 100)} | {f(r['int8_vs_fp32_twin'], 100, '.1f')} % | "
            f"{f(r.get('pte_int8_acc'), 100)} | {f(r.get('pte_bytes'), 1 / 1024, '.1f')} | {f(r.get('pte_p50_ms'), 1, '.3f')} | "
            f"{f(r.get('tflite_int8_acc'), 100)} | {f(r.get('tflite_bytes'), 1 / 1024, '.1f')} | "
            f"{f(r.get('tflite_p50_ms'), 1, '.3f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", choices=sorted(MODES), default="small")
    ap.add_argument("--prune", type=float, default=0.5)
    ap.add_argument("--student", default="resnet8")
    ap.add_argument("--method", default="ce:0.5+kd:0.5", help="the KD objective (KD stage, joint and kd fine-tunes)")
    ap.add_argument("--kd-T", type=float, default=2.0, help="KD temperature")
    ap.add_argument("--seeds", default="", help="comma-separated seeds (default: the budget's)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for training (0: torch's default)")
    ap.add_argument("--teacher", default=None, help="a trained teacher checkpoint (edgekd model.pt)")
    ap.add_argument("--resume", action="store_true", help="keep the finished (pipeline, seed) runs in the work folder")
    ap.add_argument("--latency-rounds", type=int, default=3,
                    help="re-measure every int8 file of the first seed in this many interleaved rounds (0: skip)")
    ap.add_argument("--out", default=str(HERE / "results" / "edge_objectives.json"))
    args = ap.parse_args(argv)
    cfg = MODES[args.budget]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()] or cfg["seeds"]
    if args.threads:
        torch.set_num_threads(args.threads)
    work = HERE / "results" / f"edge_objectives_work_{args.budget}"
    work.mkdir(parents=True, exist_ok=True)
    runs_path = work / "runs.jsonl"
    if not args.resume and runs_path.exists():
        runs_path.unlink()
    done = {(r["pipeline"], r["seed"]) for r in map(json.loads, runs_path.read_text().splitlines())} \
        if runs_path.exists() else set()
    t0 = time.time()
    data = load("fashion_mnist", limit=cfg["limit"])
    teacher, teacher_name, teacher_acc = _teacher(args, cfg, data)
    print(f"teacher {teacher_name}: test acc {teacher_acc:.4f}; student {args.student}; seeds {seeds}", flush=True)
    # ptq_only (the unpruned reference) runs for the first `reference_seeds` seeds only
    ref_seeds = seeds[:cfg.get("reference_seeds", len(seeds))]
    plan = {seed: [p for p in PIPELINES if (p, seed) not in done and (p != "ptq_only" or seed in ref_seeds)]
            for seed in seeds}
    t = time.time()
    cache = TeacherCache(teacher, data.train) if any(plan.values()) else None
    print(f"teacher cache: {len(data.train)} logits in {time.time() - t:.0f} s", flush=True)
    common = {"kd_epochs": cfg["kd_epochs"], "ft_epochs": cfg["ft_epochs"], "method": args.method,
              "batch_size": cfg["batch_size"], "cache": cache, "kd_T": args.kd_T}
    for seed in seeds:
        pending = plan[seed]
        if not pending:
            continue
        torch.manual_seed(seed)  # the seed fixes the student's initial weights too, not only the data order
        student = create(args.student, num_classes=10, in_channels=1)
        kd = None
        if any(p not in OWN_KD_STAGE for p in pending):
            t = time.time()
            kd = distill_stage(teacher, student, data, kd_epochs=cfg["kd_epochs"], method=args.method,
                               batch_size=cfg["batch_size"], seed=seed, cache=cache, kd_T=args.kd_T)
            print(f"seed {seed}: KD stage {kd.metrics['test_acc']:.4f} in {time.time() - t:.0f} s", flush=True)
        runs = {
            "joint": lambda s=seed, st=student, k=kd: joint(teacher, st, data, EdgeOptions(qat=True, prune=args.prune),
                                                seed=s, kd=k, **common),
            "joint (gradual)": lambda s=seed, st=student: joint(teacher, st, data, EdgeOptions(qat=True, prune=args.prune),
                                                    seed=s, gradual=True, **common),
            "joint (gradual, no QAT)": lambda s=seed, st=student: joint(teacher, st, data, EdgeOptions(prune=args.prune),
                                                            seed=s, gradual=True, **common),
            "sequential (kd ft)": lambda s=seed, st=student, k=kd: sequential(teacher, st, data, args.prune, seed=s, kd=k,
                                                                  finetune_method=args.method, **common),
            "sequential (ce ft)": lambda s=seed, st=student, k=kd: sequential(teacher, st, data, args.prune, seed=s, kd=k,
                                                                  finetune_method="ce", **common),
            "ptq_only": lambda s=seed, st=student: ptq_only(teacher, st, data, seed=s, **common),
        }
        for name in pending:
            t = time.time()
            r = runs[name]()
            row: dict[str, Any] = {"pipeline": name, "seed": seed, "prune_ratio": r.ratio,
                                   "params": count_params(r.float_model), "kd_fp32_acc": r.metrics["kd_fp32_acc"],
                                   "fp32_acc": r.metrics.get("fp32_acc"), "int8_acc_torch": r.metrics["int8_acc"],
                                   "train_s": time.time() - t}
            if seed == seeds[0]:
                row.update(_measure(r, data, work / f"{name.translate(SLUG)}_s{seed}", cfg, threads=1))
            with runs_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    rows = [json.loads(line) for line in runs_path.read_text().splitlines() if line.strip()]
    summary = summarize(rows)
    t = time.time()
    files = {f"{name}|{fmt}": path for name in PIPELINES for fmt in ("pte", "tflite")
             if (path := work / f"{name.translate(SLUG)}_s{seeds[0]}" / f"model_int8.{fmt}").exists()}
    latency = side_by_side(files, work / "side_by_side", rounds=args.latency_rounds, runs=cfg["runs"]) \
        if args.latency_rounds else {}
    for r in summary:  # the side-by-side best-of-rounds p50s replace the per-run ones
        for fmt in ("pte", "tflite"):
            if (m := latency.get(f"{r['pipeline']}|{fmt}")) and m["p50_ms_min"] is not None:
                r[f"{fmt}_p50_ms"] = m["p50_ms_min"]
    print(f"side-by-side latency: {args.latency_rounds} rounds in {time.time() - t:.0f} s", flush=True)
    md = table(summary)
    print("\n" + md)
    write_results(args.out, "edge_objectives", {
        "mode": args.budget, "config": {**cfg, "seeds": seeds}, "method": args.method, "kd_T": args.kd_T,
        "teacher": teacher_name,
        "teacher_acc": teacher_acc, "student": args.student, "data": f"fashion_mnist (limit={cfg['limit']})",
        "rows": rows, "summary": summary, "latency_side_by_side": latency, "table_md": md,
        "seconds": time.time() - t0})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
