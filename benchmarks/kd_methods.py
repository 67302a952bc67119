"""Every distillation method of edgekd on Fashion-MNIST: teacher → small student, 3 seeds.

One teacher (``resnet14``, trained once and saved in the work folder) and one student
(``resnet8x0_5``, ~20k parameters, 9× fewer than the teacher; ``resnet8``, 78k, for ``--budget
long``). For each method: test top-1
(mean ± std over seeds), teacher–student top-1 agreement and mean KL(teacher ‖ student) on the
test set, and the gap recovered, (acc − acc_vanilla) / (acc_teacher − acc_vanilla). The teacher's
logits and tapped features are cached once (:class:`edgekd.distillation.TeacherCache`) and shared by
every offline run, so each costs about a student-only run; the per-epoch time of each method vs
vanilla is reported (the cache's step-time ratio). Online methods train two student-sized peers
from scratch: independent training (= the vanilla rows), DML, direct L1 feature alignment and AFD.

Weights follow RepDistiller's CIFAR-100 runs (CE + β·feature; KD as 0.1·CE + 0.9·KD; CRD+KD as
CE + KD + 0.8·CRD), so the numbers are comparable in spirit to its resnet32x4→resnet8x4 table.
Uses the GPU when there is one. Each finished run is appended to ``<work>/runs.jsonl`` at once:
an interrupted benchmark loses nothing and ``--resume`` goes on from there::

    python benchmarks/kd_methods.py --budget small         # a few minutes: 3k images, 1 seed
    python benchmarks/kd_methods.py --budget full          # full data, 3 seeds (~95 min on 2 CPU cores)
    python benchmarks/kd_methods.py --budget full --resume # after an interruption
    python benchmarks/kd_methods.py --budget full --resume --step-ratio  # cache vs live teacher, per step
    python benchmarks/kd_methods.py --budget long          # ~2 h on 2 CPU cores, minutes on a GPU
    # vanilla vs KD (ce:0.5 + kd:0.5, T = 2), resnet8 student, 20 epochs, 3 seeds, from a resnet14
    # trained 20 epochs on augmented images (~30 min to train once, kept in the work folder for
    # --resume); --only picks methods, --student/--epochs change the pair, --teacher any checkpoint

Writes ``benchmarks/results/kd_methods.json`` (``kd_methods_<budget>.json`` for the other budgets)
and a Markdown table, also printed.
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
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

from edgekd.data import load  # noqa: E402
from edgekd.data.augment import augmented  # noqa: E402
from edgekd.distillation import TeacherCache, build_objective, distill, evaluate, train  # noqa: E402
from edgekd.models import count_params, create  # noqa: E402
from edgekd.models.saved import load_model, save_model  # noqa: E402

HERE = Path(__file__).resolve().parent
TEACHER, STUDENT = "resnet14", "resnet8x0_5"

MODES: dict[str, dict[str, Any]] = {
    "small": {"limit": 5000, "teacher_epochs": 4, "epochs": 3, "seeds": [0], "crd_k": 1024, "batch_size": 64},
    "full": {"limit": None, "teacher_epochs": 3, "epochs": 2, "seeds": [0, 1, 2], "crd_k": 4096, "batch_size": 256},
    # a teacher trained 20 epochs on shifted/flipped images (not memorising its train set: see
    # edgekd.data.augment), a 4× larger student, 10× longer: the setting where KD pays (RESULTS.md)
    "long": {"limit": None, "teacher_epochs": 20, "teacher_augment": True, "epochs": 20, "seeds": [0, 1, 2],
             "crd_k": 4096, "batch_size": 256, "student": "resnet8", "methods": ["vanilla", "kd_t2"]},
}

# name -> (method spec, extra options). Offline methods distil from the cached teacher.
OFFLINE: dict[str, tuple[str, dict[str, Any]]] = {
    "vanilla": ("ce", {}),
    "kd": ("ce:0.1 + kd:0.9", {}),
    # the weights the 2026-12-01 pilot picked on val for this 10-class task (RepDistiller's cost a point)
    "kd_t2": ("ce:0.5 + kd:0.5", {"kd_T": 2.0}),
    "dkd": ("ce + dkd", {"dkd_warmup": 1}),
    "fitnet": ("ce + fitnet:100", {}),
    "at": ("ce + at:1000", {}),
    "rkd": ("ce + rkd:1", {}),
    "sp": ("ce + sp:3000", {}),
    "crd": ("ce + crd:0.8", {}),
    "crd+kd": ("ce + kd + crd:0.8", {}),
    # candidates for the resnet8 student (session 6): T, and features/contrast on top of kd_t2
    "kd_t1": ("ce:0.5 + kd:0.5", {"kd_T": 1.0}),
    "kd_t4h": ("ce:0.5 + kd:0.5", {"kd_T": 4.0}),
    "kd_t2+ofd": ("ce:0.5 + kd:0.5 + ofd:3", {"kd_T": 2.0}),
    "kd_t2+crd": ("ce:0.5 + kd:0.5 + crd:0.8", {"kd_T": 2.0}),
}
# Online: two student-sized peers from scratch; "independent" is the vanilla rows.
ONLINE: dict[str, tuple[str, dict[str, Any]]] = {
    "dml": ("dml", {}),
    "feat_l1": ("feat_l1", {"feat_l1_layer": "layer3"}),
    "afd": ("afd", {"afd_layer": "layer3"}),
}


@torch.no_grad()
def logits_of(model: torch.nn.Module, x: torch.Tensor, device: str) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + 512].to(device)).float().cpu() for i in range(0, len(x), 512)])


def agreement(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> dict[str, float]:
    """Top-1 agreement and mean KL(teacher ‖ student) at T = 1 (the review's measure for CRD)."""
    kl = F.kl_div(F.log_softmax(student_logits, -1), F.log_softmax(teacher_logits, -1), reduction="batchmean",
                  log_target=True)
    return {"agree": (teacher_logits.argmax(-1) == student_logits.argmax(-1)).float().mean().item(),
            "kl": kl.item()}


def _student(seed: int, name: str = STUDENT) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create(name, num_classes=10, in_channels=1)


def _done(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["method"], r["seed"]): r for r in rows}


def _teacher(data: Any, cfg: dict[str, Any], work: Path, device: str, resume: bool,
             given: str | None = None) -> tuple[torch.nn.Module, float]:
    path = work / "teacher.pt"  # an edgekd checkpoint: `edgekd distill --teacher` and other benchmarks reuse it
    if given or (resume and path.exists()):
        path = Path(given) if given else path
        model, meta = load_model(path)
        acc = float(meta["test_acc"]) if "test_acc" in meta else evaluate(model, data.test)["acc"]
        print(f"teacher: loaded {path} (test acc {acc:.4f})")
        return model.to(device).eval(), acc
    torch.manual_seed(1234)  # before create: the seed fixes the initial weights (torch's own seed is random)
    model = create(TEACHER, num_classes=10, in_channels=1)
    t = time.perf_counter()
    aug = bool(cfg.get("teacher_augment"))
    r = train(model, augmented(data) if aug else data, epochs=cfg["teacher_epochs"], batch_size=cfg["batch_size"],
              seed=1234, device=device, progress=True)
    acc = float(r.metrics["test_acc"])
    train_acc = evaluate(r.model, data.train, device=device)["acc"]  # near 1.0 = memorised: no dark knowledge
    save_model(r.model, path, TEACHER, meta={"data": "fashion_mnist", "test_acc": acc, "train_acc": train_acc,
                                             "epochs": cfg["teacher_epochs"], "augment": aug,
                                             "train_s": time.perf_counter() - t}, num_classes=10, in_channels=1)
    print(f"teacher {TEACHER}: test acc {acc:.4f}, train acc {train_acc:.4f} in {time.perf_counter() - t:.0f} s")
    return r.model.to(device).eval(), acc


def _summary(rows: list[dict[str, Any]], teacher_acc: float) -> list[dict[str, Any]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["method"], []).append(r)
    base_accs = [r["test_acc"] for r in by.get("vanilla", [])]
    base_by_seed = {r["seed"]: r["test_acc"] for r in by.get("vanilla", []) if "seed" in r}
    out = []
    for method, rs in by.items():
        accs = [r["test_acc"] for r in rs]
        mean = statistics.mean(accs)
        row = {"method": method, "kind": rs[0]["kind"], "spec": rs[0]["spec"], "seeds": len(rs), "acc_mean": mean,
               "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
               "agree_mean": statistics.mean(r["agree"] for r in rs), "kl_mean": statistics.mean(r["kl"] for r in rs),
               "epoch_s_mean": statistics.mean(r["epoch_s"] for r in rs)}
        seeds = [r.get("seed") for r in rs]
        # against vanilla on the same seeds when it has them all (a 1-seed row vs a 3-seed mean misleads)
        paired = all(s is not None and s in base_by_seed for s in seeds)
        if paired:
            row["paired_delta"] = [a - base_by_seed[s] for a, s in zip(accs, seeds, strict=True)]
        base = statistics.mean([base_by_seed[s] for s in seeds] if paired else base_accs) if base_accs else None
        if base is not None and teacher_acc > base:
            row["gap_recovered"] = (mean - base) / (teacher_acc - base)
        out.append(row)
    base = next((r["epoch_s_mean"] for r in out if r["method"] == "vanilla"), None)
    for r in out:
        r["epoch_time_vs_vanilla"] = r["epoch_s_mean"] / base if base else None
    return out


def _exits(data: Any, cfg: dict[str, Any], work: Path, device: str) -> dict[str, Any]:
    """Self-distillation (``self``) of a teacher-sized net: each exit's test accuracy and fp32 .pte latency."""
    from edgekd.bench.exits import benchmark_exits
    from edgekd.models.exits import exit_accuracy

    torch.manual_seed(0)
    t = time.perf_counter()
    r = distill(None, create(TEACHER, num_classes=10, in_channels=1), data, "self", epochs=cfg["epochs"],
                batch_size=cfg["batch_size"], device=device, progress=True)
    model = r.model.cpu().eval()
    acc = exit_accuracy(model, data.test)
    x, y = data.test.tensors
    n = min(1000, len(y))
    bench = benchmark_exits(model, x[:1], work / "exits", threads=1, warmup=10, runs=100, progress=False,
                            eval_data=(x[:n].numpy(), y[:n].numpy()))
    rows = []
    for name, results in bench.items():
        b = results[0]
        rows.append({"exit": name, "test_acc": acc[name], "pte_acc": b.accuracy, "pte_kb": b.bytes / 1024 if b.bytes else None,
                     "p50_ms": b.latency_ms.p50 if b.latency_ms else None, "peak_mem_mb": b.peak_mem_mb,
                     "error": b.error})
    return {"model": TEACHER, "epochs": cfg["epochs"], "train_s": time.perf_counter() - t, "exits": rows}


def exits_table(exits: dict[str, Any]) -> str:
    lines = [f"| {exits['model']} exit (self-distilled) | test top-1 % | .pte top-1 % (first 1000) | .pte KB | "
             "p50 ms (1 thread) | peak MB |", "|---|---|---|---|---|---|"]
    for r in exits["exits"]:
        f = (lambda v, fmt: format(v, fmt) if v is not None else "—")  # noqa: E731
        lines.append(f"| {r['exit']} | {100 * r['test_acc']:.2f} | {f(r['pte_acc'] and 100 * r['pte_acc'], '.2f')} "
                     f"| {f(r['pte_kb'], '.1f')} | {f(r['p50_ms'], '.3f')} | {f(r['peak_mem_mb'], '.1f')} |")
    return "\n".join(lines)


def step_ratio(data: Any, teacher: torch.nn.Module, device: str, *, batches: int = 30, batch_size: int = 256,
               rounds: int = 3, student: str = STUDENT) -> dict[str, Any]:
    """Seconds per training step of each method vs a student-only step, side by side, interleaved.

    One epoch of ``batches`` steps per (method, teacher source), ``rounds`` times in turn; the
    median is kept. The cache is built beforehand (a one-time pass, timed separately), as in a run.
    """
    from dataclasses import replace

    from torch.utils.data import TensorDataset

    x, y = data.train.tensors
    batches = min(batches, len(y) // batch_size)
    n = batches * batch_size
    sub = replace(data, train=TensorDataset(x[:n], y[:n]),
                  val=TensorDataset(*(t[:batch_size] for t in data.val.tensors)))
    t = time.perf_counter()
    cache = TeacherCache(teacher, sub.train, taps=["layer1", "layer2", "layer3"], device=device, max_bytes=12 << 30)
    build_s = time.perf_counter() - t
    configs = {"student only (ce)": ("ce", None), "kd, cached teacher": ("ce:0.1 + kd:0.9", cache),
               "kd, live teacher": ("ce:0.1 + kd:0.9", False), "fitnet+at, cached teacher": ("ce + fitnet:100 + at:1000", cache),
               "fitnet+at, live teacher": ("ce + fitnet:100 + at:1000", False)}
    times: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(rounds):
        for name, (spec, c) in configs.items():
            r = distill(teacher if spec != "ce" else None, _student(0, student), sub, spec, epochs=1, batch_size=batch_size,
                        device=device, progress=False, cache_teacher=c)
            times[name].append(r.history[0]["time_s"] / batches)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["student only (ce)"]
    return {"batches": batches, "batch_size": batch_size, "rounds": rounds, "cache_build_s": build_s,
            "cache_build_images": n, "step_s": med, "all_s": times, "ratio_vs_student": {k: v / base for k, v in med.items()}}


def table(summary: list[dict[str, Any]], teacher_acc: float) -> str:
    lines = ["| method | kind | spec | top-1 % (mean ± std) | gap recovered | agreement % | KL(T‖S) | epoch s | × vanilla "
             "| seeds | paired Δ vs vanilla (points) |",
             "|---|---|---|---|---|---|---|---|---|---|---|",
             f"| teacher {TEACHER} | — | ce | {100 * teacher_acc:.2f} | — | — | — | — | — | — | — |"]
    for r in summary:
        gap = f"{100 * r['gap_recovered']:+.0f} %" if r.get("gap_recovered") is not None else "—"
        deltas = ", ".join(f"{100 * d:+.2f}" for d in r["paired_delta"]) if "paired_delta" in r else "—"
        lines.append(f"| {r['method']} | {r['kind']} | `{r['spec']}` | {100 * r['acc_mean']:.2f} ± {100 * r['acc_std']:.2f} "
                     f"| {gap} | {100 * r['agree_mean']:.2f} | {r['kl_mean']:.3f} | {r['epoch_s_mean']:.1f} "
                     f"| {r['epoch_time_vs_vanilla']:.2f} | {r['seeds']} | {deltas} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", choices=sorted(MODES), default="small")
    ap.add_argument("--only", default="", help="comma-separated methods to run (default: all)")
    ap.add_argument("--resume", action="store_true", help="keep the saved teacher and finished runs")
    ap.add_argument("--teacher", default=None, help="use this teacher checkpoint (edgekd model.pt) instead of training one")
    ap.add_argument("--teacher-epochs", type=int, default=None, help="train the teacher this long (default: the budget's)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="train each student this long (default: the budget's); other lengths' runs go to <work>/runs_..._e<N>.jsonl")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--step-ratio", action="store_true",
                    help="only measure seconds per step (student-only vs KD/feature KD, cached vs live teacher)")
    ap.add_argument("--augment-students", action="store_true",
                    help="students see shifted/mirrored images too, and the teacher runs live on the same images "
                         "(function matching, Beyer et al. 2022; no cache); runs go to <work>/runs_aug.jsonl")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (default: the budget's, e.g. 0,1,2)")
    ap.add_argument("--student", default=None,
                    help=f"student model name (default: the budget's, {STUDENT} or resnet8 for long); "
                         "other students' runs go to <work>/runs_<name>.jsonl")
    ap.add_argument("--out", default=None,
                    help="results JSON (default: results/kd_methods.json, results/kd_methods_<budget>.json for others)")
    args = ap.parse_args(argv)
    cfg, device, t0 = dict(MODES[args.budget]), args.device, time.perf_counter()
    if args.teacher_epochs is not None:
        cfg["teacher_epochs"] = args.teacher_epochs
    if args.epochs is not None and args.epochs < 1:
        ap.error(f"--epochs {args.epochs} must be >= 1")
    own_epochs = args.epochs is not None and args.epochs != cfg["epochs"]
    cfg["epochs"] = args.epochs or cfg["epochs"]
    if args.seeds:
        try:
            cfg["seeds"] = [int(v) for v in args.seeds.split(",") if v.strip()]
        except ValueError:
            ap.error(f"--seeds {args.seeds!r} must be comma-separated integers, e.g. 0,1,2")
    work = HERE / "results" / f"kd_methods_work_{args.budget}"
    work.mkdir(parents=True, exist_ok=True)
    stem = "runs_aug" if args.augment_students else "runs"
    student = args.student or cfg.get("student", STUDENT)
    stem += "" if student == cfg.get("student", STUDENT) else f"_{student}"
    runs_path = work / (f"{stem}_e{cfg['epochs']}.jsonl" if own_epochs else f"{stem}.jsonl")
    only = {m.strip() for m in args.only.split(",") if m.strip()} or set(cfg.get("methods", ()))
    unknown = only - set(OFFLINE) - set(ONLINE) - {"self"}
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}; choose from {sorted([*OFFLINE, *ONLINE])}")
    if not args.resume and not args.step_ratio and runs_path.exists():  # a fresh start; the old runs stay readable
        backup = runs_path.with_name(runs_path.name + ".bak")
        runs_path.replace(backup)
        print(f"starting afresh: previous runs kept as {backup} (--resume continues them)")

    data = load("fashion_mnist", limit=cfg["limit"])
    print(f"data: fashion_mnist train {len(data.train)} val {len(data.val)} test {len(data.test)}; device {device}")
    teacher, teacher_acc = _teacher(data, cfg, work, device, args.resume, args.teacher)
    if args.step_ratio:
        res = step_ratio(data, teacher, device, student=student)
        for k, v in res["step_s"].items():
            print(f"{k:28s} {1000 * v:8.1f} ms/step  × {res['ratio_vs_student'][k]:.2f}")
        write_results(HERE / "results" / "kd_methods_step_ratio.json", "kd_methods_step_ratio",
                      {"teacher": TEACHER, "student": student, **res})
        return 0
    x_test = data.test.tensors[0]
    t_test = logits_of(teacher, x_test, device)
    done = _done(runs_path)
    common = {"epochs": cfg["epochs"], "batch_size": cfg["batch_size"], "device": device, "progress": True}
    # seed-major, so that an interrupted run still leaves every method's first seeds paired
    plan = [(m, s) for s in cfg["seeds"] for m in [*OFFLINE, *ONLINE] if not only or m in only]
    todo = {m for m, s in plan if m in OFFLINE and m != "vanilla" and (m, s) not in done}
    taps = sorted({tap for m in todo for tap in build_objective(OFFLINE[m][0], **OFFLINE[m][1]).teacher_taps})
    cache = None
    train_data = augmented(data) if args.augment_students else data
    if todo and not args.augment_students:  # the teacher's logits and every tap a pending run reads, computed once for all of them
        t = time.perf_counter()
        cache = TeacherCache(teacher, data.train, taps=taps, device=device, max_bytes=12 << 30)
        print(f"teacher cache: logits + {taps} for {len(data.train)} images in {time.perf_counter() - t:.0f} s")
    for i, (method, seed) in enumerate(plan, 1):
        if (method, seed) in done:
            continue
        online = method in ONLINE
        spec, opts = (ONLINE if online else OFFLINE)[method]
        if method.startswith("crd") or "crd" in spec:
            opts = {**opts, "crd_k": cfg["crd_k"]}
        print(f"[{i}/{len(plan)}] {method} seed {seed}: {spec}", flush=True)
        t = time.perf_counter()
        if online:
            peers = [_student(100 * seed + k, student) for k in range(2)]
            r = distill(None, peers, train_data, spec, seed=seed, **common, **opts)
            peer_rows = [{"test_acc": r.metrics[f"test_acc_net{k}"], **agreement(t_test, logits_of(m, x_test, device))}
                         for k, m in enumerate(r.models)]
            row = {k: statistics.mean(p[k] for p in peer_rows) for k in ("test_acc", "agree", "kl")}
            row["peers"] = peer_rows
        else:
            live = False if args.augment_students else None
            r = distill(teacher, _student(seed, student), train_data, spec, seed=seed,
                        cache_teacher=cache if cache is not None and spec != "ce" else live,
                        **common, **opts)
            row = {"test_acc": r.metrics["test_acc"], **agreement(t_test, logits_of(r.model, x_test, device))}
        row.update({"method": method, "seed": seed, "kind": "online" if online else "offline", "spec": r.method,
                    "epoch_s": statistics.mean(h["time_s"] for h in r.history), "run_s": time.perf_counter() - t,
                    "val_acc": r.metrics["val_acc"], "history": r.history})
        with runs_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"    test acc {row['test_acc']:.4f}  agree {row['agree']:.4f}  KL {row['kl']:.3f}  "
              f"({row['run_s']:.0f} s)", flush=True)

    exits_path = work / "exits.json"
    if (not only or "self" in only) and not (args.resume and exits_path.exists()):
        exits_path.write_text(json.dumps(_exits(data, cfg, work, device), indent=2) + "\n")
    exits = json.loads(exits_path.read_text()) if exits_path.exists() else None

    rows = list(_done(runs_path).values())
    summary = _summary(rows, teacher_acc)
    md = table(summary, teacher_acc)
    print("\n" + md)
    best = max((r for r in summary if r.get("gap_recovered") is not None and r["method"] != "vanilla"),
               key=lambda r: r["gap_recovered"], default=None)
    if best:
        print(f"\nbest: {best['method']} recovers {100 * best['gap_recovered']:.0f} % of the teacher–student gap "
              f"(target ≥ 50 %)")
    if exits:
        md += "\n\n" + exits_table(exits)
        print("\n" + exits_table(exits))
    (work / "table.md").write_text(md + "\n")
    out = args.out or HERE / "results" / ("kd_methods.json" if args.budget == "full" else f"kd_methods_{args.budget}.json")
    write_results(out, "kd_methods", {
        "budget": args.budget, "config": cfg, "augment_students": args.augment_students, "device": device, "data": "fashion_mnist",
        "train_images": len(data.train), "test_images": len(data.test),
        "teacher": {"name": TEACHER, "params": count_params(teacher), "test_acc": teacher_acc},
        "student": {"name": student, "params": count_params(_student(0, student))}, "cached_taps": taps,
        "summary": summary, "runs": rows, "best": best, "self_distillation": exits, "table_md": md, "wall_s": time.perf_counter() - t0})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
