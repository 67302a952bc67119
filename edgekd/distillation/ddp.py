"""Data-parallel training under ``torchrun`` (gloo on CPU, NCCL on GPU), and its command-line entry.

::

    python -m torch.distributed.run --nproc_per_node 2 -m edgekd.distillation.ddp \\
        --data digits --student resnet8 --teacher teacher.pt --method ce+kd --epochs 5 --out runs/ddp

The :class:`~edgekd.distillation.trainer.Trainer` checks :func:`world` and, with more than one
process, (1) broadcasts every trained module from rank 0 before the first step, (2) gives each
rank its share of each *global* batch (``batch_size`` is global: rank ``r`` of ``W`` takes
positions ``r, r+W, ...`` of the batch the single-process run would draw), (3) all-reduces the
gradients after each backward, weighting rank ``r`` by ``n_r / n`` so the update equals the
single-process update on the whole batch for per-sample-mean losses, and (4) writes checkpoints,
logs and progress on rank 0 only. BatchNorm normalises with per-rank statistics (as plain DDP
does), so BN models match single-process math only approximately; running statistics are
broadcast from rank 0 after each epoch.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

STAGE = "distill/ddp"


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process writes checkpoints, logs and results (rank 0)."""
    return world()[0] == 0


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group torchrun describes in the environment; False when not under torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return True


def shard_batches(n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
                  ) -> list[tuple[list[int], int]]:
    """This rank's indices of each shuffled global batch, with the global batch size.

    The permutation depends on ``seed`` only, so every rank (and a single process) sees the same
    global batches. Global batches smaller than ``world_size`` are dropped when distributed.
    """
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    out = []
    for start in range(0, n, batch_size):
        batch = perm[start:start + batch_size]
        if len(batch) >= world_size:
            out.append((batch[rank::world_size], len(batch)))
    return out


def broadcast_modules(modules: Iterable[nn.Module], buffers_only: bool = False) -> None:
    """Copy rank 0's parameters (and buffers) to every rank."""
    if world()[1] == 1:
        return
    for m in modules:
        tensors = list(m.buffers()) if buffers_only else [*m.parameters(), *m.buffers()]
        for t in tensors:
            dist.broadcast(t.data, src=0)


def allreduce_grads(params: Sequence[nn.Parameter], local_fraction: float) -> None:
    """Replace each gradient by the sum over ranks of ``local_fraction * grad`` (one flat all-reduce)."""
    if world()[1] == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads]) * local_fraction
    dist.all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads, strict=True):
        p.grad = flat[offset:offset + g.numel()].view_as(p).clone()
        offset += g.numel()


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
