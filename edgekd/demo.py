"""``edgekd demo``: the whole pipeline on the embedded MNIST-5k, in about five minutes on 2 CPU cores.

1. train a teacher; 2. distil a smaller student with KD, and train the same student (same init,
same epochs) without KD; 3. export both students to .pte and .tflite, fp32 and int8, each checked
for parity against eager PyTorch; 4. benchmark every file on this machine with the device runner;
5. print one table and write ``summary.json`` / ``results.jsonl`` under ``--out``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from edgekd.bench.results import BenchResult


@dataclass(frozen=True)
class DemoConfig:
    teacher: str = "resnet20"
    student: str = "resnet8"
    teacher_epochs: int = 6
    student_epochs: int = 8
    batch_size: int = 64
    limit: int | None = None  # cap on data-set size (quick mode)
    eval_samples: int = 1000  # test samples each exported file is scored on by the runner
    parity_samples: int = 200
    warmup: int = 10
    runs: int = 100
    threads: int = 2
    tflite_converter: str = "litert-torch"
    seed: int = 0

    @staticmethod
    def quick() -> DemoConfig:
        return DemoConfig(teacher_epochs=2, student_epochs=2, batch_size=32, limit=1200, eval_samples=200,
                          parity_samples=64, warmup=2, runs=10)


def _log(msg: str) -> None:
    print(f"[edgekd demo] {msg}", flush=True)


def run_demo(out_dir: str | Path = "edgekd-demo", config: DemoConfig | None = None,
             progress: bool = True) -> list[BenchResult]:
    """Run the demo; returns every benchmark result (also in ``out_dir/bench/results.jsonl``)."""
    from edgekd import data as D
    from edgekd import models as M
    from edgekd.bench.harness import benchmark
    from edgekd.bench.html_report import write_html_report
    from edgekd.bench.report import format_status
    from edgekd.convert import export
    from edgekd.distillation import distill, train
    from edgekd.models.saved import save_model

    cfg = config or DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    splits = D.load("mnist5k", seed=cfg.seed, limit=cfg.limit)
    kw = {"num_classes": splits.num_classes, "in_channels": splits.in_channels}
    _log(f"data: mnist5k train/val/test = {len(splits.train)}/{len(splits.val)}/{len(splits.test)}")

    _log(f"1/4 training teacher {cfg.teacher} for {cfg.teacher_epochs} epochs")
    torch.manual_seed(cfg.seed)
    teacher = train(M.create(cfg.teacher, **kw), splits, epochs=cfg.teacher_epochs, seed=cfg.seed,
                    batch_size=cfg.batch_size, out_dir=out / "teacher", progress=progress)
    save_model(teacher.model, out / "teacher" / "model.pt", cfg.teacher, **kw)

    _log(f"2/4 student {cfg.student}: with KD from the teacher, and alone (same init, same epochs)")
    torch.manual_seed(cfg.seed + 1)
    init = M.create(cfg.student, **kw)
    students = {}
    for name, method in (("student_kd", "ce+kd"), ("student_alone", "ce")):
        s = M.create(cfg.student, **kw)
        s.load_state_dict(init.state_dict())
        t = teacher.model if method != "ce" else None
        res = distill(t, s, splits, method=method, epochs=cfg.student_epochs, seed=cfg.seed,
                      batch_size=cfg.batch_size,
                      out_dir=out / name, progress=progress)
        save_model(res.model, out / name / "model.pt", cfg.student, **kw)
        students[name] = res

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
                               progress=progress, keep_going=True)

    _log(f"4/4 benchmarking every file locally ({cfg.threads} threads, {cfg.runs} runs, "
         f"accuracy on {len(y_eval)} test images)")
    results: list[BenchResult] = []
    for name, bundle in bundles.items():
        results += benchmark(bundle, target="local", warmup=cfg.warmup, runs=cfg.runs, threads=cfg.threads,
                             eval_data=(x_eval.numpy(), y_eval.numpy()), out_dir=out / "bench" / name,
                             progress=progress, print_table=False)

    summary = {
        "config": cfg.__dict__,
        "teacher": {"name": cfg.teacher, **teacher.metrics},
        "students": {name: {"name": cfg.student, **res.metrics} for name, res in students.items()},
        "results": [r.to_dict() for r in results],
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print()
    print(f"teacher {cfg.teacher}: test acc {100 * teacher.metrics['test_acc']:.2f}%   "
          + "   ".join(f"{n} ({cfg.student}): {100 * r.metrics['test_acc']:.2f}%" for n, r in students.items())
          + "   (eager PyTorch, full test split)")
    print(format_status(results))
    report = write_html_report([out / "bench" / name for name in bundles], out / "report")
    _log(f"report: {report}")
    _log(f"done in {summary['wall_s']:.0f} s; bundles, logs and summary.json in {out}/")
    return results
