"""What a ``x.mean((2, 3))`` classifier head costs in ExecuTorch, and what edgekd's exporter does about it.

XNNPACK takes a spatial mean only with ``keepdim=True`` (``nn.AdaptiveAvgPool2d`` keeps the dims;
``x.mean((2, 3))`` and timm's flattening pool do not). Without it the graph splits into two XNNPACK
partitions with the mean in ExecuTorch's portable kernels between them. ``edgekd.convert.executorch``
rewrites such means (``keepdim_spatial_means``) before lowering. This script exports the resnet8x4
that ``benchmarks/runtimes.py`` trained three ways -- its own ``AdaptiveAvgPool2d`` head, a
``mean((2, 3))`` head lowered as ExecuTorch would without the rewrite, and the same head with it --
at fp32 and int8, and times them in ONE process in alternating blocks (``--rounds`` x ``--block``
calls of ``Method.execute()``, ``bare_loop.alternate``), so every ratio is side by side.

    python benchmarks/investigations/pte_mean_head.py                  # needs benchmarks/runtimes.py's checkpoint
    python benchmarks/investigations/pte_mean_head.py --threads 2 --rounds 40

Writes ``benchmarks/results/pte_mean_head.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/_common.py
from _common import write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent  # benchmarks/: results/


class MeanHead(torch.nn.Module):
    """``x.mean((2, 3))``: the hand-written global-average-pool head."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


def interleaved(paths: dict[str, Path], threads: int, rounds: int, block: int, work: Path
                ) -> dict[str, dict[str, object]]:
    """p50 of each file and its ratio to the first, from ``rounds`` alternating blocks in this process
    (``bare_loop.alternate``: the runner's loading, then only ``Method.execute()`` timed)."""
    from bare_loop import alternate, invoke_fn, load, load_runner

    runner = load_runner()
    x = work / "inputs.npz"
    np.savez(x, x=np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32))
    loaded = {name: load(runner, path, threads, str(x)) for name, path in paths.items()}
    calls = {name: invoke_fn(backend, feed) for name, (backend, feed) in loaded.items()}
    for call in calls.values():
        for _ in range(block):
            call()
    samples, ratios = alternate(calls, rounds * block, block, None)
    return {name: {"p50_ms": float(np.median(v)), "ratio_to_first": float(np.median(ratios[name])) if name in ratios
                   else 1.0, "ratio_to_first_rounds": ratios.get(name, [])} for name, v in samples.items()}


def main(argv: list[str] | None = None) -> int:
    from edgekd import data as D
    from edgekd.convert import executorch as ET
    from edgekd.models.saved import load_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=str(BENCH / "results" / "runtimes_work" / "resnet8x4_e3.pt"),
                    help="a model saved by edgekd (default: the one benchmarks/runtimes.py trains)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--block", type=int, default=100)
    ap.add_argument("--work", default=str(BENCH / "results" / "pte_mean_head_work"))
    ap.add_argument("--out", default=str(BENCH / "results" / "pte_mean_head.json"))
    args = ap.parse_args(argv)
    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        raise SystemExit(f"pte_mean_head: no checkpoint {ckpt}; run python benchmarks/runtimes.py first "
                         "or pass --checkpoint")
    model, _ = load_model(ckpt)
    model.eval()
    if not isinstance(getattr(model, "pool", None), torch.nn.AdaptiveAvgPool2d):
        raise SystemExit(f"pte_mean_head: {ckpt} has no AdaptiveAvgPool2d 'pool' head to swap")
    splits = D.load("mnist5k", seed=0)
    calib = D.calibration_sample(splits.train, n=128, seed=0)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    variants = {"AdaptiveAvgPool2d head": (model.pool, True), "mean((2,3)) head, no rewrite": (MeanHead(), False),
                "mean((2,3)) head, edgekd rewrite": (MeanHead(), True)}
    result: dict[str, object] = {"checkpoint": str(ckpt), "threads": args.threads, "rounds": args.rounds,
                                 "block": args.block, "precisions": {}}
    for precision in ("int8", "fp32"):
        paths, partitions = {}, {}
        for name, (head, rewrite) in variants.items():
            model.pool = head
            path = work / f"{precision}_{name.split()[0].replace('(', '').replace(')', '').replace(',', '')}" \
                          f"_{'rw' if rewrite else 'raw'}.pte"
            with mock.patch.object(ET, "keepdim_spatial_means", ET.keepdim_spatial_means if rewrite
                                   else (lambda gm: 0)):
                cov = ET.to_pte(model, (calib[:1],), path, precision=precision, calibration=calib)["partition"]
            paths[name], partitions[name] = path, cov
        times = interleaved(paths, args.threads, args.rounds, args.block, work)
        result["precisions"][precision] = {  # type: ignore[index]
            name: {**times[name], "partitions": partitions[name]["partitions"],
                   "non_delegated": partitions[name]["non_delegated"]} for name in variants}
    model.pool = variants["AdaptiveAvgPool2d head"][0]

    print(f"\n{'precision':9s} {'head':34s} {'partitions':>10} {'outside':24s} {'p50 ms':>7} {'x first':>7}")
    for precision, rows in result["precisions"].items():  # type: ignore[union-attr]
        for name, r in rows.items():
            outside = ",".join(r["non_delegated"]) or "-"
            print(f"{precision:9s} {name:34s} {r['partitions']:>10} {outside:24s} {r['p50_ms']:7.3f} "
                  f"{r['ratio_to_first']:7.3f}")
    write_results(args.out, "pte_mean_head", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
