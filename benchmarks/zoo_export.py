"""Export coverage of the standard mobile architectures: .pte and .tflite, fp32 and int8, measured per file.

Each architecture (torchvision's builders; Hugging Face's ViT and MobileNetV2) is trained briefly on real
images (Fashion-MNIST, upscaled to RGB), so int8 is judged on a model that decides something, then one
:func:`edgekd.export` call per model writes ``.pte`` (ExecuTorch + XNNPACK) and ``.tflite`` (litert-torch,
and onnx2tf) in fp32 and int8 with ``keep_going=True``. One row per file goes to
``benchmarks/results/zoo_export.json`` the moment its model is done (the file is rewritten atomically;
a rerun exports only the files that have no row yet, so the run resumes, and a pass with another
``--tflite-converters`` adds that converter's files; the trained weights stay in ``--work`` and are
reloaded instead of trained again): model, format, converter, precision, export seconds, wall and CPU
(and where they went), bytes, parity (passed, max error, top-1 agreement, accuracy), the fraction of ops
delegated to XNNPACK (ExecuTorch: the partitioner's count; LiteRT: the ops inside the interpreter's
XNNPACK delegate nodes), and the error with its fix. ``--timing`` then adds p50 at 1 and 2 threads for
every file that exported (the bench harness, interleaved rounds; run it under the timing lock).

    nice -n 19 python benchmarks/zoo_export.py --tflite-converters litert-torch   # every model (hours on 2 cores)
    nice -n 19 python benchmarks/zoo_export.py --tflite-converters onnx2tf        # then onnx2tf's files
    flock /tmp/edgekd-timing.lock nice -n -5 python benchmarks/zoo_export.py --timing
    python benchmarks/zoo_export.py --models MobileNetV3-Small --size 96 --steps 20 --out /tmp/z.json   # a quick look
    python benchmarks/zoo_export.py --observers --models EfficientNet-B0    # calibration observers: time and parity

Training runs at ``--train-size`` (cheaper than the export size on a CPU); the batch-norm statistics are
then re-estimated at ``--size`` (forward passes only, the FixRes remedy for a train/test resolution gap)
before accuracy is measured and the model exported at ``--size``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "zoo_export.json"
FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530


@dataclass(frozen=True)
class Spec:
    label: str
    name: str  # registry name
    kwargs: dict[str, Any] = field(default_factory=dict)
    lr: float = 2e-3
    train_size: int | None = None  # None: the run's --train-size
    train_kwargs: dict[str, Any] = field(default_factory=dict)  # forward keywords while training


MODELS = (  # cheapest first, so a partial run already covers most families
    Spec("MobileNetV3-Small", "tv:mobilenet_v3_small"),
    Spec("MobileNetV2", "tv:mobilenet_v2"),
    Spec("MobileNetV3-Large", "tv:mobilenet_v3_large"),
    Spec("EfficientNet-B0", "tv:efficientnet_b0", lr=1e-3),  # at 2e-3 its loss blew up to 5 in the first steps
    Spec("ShuffleNetV2-x1.0", "tv:shufflenet_v2_x1_0"),
    Spec("SqueezeNet-1.1", "tv:squeezenet1_1", lr=1e-3),
    Spec("MnasNet-1.0", "tv:mnasnet1_0"),
    Spec("RegNetY-400MF", "tv:regnet_y_400mf"),
    Spec("ResNet-18", "tv:resnet18", lr=1e-3),
    # position embeddings fix a ViT's size: it trains at 112 px with them interpolated (Hugging Face's
    # interpolate_pos_encoding), then runs and exports at its native 224 px with them as they are
    Spec("ViT-Tiny/16", "hf:vit_tiny", lr=5e-4, train_size=112, train_kwargs={"interpolate_pos_encoding": True}),
    Spec("MobileNetV2 (HF)", "hf:mobilenet_v2"),
    Spec("ConvNeXt-T", "tv:convnext_tiny", lr=5e-4),
)


# -- data: Fashion-MNIST upscaled to RGB on the fly ------------------------------------------------------------
class Images:
    """Fashion-MNIST (28×28 grey) served as normalised RGB batches of any size, resized on the fly.

    The one place data comes from: when the ``folder:`` source lands, ``batch`` becomes a DataLoader over
    ``edgekd.data.load("folder:PATH", image_size=size)`` and nothing else changes.
    """

    def __init__(self) -> None:
        from edgekd.data.core import DATASETS

        raw = DATASETS.get("fashion_mnist")(None)
        self.x, self.y = torch.from_numpy(raw.x), torch.from_numpy(raw.y)
        self.x_test, self.y_test = torch.from_numpy(raw.x_test), torch.from_numpy(raw.y_test)

    @staticmethod
    def to_rgb(x: torch.Tensor, size: int) -> torch.Tensor:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False) if size != x.shape[-1] else x
        return ((x - FMNIST_MEAN) / FMNIST_STD).repeat(1, 3, 1, 1).contiguous()

    def batch(self, idx: torch.Tensor, size: int, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        x, y = (self.x, self.y) if split == "train" else (self.x_test, self.y_test)
        return self.to_rgb(x[idx], size), y[idx]


def train_briefly(model: nn.Module, data: Images, *, size: int, steps: int, batch: int, lr: float,
                  seed: int = 0, forward_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The one training call: AdamW with a cosine schedule (5 % warm-up), label smoothing 0.1."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
    model.train()
    t0, losses = time.perf_counter(), []
    for step in range(steps):
        x, y = data.batch(torch.randint(0, len(data.x), (batch,), generator=g), size)
        loss = F.cross_entropy(model(x, **(forward_kwargs or {})), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            print(f"    step {step + 1}/{steps} loss {np.mean(losses[-10:]):.3f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    return {"train_s": round(time.perf_counter() - t0, 1), "train_size": size, "steps": steps, "batch": batch,
            "lr": lr, "final_loss": round(float(np.mean(losses[-10:])), 4)}


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data: Images, size: int, batches: int = 8, batch: int = 32) -> int:
    """Re-estimate every BatchNorm's running statistics at ``size`` (forward passes in train mode, no gradients)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    model.train()
    g = torch.Generator().manual_seed(1)
    for _ in range(batches):
        model(data.batch(torch.randint(0, len(data.x), (batch,), generator=g), size)[0])
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    return len(bns)


@torch.no_grad()
def accuracy(model: nn.Module, data: Images, size: int, n: int) -> float:
    model.eval()
    correct = 0
    for i in range(0, n, 50):
        idx = torch.arange(i, min(n, i + 50))
        x, y = data.batch(idx, size, "test")
        correct += int((model(x).argmax(1) == y).sum())
    return correct / n


# -- results file: one row per exported file, rewritten atomically -------------------------------------------
def load_rows(path: Path) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text())
    return {"benchmark": "zoo_export", "rows": [], "models": {}}


def save(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {**doc, **machine()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1, default=str)
        f.write("\n")
    os.replace(tmp, path)


def _fraction(partition: dict[str, Any] | None) -> float | None:
    if not partition:
        return None
    total = partition.get("delegated_ops", 0) + partition.get("non_delegated_ops", 0)
    return round(partition["delegated_ops"] / total, 4) if total else None


def rows_of(label: str, spec: Spec, bundle: Any, size: int) -> list[dict[str, Any]]:
    """One row per file of ``bundle`` (ok or failed)."""
    from edgekd.convert import export_seconds

    out = []
    for f in bundle.files:
        p, secs = f.parity, f.extra.get("seconds", {})
        out.append({"model": label, "name": spec.name, "size": size, "file": f.path, "format": f.format,
                    "converter": f.converter, "precision": f.precision,
                    "export_s": export_seconds(f.extra), "cpu_s": secs.get("cpu"), "seconds": secs, "bytes": f.bytes,
                    "parity_passed": bool(p.passed) if p else None, "max_abs_error": p.max_abs_error if p else None,
                    "top1_agreement": p.top1_agreement if p else None, "accuracy": p.accuracy if p else None,
                    "accuracy_eager": p.accuracy_eager if p else None,
                    "delegated_fraction": _fraction(f.extra.get("partition")),
                    "non_delegated": (f.extra.get("partition") or {}).get("non_delegated"),
                    "p50_ms": {}, "error": None})
    for r in bundle.extra.get("failed", []):
        fmt, prec, conv = r["key"].split("/")
        out.append({"model": label, "name": spec.name, "size": size, "file": r["path"], "format": fmt,
                    "converter": conv, "precision": prec, "export_s": None, "bytes": None, "parity_passed": False,
                    "delegated_fraction": None, "p50_ms": {}, "error": f"{r['stage']}: {r['error']}",
                    "fix": r.get("fix")})
    order = {("pte", "fp32"): 0, ("pte", "int8"): 1}
    return sorted(out, key=lambda r: (order.get((r["format"], r["precision"]), 2), r["converter"], r["precision"]))


def trained(spec: Spec, data: Images, args: argparse.Namespace, out: Path, size: int) -> tuple[nn.Module, dict[str, Any]]:
    """The model trained briefly (and its BN statistics re-estimated at ``size``): from ``out/trained.pt`` when an
    earlier run of the same settings left it there (with its ``train.json``), else trained now and saved there."""
    from edgekd.models import create

    torch.manual_seed(0)
    model = create(spec.name, num_classes=10, **spec.kwargs)
    train_size = spec.train_size or args.train_size
    saved, notes = out / "trained.pt", out / "train.json"
    if saved.is_file() and notes.is_file() and not args.retrain:
        info = json.loads(notes.read_text())
        same = {k: info.get(k) for k in ("train_size", "steps", "batch", "lr")}
        if same == {"train_size": train_size, "steps": args.steps, "batch": args.batch, "lr": spec.lr}:
            model.load_state_dict(torch.load(saved, map_location="cpu", weights_only=True))
            print(f"  trained weights from {saved} (--retrain trains again)", flush=True)
            return model.eval(), {**info, "weights_reused": True}
    info = train_briefly(model, data, size=train_size, steps=args.steps, batch=args.batch, lr=spec.lr,
                         forward_kwargs=spec.train_kwargs)
    if train_size != size:
        info["bn_recalibrated"] = recalibrate_bn(model, data, size)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), saved)  # the trained weights, to re-export or re-judge later
    notes.write_text(json.dumps(info, indent=1) + "\n")
    return model.eval(), info


def file_key(r: dict[str, Any]) -> str:
    """A row's file, named uniquely within its model (one converter's files may have the same names as another's)."""
    return f"{r['format']}/{r['precision']}/{r['converter']}"


def shown(r: dict[str, Any]) -> str:
    """A row's file as the tables show it: name and, for .tflite, the converter."""
    return r["file"] + (f" ({r['converter']})" if r["format"] == "tflite" and r["converter"] not in r["file"] else "")


def missing_files(doc: dict[str, Any], label: str, converters: list[str]) -> tuple[list[str], list[str]]:
    """The formats and tflite converters of ``label`` that have no row yet (all of them for a new model)."""
    have = {(r["format"], r["converter"]) for r in doc["rows"] if r["model"] == label}
    formats = [] if ("pte", "executorch") in have else ["pte"]
    convs = [c for c in converters if ("tflite", c) not in have]
    return formats + (["tflite"] if convs else []), convs


def export_model(spec: Spec, data: Images, args: argparse.Namespace, work: Path, formats: list[str],
                 converters: list[str]) -> dict[str, Any]:
    """Create, train (or reload), recalibrate, measure and export one model to ``formats`` (the tflite files with
    ``converters``); returns its summary and rows."""
    import edgekd
    from edgekd.models import count_params, create

    load_before = os.getloadavg()
    probe = create(spec.name, num_classes=10, **spec.kwargs)
    native = getattr(getattr(probe, "config", None), "image_size", None) if spec.train_kwargs else None
    size = int(native) if native else args.size  # a ViT runs at its native size
    print(f"  {count_params(probe) / 1e6:.2f} M params; train at {spec.train_size or args.train_size} px, "
          f"export at {size} px: {', '.join(formats)}" + (f" (tflite: {', '.join(converters)})" if converters else ""),
          flush=True)
    del probe
    out = work / spec.label.replace(" ", "_").replace("/", "_")
    model, info = trained(spec, data, args, out, size)
    info["accuracy_at_size"] = accuracy(model, data, size, args.eval)
    info["params"] = count_params(model)
    info["parity_samples"], info["calibration_samples"] = args.parity, args.calibration
    print(f"  test accuracy at {size} px: {info['accuracy_at_size']:.3f}", flush=True)
    g = torch.Generator().manual_seed(2)
    calib = data.batch(torch.randint(0, len(data.x), (args.calibration,), generator=g), size)[0]
    px, py = data.batch(torch.arange(args.eval, args.eval + args.parity), size, "test")
    t0, c0 = time.perf_counter(), time.process_time()
    # one bundle directory per pass: a later pass (another converter) must not overwrite an earlier edgekd.json
    bundle = edgekd.export(model, (px[:1],), formats=tuple(formats), precision=("fp32", "int8"),
                           tflite_converter=tuple(converters or ["litert-torch"]), calibration=calib,
                           parity_data=(px, py), out_dir=out / "+".join(formats + converters),
                           model_name=spec.label, keep_going=True, check_parity=False, progress=False,
                           observer=args.observer)
    info["export_call_s"] = round(time.perf_counter() - t0, 1)
    info["export_call_cpu_s"] = round(time.process_time() - c0, 1)
    info["torch_export_s"] = bundle.extra.get("torch_export_s")
    info["bundle"] = str(bundle.root)
    info["load"] = {"before": load_before, "after": os.getloadavg()}
    rows = rows_of(spec.label, spec, bundle, size)
    for r in rows:
        r["bundle"] = str(bundle.root)
    return {"summary": info, "rows": rows}


# -- observers: time and parity of each calibration observer on one model -----------------------------------
def compare_observers(spec: Spec, data: Images, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from edgekd.convert.executorch import keepdim_spatial_means
    from edgekd.convert.parity import measure, thresholds_for
    from edgekd.quantization import OBSERVERS, quantize

    model, _ = trained(spec, data, args, work / spec.label.replace(" ", "_").replace("/", "_"), args.size)
    g = torch.Generator().manual_seed(2)
    calib = data.batch(torch.randint(0, len(data.x), (args.calibration,), generator=g), args.size)[0]
    px, py = data.batch(torch.arange(args.eval, args.eval + args.parity), args.size, "test")
    with torch.no_grad():
        eager = model(px).numpy()
    out = {}
    for obs in OBSERVERS:
        t0 = time.perf_counter()
        q = quantize(model, (px[:1],), calib, transform=keepdim_spatial_means, observer=obs)
        secs = time.perf_counter() - t0
        with torch.no_grad():
            y = torch.cat([q(px[i:i + 1]) for i in range(len(px))]).numpy()
        p = measure(y, eager, py.numpy(), thresholds_for("int8", None))
        out[obs] = {"quantize_s": round(secs, 1), "top1_agreement": p.top1_agreement, "accuracy": p.accuracy,
                    "accuracy_eager": p.accuracy_eager, "max_abs_error": p.max_abs_error}
        print(f"  {obs:18s} quantize {secs:7.1f} s  top-1 agreement {p.top1_agreement:.3f}  acc {p.accuracy:.3f} "
              f"(eager {p.accuracy_eager:.3f})", flush=True)
    return out


# -- p50 at 1 and 2 threads ----------------------------------------------------------------------------------
def timing(doc: dict[str, Any], args: argparse.Namespace, path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import side_by_side

    ok = [r for r in doc["rows"] if r.get("bytes") and r.get("parity_passed") is not None
          and not r.get("p50_ms", {}).get("1")]
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in ok:
        by_model.setdefault(r["model"], []).append(r)
    for model, rows in by_model.items():
        files = {file_key(r): Path(r.get("bundle") or doc["models"][model]["bundle"]) / r["file"] for r in rows}
        files = {k: v for k, v in files.items() if v.is_file()}
        if not files:
            continue
        load_before = os.getloadavg()
        for threads in (1, 2):
            res = side_by_side(files, Path(tempfile.mkdtemp(prefix="zoo_timing_")), rounds=args.rounds,
                               runs=args.runs, threads=threads, warmup=3)
            for r in rows:
                if file_key(r) in res:
                    r.setdefault("p50_ms", {})[str(threads)] = res[file_key(r)]["p50_ms"]
                    r.setdefault("p50_ms_rounds", {})[str(threads)] = res[file_key(r)]["p50_ms_rounds"]
        doc["models"][model]["timing_load"] = {"before": load_before, "after": os.getloadavg()}
        save(path, doc)
        print(f"  {model}: " + ", ".join(f"{shown(r)} {r['p50_ms'].get('1')}/{r['p50_ms'].get('2')} ms"
                                         for r in rows), flush=True)


def print_table(doc: dict[str, Any]) -> None:
    print(f"\n{'model':20s} {'file':34s} {'export s':>9s} {'KB':>8s} {'parity':>7s} {'agree':>6s} {'XNNPACK':>8s} "
          f"{'p50 1t':>8s} {'p50 2t':>8s}  error")
    for r in doc["rows"]:
        p50 = r.get("p50_ms") or {}
        fmt = (lambda v, f: f.format(v) if v is not None else "-")  # noqa: E731
        print(f"{r['model']:20s} {shown(r):34s} {fmt(r.get('export_s'), '{:9.1f}'):>9s} "
              f"{fmt(r['bytes'] / 1024 if r.get('bytes') else None, '{:8.0f}'):>8s} "
              f"{('ok' if r['parity_passed'] else 'FAIL') if r.get('bytes') else '-':>7s} "
              f"{fmt(r.get('top1_agreement'), '{:6.3f}'):>6s} {fmt(r.get('delegated_fraction'), '{:8.1%}'):>8s} "
              f"{fmt(p50.get('1'), '{:8.2f}'):>8s} {fmt(p50.get('2'), '{:8.2f}'):>8s}  {r.get('error') or ''}")
    rows = doc["rows"]
    for prec in ("fp32", "int8"):
        mine = [r for r in rows if r["precision"] == prec]
        good = [r for r in mine if r.get("bytes") and r.get("parity_passed")]
        print(f"{prec}: {len(good)}/{len(mine)} files exported within the default parity thresholds")


def markdown(doc: dict[str, Any]) -> str:
    """The rows as a markdown table (what RESULTS.md shows), one line per file."""
    def f(v: Any, fmt: str) -> str:
        return fmt.format(v) if v is not None else "–"

    lines = ["| model | acc % (eager, 224) | file | export s | MB | parity | top-1 agree | acc % | XNNPACK ops | "
             "p50 ms 1t | p50 ms 2t |", "|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in doc["rows"]:
        m = doc["models"].get(r["model"], {})
        p50 = r.get("p50_ms") or {}
        status = ("ok" if r["parity_passed"] else "**miss**") if r.get("bytes") else f"**failed**: {r.get('error')}"
        lines.append(f"| {r['model']} | {f(m.get('accuracy_at_size'), '{:.1%}')} | {shown(r)} | "
                     f"{f(r.get('export_s'), '{:.0f}')} | {f(r['bytes'] / 1e6 if r.get('bytes') else None, '{:.2f}')} | "
                     f"{status} | {f(r.get('top1_agreement'), '{:.3f}')} | {f(r.get('accuracy'), '{:.1%}')} | "
                     f"{f(r.get('delegated_fraction'), '{:.0%}')} | {f(p50.get('1'), '{:.2f}')} | "
                     f"{f(p50.get('2'), '{:.2f}')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=None, help="comma list of labels (default: all)")
    ap.add_argument("--size", type=int, default=224, help="export (and accuracy) size")
    ap.add_argument("--train-size", type=int, default=112, help="training size (the BN statistics follow --size)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--calibration", type=int, default=32, help="int8 calibration samples")
    ap.add_argument("--parity", type=int, default=200,
                    help="held-out parity samples (test split); the int8 accuracy-drop threshold (3 points) is "
                         "6 samples at 200, 2 at 64")
    ap.add_argument("--eval", type=int, default=300, help="test images for the eager accuracy")
    ap.add_argument("--tflite-converters", default="litert-torch,onnx2tf")
    ap.add_argument("--observer", default="histogram")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "edgekd_zoo_export"))
    ap.add_argument("--out", default=None, help=f"results file (default {RESULTS.name}; --observers: "
                                                 "zoo_export_observers.json)")
    ap.add_argument("--force", action="store_true", help="redo models already in the results file")
    ap.add_argument("--retrain", action="store_true", help="train again even where --work holds trained weights")
    ap.add_argument("--timing", action="store_true", help="measure p50 (1 and 2 threads) of exported files")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--observers", action="store_true", help="compare calibration observers (time, int8 parity)")
    ap.add_argument("--markdown", action="store_true", help="print the results file as a markdown table")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch threads for training and export (1: on a loaded 2-core machine OpenMP's spinning "
                         "made 2 threads 15-40x slower than 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    # the observers comparison has its own file: two runs at once must not rewrite each other's rows
    path = Path(args.out) if args.out else RESULTS.with_name("zoo_export_observers.json") if args.observers else RESULTS
    doc = load_rows(path)
    doc["settings"] = {k: v for k, v in vars(args).items() if k not in ("timing", "force", "observers")}
    wanted = [s for s in MODELS if args.models is None or s.label in args.models.split(",")]
    if args.markdown:
        print(markdown(doc))
        return 0
    if args.timing:
        timing(doc, args, path)
        print_table(doc)
        return 0
    data = Images()
    work = Path(args.work)
    if args.observers:
        doc.setdefault("observers", {})
        for spec in wanted:
            print(f"{spec.label} ({spec.name}): calibration observers", flush=True)
            doc["observers"][spec.label] = {"size": args.size, "calibration": args.calibration,
                                            "parity": args.parity, **compare_observers(spec, data, args, work)}
            save(path, doc)
        return 0
    converters = args.tflite_converters.split(",") if args.tflite_converters else []
    for spec in wanted:
        if args.force:
            doc["rows"] = [r for r in doc["rows"] if r["model"] != spec.label]
        formats, convs = missing_files(doc, spec.label, converters)
        if not formats:
            print(f"{spec.label}: done before, skipped (--force redoes it)")
            continue
        print(f"{spec.label} ({spec.name})", flush=True)
        t0 = time.perf_counter()
        res = export_model(spec, data, args, work, formats, convs)
        res["summary"]["total_s"] = round(time.perf_counter() - t0, 1)
        new = {file_key(r) for r in res["rows"]}
        order = {s.label: i for i, s in enumerate(MODELS)}
        doc["rows"] = sorted([r for r in doc["rows"] if r["model"] != spec.label or file_key(r) not in new] + res["rows"],
                             key=lambda r: order.get(r["model"], len(order)))  # stable: a model's rows keep their order
        passes = doc["models"].get(spec.label, {}).get("passes", []) if not args.force else []
        doc["models"][spec.label] = {**res["summary"], "passes": passes + [{"files": sorted(new), **{
            k: res["summary"][k] for k in ("export_call_s", "export_call_cpu_s", "torch_export_s", "bundle",
                                           "load", "total_s")}}]}
        save(path, doc)
        for r in res["rows"]:
            status = "ok" if r.get("parity_passed") else ("parity FAIL" if r.get("bytes") else "FAILED")
            print(f"  {shown(r):34s} {status:12s} {r.get('export_s') or '-':>8} s  {r.get('error') or ''}", flush=True)
    print_table(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
