"""MiniLM v1 / v2 task-agnostic distillation of all-MiniLM-L6-v2 on fortunes, down to .pte / .tflite.

    python benchmarks/minilm.py --budget small                 # minutes on 2 cores
    python benchmarks/minilm.py --budget medium --threads 1    # ~75 min on one core
    python benchmarks/minilm.py --budget full
    python benchmarks/minilm.py --budget medium --threads 1 --work DIR --edge-only   # redo the edge rows

Trains the same student with embedding MSE alone (the baseline), MiniLM v1 + MSE and MiniLM v2 +
MSE against one shared teacher cache; scores each on held-out sentences (cosine with the teacher's
embedding, top-k neighbour overlap, top-1 neighbour agreement); exports the student with the best
validation cosine and the teacher itself (fixed sequence length, parity-checked on cosine) and profiles every file with
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
from edgekd.convert import export  # noqa: E402
from edgekd.convert.executorch import first_line  # noqa: E402
from edgekd.data.text import attach_tokenizer, load_text  # noqa: E402
from edgekd.distillation.cache import TeacherCache  # noqa: E402
from edgekd.distillation.text import distill_text  # noqa: E402
from edgekd.eval.embeddings import compare_embeddings  # noqa: E402
from edgekd.models import count_params, create  # noqa: E402
from edgekd.models.bert import load_hf_encoder  # noqa: E402

BUDGETS: dict[str, dict[str, Any]] = {
    "small": {"n_train": 1024, "n_val": 128, "n_test": 256, "max_length": 32, "epochs": 2, "batch_size": 32,
              "students": ["minilm_l3_h192"], "runs": 20, "warmup": 3, "int8": True},
    # <= ~85 min on ONE (shared) core of the 2-core x86-64 VM: 0.5 s per step at batch 64, length 48 on an
    # idle core, ~1.2 s with other jobs running; 935 steps per method. Length 48 truncates ~3% of the
    # fortunes sentences (32 truncates ~17%). Teacher cache: 12,000 x 48 x 384 x 3 fp16 = 1.3 GB.
    "medium": {"n_train": 12000, "n_val": 256, "n_test": 1000, "max_length": 48, "epochs": 5, "batch_size": 64,
               "students": ["minilm_l3_h192"], "runs": 30, "warmup": 5, "int8": True},
    "full": {"n_train": 20000, "n_val": 512, "n_test": 1000, "max_length": 64, "epochs": 5, "batch_size": 64,
             "students": ["minilm_l3_h192", "minilm_l4_h256"], "runs": 50, "warmup": 10, "int8": True},
}
METHODS = ["emb_mse", "minilm_v1 + emb_mse", "minilm_v2 + emb_mse"]
# one bundle per (format, precision): a converter that fails loses its own row only
EDGE_JOBS = [("pte", "fp32"), ("tflite", "fp32"), ("pte", "int8"), ("tflite", "int8")]


def _methods(student: Any, teacher: Any) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = [("emb_mse", {})]
    if student.num_heads == teacher.num_heads:
        out.append(("minilm_v1 + emb_mse", {}))
    heads = 12 if student.hidden_size % 12 == 0 else 16  # relation heads dividing both widths
    out.append(("minilm_v2 + emb_mse", {"minilm_v2_relation_heads": heads}))
    return out


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {first_line(e)}"


def _profile(model: torch.nn.Module, ids: torch.Tensor, calib: torch.Tensor, out: Path, name: str,
             cfg: dict[str, Any], tokenizer: Any, threads: int, int8: bool) -> list[dict[str, Any]]:
    """Export each (format, precision) to its own bundle and profile it; a failure becomes that row's error."""
    rows: list[dict[str, Any]] = []
    example = (ids[:1],)
    for fmt, precision in EDGE_JOBS:
        if precision == "int8" and not int8:
            continue
        folder = out / f"{name.split()[0]}_{fmt}_{precision}"
        t0 = time.perf_counter()
        try:
            b = export(model, example, formats=(fmt,), precision=(precision,), calibration=calib,
                       parity_data=ids, out_dir=folder, task="embedding", model_name=name, progress=False)
            attach_tokenizer(b, tokenizer, ids.shape[1])
        except Exception as e:  # recorded in the row (converter limits raise many types), never dropped
            rows.append({"model": name, "key": f"{fmt}/{precision}", "precision": precision, "error": _first_line(e),
                         "export_s": time.perf_counter() - t0})
            print(f"edge {name} {fmt}/{precision}: FAILED {_first_line(e)}", flush=True)
            continue
        export_s = time.perf_counter() - t0
        np.savez(folder / "inputs.npz", x=ids[:1].numpy().astype(np.int64))
        for r in benchmark(b, "local", warmup=cfg["warmup"], runs=cfg["runs"], threads=threads,
                           inputs=folder / "inputs.npz", out_dir=folder / "bench", progress=False):
            f = b.file(r.key)
            row = {"model": name, "key": r.key, "precision": precision, "bytes": r.bytes, "error": r.error,
                   "p50_ms": r.latency_ms.p50 if r.latency_ms else None, "peak_mem_mb": r.peak_mem_mb,
                   "parity_cosine_min": f.parity.cosine_min if f.parity else None, "export_s": export_s}
            rows.append(row)
            print(f"edge {json.dumps(row)}", flush=True)
    return rows


def _save(out: Path, result: dict[str, Any]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from edgekd.bench.machine import machine_facts

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**result, "machine_facts": machine_facts()}, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", choices=sorted(BUDGETS), default="small")
    p.add_argument("--corpus", default="fortunes", help="'fortunes' or a UTF-8 text file")
    p.add_argument("--threads", type=int, default=2, help="torch threads for training and runner threads")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "minilm.json"))
    p.add_argument("--work", default=None, help="folder for checkpoints and bundles (default: a new temporary folder)")
    p.add_argument("--edge-only", action="store_true",
                   help="skip training: reload the exported student from --work and redo only the edge rows of --out")
    args = p.parse_args(argv)
    cfg = BUDGETS[args.budget]
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix=f"edgekd_minilm_{args.budget}_"))
    t_start = time.perf_counter()
    phases: dict[str, float] = {}

    def phase(name: str, t0: float) -> None:
        phases[name] = round(time.perf_counter() - t0, 1)
        print(f"[{time.perf_counter() - t_start:7.0f} s] {name}: {phases[name]:.0f} s", flush=True)

    t0 = time.perf_counter()
    teacher = load_hf_encoder(max_length=cfg["max_length"])
    data = load_text(args.corpus, teacher.tokenizer, max_length=cfg["max_length"], n_train=cfg["n_train"],
                     n_val=cfg["n_val"], n_test=cfg["n_test"])
    print(f"{data}; teacher {count_params(teacher) / 1e6:.1f}M params; work folder {work}", flush=True)
    phase("load", t0)
    result: dict[str, Any]
    if args.edge_only:
        result = json.loads(out.read_text())
        if result.get("budget") != args.budget:
            raise SystemExit(f"{out} holds a {result.get('budget')!r} run, not {args.budget!r}")
        phases = {k: v for k, v in result.get("phases_s", {}).items() if not k.startswith("edge")}
        sname, method = result["exported"]["student"], result["exported"]["method"]
        model = create(sname, max_length=cfg["max_length"], vocab_size=teacher.vocab_size)
        model.load_state_dict(torch.load(work / _ckpt_name(sname, method), weights_only=True))
        trained = {sname: model.eval()}
    else:
        result = {"budget": args.budget, "config": cfg, "corpus": data.name, "splits": repr(data),
                  "teacher_params_m": count_params(teacher) / 1e6, "machine": platform.platform(),
                  "python": sys.version.split()[0], "torch": torch.__version__, "threads": args.threads,
                  "command": " ".join(["python", "benchmarks/minilm.py", *(argv if argv is not None else sys.argv[1:])]),
                  "runs": [], "edge": [], "phases_s": phases, "complete": False}
        t0 = time.perf_counter()
        cache = TeacherCache(teacher, data.train, taps=teacher.qkv_paths(-1), feature_dtype=torch.float16)
        phase("teacher_cache", t0)
        t0 = time.perf_counter()
        torch.manual_seed(0)
        result["untrained_student"] = compare_embeddings(
            create(cfg["students"][0], max_length=cfg["max_length"], vocab_size=teacher.vocab_size),
            cache.held_out(teacher, "test", data.test), data.test).to_dict()
        phase("untrained_eval", t0)
        trained = _train_all(teacher, data, cache, cfg, work, out, result, phase)
    t0 = time.perf_counter()
    calib, parity_ids = data.train[:128], data.test[:32]
    edge: list[dict[str, Any]] = []
    result["edge"], result["phases_s"] = edge, phases
    for sname, model in trained.items():
        edge += _profile(model, parity_ids, calib, work, sname, cfg, teacher.tokenizer, args.threads, cfg["int8"])
        _save(out, result)
    phase("edge_student", t0)
    t0 = time.perf_counter()
    edge += _profile(teacher, parity_ids, calib, work, "all-MiniLM-L6-v2 (teacher)", cfg, teacher.tokenizer,
                     args.threads, int8=False)
    phase("edge_teacher", t0)
    result.update(phases_s=phases, complete=True, wall_s=round(sum(phases.values()), 1))
    _save(out, result)
    table = render(result)
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0


def _ckpt_name(student: str, method: str) -> str:
    return f"{student}__{method.replace(' ', '').replace(':', '').replace('+', '_')}.pt"


def _train_all(teacher: Any, data: Any, cache: Any, cfg: dict[str, Any], work: Path, out: Path,
               result: dict[str, Any], phase: Any) -> dict[str, torch.nn.Module]:
    """Train every (student, method) on the shared cache; return the first student's best-by-val-cosine model.

    Each trained student is saved in ``work`` (``--edge-only`` reloads it) and ``out`` is rewritten
    after each run, so a later failure loses nothing measured.
    """
    best: tuple[float, str, str, torch.nn.Module] | None = None
    for sname in cfg["students"]:
        torch.manual_seed(0)  # the same initial weights in every run of the benchmark
        student = create(sname, max_length=cfg["max_length"], vocab_size=teacher.vocab_size)
        for method, kw in _methods(student, teacher):
            t0 = time.perf_counter()
            print(f"train {sname} {method}: {cfg['epochs']} epochs x {len(data.train) // cfg['batch_size']} steps",
                  flush=True)

            def show(row: dict[str, Any], tag: str = f"{sname} {method}") -> None:
                print(f"  {tag} epoch {row['epoch']}: loss {row['train_loss']:.4f} val cosine "
                      f"{row['val_cosine_mean']:.3f} top-10 {row['val_topk_overlap']:.3f} ({row['time_s']:.0f} s)",
                      flush=True)

            res = distill_text(teacher, student, data, method, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                               teacher_cache=cache, progress=False, on_epoch_end=show, **kw)
            torch.save(res.model.state_dict(), work / _ckpt_name(sname, method))
            row = {"student": sname, "params_m": count_params(student) / 1e6, "method": res.method,
                   **{k: v for k, v in res.metrics.items() if k.startswith(("test_", "val_"))},
                   "train_s": round(time.perf_counter() - t0, 1), "history": res.history}
            result["runs"].append(row)
            phase(f"train {sname} {method}", t0)
            print(json.dumps({k: v for k, v in row.items() if k != "history"}), flush=True)
            if sname == cfg["students"][0] and (best is None or res.metrics["val_cosine_mean"] > best[0]):
                best = (res.metrics["val_cosine_mean"], sname, method, res.model)
            _save(out, result)
    if best is None:
        raise SystemExit("no student was trained")
    result["exported"] = {"student": best[1], "method": best[2], "chosen_by": "val cosine"}
    return {best[1]: best[3]}


def render(result: dict[str, Any]) -> str:
    """Markdown tables: quality per (student, method), then size/latency/memory per exported file."""
    exported = result.get("exported", {})
    lines = [f"MiniLM distillation ({result['budget']} budget, {result['splits']}); held-out test sentences", "",
             "| student | params (M) | method | cosine | cosine p10 | top-10 overlap | top-1 agree | train (s) |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    u = result["untrained_student"]
    lines.append(f"| (untrained) | | — | {u['cosine_mean']:.3f} | {u['cosine_p10']:.3f} | "
                 f"{u['topk_overlap']:.3f} | {u['top1_agreement']:.3f} | |")
    for r in result["runs"]:
        lines.append(f"| {r['student']} | {r['params_m']:.1f} | {r['method']} | {r['test_cosine_mean']:.3f} | "
                     f"{r['test_cosine_p10']:.3f} | {r['test_topk_overlap']:.3f} | {r['test_top1_agreement']:.3f} | "
                     f"{r.get('train_s', float('nan')):.0f} |")
    lines += ["", f"Exported student: {exported.get('student', '?')} trained with {exported.get('method', '?')} "
              f"(best {exported.get('chosen_by', 'val cosine')}); fixed length {result['config']['max_length']}, "
              f"{result['threads']} thread(s).", "",
              "| model | file | MB | p50 latency (ms) | peak mem (MB) | parity min cosine |",
              "|---|---|---:|---:|---:|---:|"]
    for e in result["edge"]:
        if e.get("error") or e.get("p50_ms") is None:
            lines.append(f"| {e['model']} | {e.get('key', e.get('precision'))} | | | | failed: {e.get('error')} |")
            continue
        lines.append(f"| {e['model']} | {e['key']} | {e['bytes'] / 1e6:.1f} | {e['p50_ms']:.2f} | "
                     f"{e['peak_mem_mb']:.0f} | {e['parity_cosine_min']:.5f} |")
    phases = result.get("phases_s", {})
    if phases:
        lines += ["", "Wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in phases.items())
                  + f"; total {sum(phases.values()):.0f}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
