"""Data-parallel training under ``torchrun`` (gloo on CPU, NCCL on GPU): what the Trainer calls.

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

import math
import os
from collections.abc import Iterable, Sequence

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


def mixed_batches(labelled: Sequence[int], unlabelled: Sequence[int], batch_size: int, per_batch: int, seed: int,
                  rank: int = 0, world_size: int = 1) -> list[tuple[list[int], int]]:
    """Like :func:`shard_batches` for a transfer set: each global batch holds ``per_batch`` labelled and
    ``batch_size - per_batch`` unlabelled indices.

    An epoch is one shuffled pass over ``unlabelled``; the labelled indices are drawn in turn from
    reshuffled passes over ``labelled``, so every batch carries the same number of labels however
    few there are (a label term then gets the exposure of training on the labelled images alone).
    """
    g = torch.Generator().manual_seed(seed)
    rest = batch_size - per_batch
    un = [unlabelled[i] for i in torch.randperm(len(unlabelled), generator=g).tolist()]
    n_batches = math.ceil(len(un) / rest)
    lab: list[int] = []
    while len(lab) < n_batches * per_batch:
        lab += [labelled[i] for i in torch.randperm(len(labelled), generator=g).tolist()]
    out = []
    for b in range(n_batches):
        batch = lab[b * per_batch:(b + 1) * per_batch] + un[b * rest:(b + 1) * rest]
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
