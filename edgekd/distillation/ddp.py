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

import torch.distributed as dist

from edgekd.distillation.parallel import (
    allreduce_grads,
    broadcast_modules,
    init_from_env,
    is_main,
    shard_batches,
    world,
)
from edgekd.files import write_atomic

__all__ = ["allreduce_grads", "broadcast_modules", "init_from_env", "is_main", "main", "shard_batches", "world"]


def main(argv: Sequence[str] | None = None) -> int:
    """``torchrun ... -m edgekd.distillation.ddp``: distil a registry student, rank 0 writes ``--out``.

    The flags are the run settings of ``edgekd distill`` (:class:`~edgekd.settings.RunSettings`), with
    this entry's defaults: ``--data digits --method ce --epochs 1``; ``--batch-size`` is the global batch.
    """
    from edgekd.distillation import distill
    from edgekd.distillation.config import DistillConfig, MethodTerm, prepare
    from edgekd.models.saved import save_model
    from edgekd.settings import RunSettings, add_flags, given

    ap = argparse.ArgumentParser(prog="edgekd.distillation.ddp", description=__doc__.splitlines()[0])
    add_flags(ap, RunSettings)
    a = ap.parse_args(argv)
    cfg = DistillConfig(data="digits", method=[MethodTerm("ce")], epochs=1).override(**given(a, RunSettings))
    if cfg.student is None or cfg.out is None:
        ap.error("--student and --out are required")
    init_from_env()
    try:
        splits, teacher, student, kw = prepare(cfg)
        res = distill(teacher, student, splits, out_dir=cfg.out, progress=is_main(), **cfg.distill_kwargs())
        if is_main():
            save_model(res.model, Path(cfg.out) / "student.pt", cfg.student, **kw)  # type: ignore[arg-type]
            write_atomic(Path(cfg.out) / "metrics.json", json.dumps({**res.metrics, "world_size": world()[1]}),
                         stage="distill", what="the metrics")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
