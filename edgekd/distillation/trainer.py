"""The one training loop: seeded, one progress bar per run, eval on val, checkpoint, exact resume, DDP.

*How* networks train together is a :class:`~edgekd.distillation.strategies.base.Strategy` (offline
teacher → student by default; online DML/AFD peers; self-distillation with early exits; a sentence
encoder against a frozen one, :mod:`edgekd.distillation.text`; a fake-quantized PT2E graph,
:mod:`edgekd.edge.qat`); this loop owns everything else, and the strategy says how its networks
switch train/eval mode, how they are validated and by which metric the best epoch is kept. The networks train in place; a teacher, when given, is frozen for the
run (eval mode, ``requires_grad=False``, its logits cached or computed under ``no_grad``) and
restored afterwards. The learning rate
follows a per-step cosine from ``lr`` to 0 over ``epochs`` (``schedule_span=(a, b)``: only the part
from fraction ``a`` to ``b`` of that cosine, so a longer schedule can be split over several runs,
e.g. with pruning between them; ``warmup``: a linear warm-up over that fraction of the steps first). With ``out_dir`` set, every epoch
writes ``checkpoint.pt`` (student, objective, optimiser, scheduler, epoch, history, RNG state)
and ``best.pt`` (student weights of the best val accuracy); ``resume=True`` continues from
``checkpoint.pt`` and, with the same settings, ends bit-identical to an uninterrupted run.
Under ``torchrun`` the loop is data-parallel (see :mod:`edgekd.distillation.parallel`); ``batch_size`` is
then the global batch.

The train split is read through one persistent ``DataLoader`` per run (``num_workers`` processes, by
default none for in-memory data and the CPU count, at most 8, for image files; pinned memory on CUDA).
Its batch sampler (:class:`EpochBatches`) hands out this process's share of each epoch's seeded global
batches, and with them each item's augmentation seed, so what a run sees depends only on its seed — not
on the number of workers or processes — and a resumed run continues bit for bit. Images that cannot be
decoded are dropped from their batch and named, with the count, at the end of the epoch.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.dataloader import default_collate

from edgekd.data.core import DataSplits, WithIndices, targets
from edgekd.data.images import default_num_workers, drop_bad, loader, report_bad, say, unwrap
from edgekd.data.transforms import item_seed
from edgekd.distillation.cache import TeacherCache
from edgekd.distillation.methods import METHODS, Objective
from edgekd.distillation.parallel import (
    allreduce_grads,
    broadcast_modules,
    is_main,
    mixed_batches,
    shard_batches,
    world,
)
from edgekd.distillation.strategies.base import Losses, Strategy
from edgekd.distillation.strategies.offline import OfflineStrategy
from edgekd.errors import ConfigError
from edgekd.files import atomic_path
from edgekd.settings import LoopSettings

STAGE = "distill/train"
CHECKPOINT = "checkpoint.pt"
FORMAT = 2
BEST = "best.pt"
DEFAULT_LR = {"adamw": 2e-3, "sgd": 0.05}  # LoopSettings.optimizer's choices
DEFAULT_WD = {"adamw": 1e-2, "sgd": 5e-4}


@dataclass
class TrainConfig(LoopSettings):
    """Everything the loop reads: the :class:`LoopSettings` plus what code sets. ``distill()``'s and
    ``Trainer``'s keyword arguments are these fields; ``lr``/``weight_decay`` None pick per-optimiser
    defaults (:data:`DEFAULT_LR`, :data:`DEFAULT_WD`)."""

    progress: bool = True
    out_dir: Path | None = None
    resume: bool = False
    schedule_span: tuple[float, float] = (0.0, 1.0)  # the part of the cosine this run covers
    warmup: float = 0.0  # fraction of the steps with a linear warm-up before the cosine
    clip_grad_norm: float | None = None  # clip each optimiser group's gradient norm to this
    drop_last: bool = False  # skip a last batch smaller than batch_size

    @classmethod
    def split(cls, kwargs: dict[str, Any], base: TrainConfig | None = None) -> tuple[TrainConfig, dict[str, Any]]:
        """``(config, rest)``: the keyword arguments that are fields of this class, on top of ``base``, and
        the others (a method's options). A near miss of a field name (``epoch=3``) is an error here,
        rather than a confusing "option belongs to no method" later."""
        known = [f.name for f in dataclasses.fields(cls)]
        mine = {k: v for k, v in kwargs.items() if k in known}
        rest = {k: v for k, v in kwargs.items() if k not in known}
        for k in rest:
            if k not in METHODS and not any(k.startswith(m + "_") for m in METHODS.names()):
                close = difflib.get_close_matches(k, known, n=1)
                if close:
                    raise ConfigError(f"unknown setting {k!r}; did you mean {close[0]!r}?", stage=STAGE,
                                      hint=f"the loop settings are: {', '.join(known)}")
        config = dataclasses.replace(base, **mine) if base is not None else cls(**mine)
        return config, rest

    def __post_init__(self) -> None:
        self.optimizer = self.optimizer.lower()
        if self.optimizer not in DEFAULT_LR:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; known: {', '.join(DEFAULT_LR)}",
                              stage=STAGE, hint="pass optimizer='adamw' or 'sgd'")
        self.epochs = capped_epochs(self.epochs)
        if self.epochs < 1 or self.batch_size < 1 or self.val_every < 1:
            raise ConfigError(f"epochs={self.epochs}, batch_size={self.batch_size} and val_every={self.val_every} "
                              "must be >= 1", stage=STAGE)
        if not 0 <= self.labelled_per_batch < self.batch_size:
            raise ConfigError(f"labelled_per_batch={self.labelled_per_batch} must be in 0..batch_size-1 "
                              f"({self.batch_size - 1})", stage=STAGE,
                              hint="e.g. half the batch: batch_size=128, labelled_per_batch=64")
        if self.resume and self.out_dir is None:
            raise ConfigError("resume=True needs out_dir (where checkpoint.pt lives)", stage=STAGE,
                              hint="pass out_dir= the folder of the interrupted run")
        self.out_dir = Path(self.out_dir) if self.out_dir is not None else None
        self.schedule_span = (float(self.schedule_span[0]), float(self.schedule_span[1]))
        a, b = self.schedule_span
        if not 0.0 <= a < b <= 1.0:
            raise ConfigError(f"schedule_span={self.schedule_span} must satisfy 0 <= start < end <= 1", stage=STAGE,
                              hint="e.g. (0.5, 1.0) for the second half of a cosine schedule")
        if not 0.0 <= self.warmup < 1.0 or (self.warmup and (a, b) != (0.0, 1.0)):
            raise ConfigError(f"warmup={self.warmup} must be in [0, 1), and 0 with a schedule_span", stage=STAGE,
                              hint="e.g. warmup=0.06 (6 % of the steps), over the whole schedule")


MAX_EPOCHS_ENV = "EDGEKD_MAX_EPOCHS"


def capped_epochs(epochs: int) -> int:
    """``epochs``, capped by ``$EDGEKD_MAX_EPOCHS`` when it is set: a smoke test of a script or of the docs
    runs every training loop for at most that many epochs (a warning says so)."""
    raw = os.environ.get(MAX_EPOCHS_ENV, "").strip()
    if not raw:
        return epochs
    try:
        cap = int(raw)
        if cap < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{MAX_EPOCHS_ENV}={raw!r} is not a positive integer", stage=STAGE,
                          hint=f"unset {MAX_EPOCHS_ENV}, or set it to e.g. 1") from None
    if epochs > cap:
        warnings.warn(f"{MAX_EPOCHS_ENV}={cap}: training for {cap} epoch(s) instead of {epochs}", stacklevel=3)
    return min(epochs, cap)


def lr_factor(config: TrainConfig, total: int) -> Callable[[int], float]:
    """The learning-rate multiplier at each step: an optional linear warm-up over ``config.warmup`` of the
    ``total`` steps, then a cosine to 0 (only its ``schedule_span`` part)."""
    a, b = config.schedule_span
    ramp = max(1, int(config.warmup * total)) if config.warmup else 0

    def factor(step: int) -> float:
        if step < ramp:
            return (step + 1) / ramp
        if ramp:
            return 0.5 * (1.0 + math.cos(math.pi * (step - ramp) / max(1, total - ramp)))
        return 0.5 * (1.0 + math.cos(math.pi * (a + (b - a) * min(step, total) / total)))

    return factor


def seed_everything(seed: int) -> None:
    """Seed ``random``, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # type: ignore[misc]
    return {"torch": torch.get_rng_state(), "random": random.getstate(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["random"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))


class Trainer:
    """Train the networks of a :class:`Strategy` on ``data.train`` (default: offline ``student``/``teacher``).

    ``on_epoch_end(row)`` is called after each epoch's checkpoint is written, on every rank (for
    logging, or to stop a run: an exception it raises propagates, and ``resume=True`` picks up
    from there). ``cache_teacher`` is passed to :class:`OfflineStrategy` (None: cache the teacher's
    logits when that is exact).
    """

    def __init__(self, student: nn.Module | None, data: DataSplits, objective: Objective, config: TrainConfig,
                 *, teacher: nn.Module | None = None, strategy: Strategy | None = None,
                 cache_teacher: bool | TeacherCache | None = None,
                 on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> None:
        if strategy is None:
            if student is None:
                raise ConfigError("Trainer needs a student or a strategy", stage=STAGE,
                                  hint="pass the model to train, or strategy=OnlineStrategy([...], objective)")
            strategy = OfflineStrategy(student, objective, teacher, cache=cache_teacher)
        self.strategy, self.data, self.objective, self.config = strategy, data, objective, config
        self.student = next(iter(strategy.eval_models().values()))
        self.on_epoch_end = on_epoch_end
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, float] = {strategy.score: -math.inf, "epoch": -1}
        self.step = 0
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self._groups: dict[str, list[nn.Parameter]] = {}
        self._split: tuple[list[int], list[int]] | None = None
        self._last_score: float | None = None  # the latest validation score, for the progress bar

    # -- paths ---------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return self.config.out_dir / CHECKPOINT if self.config.out_dir else None

    @property
    def best_path(self) -> Path | None:
        return self.config.out_dir / BEST if self.config.out_dir else None

    # -- building ------------------------------------------------------------------------------
    def _batches(self, epoch: int) -> list[tuple[list[int], int]]:
        rank, size = world()
        if self.config.batch_size % size:
            raise ConfigError(f"global batch_size={self.config.batch_size} does not split over {size} processes",
                              stage=STAGE, hint=f"pass a batch_size divisible by {size}")
        seed = self.config.seed * 1_000_003 + epoch
        if self.config.labelled_per_batch:
            batches = mixed_batches(*self._label_split(), self.config.batch_size, self.config.labelled_per_batch,
                                    seed, rank, size)
        else:
            batches = shard_batches(len(self.data.train), self.config.batch_size, seed, rank, size)  # type: ignore[arg-type]
        if self.config.drop_last:
            batches = [b for b in batches if b[1] == self.config.batch_size]
        if not batches:
            raise ConfigError(f"{len(self.data.train)} training samples make no full batch of "  # type: ignore[arg-type]
                              f"{self.config.batch_size}", stage=STAGE, hint="lower batch_size or load more data")
        return batches

    def _label_split(self) -> tuple[list[int], list[int]]:
        """The train indices with a label (``y >= 0``) and without (``-1``), for ``labelled_per_batch``."""
        if self._split is None:
            y = targets(self.data.train)
            labelled, unlabelled = (y >= 0).nonzero().flatten().tolist(), (y < 0).nonzero().flatten().tolist()
            k = self.config.labelled_per_batch
            if not labelled or not unlabelled:
                raise ConfigError(f"labelled_per_batch={k} needs a transfer set, but the {len(y)} train images are "
                                  f"{'all' if labelled else 'none'} labelled", stage=STAGE,
                                  hint="mark the unlabelled images y=-1 (edgekd.data.few_labels(splits, n, "
                                       "transfer=True)), or pass labelled_per_batch=0")
            self._split = (labelled, unlabelled)
        return self._split

    def _optimizer(self, params: list[nn.Parameter], lr_scale: float) -> torch.optim.Optimizer:
        c = self.config
        lr = (c.lr if c.lr is not None else DEFAULT_LR[c.optimizer]) * lr_scale
        wd = c.weight_decay if c.weight_decay is not None else DEFAULT_WD[c.optimizer]
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)

    def _probe(self) -> None:
        """One no-grad pass on the first train items: check shapes, let losses build adapters."""
        n = min(self.config.batch_size, len(self.data.train))  # type: ignore[arg-type]
        ds = WithIndices(self.data.train)
        keys = list(range(n))
        many = getattr(ds, "__getitems__", None)
        x, y, idx = default_collate(many(keys) if many else [ds[i] for i in keys])
        (x, y, idx), _ = drop_bad([x, y, idx])
        dev = self.config.device
        self.strategy.setup((x.to(dev), y.to(dev), idx.to(dev)), self.data)

    # -- checkpoints ---------------------------------------------------------------------------
    def _save(self, epoch: int) -> None:
        path = self.checkpoint_path
        if path is None or not is_main():
            return
        state = {"format": FORMAT, "epoch": epoch, "step": self.step, "method": self.objective.spec,
                 "modules": {k: m.state_dict() for k, m in self.strategy.modules().items()},
                 "optimizer": {k: o.state_dict() for k, o in self.optimizers.items()},
                 "scheduler": {k: s.state_dict() for k, s in self.schedulers.items()},
                 "history": self.history, "best": self.best, "rng": _rng_state(),
                 "config": {k: v for k, v in asdict(self.config).items() if k in ("epochs", "batch_size", "seed")}}
        with atomic_path(path, stage=STAGE, what="the checkpoint", fix="train into another folder (--out DIR)") as tmp:
            torch.save(state, tmp)

    def _load(self) -> int:
        path = self.checkpoint_path
        if path is None or not path.exists():
            return 0
        state = torch.load(path, map_location=self.config.device, weights_only=True)
        if state.get("format") != FORMAT or state["method"] != self.objective.spec:
            raise ConfigError(f"{path} was written by method {state.get('method')!r} (format "
                              f"{state.get('format')}), not {self.objective.spec!r} (format {FORMAT})",
                              stage=STAGE, hint="resume with the same method and edgekd version, or use a new out_dir")
        try:
            for k, m in self.strategy.modules().items():
                m.load_state_dict(state["modules"][k])
        except (RuntimeError, KeyError) as e:
            raise ConfigError(f"{path} does not fit these networks ({str(e).splitlines()[0]})", stage=STAGE,
                              hint="resume with the same models, or use a new out_dir") from None
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizer"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["scheduler"][k])
        self.history, self.best, self.step = list(state["history"]), dict(state["best"]), int(state["step"])
        _set_rng_state(state["rng"])
        return int(state["epoch"])

    # -- the loop ------------------------------------------------------------------------------
    def fit(self) -> list[dict[str, Any]]:
        """Train for ``config.epochs`` (resuming when asked); return the per-epoch history."""
        from tqdm.auto import tqdm

        c = self.config
        seed_everything(c.seed)
        modules = self.strategy.modules()
        for m in modules.values():
            m.to(c.device)
        self.strategy.train_mode(True)
        with ExitStack() as stack:
            self.strategy.enter(stack, c.device, self.data.train)
            self._probe()
            for m in modules.values():
                m.to(c.device)
            broadcast_modules(modules.values())
            groups = self.strategy.param_groups()
            self._groups = {k: params for k, (params, _) in groups.items()}
            self.optimizers = {k: self._optimizer(params, scale) for k, (params, scale) in groups.items()}
            factor = lr_factor(c, c.epochs * len(self._batches(0)))
            self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in self.optimizers.items()}
            start = self._load() if c.resume else 0
            sampler = EpochBatches(self._batches, seeded=not getattr(unwrap(self.data.train), "deterministic", True),
                                   seed=c.seed)
            workers = default_num_workers(self.data.train) if c.num_workers is None else c.num_workers
            train_loader = loader(WithIndices(self.data.train), batch_sampler=sampler, num_workers=workers,
                                  device=c.device, persistent=True)
            stack.callback(_shutdown, train_loader)
            bar = stack.enter_context(tqdm(total=c.epochs * len(sampler.set_epoch(start)), initial=start * len(sampler),
                                           desc=self.objective.spec, disable=not (c.progress and is_main()),
                                           dynamic_ncols=True, unit="step"))
            for epoch in range(start, c.epochs):
                self._epoch(epoch, train_loader, sampler, bar)
        return self.history

    def _update(self, losses: Losses, local_fraction: float) -> None:
        """``zero_grad / backward / all-reduce / step`` for each loss's groups, in the strategy's order."""
        for keys, loss in losses:
            keys = (keys,) if isinstance(keys, str) else keys
            for k in keys:
                self.optimizers[k].zero_grad(set_to_none=True)
            loss.backward()
            for k in keys:
                allreduce_grads([p for p in self._groups[k] if p.grad is not None], local_fraction)
                if self.config.clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(self._groups[k], self.config.clip_grad_norm)
                self.optimizers[k].step()
        with warnings.catch_warnings():  # a group that did not step this batch (a frozen teacher) keeps the shared cosine
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            for sched in self.schedulers.values():
                sched.step()

    def _epoch(self, epoch: int, train_loader: DataLoader, sampler: EpochBatches, bar: Any) -> None:
        c, t0 = self.config, time.perf_counter()
        sums: dict[str, float] = {}
        batches = sampler.set_epoch(epoch)
        modules = self.strategy.modules()
        self.strategy.train_mode(True)
        bad: list[int] = []
        n_done = 0
        for batch, (_, n_global) in zip(train_loader, batches, strict=True):
            (x, y, idx), dropped = drop_bad(batch)
            if dropped is not None:
                bad += dropped.tolist()
            bar.update()
            if not len(idx):
                continue
            dev = c.device
            losses, parts = self.strategy.step(x.to(dev, non_blocking=True), y.to(dev, non_blocking=True),
                                               idx.to(dev, non_blocking=True), epoch, self.step)
            self._update(losses, len(idx) / n_global)
            self.step += 1
            n_done += 1
            total = sum(float(v.detach()) for _, v in losses)
            for k, v in {"loss": total, **parts}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            bar.set_postfix(epoch=f"{epoch + 1}/{c.epochs}", loss=f"{sums['loss'] / n_done:.4f}", refresh=False,
                            **({self.strategy.score: f"{self._last_score:.4f}"} if self._last_score is not None else {}))
        broadcast_modules(modules.values(), buffers_only=True)
        validate = (epoch + 1) % c.val_every == 0 or epoch + 1 == c.epochs  # many short epochs: val_every > 1
        row = {"epoch": epoch + 1, **{f"train_{k}": v / max(n_done, 1) for k, v in sums.items()},
               **(self._validate() if validate else {}),
               "lr": next(iter(self.optimizers.values())).param_groups[0]["lr"], "time_s": time.perf_counter() - t0}
        if bad:
            row["skipped_images"] = len(set(bad))
            if is_main():
                say(report_bad(self.data.train, bad, f"epoch {epoch + 1}"))
        score = self.strategy.score
        if validate:
            self._last_score = row[score]
        bar.set_postfix(epoch=f"{epoch + 1}/{c.epochs}", loss=f"{row.get('train_loss', math.nan):.4f}",
                        **({score: f"{self._last_score:.4f}"} if self._last_score is not None else {}))
        self.history.append(row)
        if validate and row[score] > self.best.get(score, -math.inf):
            self.best = {score: row[score], "epoch": epoch + 1}
            if self.best_path is not None and is_main():
                evals = self.strategy.eval_models()
                with atomic_path(self.best_path, stage=STAGE, what="the best model",
                                 fix="train into another folder (--out DIR)") as tmp:
                    torch.save(self.student.state_dict() if len(evals) == 1
                               else {k: m.state_dict() for k, m in evals.items()}, tmp)
        self._save(epoch + 1)
        if self.on_epoch_end is not None:
            self.on_epoch_end(row)

    def _validate(self) -> dict[str, float]:
        return self.strategy.validate(self.data, self.config.device)


class EpochBatches:
    """The batch sampler of a run's one ``DataLoader``: this process's share of epoch ``e``'s global batches
    (:meth:`set_epoch` before each pass). ``seeded``: each index goes out as ``(index, seed)``, the seed of
    its augmentation (:func:`~edgekd.data.transforms.item_seed` of the run's seed, the epoch and the index)."""

    def __init__(self, batches: Callable[[int], list[tuple[list[int], int]]], *, seeded: bool, seed: int) -> None:
        self._make, self.seeded, self.seed = batches, seeded, seed
        self.epoch, self.batches = -1, []  # type: ignore[var-annotated]

    def set_epoch(self, epoch: int) -> list[tuple[list[int], int]]:
        """Draw epoch ``epoch``'s batches; returns ``(indices, global batch size)`` per batch."""
        if epoch != self.epoch:
            self.epoch, self.batches = epoch, self._make(epoch)
        return self.batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[Any]]:
        for b, _ in self.batches:
            yield [(i, item_seed(self.seed, self.epoch, i)) for i in b] if self.seeded else list(b)


def _shutdown(train_loader: DataLoader) -> None:
    """End a persistent ``DataLoader``'s worker processes now (not whenever it is garbage-collected)."""
    it = getattr(train_loader, "_iterator", None)
    if it is not None and hasattr(it, "_shutdown_workers"):
        it._shutdown_workers()
    train_loader._iterator = None  # type: ignore[attr-defined]
