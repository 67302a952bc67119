"""Joint (KD → prune → KD+QAT) vs sequential (KD → prune → fine-tune → PTQ) vs PTQ-only on Fashion-MNIST.

Same teacher, student, data and epochs for all three. For each: int8 accuracy in PyTorch and in
the real runtimes (.pte via ExecuTorch/XNNPACK, .tflite via LiteRT), file bytes and p50 latency
from the bench harness. Writes ``benchmarks/results/edge_objectives.json`` and prints a table
(paste it into ``benchmarks/RESULTS.md``)::

    python benchmarks/edge_objectives.py --budget small     # minutes
    python benchmarks/edge_objectives.py --budget medium    # full data, short schedule
    python benchmarks/edge_objectives.py --budget full      # full data, more epochs
    python benchmarks/edge_objectives.py --budget medium --teacher runs/teacher/model.pt  # reuse a teacher
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

from edgekd.bench.harness import benchmark  # noqa: E402
from edgekd.data import load  # noqa: E402
from edgekd.distill import evaluate, train  # noqa: E402
from edgekd.edge.pipeline import EdgeOptions, joint, ptq_only, sequential  # noqa: E402
from edgekd.edge.qat import file_accuracy, write_int8  # noqa: E402
from edgekd.export import export  # noqa: E402
from edgekd.models import count_params, create  # noqa: E402
from edgekd.models.saved import load_model  # noqa: E402

MODES: dict[str, dict[str, Any]] = {
    "small": {"limit": 4000, "teacher_epochs": 3, "kd_epochs": 2, "ft_epochs": 2, "eval_n": 1000, "runs": 50},
    "medium": {"limit": None, "teacher_epochs": 3, "kd_epochs": 2, "ft_epochs": 1, "eval_n": 2000, "runs": 100},
    "full": {"limit": None, "teacher_epochs": 8, "kd_epochs": 6, "ft_epochs": 4, "eval_n": 10000, "runs": 200},
}


def _files(result: Any, data: Any, out: Path) -> dict[str, Path]:
    ex = (data.test.tensors[0][:1],)
    if result.prepared is not None:
        return write_int8(result.prepared, ex, out, converted=result.int8_model)
    from edgekd.data.core import calibration_sample

    bundle = export(result.float_model, ex, formats=("pte", "tflite"), precision=("int8",),
                    calibration=calibration_sample(data.train, 256), out_dir=out, progress=False)
    return {f.format: bundle.path_of(f) for f in bundle.files}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", choices=sorted(MODES), default="small")
    ap.add_argument("--prune", type=float, default=0.5)
    ap.add_argument("--teacher", default=None, help="a trained resnet14-style teacher checkpoint (edgekd model.pt)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "edge_objectives.json"))
    args = ap.parse_args()
    cfg = MODES[args.budget]
    torch.manual_seed(0)
    data = load("fashion_mnist", limit=cfg["limit"])
    t0 = time.time()
    if args.teacher:
        teacher_model, meta = load_model(args.teacher)
        teacher_name, teacher_acc = meta["name"], evaluate(teacher_model, data.test)["acc"]
    else:
        teacher = train(create("resnet14", num_classes=10, in_channels=1), data, epochs=cfg["teacher_epochs"],
                        progress=False)
        teacher_name, teacher_model, teacher_acc = "resnet14", teacher.model.eval(), teacher.metrics["test_acc"]
    student = create("resnet8", num_classes=10, in_channels=1)
    common = {"kd_epochs": cfg["kd_epochs"], "ft_epochs": cfg["ft_epochs"], "method": "ce:0.1+kd:0.9"}
    runs = {
        "joint": lambda: joint(teacher_model, student, data, EdgeOptions(qat=True, prune=args.prune), **common),
        "sequential": lambda: sequential(teacher_model, student, data, args.prune, **common),
        "ptq_only": lambda: ptq_only(teacher_model, student, data, **common),
    }
    x, y = data.test.tensors
    n = min(cfg["eval_n"], len(y))
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgekd_edge_") as tmp:
        for name, run in runs.items():
            t = time.time()
            r = run()
            files = _files(r, data, Path(tmp) / name)
            row = {"pipeline": name, "prune_ratio": r.ratio, "params": count_params(r.float_model),
                   "fp32_student_acc": r.metrics["kd_fp32_acc"], "int8_acc_torch": r.metrics["int8_acc"],
                   "train_s": time.time() - t}
            for fmt, path in files.items():
                (b,) = benchmark(path, "local", warmup=10, runs=cfg["runs"], threads=1,
                                 out_dir=Path(tmp) / name / f"bench_{fmt}", progress=False)
                row[f"{fmt}_bytes"] = path.stat().st_size
                row[f"{fmt}_p50_ms"] = b.latency_ms.p50 if b.latency_ms else None
                row[f"{fmt}_int8_acc"] = file_accuracy(path, x[:n], y[:n])
            rows.append(row)
            print(json.dumps(row))
    result = {"mode": args.budget, "config": cfg, "teacher": teacher_name, "teacher_acc": teacher_acc,
              "student": "resnet8", "data": f"fashion_mnist (limit={cfg['limit']})", "eval_samples": n,
              "rows": rows, "seconds": time.time() - t0}
    print(table(result))
    write_results(args.out, "edge_objectives", {**result, "table_md": table(result)})


def table(result: dict[str, Any]) -> str:
    """Markdown table of a results dict (accuracy in %, bytes in KB, latency in ms)."""
    head = ("| pipeline | prune | params | fp32 KD student acc | int8 acc (torch) | .pte acc | .pte KB | "
            ".pte p50 ms | .tflite acc | .tflite KB | .tflite p50 ms |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in result["rows"]:
        lines.append(f"| {r['pipeline']} | {r['prune_ratio']:.2f} | {r['params']} | {100 * r['fp32_student_acc']:.2f} | "
                     f"{100 * r['int8_acc_torch']:.2f} | {100 * r['pte_int8_acc']:.2f} | {r['pte_bytes'] / 1024:.1f} | "
                     f"{r['pte_p50_ms']:.3f} | {100 * r['tflite_int8_acc']:.2f} | {r['tflite_bytes'] / 1024:.1f} | "
                     f"{r['tflite_p50_ms']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
