"""The whole pipeline on real images streamed from a folder: write → load → distil → export → bench.

The only real image data that ships offline is MNIST and Fashion-MNIST, so the first phase writes
Fashion-MNIST's 70,000 images to disk as a class-per-folder tree of RGB files (upscaled from 28 px to
``--px``, bilinear; the model input ``--image-size`` is resized and cropped from them on the fly; ``train/<class>/`` 60k, ``test/<class>/`` 10k; PNG or JPEG; :func:`edgekd.data.write_folder`).
Nothing of it is committed: it lands
in ``benchmarks/results/folder_pipeline_work/`` (git-ignored). Then, each phase writing its part of
``benchmarks/results/folder_pipeline.json`` the moment it finishes (with the machine facts):

- ``loader``: images/s of edgekd's train loader (the ``DataLoader`` the trainer builds: ``FileImages`` with
  RandomResizedCrop + flip, per-item seeds, ``--workers`` workers) against a bare ``DataLoader`` loop over
  torchvision's ``ImageFolder`` with the same decoder (``torchvision.io.decode_image``), the same
  ``transforms.v2`` pipeline and the same workers, interleaved round by round in one run;
- ``memory``: one training epoch over the whole train split in a child process whose data segment is
  limited with ``prlimit --data`` (RLIMIT_DATA: heap and anonymous mappings, per process, inherited by the
  ``DataLoader`` workers) to a budget well below the decoded data set; its peak RSS (and the whole process
  tree's, sampled) is recorded. The epoch trains a cheap student (``--memory-student`` at ``--memory-size``,
  batch ``--memory-batch``): importing torch takes ~0.85 GiB of the data segment and the activations of a
  forward/backward pass grow with the batch (mobilenetv2_x0_25 at 32 px: ~0.9 GiB at batch 128, which is
  what a 1.75 GiB budget could not hold), so the data pipeline's share is what is left;
- ``train``: a teacher (``--teacher``, e.g. ``tv:resnet18``) trained on the folder with crop+flip, then the
  student (``--student``, e.g. ``tv:mobilenet_v3_small``) alone and with KD (``ce:0.5 + kd:0.5``, T = 2) for the
  same steps, ``--seeds`` seeds; students without augmentation so the teacher's outputs are cached exactly;
  accuracy on the folder's test split, wall time, images/s, peak RSS;
- ``export``: the first seed's two students to ``.pte`` and ``.tflite``, fp32 and int8 (calibration and
  parity from the folder), benchmarked here with accuracy on test-split images that the runner itself
  resizes, crops and normalises (the bundle's preprocessing).

::

    nice -n 19 python benchmarks/folder_pipeline.py --phases write,loader,memory,train,export \\
        --teacher tv:resnet18 --student tv:mobilenet_v3_small --px 128 --image-size 64
    python benchmarks/folder_pipeline.py --smoke        # every phase on 600 images, zoo models, 24 px

Model names are arguments: any registered name (``edgekd list models``). A finished phase is skipped on a
rerun unless ``--force``; ``--phases`` picks phases.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "folder_pipeline.json"
WORK = HERE / "results" / "folder_pipeline_work"
PHASES = ("write", "loader", "memory", "train", "export")


# -- results, kept as each phase finishes -------------------------------------------------------------------
def save(results: dict[str, Any], path: Path) -> None:
    results.update({"benchmark": "folder_pipeline", **machine(), "load_avg": os.getloadavg()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    tmp.replace(path)


def peak_rss_mb() -> dict[str, float]:
    """This process's and its waited-for children's peak RSS (ru_maxrss, MiB)."""
    return {"self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


# -- phase 1: write the image tree --------------------------------------------------------------------------
def write_tree(root: Path, px: int, fmt: str, limit: int | None) -> dict[str, Any]:
    """Fashion-MNIST as ``root/{train,test}/<class>/<n>.<fmt>``, RGB, ``px``×``px`` (``limit`` per split)."""
    from edgekd.data import write_folder

    t0 = time.perf_counter()
    if root.exists():
        shutil.rmtree(root)  # only ever a tree this script wrote under its work folder (see main)
    write_folder("fashion_mnist", root, size=px, fmt=fmt, limit=limit, channels="RGB")
    files = list(root.rglob(f"*.{fmt}"))
    decoded = len(files) * 3 * px * px
    return {"root": str(root), "px": px, "format": fmt, "files": len(files),
            "bytes_on_disk": sum(f.stat().st_size for f in files), "decoded_uint8_bytes": decoded,
            "decoded_float32_bytes": 4 * decoded, "write_s": time.perf_counter() - t0}


# -- phase 2: loader throughput, side by side -----------------------------------------------------------------
def _bare_loader(root: Path, px: int, mean: tuple[float, ...], std: tuple[float, ...], batch: int, workers: int,
                 scale: tuple[float, float]) -> Any:
    import torch
    from torchvision.datasets import ImageFolder
    from torchvision.io import ImageReadMode, decode_image, read_file
    from torchvision.transforms import v2

    tf = v2.Compose([v2.RandomResizedCrop(px, scale=scale, antialias=False), v2.RandomHorizontalFlip(),
                     v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])
    ds = ImageFolder(str(root / "train"), loader=lambda p: decode_image(read_file(p), mode=ImageReadMode.RGB),
                     transform=tf)
    return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                       persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                                       generator=torch.Generator().manual_seed(0))


def _edgekd_loader(splits: Any, batch: int, workers: int) -> tuple[Any, Any]:
    from edgekd.data import WithIndices
    from edgekd.data.images import loader
    from edgekd.distillation.parallel import shard_batches
    from edgekd.distillation.trainer import EpochBatches

    n = len(splits.train)
    sampler = EpochBatches(lambda e: shard_batches(n, batch, e), seeded=True, seed=0)  # the trainer's, seed 0
    return loader(WithIndices(splits.train), batch_sampler=sampler, num_workers=workers, persistent=True), sampler


def _timed(batches: Any, n_images: int) -> tuple[float, int]:
    t0, seen = time.perf_counter(), 0
    for b in batches:
        seen += len(b[0])
        if seen >= n_images:
            break
    return time.perf_counter() - t0, seen


def loader_bench(root: Path, px: int, workers: int, batch: int, images: int, rounds: int) -> dict[str, Any]:
    from edgekd import data

    splits = data.load(f"folder:{root}", image_size=px, augment="crop+flip", num_workers=workers)
    pre, aug = splits.preprocessing(), splits.train.augment
    ours, sampler = _edgekd_loader(splits, batch, workers)
    bare = _bare_loader(root, px, pre.mean, pre.std, batch, workers, aug.crop_scale)
    rows: dict[str, list[float]] = {"edgekd": [], "bare_imagefolder": []}
    epoch = 0
    for r in range(rounds + 1):  # round 0 starts the workers and warms the page cache: not counted
        for name in ("edgekd", "bare_imagefolder") if r % 2 == 0 else ("bare_imagefolder", "edgekd"):
            if name == "edgekd":
                sampler.set_epoch(epoch)
                epoch += 1
                dt, seen = _timed(ours, images)
            else:
                dt, seen = _timed(bare, images)
            if r:
                rows[name].append(seen / dt)
            print(f"  loader round {r} {name:16s} {seen / dt:8.1f} img/s", flush=True)
    med = {k: float(np.median(v)) for k, v in rows.items()}
    return {"workers": workers, "batch_size": batch, "images_per_round": images, "rounds": rounds,
            "images_per_s": rows, "median_images_per_s": med,
            "ratio_edgekd_over_bare": med["edgekd"] / med["bare_imagefolder"],
            "same": "torchvision.io.decode_image (RGB) + v2 RandomResizedCrop(antialias=False) + flip + normalize"}


# -- phase 3: one epoch under a RAM budget ---------------------------------------------------------------------
EPOCH_CHILD = """
import json, resource, sys, time
from edgekd import data, models
from edgekd.distillation import train
root, px, workers, student, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
s = data.load('folder:' + root, image_size=px, augment='crop+flip', num_workers=workers)
t0 = time.perf_counter()
r = train(models.create(student, num_classes=s.num_classes, in_channels=3), s, epochs=1, batch_size=batch,
          num_workers=workers, progress=False)
print(json.dumps({'epoch_s': time.perf_counter() - t0, 'train_images': len(s.train), 'val_acc': r.metrics['val_acc'],
                  'ru_maxrss_self_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  'ru_maxrss_children_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def memory_bench(root: Path, px: int, workers: int, student: str, batch: int, budget_gb: float,
                 decoded: dict[str, Any]) -> dict[str, Any]:
    """One epoch over the whole train split under ``prlimit --data`` (the child's own peaks plus the whole tree's,
    sampled every 0.5 s)."""
    import psutil

    budget = int(budget_gb * 2**30)
    cmd = ["prlimit", f"--data={budget}", "--", sys.executable, "-c", EPOCH_CHILD, str(root), str(px), str(workers),
           student, str(batch)]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    tree_rss = tree_pss = 0.0
    top = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            procs = [top, *top.children(recursive=True)]
            infos = [p.memory_full_info() for p in procs]
            tree_rss = max(tree_rss, sum(i.rss for i in infos) / 2**20)
            tree_pss = max(tree_pss, sum(i.pss for i in infos) / 2**20)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
        time.sleep(0.5)
    out, err = proc.communicate()
    ok = proc.returncode == 0
    row: dict[str, Any] = {"limit": "prlimit --data (RLIMIT_DATA, per process, inherited by the workers)",
                           "budget_bytes": budget, "decoded_uint8_bytes": decoded.get("decoded_uint8_bytes"),
                           "decoded_float32_bytes": decoded.get("decoded_float32_bytes"), "completed": ok,
                           "tree_peak_rss_mb_sampled": tree_rss, "tree_peak_pss_mb_sampled": tree_pss,
                           "workers": workers, "student": student, "image_size": px, "batch_size": batch}
    if ok:
        row.update(json.loads(out.strip().splitlines()[-1]))
    else:
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        row["error"] = lines[-1] if lines else f"exit status {proc.returncode}"
        row["stderr_tail"] = err[-2000:]
    return row


# -- phase 4: teacher, then student alone vs KD -----------------------------------------------------------------
def train_bench(root: Path, px: int, args: argparse.Namespace, work: Path, results: dict[str, Any],
                path: Path) -> dict[str, Any]:
    import torch

    from edgekd import data, models
    from edgekd.distillation import distill, train
    from edgekd.models.saved import load_model, save_model

    section = results.get("train") or {}
    teacher_path = work / "teacher.pt"
    if args.force or "runs" not in section:  # a fresh start (or a "pending" note from a run without the models)
        section = {"runs": []}
        teacher_path.unlink(missing_ok=True)
    results["train"] = section
    common = dict(image_size=px, limit=args.limit, num_workers=args.workers)
    t_splits = data.load(f"folder:{root}", augment="crop+flip", **common)
    kw = {"num_classes": t_splits.num_classes, "in_channels": 3}
    if not teacher_path.exists():
        torch.manual_seed(0)
        t0 = time.perf_counter()
        r = train(models.create(args.teacher, **kw), t_splits, epochs=args.teacher_epochs, batch_size=args.batch,
                  num_workers=args.workers, progress=not args.no_progress)
        wall = time.perf_counter() - t0
        save_model(r.model, teacher_path, args.teacher, meta={"metrics": r.metrics}, **kw)
        steps = args.teacher_epochs * -(-len(t_splits.train) // args.batch)
        section["teacher"] = {"model": args.teacher, "epochs": args.teacher_epochs, "test_acc": r.metrics["test_acc"],
                              "wall_s": wall, "train_images_per_s": steps * args.batch / wall,
                              "train_images": len(t_splits.train), "peak_rss_mb": peak_rss_mb()}
        save(results, path)
    teacher, _ = load_model(teacher_path)
    s_splits = data.load(f"folder:{root}", augment="none", mean=t_splits.mean, std=t_splits.std, **common)
    done = {(r["arm"], r["seed"]) for r in section["runs"]}
    for seed in args.seeds:
        for arm, method in (("alone", "ce"), ("kd", "ce:0.5 + kd:0.5")):
            if (arm, seed) in done:
                continue
            torch.manual_seed(seed)
            student = models.create(args.student, **kw)
            t0 = time.perf_counter()
            r = distill(teacher if arm == "kd" else None, student, s_splits, method, epochs=args.student_epochs,
                        batch_size=args.batch, seed=seed, num_workers=args.workers, kd_T=2.0,
                        progress=not args.no_progress) if arm == "kd" else \
                train(student, s_splits, epochs=args.student_epochs, batch_size=args.batch, seed=seed,
                      num_workers=args.workers, progress=not args.no_progress)
            wall = time.perf_counter() - t0
            steps = args.student_epochs * -(-len(s_splits.train) // args.batch)
            if seed == args.seeds[0]:
                save_model(r.model, work / f"student_{arm}.pt", args.student, meta={"data": f"folder:{root}"}, **kw)
            section["runs"].append({"arm": arm, "seed": seed, "method": method, "model": args.student,
                                    "epochs": args.student_epochs, "steps": steps, "test_acc": r.metrics["test_acc"],
                                    "best_val_acc": r.metrics["best_val_acc"], "wall_s": wall,
                                    "train_images_per_s": steps * args.batch / wall, "peak_rss_mb": peak_rss_mb()})
            print(f"  {arm:5s} seed {seed}: test {r.metrics['test_acc']:.4f} in {wall:.0f} s", flush=True)
            save(results, path)
    by = {a: {r["seed"]: r["test_acc"] for r in section["runs"] if r["arm"] == a} for a in ("alone", "kd")}
    deltas = [by["kd"][s] - by["alone"][s] for s in by["kd"] if s in by["alone"]]
    section["summary"] = {"alone_mean": float(np.mean(list(by["alone"].values()))) if by["alone"] else None,
                          "kd_mean": float(np.mean(list(by["kd"].values()))) if by["kd"] else None,
                          "kd_minus_alone_per_seed": deltas, "kd_wins_every_seed": bool(deltas) and min(deltas) > 0,
                          "train_images": len(s_splits.train), "test_images": len(s_splits.test)}
    return section


# -- phase 5: export and bench the first seed's students --------------------------------------------------------------
def export_bench(root: Path, px: int, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from edgekd import data
    from edgekd.bench.harness import benchmark, eval_images
    from edgekd.convert import export
    from edgekd.models.saved import load_model

    rows = []
    splits = data.load(f"folder:{root}", image_size=px, limit=args.limit, augment="none", num_workers=args.workers)
    x_par, y_par = data.sample(splits.test, 200)
    calib = data.calibration_sample(splits.train, 128)
    for arm in ("alone", "kd"):
        ckpt = work / f"student_{arm}.pt"
        if not ckpt.exists():
            continue
        model, _ = load_model(ckpt)
        t0 = time.perf_counter()
        bundle = export(model, (x_par[:1],), formats=("pte", "tflite"), precision=("fp32", "int8"),
                        calibration=calib, parity_data=(x_par, y_par), labels=splits.labels,
                        preprocessing=splits.preprocessing(), out_dir=work / f"bundle_{arm}", keep_going=True,
                        progress=not args.no_progress)
        export_s = time.perf_counter() - t0
        ev = eval_images(f"folder:{root}", bundle, n=args.eval_samples)
        for b in benchmark(bundle, "local", runs=50, warmup=5, threads=2, eval_data=ev, progress=False,
                           out_dir=work / f"bench_{arm}"):
            rows.append({"arm": arm, "file": b.key, "ok": b.error is None, "error": b.error, "accuracy": b.accuracy,
                         "eval_samples": b.eval_samples, "p50_ms": b.latency_ms.p50 if b.latency_ms else None,
                         "size_kb": b.bytes / 1024, "export_s_all_files": export_s})
        for f in bundle.extra.get("failed", []):
            rows.append({"arm": arm, "file": f.get("path"), "ok": False, "error": f.get("error")})
    return rows


# -- driver ---------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phases", default=",".join(PHASES), help=f"comma list of {', '.join(PHASES)}")
    ap.add_argument("--root", type=Path, default=None, help="image tree (default: under the work folder)")
    ap.add_argument("--px", type=int, default=128, help="side of the written images")
    ap.add_argument("--image-size", type=int, default=64, help="model input: files are resized and cropped to it")
    ap.add_argument("--format", choices=("png", "jpg"), default="png")
    ap.add_argument("--write-limit", type=int, default=None, help="images per split to write (default: all 70k)")
    ap.add_argument("--limit", type=int, default=None, help="images per source split to train on (stratified)")
    ap.add_argument("--teacher", default="tv:resnet18")
    ap.add_argument("--student", default="tv:mobilenet_v3_small")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--teacher-epochs", type=int, default=3)
    ap.add_argument("--student-epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--loader-images", type=int, default=4096, help="images per loader round")
    ap.add_argument("--loader-rounds", type=int, default=4)
    ap.add_argument("--budget-gb", type=float, default=1.75, help="RLIMIT_DATA of the memory phase's epoch")
    ap.add_argument("--memory-student", default="mobilenetv2_x0_25", help="model of the memory phase's epoch")
    ap.add_argument("--memory-size", type=int, default=32, help="model input of the memory phase's epoch")
    ap.add_argument("--memory-batch", type=int, default=32, help="batch size of the memory phase's epoch")
    ap.add_argument("--eval-samples", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--force", action="store_true", help="rerun the --phases already in the results (others are kept)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="every phase, tiny: zoo models, 600 images, 24 px")
    args = ap.parse_args(argv)
    if args.smoke:
        args.px, args.image_size, args.write_limit, args.teacher, args.student = 32, 24, 300, "resnet8", "mobilenetv2_x0_25"
        args.memory_size = 24
        args.seeds, args.teacher_epochs, args.student_epochs, args.loader_images, args.loader_rounds = "0", 1, 1, 256, 2
        args.eval_samples = 60
        args.out = args.out.with_name("folder_pipeline_smoke.json") if args.out == RESULTS else args.out
        args.work = args.work.with_name("folder_pipeline_smoke_work") if args.work == WORK else args.work
    args.seeds = [int(s) for s in str(args.seeds).split(",")]
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if args.root is not None and "write" in phases:
        ap.error("--root names your own tree: the write phase only writes under --work (drop write from --phases)")
    root = args.root or args.work / f"fmnist_{args.px}px_{args.format}"
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    results["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}

    from edgekd.models import list_models

    missing = [m for m in (args.teacher, args.student) if m not in list_models()]
    if missing and ("train" in phases or "export" in phases):
        results["train"] = {"pending": f"models {', '.join(missing)} are not registered in this edgekd "
                                       "(they come with the torchvision model families); rerun when they are"}
        phases = [p for p in phases if p not in ("train", "export")]
        print(f"folder_pipeline: {results['train']['pending']}", flush=True)
    t_all = time.perf_counter()
    for phase in phases:
        done = phase in results and results[phase].get("completed", True) is not False  # a failed epoch reruns
        if done and not args.force and phase not in ("train",):
            print(f"== {phase}: done already (--force to rerun)")
            continue
        print(f"== {phase}", flush=True)
        t0 = time.perf_counter()
        if phase == "write":
            results["write"] = write_tree(root, args.px, args.format, args.write_limit)
        elif phase == "loader":
            results["loader"] = loader_bench(root, args.image_size, args.workers, args.batch, args.loader_images,
                                             args.loader_rounds)
        elif phase == "memory":
            results["memory"] = memory_bench(root, args.memory_size, args.workers, args.memory_student,
                                             args.memory_batch, args.budget_gb, results.get("write", {}))
        elif phase == "train":
            args.work.mkdir(parents=True, exist_ok=True)
            results["train"] = train_bench(root, args.image_size, args, args.work, results, args.out)
        elif phase == "export":
            results["export"] = {"rows": export_bench(root, args.image_size, args, args.work)}
        results.setdefault("phase_wall_s", {})[phase] = time.perf_counter() - t0
        save(results, args.out)
    results["wall_s"] = time.perf_counter() - t_all
    save(results, args.out)
    report(results)
    return 0


def report(results: dict[str, Any]) -> None:
    """Print the table of what was measured."""
    w = results.get("write")
    if w:
        print(f"\nwrite: {w['files']} {w['format']} files of {w['px']} px, {w['bytes_on_disk'] / 2**20:.0f} MiB on disk "
              f"(decoded: {w['decoded_uint8_bytes'] / 2**30:.2f} GiB uint8, {w['decoded_float32_bytes'] / 2**30:.2f} GiB "
              f"float32) in {w['write_s']:.0f} s")
    lo = results.get("loader")
    if lo:
        m = lo["median_images_per_s"]
        print(f"loader ({lo['workers']} workers): edgekd {m['edgekd']:.0f} img/s, bare ImageFolder loop "
              f"{m['bare_imagefolder']:.0f} img/s, ratio {lo['ratio_edgekd_over_bare']:.3f}")
    me = results.get("memory")
    if me:
        print(f"memory: RLIMIT_DATA {me['budget_bytes'] / 2**30:.1f} GiB, epoch completed: {me['completed']}, "
              f"peak RSS main {me.get('ru_maxrss_self_mb', float('nan')):.0f} MiB, workers "
              f"{me.get('ru_maxrss_children_mb', float('nan')):.0f} MiB, tree PSS {me['tree_peak_pss_mb_sampled']:.0f} MiB")
    tr = results.get("train", {})
    if "pending" in tr:
        print(f"train: pending — {tr['pending']}")
    for r in tr.get("runs", []):
        print(f"train {r['arm']:5s} seed {r['seed']}: test {100 * r['test_acc']:.2f} %, {r['wall_s']:.0f} s, "
              f"{r['train_images_per_s']:.0f} img/s")
    if tr.get("summary"):
        print(f"train summary: {tr['summary']}")
    for r in results.get("export", {}).get("rows", []):
        acc = f"{100 * r['accuracy']:.2f} %" if r.get("accuracy") is not None else "-"
        p50 = f"{r['p50_ms']:.3f} ms" if r.get("p50_ms") is not None else "-"
        print(f"export {r['arm']:5s} {r['file']:28s} ok={r['ok']} acc {acc} p50 {p50} {r.get('error') or ''}")


if __name__ == "__main__":
    raise SystemExit(main())
