"""Image files as a data set: ``load("folder:PATH")``, ``load("csv:FILE")``, or any map-style dataset.

``folder:PATH`` follows torchvision's ``ImageFolder`` layout, one sub-folder per class (files found
recursively, sorted)::

    PATH/cat/001.jpg  PATH/dog/xyz.png ...                  → a seeded stratified train/val/test split
    PATH/train/cat/...  PATH/val/...  PATH/test/...          → those splits (val/test carved from train if absent)

``csv:FILE`` lists ``path,label`` rows (optionally a header and a third ``split`` column: train/val/test);
paths are relative to the CSV's folder. Class names are the folder names or the labels, sorted.

Nothing is decoded while loading except a sample of the train split for the normalisation statistics
(unless ``mean``/``std`` are given). Every candidate file is checked cheaply first — its name, its size,
whether it can be opened, its first bytes — and a file that fails (0 bytes, not an image, unreadable, a
CSV row naming a missing file) is skipped, named and counted in one message. Structural problems stop
before training: a missing folder, a class folder with no images, a single class, an unlistable folder.
A file that passes these checks but does not decode (a truncated JPEG) is skipped when it is met and
reported with the count at the end of the epoch (:mod:`edgekd.data.images`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from edgekd.bundle import Preprocessing
from edgekd.data.core import (
    DataSplits,
    LoadOptions,
    _limit,
    _stratified_split,
    split_indices,
    splits_of,
    targets,
)
from edgekd.data.decode import EXTENSIONS, check_channel_order, sniff
from edgekd.data.images import (
    DatasetImages,
    FileImages,
    ImageDataset,
    as_pixels,
    drop_bad,
    loader,
    report_bad,
    say,
    spread,
)
from edgekd.data.transforms import parse_augment, with_stats
from edgekd.errors import ConfigError, DataError

DEFAULT_SIZE = 224
SPLITS = ("train", "val", "test")


@dataclass
class Scan:
    """What a folder or CSV holds: usable files with their labels (and source split), and what was skipped."""

    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> files

    def skip(self, reason: str, path: str | Path) -> None:
        self.skipped.setdefault(reason, []).append(str(path))

    def summary(self, where: str) -> str | None:
        n = sum(len(v) for v in self.skipped.values())
        if not n:
            return None
        parts = [f"{len(v)} {reason} ({', '.join(v[:3])}{', …' if len(v) > 3 else ''})"
                 for reason, v in self.skipped.items()]
        return f"{where}: skipped {n} of {n + len(self.paths)} files: " + "; ".join(parts)


def check_file(path: Path, scan: Scan) -> bool:
    """Whether ``path`` may be an image (size, permission, first bytes); a skip is recorded with its reason."""
    try:
        if path.stat().st_size == 0:
            scan.skip("empty (0 bytes)", path)
            return False
        with open(path, "rb") as f:
            head = f.read(16)
    except PermissionError:
        scan.skip("unreadable (permission denied)", path)
        return False
    except OSError as e:
        scan.skip(f"unreadable ({e.strerror or e})", path)
        return False
    if sniff(head) is None:
        scan.skip("not an image (by content)", path)
        return False
    return True


def _listdir(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except PermissionError:
        raise DataError(f"cannot list {folder} (permission denied)", stage="data/folder",
                        hint=f"make it readable: chmod -R u+rX {folder}") from None


def _files(folder: Path) -> list[Path]:
    out: list[Path] = []
    for e in _listdir(folder):
        p = Path(e.path)
        out += _files(p) if e.is_dir(follow_symlinks=True) else [p]
    return out


def scan_folder(root: Path, classes: Sequence[str] | None = None, split: str = "", scan: Scan | None = None) -> Scan:
    """Every usable file under ``root``'s class sub-folders (``classes``: the class list to map names onto)."""
    scan = scan or Scan()
    dirs = [e for e in _listdir(root) if e.is_dir(follow_symlinks=True)]
    names = [e.name for e in dirs]
    if classes is None:
        scan.classes = names
    else:
        extra = sorted(set(names) - set(classes))
        if extra:
            raise DataError(f"{root} has class folder(s) {', '.join(extra)} that the train split lacks",
                            stage="data/folder", hint="use the same class folders in train/, val/ and test/")
    index = {c: i for i, c in enumerate(scan.classes)}
    stray = [e.path for e in _listdir(root) if not e.is_dir(follow_symlinks=True)]
    for p in stray:
        scan.skip("outside any class folder", p)
    empty = []
    for e in dirs:
        before = len(scan.paths)
        for p in _files(Path(e.path)):
            if p.suffix.lower() not in EXTENSIONS:
                scan.skip("not an image (by name)", p)
            elif check_file(p, scan):
                scan.paths.append(str(p))
                scan.labels.append(index[e.name])
                scan.splits.append(split)
        if len(scan.paths) == before:
            empty.append(e.path)
    if empty:
        raise DataError(f"class folder(s) with no usable image: {', '.join(empty)}", stage="data/folder",
                        hint="add images to them or remove them (each sub-folder is a class; "
                             f"images are {', '.join(EXTENSIONS)})")
    return scan


def scan_tree(root: Path) -> Scan:
    """A ``folder:`` source: class folders at the top, or ``train/`` (+ ``val/``, ``test/``) holding them."""
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist" if not root.exists() else f"{root} is not a folder",
                        stage="data/folder", hint="pass folder:PATH with one sub-folder of images per class")
    top = {e.name for e in _listdir(root) if e.is_dir(follow_symlinks=True)}
    if "train" in top:
        scan = scan_folder(root / "train", split="train")
        for s in ("val", "test"):
            if s in top:
                scan_folder(root / s, scan.classes, s, scan)
    elif top & {"val", "test"}:
        raise DataError(f"{root} has {'/'.join(sorted(top & {'val', 'test'}))}/ but no train/", stage="data/folder",
                        hint="add train/ (one sub-folder per class), or put the class folders at the top")
    else:
        scan = scan_folder(root)
    return scan


def scan_csv(path: Path) -> Scan:
    """A ``csv:`` source: ``path,label[,split]`` rows, paths relative to the CSV's folder."""
    if not path.is_file():
        raise DataError(f"CSV file {path} does not exist", stage="data/csv",
                        hint="pass csv:FILE with one `path,label` row per image")
    try:
        rows = [r for r in csv.reader(path.read_text(encoding="utf-8").splitlines()) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read {path} as CSV ({e})", stage="data/csv", hint="write `path,label` rows") from None
    if rows and rows[0][0].strip().lower() in ("path", "file", "filename", "image"):
        rows = rows[1:]
    bad = [i for i, r in enumerate(rows, 1) if len(r) < 2 or (len(r) > 2 and r[2].strip() not in ("", *SPLITS))]
    if bad:
        raise DataError(f"{path}: row {bad[0]} is {rows[bad[0] - 1]}, not `path,label[,train|val|test]`",
                        stage="data/csv", hint="one image per row: its path, its class, optionally its split")
    names = sorted({r[1].strip() for r in rows}, key=lambda v: (0, int(v), "") if v.lstrip("-").isdigit() else (1, 0, v))
    scan = Scan(classes=names)
    index = {c: i for i, c in enumerate(names)}
    for n, r in enumerate(rows, 1):
        p = Path(r[0].strip())
        p = p if p.is_absolute() else path.parent / p
        if not p.exists():
            scan.skip("missing (named by a row but not on disk)", f"row {n}: {p}")
        elif check_file(p, scan):
            scan.paths.append(str(p))
            scan.labels.append(index[r[1].strip()])
            scan.splits.append(r[2].strip() if len(r) > 2 else "")
    return scan


def _structure(scan: Scan, where: str) -> None:
    used = sorted(set(scan.labels))
    if not scan.paths:
        raise DataError(f"{where} holds no usable image", stage="data", hint=scan.summary(where) or
                        "add images (one sub-folder per class)")
    if len(scan.classes) < 2:
        raise DataError(f"{where} has a single class ({scan.classes[0] if scan.classes else '-'}); "
                        "a classifier needs at least two", stage="data",
                        hint="add a sub-folder (or label) per class")
    missing = [c for i, c in enumerate(scan.classes) if i not in used]
    if missing:
        raise DataError(f"{where}: class(es) {', '.join(missing)} have no usable image", stage="data",
                        hint="add images for them or remove them")


def load_files(kind: str, spec: str, opts: LoadOptions) -> DataSplits:
    """``load("folder:PATH")`` / ``load("csv:FILE")`` (see the module docstring)."""
    where = f"{kind}:{spec}"
    if not spec:
        raise ConfigError(f"{kind}: needs a path, e.g. {kind}:photos/", stage="data", hint=f"pass {kind}:PATH")
    root = Path(spec).expanduser()
    scan = scan_tree(root) if kind == "folder" else scan_csv(root)
    _structure(scan, where)
    note = scan.summary(where)
    if note:
        say(note)
    y = np.asarray(scan.labels, dtype=np.int64)
    split = np.asarray(scan.splits)
    rng = np.random.default_rng(opts.seed)
    parts = {s: np.flatnonzero(split == s) for s in SPLITS}
    if not parts["train"].size:  # no explicit splits: one pool
        parts = {"": np.arange(len(y))}
    for s, pos in parts.items():
        parts[s] = pos[_limit(y[pos], opts.limit, rng)]
    if "" in parts:
        pool = parts[""]
        tr, va, te = split_indices(y[pool], False, opts, rng)
        train, val, test = pool[tr], pool[va], pool[te]  # type: ignore[index]
    else:
        train, val, test = parts["train"], parts["val"], parts["test"]
        missing = [s for s in ("test", "val") if not parts[s].size]
        if missing:  # carve what the folder lacks out of train/
            fractions = [opts.test_fraction if s == "test" else opts.val_fraction for s in missing]
            *cuts, rest = _stratified_split(y[train], fractions, rng)
            carved = dict(zip(missing, cuts, strict=True))
            test = train[carved["test"]] if "test" in carved else test
            val = train[carved["val"]] if "val" in carved else val
            train = train[rest]
    size = opts.image_size or (DEFAULT_SIZE, DEFAULT_SIZE)
    pre = Preprocessing(size=size, mean=(0.0,), std=(1.0,), channel_order=check_channel_order(opts.channels or "RGB"),
                        resize="shorter_side", resize_to=opts.resize_to or max(size), crop="center")
    c = 1 if pre.channel_order == "GRAY" else 3
    pre = with_stats(pre, (0.0,) * c, (1.0,) * c)
    files = FileImages(scan.paths, torch.from_numpy(y), scan.classes, pre, name=where)
    tr_set = files.subset(train)
    if opts.mean is None or opts.std is None:
        mean, std = channel_stats(tr_set, opts.stats_samples, opts.seed, opts.num_workers)
        pre = with_stats(pre, opts.mean or mean, opts.std or std)
    else:
        pre = with_stats(pre, opts.mean, opts.std)
    aug = parse_augment(opts.augment, default="crop+flip", mirror_safe=True, source=where)
    files = files.replace(preprocessing=pre)
    return splits_of(where, files.subset(train).with_augment(aug), files.subset(val), files.subset(test),
                     [note] if note else [])


def channel_stats(dataset: ImageDataset, n: int, seed: int = 0, num_workers: int | None = None
                  ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (on the [0, 1] scale) of ``n`` images of ``dataset`` drawn across classes, after
    its eval resize and crop (``dataset``'s preprocessing must have mean 0 and std 1)."""
    pos = spread(dataset.targets.numpy(), n, seed)
    view = dataset.subset(pos).with_augment(None)
    c = dataset.shape[0]
    total, sq, count, bad = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0, []
    for start, (x, yb) in zip(range(0, len(view), 64), loader(view, 64, num_workers=num_workers), strict=True):
        (x, yb), dropped = drop_bad([x, yb])
        if dropped is not None:
            bad += [pos[start + int(p)] for p in dropped]
        x = x.to(torch.float64)
        total += x.sum(dim=(0, 2, 3))
        sq += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    if bad:
        say(report_bad(dataset, bad, f"{dataset.name} (normalisation sample)"))
    if not count:
        raise DataError(f"{dataset.name}: none of the {len(view)} sampled train images decodes", stage="data",
                        hint="check the files (e.g. open a few in an image viewer)")
    mean = total / count
    std = (sq / count - mean * mean).clamp_min(0).sqrt()
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


# -- any map-style dataset --------------------------------------------------------------------------------
def from_datasets(train: Dataset, val: Dataset | None = None, test: Dataset | None = None, *,
                  classes: Sequence[str] | None = None, image_size: int | Sequence[int] | None = None,
                  channels: str | None = None, augment: str | None = None, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None, preprocessing: Preprocessing | None = None, seed: int = 0,
                  val_fraction: float = 0.1, test_fraction: float = 0.2, deterministic: bool | None = None,
                  name: str = "dataset") -> DataSplits:
    """:class:`DataSplits` from map-style datasets of ``(image, label)`` (val/test carved from ``train`` by a seeded
    stratified split of indices when not given).

    An image that is a float tensor is the model input as it is (the dataset's own transform made it; pass
    ``preprocessing`` to record it in bundles, and ``deterministic=True`` when it has no randomness so a
    teacher cache is exact). A uint8 (C, H, W) tensor, an (H, W[, C]) array or a PIL image goes through
    edgekd's preprocessing like a decoded file (``image_size``, ``channels``, ``augment``, ``mean``/``std``).
    Labels come from ``dataset.targets`` when it has one, else from reading every item once.
    """
    from edgekd.data.core import _size

    sets = {"train": train, "val": val, "test": test}
    if len(train) == 0:  # type: ignore[arg-type]
        raise DataError("the train data set is empty", stage="data",
                        hint="pass a Dataset with at least one (image, label) item per class")
    ys = {k: _labels_of(d, k) for k, d in sets.items() if d is not None}
    n_classes = int(max(int(t.max()) for t in ys.values() if len(t))) + 1
    names = list(classes) if classes is not None else list(getattr(train, "classes", None) or range(n_classes))
    names = [str(c) for c in names]
    first = train[0][0]
    is_input = isinstance(first, torch.Tensor) and first.is_floating_point()
    if is_input:
        c, h, w = first.shape
        pre = preprocessing or Preprocessing(size=(int(h), int(w)), mean=(0.0,) * c, std=(1.0,) * c,
                                             channel_order="GRAY" if c == 1 else "RGB")
        det = bool(deterministic)
    else:
        order = check_channel_order(channels or ("GRAY" if _gray(first) else "RGB"))
        px = as_pixels(first, order)
        size = _size(image_size) or (int(px.shape[1]), int(px.shape[2]))
        k = 1 if order == "GRAY" else 3
        pre = preprocessing or Preprocessing(size=size, mean=(0.0,) * k, std=(1.0,) * k, channel_order=order,
                                             resize="shorter_side", resize_to=max(size), crop="center")
        det = True if deterministic is None else bool(deterministic)
    wrapped = {k: DatasetImages(d, ys[k], names, pre, deterministic=det, name=f"{name}.{k}")
               for k, d in sets.items() if d is not None}
    if not is_input and preprocessing is None:
        st = (mean, std) if mean is not None and std is not None else channel_stats(wrapped["train"], 512, seed, 0)
        pre = with_stats(pre, mean or st[0], std or st[1])
        wrapped = {k: d.replace(preprocessing=pre) for k, d in wrapped.items()}
    opts = LoadOptions(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    tr = wrapped["train"]
    rng = np.random.default_rng(seed)
    if "val" not in wrapped or "test" not in wrapped:
        a, b, c_ = split_indices(tr.targets.numpy(), "test" in wrapped, opts, rng)
        wrapped.setdefault("val", tr.subset(b))
        if c_ is not None:
            wrapped.setdefault("test", tr.subset(c_))
        tr = tr.subset(a)
    if not is_input:
        tr = tr.with_augment(parse_augment(augment, default="none", mirror_safe=True, source=name))
    return splits_of(name, tr, wrapped["val"], wrapped["test"])


def _gray(image: Any) -> bool:
    mode = getattr(image, "mode", None)
    if mode is not None:
        return mode in ("L", "1", "I;16", "I")
    t = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.asarray(image))
    return t.ndim == 2 or (t.ndim == 3 and min(t.shape[0], t.shape[-1]) == 1)


def _labels_of(dataset: Dataset, which: str) -> torch.Tensor:
    known = getattr(dataset, "targets", None)
    if known is not None:
        return torch.as_tensor(known, dtype=torch.int64)
    say(f"{which} dataset has no .targets: reading its {len(dataset)} labels item by item")  # type: ignore[arg-type]
    return targets(dataset)


# -- a built-in data set written out as image files --------------------------------------------------------------
def write_folder(name: str, root: str | Path, *, size: int | None = None, fmt: str = "png", limit: int | None = None,
                 channels: str = "RGB", seed: int = 0) -> Path:
    """Write registered data set ``name`` (e.g. ``"fashion_mnist"``) as a ``folder:`` tree of image files: its
    official splits as ``train/`` and ``test/`` (else one pool), one sub-folder per class, each image resized to
    ``size`` px (bilinear; default: its own size) in ``channels`` (RGB or GRAY), ``fmt`` png or jpg (quality 92).
    ``limit`` keeps at most that many images of each split (stratified). Returns ``root``."""
    from PIL import Image

    from edgekd.data.core import DATASETS

    if fmt not in ("png", "jpg"):
        raise ConfigError(f"fmt={fmt!r} is not png or jpg", stage="data/write", hint="pass fmt='png' or 'jpg'")
    raw = DATASETS.get(name)(None)
    out = Path(root).expanduser()
    rng = np.random.default_rng(seed)
    parts = [("train", raw.x, raw.y), ("test", raw.x_test, raw.y_test)] if raw.x_test is not None else [("", raw.x, raw.y)]
    mode = "L" if check_channel_order(channels) == "GRAY" else "RGB"
    scale = raw.pixel_scale * 255.0 if raw.x.dtype == np.uint8 else 255.0
    names = [c.replace("/", "_").replace(" ", "_") for c in raw.labels]
    for split, x, y in parts:
        for c in names:
            (out / split / c).mkdir(parents=True, exist_ok=True)
        for i in _limit(np.asarray(y), limit, rng):
            a = np.clip(np.rint(np.asarray(x[i], dtype=np.float64) * scale), 0, 255).astype(np.uint8)
            im = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
            if size is not None:
                im = im.resize((size, size), Image.BILINEAR)
            im.convert(mode).save(out / split / names[int(y[i])] / f"{i:06d}.{fmt}",
                                  **({"quality": 92} if fmt == "jpg" else {}))
    return out
