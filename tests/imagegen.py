"""Tiny image folders written by the tests: learnable classes in every file format and pixel mode edgekd reads.

Class ``k`` of ``n`` is a bright band at a class-specific place (rows for even ``k``, columns for odd) on a noisy
background, so a tiny CNN separates the classes in a few steps. Files rotate through JPEG, PNG, WebP and BMP
and through the modes RGB, grey, RGBA, palette and 16-bit grey.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

KINDS = (("jpg", "RGB"), ("png", "RGB"), ("png", "L"), ("png", "RGBA"), ("png", "P"), ("png", "I;16"),
         ("webp", "RGB"), ("bmp", "RGB"), ("jpg", "L"))


def pattern(k: int, n_classes: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """An (h, w, 3) uint8 picture of class ``k``."""
    a = rng.integers(0, 90, (h, w, 3)).astype(np.int64)
    band = k // 2
    if k % 2 == 0:
        lo = band * h // ((n_classes + 1) // 2)
        a[lo:lo + max(2, h // 4), :, :] += 150
    else:
        lo = band * w // ((n_classes + 1) // 2)
        a[:, lo:lo + max(2, w // 4), :] += 150
    a[..., k % 3] += 10  # a faint colour cast per class
    return np.clip(a, 0, 255).astype(np.uint8)


def save(path: Path, rgb: np.ndarray, mode: str) -> Path:
    """Write ``rgb`` (h, w, 3 uint8) as ``path`` in PIL ``mode`` (the format follows the suffix)."""
    if mode == "I;16":
        im = Image.fromarray((rgb[:, :, 0].astype(np.uint16) * 257 + 3).astype(np.uint16))
    elif mode == "RGBA":
        im = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]), "RGBA")
    else:
        im = Image.fromarray(rgb, "RGB").convert(mode)
    opts = {"quality": 92} if path.suffix == ".jpg" else {"lossless": True} if path.suffix == ".webp" else {}
    im.save(path, **opts)
    return path


def write_folder(root: Path, n_classes: int = 3, per_class: int = 40, size: tuple[int, int] = (12, 16),
                 seed: int = 0, kinds: tuple[tuple[str, str], ...] = KINDS, names: list[str] | None = None) -> Path:
    """``root/<class>/<i>.<ext>``: ``per_class`` images of each class, formats and modes in turn."""
    rng = np.random.default_rng(seed)
    for k in range(n_classes):
        folder = root / (names[k] if names else f"class_{k}")
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            ext, mode = kinds[(i + k) % len(kinds)]
            h, w = size if i % 5 else (size[0] + 3, size[1] - 2)  # a few of another size and aspect
            save(folder / f"{i:03d}.{ext}", pattern(k, n_classes, h, w, rng), mode)
    return root


def write_csv(path: Path, folder: Path, rows_extra: list[list[str]] | None = None) -> Path:
    """A CSV of ``path,label`` rows for every file of ``folder`` (relative paths), plus ``rows_extra``."""
    rows = [["path", "label"]]
    for f in sorted(folder.rglob("*.*")):
        rows.append([str(f.relative_to(path.parent)), f.parent.name])
    rows += rows_extra or []
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path
