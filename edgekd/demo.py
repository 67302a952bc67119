"""``edgekd demo``: the whole pipeline on the embedded MNIST-5k, in about five minutes on 2 CPU cores.

1. train a teacher on every labelled train image (shifted copies, so it does not memorise them);
2. the setting where distillation pays (Hinton et al.'s *transfer set*): a small student gets only
   ``labels`` labelled images; trained alone it sees just those, with KD it also sees the teacher's
   soft labels on every train image. Both for the same number of steps, from the same init, on
   each of ``seeds``; the table prints each seed's accuracies, the mean margin and the seed spread,
   and says whether KD won on every seed by more than that spread;
3. export the first seed's two students to .pte and .tflite, fp32 and int8, each checked for parity
   against eager PyTorch; 4. benchmark every file on this machine with the device runner, in
   interleaved rounds (:data:`DemoConfig.rounds`, each at least ``min_duration`` s per file), so
   each file's p50 comes with a noise band and the table says which files are the same speed
   within noise: the two students are the same network, so their files must come out level;
5. print one table, write ``summary.json`` / ``bench/results.jsonl`` and the HTML report
   ``bench/report/index.html`` under ``--out``: first what the demo shows (teacher, KD vs alone per
   seed, both students' validation curves, the speed pairs), then the benchmark.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgekd.bench.results import BenchResult
from edgekd.files import write_atomic


@dataclass(frozen=True)
class DemoConfig:
    teacher: str = "resnet8"
    student: str = "resnet8x0_5"
    teacher_epochs: int = 6
    labels: int = 200  # labelled train images the students get (stratified); the teacher gets all
    alone_epochs: int = 82  # over the labelled images: 82 x 4 = 328 steps, about kd_epochs' 6 x 55 = 330 over all
    kd_epochs: int = 6  # over every train image (the transfer set)
    kd_T: float = 4.0
    seeds: tuple[int, ...] = (0, 1, 2)
    batch_size: int = 64
    limit: int | None = None  # cap on data-set size (quick mode)
    eval_samples: int = 1000  # test samples each exported file is scored on by the runner
    parity_samples: int = 200
    # measuring: every file in `rounds` interleaved rounds (order reversed every other round), each round
    # `warmup` untimed runs, then timed runs for at least `min_duration` s (and at least `runs`)
    warmup: int = 200
    runs: int = 100
    min_duration: float = 0.5
    rounds: int = 5
    threads: int = 1
    tflite_converter: str = "litert-torch"
    seed: int = 0  # data split, labelled subset and teacher

    @staticmethod
    def quick() -> DemoConfig:
        return DemoConfig(teacher_epochs=5, labels=100, alone_epochs=6, kd_epochs=1, seeds=(0, 1),
                          batch_size=32, limit=1200, eval_samples=200, parity_samples=64, warmup=20, runs=10,
                          min_duration=0.05, rounds=3)


def _log(msg: str) -> None:
    print(f"[edgekd demo] {msg}", flush=True)


def kd_verdict(alone: list[float], kd: list[float]) -> dict[str, Any]:
    """Per-seed margins (KD − alone, points), their mean, the seed spread and whether KD won.

    The seed spread is the larger of the two spreads (max − min over seeds) of the accuracies of
    the student alone and with KD; KD "won" when it is ahead on every seed and its mean margin is
    larger than that spread.
    """
    margins = [100 * (k - a) for a, k in zip(alone, kd, strict=True)]
    spread = max(100 * (max(v) - min(v)) for v in (alone, kd))
    mean = sum(margins) / len(margins)
    return {"margins": margins, "mean_margin": mean, "spread": spread,
            "wins": sum(m > 0 for m in margins), "won": all(m > 0 for m in margins) and mean > spread}


class _Stages:
    """Wall and CPU seconds of each stage (CPU: this process and every runner it waited for, all cores)."""

    def __init__(self) -> None:
        self.times: dict[str, dict[str, float]] = {}
        self._mark = self._now()

    @staticmethod
    def _now() -> tuple[float, float]:
        t = os.times()  # children: the runners, once waited for
        return time.perf_counter(), t.user + t.system + t.children_user + t.children_system

    def done(self, stage: str, **extra: float) -> None:
        (w0, c0), (w1, c1) = self._mark, self._now()
        self.times[stage] = {"wall_s": round(w1 - w0, 1), "cpu_s": round(c1 - c0, 1),
                             **{k: round(v, 1) for k, v in extra.items()}}
        self._mark = (w1, c1)


def run_demo(out_dir: str | Path = "edgekd-demo", config: DemoConfig | None = None,
             progress: bool = True, timing_lock: str | Path | None = None) -> list[BenchResult]:
    """Run the demo; returns every benchmark result (also in ``out_dir/bench/results.jsonl``).

    ``timing_lock``: a file to hold an exclusive lock on during the benchmark stage only
    (:mod:`edgekd.bench.lock`); the time spent waiting for it is recorded in ``summary.json``
    (``stages.bench.lock_wait_s``) and left out of the stage's own wall time there."""
    from edgekd import data as D
    from edgekd import models as M
    from edgekd.bench.harness import benchmark
    from edgekd.bench.html_report import write_html_report
    from edgekd.bench.lock import timing_lock as hold
    from edgekd.bench.report import format_status
    from edgekd.bench.results import ABOUT
    from edgekd.convert import export
    from edgekd.data.augment import augmented
    from edgekd.demo_report import about_html, curve, curves_png, format_speed_pairs, speed_pairs
    from edgekd.distillation import TeacherCache, distill, train
    from edgekd.models.saved import save_model

    cfg = config or DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stages = _Stages()
    splits = D.load("mnist5k", seed=cfg.seed, limit=cfg.limit)
    kw = {"num_classes": splits.num_classes, "in_channels": splits.in_channels}
    n_train = len(splits.train)
    few = D.few_labels(splits, cfg.labels, seed=cfg.seed, transfer=False)  # the labelled images only
    transfer = D.few_labels(splits, cfg.labels, seed=cfg.seed, transfer=True)  # + the rest, unlabelled
    _log(f"data: mnist5k train/val/test = {n_train}/{len(splits.val)}/{len(splits.test)}; "
         f"the students get {cfg.labels} of the {n_train} train labels")

    _log(f"1/4 training teacher {cfg.teacher} on all {n_train} labelled train images (shifted copies), "
         f"{cfg.teacher_epochs} epochs")
    torch.manual_seed(cfg.seed)
    teacher = train(M.create(cfg.teacher, **kw), augmented(splits, shift=2, flip=False), epochs=cfg.teacher_epochs,
                    seed=cfg.seed, batch_size=cfg.batch_size, out_dir=out / "teacher", progress=progress)
    save_model(teacher.model, out / "teacher" / "model.pt", cfg.teacher, **kw)
    stages.done("teacher")

    _log(f"2/4 student {cfg.student} on {cfg.labels} labels, seeds {', '.join(map(str, cfg.seeds))}: alone "
         f"({cfg.alone_epochs} epochs over the labelled images) and with KD (T={cfg.kd_T:g}, {cfg.kd_epochs} "
         f"epochs over all {n_train} images, the teacher's soft labels on every one); same init per seed")
    cache = TeacherCache(teacher.model, transfer.train)
    runs: list[dict[str, Any]] = []
    curves: dict[int, dict[str, list[tuple[int, float]]]] = {}
    students: dict[str, Any] = {}
    steps_per_epoch = {"alone": math.ceil(cfg.labels / cfg.batch_size), "kd": math.ceil(n_train / cfg.batch_size)}
    for seed in cfg.seeds:
        torch.manual_seed(seed)
        init = M.create(cfg.student, **kw)
        alone = distill(None, init, few, method="ce", epochs=cfg.alone_epochs, seed=seed, batch_size=cfg.batch_size,
                        val_every=math.ceil(cfg.alone_epochs / cfg.kd_epochs),  # as often as the KD run
                        out_dir=out / f"student_alone_seed{seed}", progress=progress)
        kd = distill(teacher.model, init, transfer, method="ce+kd", kd_T=cfg.kd_T, epochs=cfg.kd_epochs, seed=seed,
                     batch_size=cfg.batch_size, cache_teacher=cache, out_dir=out / f"student_kd_seed{seed}",
                     progress=progress)
        runs.append({"seed": seed, "alone": alone.metrics["test_acc"], "kd": kd.metrics["test_acc"]})
        curves[seed] = {"alone": curve(alone.history, steps_per_epoch["alone"]),
                        "kd": curve(kd.history, steps_per_epoch["kd"])}
        if not students:  # the first seed's pair is exported and benchmarked
            students = {"student_kd": kd, "student_alone": alone}
    verdict = kd_verdict([r["alone"] for r in runs], [r["kd"] for r in runs])
    for name, res in students.items():
        save_model(res.model, out / name / "model.pt", cfg.student, **kw)
    steps = {"alone": cfg.alone_epochs * steps_per_epoch["alone"], "kd": cfg.kd_epochs * steps_per_epoch["kd"]}
    stages.done("students")

    x_test, y_test = D.as_tensors(splits.test)
    x_eval, y_eval = x_test[: cfg.eval_samples], y_test[: cfg.eval_samples]
    parity = (x_test[: cfg.parity_samples], y_test[: cfg.parity_samples])
    calib = D.calibration_sample(splits.train, n=128, seed=cfg.seed)

    _log("3/4 exporting both students to .pte and .tflite, fp32 and int8 (parity-checked)")
    bundles = {}
    for name, res in students.items():
        bundles[name] = export(res.model, (x_test[:1],), formats=("pte", "tflite"),
                               precision=("fp32", "int8"), calibration=calib, out_dir=out / "bundles" / name,
                               labels=list(splits.labels), preprocessing=splits.preprocessing(), model_name=name,
                               tflite_converter=cfg.tflite_converter, parity_data=parity,
                               progress=progress, keep_going=True,
                               check_speed=False)  # stage 4 times every file, in rounds, under the timing lock
    stages.done("export")

    _log(f"4/4 benchmarking every file locally: {cfg.rounds} interleaved rounds of at least {cfg.min_duration:g} s "
         f"per file ({cfg.threads} thread{'s' if cfg.threads > 1 else ''}, a real test image as input), "
         f"accuracy on {len(y_eval)} test images")
    # both students in one run: one results.jsonl, one report, their rounds interleaved with each other
    with hold(timing_lock, stage="demo/bench") as lock:
        w0, load0 = time.perf_counter(), os.getloadavg()
        if lock.waited_s:
            _log(f"took the timing lock {timing_lock} after {lock.waited_s:.0f} s")
        results = benchmark(list(bundles.values()), target="local", warmup=cfg.warmup, runs=cfg.runs,
                            min_duration=cfg.min_duration, repeat=cfg.rounds, threads=cfg.threads,
                            inputs=x_test[:1].numpy(), eval_data=(x_eval.numpy(), y_eval.numpy()),
                            out_dir=out / "bench", progress=progress, print_table=False)
        bench_wall, bench_load = time.perf_counter() - w0, {"before": load0, "after": os.getloadavg()}
    stages.done("bench", lock_wait_s=lock.waited_s)
    stages.times["bench"]["wall_s"] = round(bench_wall, 1)  # the stage without the queue for the lock
    pairs = speed_pairs(results)
    (out / "bench" / ABOUT).write_text(about_html(
        teacher=cfg.teacher, teacher_acc=teacher.metrics["test_acc"], student=cfg.student, labels=cfg.labels,
        n_train=n_train, kd_T=cfg.kd_T, steps=steps, runs=runs, verdict=verdict,
        curves_png_bytes=curves_png(curves, teacher.metrics["test_acc"]), pairs=pairs))
    report = write_html_report(out / "bench")
    stages.done("report")

    summary = {
        "config": cfg.__dict__,
        "teacher": {"name": cfg.teacher, **teacher.metrics},
        "kd_vs_alone": {"student": cfg.student, "labels": cfg.labels, "transfer_images": n_train, "steps": steps,
                        "runs": runs, **verdict, "val_curves": curves},
        "speed_pairs": pairs,
        "students": {name: {"name": cfg.student, "seed": cfg.seeds[0], **res.metrics} for name, res in students.items()},
        "results": [r.to_dict() for r in results],
        "report": str(report),
        "stages": stages.times,
        "bench_load_avg": bench_load,  # 1/5/15-minute load averages as the benchmark stage began and ended
        "wall_s": round(time.perf_counter() - t0 - lock.waited_s, 1),  # without the queue for the timing lock
        "cpu_s": round(sum(t["cpu_s"] for t in stages.times.values()), 1),
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n", stage="demo",
                 what="the demo summary")
    print()
    print(format_status(results))
    print(f"(exported: the seed-{cfg.seeds[0]} students; acc % by the runtime on {len(y_eval)} test images)")
    print(format_speed_pairs(pairs))
    print()
    print(format_kd_table(cfg, teacher.metrics["test_acc"], n_train, runs, verdict, steps))
    _log(f"done in {summary['wall_s']:.0f} s ({summary['cpu_s']:.0f} CPU-seconds); bundles, logs, summary.json "
         f"and the HTML report ({report.relative_to(out)}) in {out}/")
    return results


def format_kd_table(cfg: DemoConfig, teacher_acc: float, n_train: int, runs: list[dict[str, Any]],
                    verdict: dict[str, Any], steps: dict[str, int]) -> str:
    """The demo's last table: per seed, the student alone and with KD, then the verdict."""
    lines = [f"teacher {cfg.teacher} (all {n_train} labels): {100 * teacher_acc:.2f}% test.  Student {cfg.student} "
             f"with {cfg.labels} labels: alone ({steps['alone']} steps on the labelled images) vs with KD "
             f"({steps['kd']} steps, teacher's soft labels on all {n_train} images, T={cfg.kd_T:g})",
             f"{'seed':>6} {'alone %':>8} {'KD %':>8} {'KD - alone':>11}"]
    for r, m in zip(runs, verdict["margins"], strict=True):
        lines.append(f"{r['seed']:>6} {100 * r['alone']:>8.2f} {100 * r['kd']:>8.2f} {m:>+11.2f}")
    n = len(runs)
    lines.append(f"mean margin {verdict['mean_margin']:+.2f} points; seed spread {verdict['spread']:.2f} points "
                 "(the larger max - min over seeds of the two columns)")
    if verdict["won"]:
        lines.append(f"KD won on every seed ({verdict['wins']}/{n}), by a mean margin larger than the seed spread.")
    else:
        why = (f"KD was ahead on {verdict['wins']}/{n} seeds" if verdict["wins"] < n
               else "KD was ahead on every seed, but its mean margin is not larger than the seed spread")
        lines.append(f"KD did NOT win on every seed by more than the seed spread: {why}.")
    return "\n".join(lines)
