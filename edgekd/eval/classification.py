"""Classification accuracy and cross-entropy of a model on a labelled data set (what val/test report)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 256, device: str = "cpu", *,
             keep_mode: bool = False) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``dataset`` (eval mode, then restored).

    ``keep_mode=True`` runs it in the mode it is in: for a model whose mode is switched another way
    (a PT2E graph: :func:`edgekd.convert.qat.set_mode`).
    """
    was_training = model.training
    if not keep_mode:
        model.eval()
    correct, loss_sum, n = 0, 0.0, 0
    for batch in DataLoader(dataset, batch_size=batch_size):
        x, y = batch[0].to(device), batch[1].to(device)
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    if not keep_mode:
        model.train(was_training)
    return {"acc": correct / max(n, 1), "loss": loss_sum / max(n, 1)}
