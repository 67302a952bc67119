"""``torchrun ... -m edgekd.distillation.ddp``: distil a registry student data-parallel.

::

    python -m torch.distributed.run --nproc_per_node 2 -m edgekd.distillation.ddp \\
        --data digits --student resnet8 --teacher teacher.pt --method ce+kd --epochs 5 --out runs/ddp

The loop itself is the :class:`~edgekd.distillation.trainer.Trainer`'s; how it splits batches and
averages gradients over processes is in :mod:`edgekd.distillation.parallel` (re-exported here).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist

from edgekd.distillation.parallel import (
    allreduce_grads,
    broadcast_modules,
    init_from_env,
    is_main,
    shard_batches,
    world,
)

__all__ = ["allreduce_grads", "broadcast_modules", "init_from_env", "is_main", "main", "shard_batches", "world"]


def main(argv: Sequence[str] | None = None) -> int:
    """``torchrun ... -m edgekd.distillation.ddp``: distil a registry student, rank 0 writes ``--out``."""
    from edgekd import data as edata
    from edgekd import models
    from edgekd.distillation import distill
    from edgekd.models.saved import load_model, save_model

    ap = argparse.ArgumentParser(prog="edgekd.distillation.ddp", description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--student", required=True, help="registry name, e.g. resnet8")
    ap.add_argument("--teacher", default=None, help="a model.pt written by `edgekd train` / save_model")
    ap.add_argument("--method", default="ce")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128, help="global batch size")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--optimizer", default="adamw")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    init_from_env()
    try:
        splits = edata.load(a.data, limit=a.limit)
        torch.manual_seed(a.seed)
        student = models.create(a.student, num_classes=splits.num_classes, in_channels=splits.in_channels)
        teacher = load_model(a.teacher)[0] if a.teacher else None
        res = distill(teacher, student, splits, a.method, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                      optimizer=a.optimizer, seed=a.seed, out_dir=a.out, progress=is_main())
        if is_main():
            save_model(res.model, Path(a.out) / "student.pt", a.student, num_classes=splits.num_classes,
                       in_channels=splits.in_channels)
            (Path(a.out) / "metrics.json").write_text(json.dumps({**res.metrics, "world_size": world()[1]}))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
