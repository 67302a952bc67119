"""MiniLM v1 / v2 task-agnostic distillation of all-MiniLM-L6-v2 on fortunes, down to .pte / .tflite.

    python benchmarks/minilm.py --budget small   # minutes on 2 cores
    python benchmarks/minilm.py --budget full

Trains the same student with embedding MSE alone (the baseline), MiniLM v1 + MSE and MiniLM v2 +
MSE against one shared teacher cache; scores each on held-out sentences (cosine with the teacher's
embedding, top-k neighbour overlap, top-1 neighbour agreement); exports the MiniLM-v2 student and
the teacher itself (fixed sequence length, parity-checked on cosine) and profiles every file with
the harness (local runner). Writes ``benchmarks/results/minilm.json`` and prints a Markdown table
(also saved as ``benchmarks/results/minilm.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from edgekd.bench.harness import benchmark  # noqa: E402
from edgekd.data.text import attach_tokenizer, load_text  # noqa: E402
from edgekd.distill.text import distill_text, teacher_outputs  # noqa: E402
from edgekd.errors import EdgekdError  # noqa: E402
from edgekd.eval.embeddings import compare_embeddings  # noqa: E402
from edgekd.export import export  # noqa: E402
from edgekd.models import count_params, create  # noqa: E402
from edgekd.models.bert import load_hf_encoder  # noqa: E402

BUDGETS: dict[str, dict[str, Any]] = {
    "small": {"n_train": 1024, "n_val": 128, "n_test": 256, "max_length": 32, "epochs": 2, "batch_size": 32,
              "students": ["minilm_l3_h192"], "runs": 20, "warmup": 3, "int8": True},
    "full": {"n_train": 20000, "n_val": 512, "n_test": 1000, "max_length": 64, "epochs": 5, "batch_size": 64,
             "students": ["minilm_l3_h192", "minilm_l4_h256"], "runs": 50, "warmup": 10, "int8": True},
}
METHODS = ["emb_mse", "minilm_v1 + emb_mse", "minilm_v2 + emb_mse"]


def _methods(student: Any, teacher: Any) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = [("emb_mse", {})]
    if student.num_heads == teacher.num_heads:
        out.append(("minilm_v1 + emb_mse", {}))
    heads = 12 if student.hidden_size % 12 == 0 else 16  # relation heads dividing both widths
    out.append(("minilm_v2 + emb_mse", {"minilm_v2_relation_heads": heads}))
    return out


def _profile(model: torch.nn.Module, ids: torch.Tensor, calib: torch.Tensor, out: Path, name: str,
             cfg: dict[str, Any], tokenizer: Any, threads: int) -> list[dict[str, Any]]:
    """Export fp32 (.pte, .tflite) and int8 (.pte; litert-torch int8 fails on softmax) and profile each file."""
    rows: list[dict[str, Any]] = []
    jobs = [(("pte", "tflite"), ("fp32",))] + ([(("pte",), ("int8",))] if cfg["int8"] else [])
    example = (ids[:1],)
    for formats, precision in jobs:
        folder = out / f"{name}_{precision[0]}"
        try:
            b = export(model, example, formats=formats, precision=precision, calibration=calib,
                       parity_data=ids, out_dir=folder, task="embedding", model_name=name, progress=False)
        except EdgekdError as e:
            rows.append({"model": name, "precision": precision[0], "error": str(e).splitlines()[0]})
            continue
        attach_tokenizer(b, tokenizer, ids.shape[1])
        np.savez(folder / "inputs.npz", x=ids[:1].numpy().astype(np.int64))
        for r in benchmark(b, "local", warmup=cfg["warmup"], runs=cfg["runs"], threads=threads,
                           inputs=folder / "inputs.npz", out_dir=folder / "bench", progress=False):
            f = b.file(r.key)
            rows.append({"model": name, "key": r.key, "bytes": r.bytes, "error": r.error,
                         "p50_ms": r.latency_ms.p50 if r.latency_ms else None,
                         "peak_mem_mb": r.peak_mem_mb, "parity_cosine_min": f.parity.cosine_min if f.parity else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", choices=sorted(BUDGETS), default="small")
    p.add_argument("--corpus", default="fortunes", help="'fortunes' or a UTF-8 text file")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "minilm.json"))
    p.add_argument("--work", default=None, help="folder for bundles (default: a new temporary folder)")
    args = p.parse_args(argv)
    cfg = BUDGETS[args.budget]
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix=f"edgekd_minilm_{args.budget}_"))
    t_start = time.perf_counter()

    teacher = load_hf_encoder(max_length=cfg["max_length"])
    data = load_text(args.corpus, teacher.tokenizer, max_length=cfg["max_length"], n_train=cfg["n_train"],
                     n_val=cfg["n_val"], n_test=cfg["n_test"])
    print(f"{data}; teacher {count_params(teacher) / 1e6:.1f}M params", flush=True)
    cache = teacher_outputs(teacher, data.train, teacher.qkv_paths(-1), progress=True)
    runs: list[dict[str, Any]] = []
    trained: dict[str, torch.nn.Module] = {}
    for sname in cfg["students"]:
        student = create(sname, max_length=cfg["max_length"], vocab_size=teacher.vocab_size)
        for method, kw in _methods(student, teacher):
            t0 = time.perf_counter()
            res = distill_text(teacher, student, data, method, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                               teacher_cache=cache, progress=False, **kw)
            row = {"student": sname, "params_m": count_params(student) / 1e6, "method": res.method,
                   **{k: v for k, v in res.metrics.items() if k.startswith("test_")},
                   "train_s": time.perf_counter() - t0}
            runs.append(row)
            print(json.dumps(row), flush=True)
            if method.startswith("minilm_v2") and sname == cfg["students"][0]:
                trained[sname] = res.model
    untrained = compare_embeddings(create(cfg["students"][0], max_length=cfg["max_length"],
                                          vocab_size=teacher.vocab_size), teacher, data.test)

    calib, parity_ids = data.train[:128], data.test[:32]
    edge: list[dict[str, Any]] = []
    for sname, model in trained.items():
        edge += _profile(model, parity_ids, calib, work, sname, cfg, teacher.tokenizer, args.threads)
    edge += _profile(teacher, parity_ids, calib, work, "all-MiniLM-L6-v2 (teacher)",
                     {**cfg, "int8": False}, teacher.tokenizer, args.threads)
    result = {"budget": args.budget, "config": cfg, "corpus": data.name, "splits": repr(data),
              "teacher_params_m": count_params(teacher) / 1e6, "untrained_student": untrained.to_dict(),
              "runs": runs, "edge": edge, "machine": platform.platform(), "python": sys.version.split()[0],
              "threads": args.threads, "wall_s": time.perf_counter() - t_start}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    table = render(result)
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0


def render(result: dict[str, Any]) -> str:
    """Markdown tables: quality per (student, method), then size/latency/memory per exported file."""
    lines = [f"MiniLM distillation ({result['budget']} budget, {result['splits']}); held-out test sentences", "",
             "| student | params (M) | method | cosine | cosine p10 | top-10 overlap | top-1 agree |",
             "|---|---:|---|---:|---:|---:|---:|"]
    u = result["untrained_student"]
    lines.append(f"| (untrained) | | — | {u['cosine_mean']:.3f} | {u['cosine_p10']:.3f} | "
                 f"{u['topk_overlap']:.3f} | {u['top1_agreement']:.3f} |")
    for r in result["runs"]:
        lines.append(f"| {r['student']} | {r['params_m']:.1f} | {r['method']} | {r['test_cosine_mean']:.3f} | "
                     f"{r['test_cosine_p10']:.3f} | {r['test_topk_overlap']:.3f} | {r['test_top1_agreement']:.3f} |")
    lines += ["", "| model | file | MB | p50 latency (ms) | peak mem (MB) | parity min cosine |",
              "|---|---|---:|---:|---:|---:|"]
    for e in result["edge"]:
        if e.get("error") or e.get("p50_ms") is None:
            lines.append(f"| {e['model']} | {e.get('key', e.get('precision'))} | | | | failed: {e.get('error')} |")
            continue
        lines.append(f"| {e['model']} | {e['key']} | {e['bytes'] / 1e6:.1f} | {e['p50_ms']:.2f} | "
                     f"{e['peak_mem_mb']:.0f} | {e['parity_cosine_min']:.5f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
