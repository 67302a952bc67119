"""Image files to 8-bit pixels in the data set's channel order: what every image source decodes with.

``decode(path, "RGB")`` returns a uint8 tensor (C, H, W). JPEG, PNG, WebP and GIF go through
``torchvision.io.decode_image`` (libjpeg-turbo, libpng, libwebp); BMP and anything else Pillow reads
through Pillow. Whatever the file holds becomes the declared ``channel_order``
(:class:`~edgekd.bundle.Preprocessing` states the rules, which the Android core and the device runner
follow too): a palette is expanded, alpha is dropped, 16-bit values become ``(v + 128) // 257``, RGB →
GRAY is the integer BT.601 luma ``(299 R + 587 G + 114 B + 500) // 1000``, GRAY → RGB repeats the plane.

A file that cannot be decoded raises :class:`BadImage` naming the file and the reason; the data sets
turn that into a skipped item counted at the end of the epoch (:mod:`edgekd.data.images`).
:func:`sniff` tells an image from anything else by its first bytes, before any decoding.
"""

from __future__ import annotations

import functools
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.errors import DataError

CHANNEL_ORDERS = ("RGB", "GRAY", "BGR")
EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm")
_MAGIC = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
          (b"BM", "bmp"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"), (b"P5", "pnm"), (b"P6", "pnm"))
_TORCHVISION = ("jpeg", "png", "webp", "gif")


class BadImage(DataError):
    """One file could not be read or decoded; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}", stage="data/decode",
                         hint="replace or delete the file; edgekd skips it and counts it meanwhile")


def sniff(head: bytes) -> str | None:
    """The image format the first bytes of a file announce (``"jpeg"``, ``"png"``, …), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), None)


def check_channel_order(order: str) -> str:
    """``order`` upper-cased, or a :class:`DataError` listing the known ones."""
    up = order.upper()
    if up not in CHANNEL_ORDERS:
        raise DataError(f"channel order {order!r} is not one of {', '.join(CHANNEL_ORDERS)}", stage="data",
                        hint="pass channels='RGB' (colour) or 'GRAY'")
    return up


def to_channels(pixels: torch.Tensor, order: str) -> torch.Tensor:
    """uint8 (1|3, H, W) → the ``order``'s channels (see the module docstring); integer arithmetic only."""
    c = pixels.shape[0]
    if order == "GRAY":
        if c == 1:
            return pixels
        p = pixels.to(torch.int32)
        return ((299 * p[0] + 587 * p[1] + 114 * p[2] + 500) // 1000).to(torch.uint8)[None]
    rgb = pixels.expand(3, -1, -1).contiguous() if c == 1 else pixels
    return rgb.flip(0) if order == "BGR" else rgb


def _to_uint8(t: torch.Tensor) -> torch.Tensor:
    if t.dtype == torch.uint8:
        return t
    if t.dtype == torch.uint16:  # 16-bit PNG
        return ((t.to(torch.int32) + 128) // 257).to(torch.uint8)
    raise ValueError(f"{t.dtype} pixels")


@functools.cache
def _tv_io() -> Any:
    """``torchvision.io``, imported once per process (0.29 warns that TorchCodec will take over image
    decoding; it still decodes here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*image decoding and encoding capabilities", category=DeprecationWarning)
        import torchvision.io

    return torchvision.io


def _torchvision(data: bytes) -> torch.Tensor:
    io_ = _tv_io()
    ImageReadMode, decode_image = io_.ImageReadMode, io_.decode_image  # noqa: N806
    buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return _to_uint8(decode_image(buf, mode=ImageReadMode.RGB))  # palette expanded, alpha dropped, gray repeated


def preload() -> None:
    """Import the decoders and transforms now (before ``DataLoader`` workers fork, so each need not)."""
    _tv_io()
    import torchvision.transforms.v2  # noqa: F401


def _pillow(data: bytes) -> torch.Tensor:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return pil_pixels(im)


def pil_pixels(im: Any) -> torch.Tensor:
    """A loaded PIL image as uint8 (1|3, H, W) by the module docstring's rules (16-bit: ``(v + 128) // 257``,
    not PIL's own ``convert("L")``, which clips every value above 255 to white)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.int64)
        a = np.clip((a + 128) // 257, 0, 255).astype(np.uint8) if im.mode.startswith("I;16") else \
            np.clip(a, 0, 255).astype(np.uint8)
        return torch.from_numpy(a)[None]
    if im.mode in ("L", "1"):
        return torch.from_numpy(np.asarray(im.convert("L"), dtype=np.uint8).copy())[None]
    rgb = im.convert("RGBA").convert("RGB") if im.mode in ("P", "PA", "LA") else im.convert("RGB")
    return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def decode(path: str | Path, channel_order: str = "RGB") -> torch.Tensor:
    """The image at ``path`` as uint8 (C, H, W) in ``channel_order``; :class:`BadImage` when it cannot be."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise BadImage(p, f"cannot be read ({e.strerror or e})") from None
    if not data:
        raise BadImage(p, "is empty (0 bytes)")
    fmt = sniff(data[:16])
    try:
        pixels = _torchvision(data) if fmt in _TORCHVISION else _pillow(data)
    except Exception as e:  # each decoder raises its own types (RuntimeError, OSError, SyntaxError, ...)
        what = f"{fmt.upper()} file" if fmt else "file that is not an image"
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        if ".cpp:" in reason:  # torchvision: "decode_jpeg, /path/decode_jpeg.cpp:171, Image is incomplete ..."
            reason = reason.rsplit(", ", 1)[-1]
        if "truncated" in reason.lower() or "incomplete" in reason.lower():
            reason = "truncated"
        raise BadImage(p, f"is a {what} that cannot be decoded ({reason})") from None
    return to_channels(pixels, channel_order)
