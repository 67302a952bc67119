"""Classification accuracy and cross-entropy of a model on a labelled data set (what val/test report)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from edgekd.data.images import drop_bad, loader, report_bad, say


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 256, device: str = "cpu", *,
             keep_mode: bool = False, num_workers: int | None = None) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``dataset`` (eval mode, then restored).

    ``keep_mode=True`` runs it in the mode it is in: for a model whose mode is switched another way
    (a PT2E graph: :func:`edgekd.convert.qat.set_mode`). Image files are decoded by ``num_workers``
    ``DataLoader`` workers (default: :func:`~edgekd.data.images.default_num_workers`); images that cannot be
    decoded are left out and named.
    """
    was_training = model.training
    if not keep_mode:
        model.eval()
    correct, loss_sum, n = 0, 0.0, 0
    bad: list[int] = []
    for start, batch in zip(range(0, len(dataset), batch_size),  # type: ignore[arg-type]
                            loader(dataset, batch_size, num_workers=num_workers, device=device), strict=True):
        (xb, yb), dropped = drop_bad(list(batch[:2]))
        if dropped is not None:
            bad += [start + int(p) for p in dropped]
        if not len(yb):
            continue
        x, y = xb.to(device), yb.to(device)
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    if not keep_mode:
        model.train(was_training)
    if bad:
        say(report_bad(dataset, bad, "evaluate"))
    return {"acc": correct / max(n, 1), "loss": loss_sum / max(n, 1)}
