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

:data:`VIEWS` are augmentations of a whole *batch* on the tensor path, for losses that compare the
student and the teacher on augmented copies (MLKD's strong view, ``DistillLoss.views``); the teacher
then runs live on them (its cache is exact only for the plain batch).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from edgekd.data.core import DataSplits
from edgekd.data.images import unwrap
from edgekd.errors import ConfigError
from edgekd.registry import Registry


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


# -- augmented views of a batch, on the tensor path (MLKD's strong view) --------------------------------------
View = Callable[[torch.Tensor], torch.Tensor]
VIEWS: Registry[View] = Registry("view")
"""Batch augmentations a distillation loss can ask for by name (``DistillLoss.views``): ``fn(x) -> x'``
on a normalised N×C×H×W batch, random from torch's global generator (so a seeded run repeats and a
resumed one continues exactly). They run on tensors, in the training process, on the batch's device."""


def _range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Black and white of a normalised batch: its smallest and largest value (pixel 0 and 1 of the data)."""
    return x.amin(), x.amax()


def _affine(x: torch.Tensor, theta: torch.Tensor, black: torch.Tensor) -> torch.Tensor:
    """Warp each image by its 2×3 ``theta`` (normalised coordinates), filling with black as PIL does."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x - black, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + black


def _geometric(kind: str, v: torch.Tensor) -> torch.Tensor:
    """Affine matrices (N, 2, 3) for ``kind`` at magnitudes ``v`` in [-1, 1]: rotate ±30°, shear ±0.3,
    translate ±30 % of the side (RandAugment's ranges, as MLKD's strong augmentation)."""
    theta = torch.zeros(len(v), 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    if kind == "rotate":
        a = v * torch.pi / 6
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
    elif kind == "shear_x":
        theta[:, 0, 1] = 0.3 * v
    elif kind == "shear_y":
        theta[:, 1, 0] = 0.3 * v
    elif kind == "translate_x":
        theta[:, 0, 2] = 0.6 * v  # normalised coordinates span 2: 30 % of the side
    else:
        theta[:, 1, 2] = 0.6 * v
    return theta


def _photometric(kind: str, x: torch.Tensor, v: torch.Tensor, black: torch.Tensor, white: torch.Tensor
                 ) -> torch.Tensor:
    """PIL's enhance/ImageOps operations on normalised images; ``v`` in [0, 1] per image."""
    f = (0.05 + 0.9 * v).view(-1, 1, 1, 1).to(x.dtype)  # RandAugment's enhance factors: 0.05 .. 0.95
    if kind == "brightness":
        return black + f * (x - black)
    if kind == "contrast":
        mean = x.mean((1, 2, 3), keepdim=True)
        return mean + f * (x - mean)
    if kind == "sharpness":
        k = torch.ones(1, 1, 3, 3, dtype=x.dtype, device=x.device)
        k[0, 0, 1, 1] = 5.0
        c = x.shape[1]
        smooth = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), (k / 13).expand(c, 1, 3, 3), groups=c)
        return smooth + f * (x - smooth)
    if kind == "color":  # toward grey: a no-op on one-channel images
        return x.mean(1, keepdim=True) + f * (x - x.mean(1, keepdim=True))
    if kind == "autocontrast":
        lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
        return black + (x - lo) / (hi - lo).clamp_min(1e-6) * (white - black)
    if kind == "solarize":  # invert the values above a threshold in [0, 1] of the range
        th = (black + v.view(-1, 1, 1, 1).to(x.dtype) * (white - black))
        return torch.where(x >= th, white + black - x, x)
    # posterize: 4..8 bits over the range
    levels = (2 ** (4 + (4 * v).round())).view(-1, 1, 1, 1).to(x.dtype)
    span = (white - black).clamp_min(1e-6)
    return black + torch.floor((x - black) / span * (levels - 1) + 0.5) / (levels - 1) * span


GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
PHOTOMETRIC = ("identity", "autocontrast", "brightness", "color", "contrast", "posterize", "sharpness", "solarize")


@VIEWS.register("strong")
def strong(x: torch.Tensor, n_ops: int = 2, max_cutout: float = 0.5) -> torch.Tensor:
    """RandAugment (``n_ops`` random operations at random magnitudes) plus a random cutout, as MLKD's
    strong view (FixMatch's RandAugment: rotate, shear, translate, autocontrast, brightness, color,
    contrast, posterize, sharpness, solarize, identity; equalize left out; a cutout of up to
    ``max_cutout`` of the side filled with mid-grey). No mirror flip: digits and letters are not
    mirror-symmetric (give the loader flipped images, the *weak* view, where they are)."""
    x = x.clone()
    n, _, h, w = x.shape
    black, white = _range(x)
    ops = GEOMETRIC + PHOTOMETRIC
    for _ in range(n_ops):
        pick = torch.randint(len(ops), (n,))
        v = torch.rand(n)
        for k, kind in enumerate(ops):
            sel = (pick == k).nonzero().flatten()
            if len(sel) == 0 or kind == "identity":
                continue
            if kind in GEOMETRIC:
                x[sel] = _affine(x[sel], _geometric(kind, 2 * v[sel] - 1).to(x.device), black)
            else:
                x[sel] = _photometric(kind, x[sel], v[sel].to(x.device), black, white)
    side = (torch.rand(n) * max_cutout * w).long()
    cy, cx = (torch.rand(n) * h).long(), (torch.rand(n) * w).long()
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    y0, x0 = (cy - side // 2).clamp_min(0).view(n, 1, 1), (cx - side // 2).clamp_min(0).view(n, 1, 1)
    hole = (rows >= y0) & (rows < y0 + side.view(n, 1, 1)) & (cols >= x0) & (cols < x0 + side.view(n, 1, 1))
    return torch.where(hole[:, None].to(x.device), (black + white) / 2, x)
