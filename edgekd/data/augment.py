"""Label-preserving random augmentation for training a teacher: shifts and mirror flips.

Why it is here: a teacher trained without augmentation memorises its training images (the
15-epoch ``resnet14`` of ``benchmarks/kd_methods.py`` is 99.85 % right on them, 92.0 % on test),
so on those images, the only ones offline KD shows the student, its softmax is the label and
carries no "dark knowledge" (Hinton et al., 2015, trained their MNIST teacher on jittered
images for this reason). A teacher trained on :class:`Augmented` images stays uncertain where
the task is uncertain, on its own training set too.

The student's offline KD keeps the plain tensors (so the teacher cache stays exact); this
wrapper is for the teacher's own training, or for online/live-teacher runs (``cache_teacher=False``).
Mirroring is off by default for data sets where a mirror changes the label (the digit sets). The
per-item-seeded augmentation of a split (``load(..., augment="shift:2")``,
:class:`~edgekd.data.transforms.Augment`) does the same inside ``DataLoader`` workers.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from edgekd.data.core import DataSplits
from edgekd.data.images import unwrap
from edgekd.errors import ConfigError


class Augmented(Dataset):
    """Items of ``dataset`` randomly shifted by up to ``shift`` pixels and, if ``flip``, mirrored.

    Shifts pad by replicating the border (the background of centred images), then crop back to
    the original size. Randomness comes from torch's global generator, so a seeded run repeats.
    """

    def __init__(self, dataset: Dataset, shift: int = 2, flip: bool = True) -> None:
        if shift < 0:
            raise ConfigError(f"augmentation shift must be ≥ 0 pixels, got {shift}", stage="data",
                              hint="pass shift=2 (the usual for 28×28 images) or 0 for none")
        self.dataset, self.shift, self.flip = dataset, int(shift), bool(flip)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    @property
    def targets(self) -> torch.Tensor:
        from edgekd.data.core import targets

        return targets(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.dataset[i]
        s = self.shift
        if s:
            h, w = x.shape[-2:]
            dy, dx = (int(v) for v in torch.randint(0, 2 * s + 1, (2,)))
            x = F.pad(x[None], (s, s, s, s), mode="replicate")[0, ..., dy:dy + h, dx:dx + w]
        if self.flip and bool(torch.randint(0, 2, ()).item()):
            x = x.flip(-1)
        return x, y


def augmented(data: DataSplits, shift: int = 2, flip: bool | None = None) -> DataSplits:
    """``data`` with its train split wrapped in :class:`Augmented` (val and test untouched); ``flip`` None mirrors
    only where that keeps the label (not the digit sets)."""
    if flip is None:
        flip = bool(getattr(unwrap(data.train), "mirror_safe", True))
    return dataclasses.replace(data, train=Augmented(data.train, shift, flip))  # type: ignore[arg-type]
