"""Pixels → model input: the deterministic eval transform a bundle records, and train-time augmentation.

Eval (and train without augmentation) follows :class:`~edgekd.bundle.Preprocessing` exactly: uint8
pixels → float32 → resize (bilinear, half-pixel centres, no antialiasing: ``torchvision.transforms.v2``
on float tensors, i.e. ``F.interpolate(..., align_corners=False, antialias=False)``) → centre crop →
``x * scale`` → ``(x - mean) / std``. Nothing is rounded to 8 bits on the way, so the Android core and
the device runner, which compute the same steps in double precision, agree to float rounding.

Augmentation (:class:`Augment`, train split only) replaces the resize + crop by torchvision's
``RandomResizedCrop`` (on the uint8 pixels) when ``crop`` is set, then mirrors (``flip``) and shifts by up
to ``shift`` pixels with a replicated border. Its randomness is drawn from a generator seeded per item
(:func:`item_seed` of the run's seed, the epoch and the index): the same run gives the same images
whatever the number of workers or processes, and a resumed run continues exactly.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from edgekd.bundle import Preprocessing
from edgekd.errors import ConfigError

STAGE = "data/augment"
AUGMENT_KINDS = ("crop", "flip", "shift")


@dataclass(frozen=True)
class Augment:
    """Random train-time transforms. ``crop``: RandomResizedCrop with ``crop_scale``/``crop_ratio``;
    ``flip``: horizontal mirror with probability 1/2; ``shift``: translate by up to that many pixels."""

    crop: bool = False
    flip: bool = False
    shift: int = 0
    crop_scale: tuple[float, float] = (0.25, 1.0)  # lighter than ImageNet's 0.08: short runs, small images
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)

    @property
    def active(self) -> bool:
        return self.crop or self.flip or self.shift > 0

    @property
    def spec(self) -> str:
        parts = [k for k in ("crop", "flip") if getattr(self, k)] + ([f"shift:{self.shift}"] if self.shift else [])
        return "+".join(parts) or "none"


def parse_augment(spec: str | Augment | None, *, default: str, mirror_safe: bool, source: str = "") -> Augment:
    """``"crop+flip"``, ``"shift:2"``, ``"none"``, ``"auto"``/None (the data set's ``default``) → :class:`Augment`.

    The default never mirrors a data set where a mirror changes the label (``mirror_safe=False``: digits);
    asking for ``flip`` there explicitly is an error that says why.
    """
    if isinstance(spec, Augment):
        return spec
    text = (spec or "auto").strip().lower()
    explicit = text not in ("auto", "")
    if not explicit:
        text = default
    out: dict[str, object] = {}
    for token in (t.strip() for t in text.split("+")):
        if token in ("none", ""):
            continue
        name, _, arg = token.partition(":")
        if name not in AUGMENT_KINDS:
            raise ConfigError(f"unknown augmentation {token!r} in {spec!r}; known: {', '.join(AUGMENT_KINDS)}, none",
                              stage=STAGE, hint="e.g. augment='crop+flip', 'shift:2' or 'none'")
        if name == "shift":
            try:
                out["shift"] = int(arg or 2)
            except ValueError:
                raise ConfigError(f"shift:{arg} is not a whole number of pixels", stage=STAGE,
                                  hint="e.g. 'shift:2'") from None
            if int(out["shift"]) < 0:  # type: ignore[call-overload]
                raise ConfigError(f"augmentation shift must be ≥ 0 pixels, got {arg}", stage=STAGE, hint="e.g. 'shift:2'")
        else:
            out[name] = True
    if out.get("flip") and not mirror_safe:
        if explicit:
            raise ConfigError(f"augment={spec!r} mirrors images, which changes the label of {source or 'this data set'} "
                              "(a mirrored digit is another digit or none)", stage=STAGE,
                              hint="drop 'flip', e.g. augment='shift:2'")
        out.pop("flip")
    return Augment(**out)  # type: ignore[arg-type]


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of item ``index``'s augmentation in ``epoch`` of a run seeded ``seed`` (63-bit)."""
    return ((seed * 1_000_003 + epoch) * 6_364_136_223_846_793_005 + index * 1_442_695_040_888_963_407) % (1 << 63)


def _geometry(x: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """Resize + crop of float (…, C, H, W) pixels as ``pre`` says (the eval geometry)."""
    from torchvision.transforms.v2 import functional as TF

    h, w = x.shape[-2:]
    rh, rw = pre.resized(h, w)
    if (rh, rw) != (h, w):
        x = TF.resize(x, [rh, rw], interpolation=TF.InterpolationMode.BILINEAR, antialias=False)
    top, left = pre.crop_box(rh, rw)
    th, tw = pre.size
    if (top, left, th, tw) != (0, 0, rh, rw):
        x = x[..., top:top + th, left:left + tw]
    return x


@functools.lru_cache(maxsize=32)
def _stats(mean: tuple[float, ...], std: tuple[float, ...], c: int) -> tuple[torch.Tensor, torch.Tensor]:
    m = torch.tensor(mean if len(mean) == c else mean * c, dtype=torch.float32)[:c, None, None]
    s = torch.tensor(std if len(std) == c else std * c, dtype=torch.float32)[:c, None, None]
    return m, s


def normalize(x: torch.Tensor, pre: Preprocessing, store_scale: float | None = None) -> torch.Tensor:
    """``(x * scale - mean) / std`` per channel, in float32 (``store_scale``: the scale of ``x``'s values)."""
    scale = pre.scale if store_scale is None else store_scale
    mean, std = _stats(tuple(pre.mean), tuple(pre.std), x.shape[-3])
    x = x.to(torch.float32)
    if scale != 1.0:
        x = x * torch.tensor(scale, dtype=torch.float32)
    out = (x - mean) / std
    # Broadcasting may give a 1-channel batch the strides (H*W, 1, W, 1): "contiguous" to torch, but an
    # exporter reading the dim order from the strides takes it for channels-last. Give it the plain strides.
    return out.clone(memory_format=torch.contiguous_format) if out.stride() != _plain(out.shape) else out


def _plain(shape: torch.Size) -> tuple[int, ...]:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= n
    return tuple(reversed(strides))


def eval_transform(pixels: torch.Tensor, pre: Preprocessing, store_scale: float | None = None) -> torch.Tensor:
    """Pixels (…, C, H, W; uint8 or float) → the normalised model input, deterministic (see the module docstring)."""
    return normalize(_geometry(pixels.to(torch.float32), pre), pre, store_scale)


def _shift(x: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
    h, w = x.shape[-2:]
    dy, dx = (int(v) for v in torch.randint(0, 2 * s + 1, (2,), generator=g))
    return F.pad(x[None].float(), (s, s, s, s), mode="replicate")[0, ..., dy:dy + h, dx:dx + w].to(x.dtype)


def train_transform(pixels: torch.Tensor, pre: Preprocessing, aug: Augment, seed: int | None,
                    store_scale: float | None = None) -> torch.Tensor:
    """One (C, H, W) item with random augmentation ``aug``; ``seed`` None draws from torch's global generator."""
    if not aug.active:
        return eval_transform(pixels, pre, store_scale)
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    if aug.crop:
        from torchvision.transforms.v2 import functional as TF

        top, left, h, w = _rrc_params(pixels, aug, g)
        x = TF.resized_crop(pixels, top, left, h, w, list(pre.size), antialias=False)
    else:
        x = _geometry(pixels.to(torch.float32), pre)
    if aug.flip and bool(torch.randint(0, 2, (), generator=g)):
        x = x.flip(-1)
    if aug.shift:
        x = _shift(x, aug.shift, g if g is not None else torch.default_generator)
    return normalize(x, pre, store_scale)


@functools.lru_cache(maxsize=8)
def _rrc(scale: tuple[float, float], ratio: tuple[float, float]) -> Any:
    from torchvision.transforms.v2 import RandomResizedCrop

    return RandomResizedCrop(size=1, scale=scale, ratio=ratio)


def _rrc_params(pixels: torch.Tensor, aug: Augment, g: torch.Generator | None) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (torchvision's ``make_params``), drawn from ``g``: torchvision draws from the
    global CPU generator, so it is reseeded from ``g`` inside ``fork_rng`` (``default_generator.manual_seed``:
    ``torch.manual_seed`` would also queue a seed for every lazy accelerator, which costs milliseconds)."""
    rrc = _rrc(tuple(aug.crop_scale), tuple(aug.crop_ratio))
    if g is None:
        p = rrc.make_params([pixels])
    else:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(torch.randint(0, 1 << 62, (), generator=g)))
            p = rrc.make_params([pixels])
    return p["top"], p["left"], p["height"], p["width"]


def with_stats(pre: Preprocessing, mean: tuple[float, ...], std: tuple[float, ...]) -> Preprocessing:
    """``pre`` with its mean and std replaced (std floored at 1e-6)."""
    return dataclasses.replace(pre, mean=tuple(float(m) for m in mean), std=tuple(max(float(s), 1e-6) for s in std))
