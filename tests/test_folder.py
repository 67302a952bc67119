"""Image files as data: folder:/csv: sources, decoding every mode, bad input, workers, augmentation, resume.

Every folder is written by the tests (``imagegen``): a few hundred tiny JPEG/PNG/WebP/BMP files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from imagegen import pattern, save, write_csv, write_folder
from PIL import Image
from torch import nn

from edgekd import data
from edgekd.data.decode import BadImage, decode
from edgekd.data.images import BAD, FileImages
from edgekd.distillation import TeacherCache, distill, train
from edgekd.errors import ConfigError, DataError

KW = {"batch_size": 16, "progress": False, "optimizer": "sgd", "lr": 0.05}


class TinyNet(nn.Module):
    """A non-zoo CNN: what a user brings."""

    def __init__(self, in_channels: int = 3, num_classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("photos"), n_classes=3, per_class=40)


# -- loading --------------------------------------------------------------------------------------------
def test_folder_splits_are_lazy_stratified_index_views(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = data.load(f"folder:{folder}", image_size=12, seed=0)
    assert isinstance(s.train, FileImages) and s.labels == ["class_0", "class_1", "class_2"]
    assert len(s.train) + len(s.val) + len(s.test) == 120
    assert torch.bincount(s.test.targets).tolist() == [8, 8, 8]  # 20 % of each class
    paths = {s.train.source(i) for i in range(len(s.train))}
    assert not paths & {s.test.source(i) for i in range(len(s.test))}  # disjoint
    assert s.train.paths is s.val.paths is s.test.paths  # one list of paths, splits are indices into it
    pre = s.preprocessing()
    assert (pre.size, pre.resize, pre.resize_to, pre.crop, pre.channel_order) == ((12, 12), "shorter_side", 12,
                                                                                   "center", "RGB")
    assert s.train.augment is not None and s.train.augment.spec == "crop+flip" and s.val.augment is None
    again = data.load(f"folder:{folder}", image_size=12, seed=0, mean=pre.mean, std=pre.std)
    assert torch.equal(again.test.index, s.test.index)
    assert not torch.equal(data.load(f"folder:{folder}", image_size=12, seed=1, mean=pre.mean,
                                     std=pre.std).test.index, s.test.index)

    def no_decoding(*a: object, **k: object) -> None:
        raise AssertionError("decoded an image")

    monkeypatch.setattr("edgekd.data.images.decode", no_decoding)
    assert data.targets(again.train).tolist() == again.train.targets.tolist()  # labels without decoding
    s2 = data.few_labels(again, 6)
    assert int((s2.train.targets >= 0).sum()) == 6


def test_items_are_the_eval_transform_of_the_decoded_file(folder: Path) -> None:
    s = data.load(f"folder:{folder}", image_size=(8, 10), resize_to=11, augment="none", stats_samples=30)
    x, y = s.test[0]
    assert x.shape == (3, 8, 10) and x.dtype == torch.float32 and int(y) == int(s.test.targets[0])
    from torchvision.transforms.v2 import functional as TF

    pre = s.preprocessing()
    px = decode(s.test.source(0), "RGB").float()
    h, w = px.shape[1:]
    rh, rw = (11, int(11 * w / h)) if h <= w else (int(11 * h / w), 11)
    want = TF.center_crop(TF.resize(px, [rh, rw], antialias=False), [8, 10])
    mean, std = torch.tensor(pre.mean)[:, None, None], torch.tensor(pre.std)[:, None, None]
    torch.testing.assert_close(x, (want / 255 - mean) / std, rtol=1e-5, atol=1e-5)
    # mean/std were measured on a sample of the train split; the train split then has ~zero mean, unit std
    xs = data.as_tensors(s.train)[0]
    assert xs.mean((0, 2, 3)).abs().max() < 0.15 and (xs.std((0, 2, 3)) - 1).abs().max() < 0.15


def test_train_val_test_subfolders_and_csv(tmp_path: Path) -> None:
    for split, n in (("train", 20), ("test", 6)):
        write_folder(tmp_path / "tree" / split, n_classes=2, per_class=n, seed=len(split))
    s = data.load(f"folder:{tmp_path / 'tree'}", image_size=8)
    assert len(s.test) == 12 and all("/test/" in s.test.source(i) for i in range(12))
    assert len(s.train) + len(s.val) == 40 and len(s.val) == 4  # val carved from train/ (10 %)
    (tmp_path / "tree" / "val" / "class_9").mkdir(parents=True)
    with pytest.raises(DataError, match="class_9"):
        data.load(f"folder:{tmp_path / 'tree'}", image_size=8)

    flat = write_folder(tmp_path / "flat", n_classes=2, per_class=15)
    table = write_csv(tmp_path / "labels.csv", flat)
    c = data.load(f"csv:{table}", image_size=8, augment="none")
    assert c.labels == ["class_0", "class_1"] and len(c.train) + len(c.val) + len(c.test) == 30
    assert torch.equal(c.train[0][0], data.load(f"folder:{flat}", image_size=8, augment="none", mean=c.mean,
                                                std=c.std).train[0][0])


# -- decoding -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("ext", "mode"), [("jpg", "RGB"), ("png", "RGB"), ("png", "L"), ("png", "RGBA"),
                                           ("png", "P"), ("png", "I;16"), ("webp", "RGB"), ("bmp", "RGB"),
                                           ("jpg", "L"), ("png", "LA")])
def test_decode_converts_every_mode_to_the_declared_channels(ext: str, mode: str, tmp_path: Path) -> None:
    rgb = pattern(1, 3, 9, 7, np.random.default_rng(3))
    path = tmp_path / f"x.{ext}"
    if mode == "LA":
        Image.fromarray(np.dstack([rgb[:, :, 0], rgb[:, :, 1]]), "LA").save(path)
    else:
        save(path, rgb, mode)
    with Image.open(path) as im:  # what the file holds, read by Pillow: the reference
        if mode == "I;16":
            ref = (np.asarray(im, dtype=np.int64) + 128) // 257
            ref = np.repeat(ref[:, :, None], 3, axis=2)
        elif mode in ("L", "LA"):
            ref = np.repeat(np.asarray(im.convert("L"), dtype=np.int64)[:, :, None], 3, axis=2)
        else:
            ref = np.asarray(im.convert("RGBA").convert("RGB") if mode == "P" else im.convert("RGB"), dtype=np.int64)
    got = decode(path, "RGB").permute(1, 2, 0).numpy().astype(np.int64)
    assert got.shape == (9, 7, 3)
    assert np.abs(got - ref).max() <= (1 if ext == "jpg" else 0)  # libjpeg-turbo vs Pillow's: one level at most
    gray = decode(path, "GRAY")[0].numpy().astype(np.int64)
    luma = (299 * got[:, :, 0] + 587 * got[:, :, 1] + 114 * got[:, :, 2] + 500) // 1000
    assert gray.shape == (9, 7) and np.array_equal(gray, luma)
    assert torch.equal(decode(path, "BGR"), decode(path, "RGB").flip(0))


@pytest.mark.parametrize("mode", ["I;16", "P", "LA", "RGBA", "L", "RGB"])
def test_a_pil_image_from_a_users_dataset_converts_as_the_same_file_decodes(mode: str, tmp_path: Path) -> None:
    """A Dataset yielding PIL images gets the decoder's rules: 16-bit values (v + 128) // 257 (PIL's
    convert("L") would clip them all to 255), palettes expanded, alpha dropped."""
    from edgekd.data.images import as_pixels

    rgb = pattern(2, 3, 9, 7, np.random.default_rng(5))
    path = tmp_path / "x.png"
    if mode == "LA":
        Image.fromarray(np.dstack([rgb[:, :, 0], rgb[:, :, 1]]), "LA").save(path)
    else:
        save(path, rgb, mode)
    with Image.open(path) as im:
        im.load()
        for order in ("RGB", "GRAY"):
            assert torch.equal(as_pixels(im, order), decode(path, order)), (mode, order)
    if mode == "I;16":
        assert decode(path, "GRAY").max() < 255  # the picture's values, not a white plane


def test_bad_files_are_skipped_named_and_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_folder(tmp_path / "p", n_classes=2, per_class=24)
    (root / "class_0" / "empty.jpg").write_bytes(b"")
    (root / "class_0" / "fake.png").write_text("this is not an image")
    (root / "class_1" / "notes.txt").write_text("labels by hand")
    good = next((root / "class_1").glob("*.jpg")).read_bytes()
    (root / "class_1" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    s = data.load(f"folder:{root}", image_size=8, augment="none", val_fraction=0.25, test_fraction=0.25,
                  stats_samples=64)
    err = capsys.readouterr().err
    assert "skipped 3 of 52 files" in err and "empty.jpg" in err and "fake.png" in err and "notes.txt" in err
    assert "empty (0 bytes)" in err and "not an image (by content)" in err and "not an image (by name)" in err
    assert len(s.train) + len(s.val) + len(s.test) == 49  # 48 good + the truncated one (found when decoded)
    bad = next(d for d in (s.train, s.val, s.test) for i in range(len(d)) if d.source(i).endswith("truncated.jpg"))
    pos = next(i for i in range(len(bad)) if bad.source(i).endswith("truncated.jpg"))
    x, y = bad[pos]
    assert int(y) == BAD and x.shape == (3, 8, 8)  # a placeholder, not a worker crash
    with pytest.raises(BadImage, match="truncated"):
        decode(bad.source(pos))
    capsys.readouterr()
    r = train(TinyNet(num_classes=2), s, epochs=2, num_workers=2, **KW)  # no worker crash; the epoch names the file
    err = capsys.readouterr().err
    where = "train" if bad is s.train else "evaluate"
    if where == "train":
        assert err.count("epoch 1: skipped 1 image that could not be decoded") == 1
        assert "epoch 2: skipped 1 image" in err and r.history[0]["skipped_images"] == 1
    assert "truncated.jpg (is a JPEG file that cannot be decoded (truncated))" in err


def test_unreadable_file_is_skipped_and_named(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "p", n_classes=2, per_class=6)
    secret = root / "class_0" / "000.jpg"
    secret.chmod(0)
    code = f"from edgekd import data; data.load('folder:{root}', image_size=8, augment='none', stats_samples=8)"
    # root reads any file: drop the capabilities that let it (uid 0 stays the owner of everything else)
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []
    r = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 0, r.stderr
    assert "unreadable (permission denied)" in r.stderr and "000.jpg" in r.stderr and "skipped 1 of 12" in r.stderr


def test_structural_problems_stop_before_training(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        data.load(f"folder:{tmp_path / 'nowhere'}")
    one = write_folder(tmp_path / "one", n_classes=1, per_class=5)
    with pytest.raises(DataError, match="single class"):
        data.load(f"folder:{one}")
    hollow = write_folder(tmp_path / "hollow", n_classes=2, per_class=5)
    (hollow / "class_2").mkdir()
    (hollow / "class_3").mkdir()
    (hollow / "class_3" / "readme.md").write_text("no images here")
    with pytest.raises(DataError, match=r"no usable image: .*class_2, .*class_3"):
        data.load(f"folder:{hollow}")
    flat = write_folder(tmp_path / "flat", n_classes=2, per_class=8)
    table = write_csv(tmp_path / "t.csv", flat, rows_extra=[["gone/missing.png", "class_0"]])
    s = data.load(f"csv:{table}", image_size=8, stats_samples=8)
    assert "row 17" in s.notes[0] and "missing.png" in s.notes[0] and "missing (named by a row" in s.notes[0]
    nothing = tmp_path / "none.csv"
    nothing.write_text("path,label\na.png,x\nb.png,y\n")
    with pytest.raises(DataError, match="holds no usable image"):
        data.load(f"csv:{nothing}")
    (tmp_path / "bad.csv").write_text("only-a-path.png\n")
    with pytest.raises(DataError, match="not `path,label"):
        data.load(f"csv:{tmp_path / 'bad.csv'}")


# -- augmentation, workers, resume ---------------------------------------------------------------------
def test_augmentation_is_seeded_per_item_and_independent_of_workers(folder: Path) -> None:
    s = data.load(f"folder:{folder}", image_size=10, augment="crop+flip", stats_samples=30)
    a, b = s.train[(3, 11)], s.train[(3, 11)]
    assert torch.equal(a[0], b[0])  # same seed, same image
    assert not torch.equal(s.train[(3, 11)][0], s.train[(3, 12)][0])  # another seed, another crop
    plain = s.train.with_augment(None)[3][0]
    assert not torch.equal(a[0], plain)
    keys = [(i, 1000 + i) for i in range(24)]
    batches = {}
    for workers in (0, 2):
        dl = data.loader(data.WithIndices(s.train), batch_sampler=[keys[:12], keys[12:]], num_workers=workers)
        batches[workers] = [b[0] for b in dl]
    assert all(torch.equal(u, v) for u, v in zip(batches[0], batches[2], strict=True))
    digits = data.load("digits", augment="auto")
    assert digits.train.augment is None  # the built-in sets are not augmented by default
    assert data.load("digits", augment="shift:1").train.augment.flip is False
    with pytest.raises(ConfigError, match="mirrors images"):
        data.load("mnist5k", augment="crop+flip")
    with pytest.raises(ConfigError, match="unknown augmentation 'rotate'"):
        data.load("digits", augment="rotate")


def test_resume_is_exact_with_workers_and_augmentation(folder: Path, tmp_path: Path) -> None:
    s = data.load(f"folder:{folder}", image_size=10, augment="crop+flip", stats_samples=30)
    kw = {**KW, "epochs": 3, "num_workers": 2}
    torch.manual_seed(0)
    full = train(TinyNet(), s, out_dir=tmp_path / "full", **kw)

    def stop(row: dict) -> None:
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train(TinyNet(), s, out_dir=tmp_path / "cut", on_epoch_end=stop, **kw)
    torch.manual_seed(0)
    resumed = train(TinyNet(), s, out_dir=tmp_path / "cut", resume=True, **{**kw, "num_workers": 0})
    for (k, v), w in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(v, w), k  # bit for bit, though the resumed run decoded in the main process
    assert [r["train_loss"] for r in full.history] == [r["train_loss"] for r in resumed.history]


def test_teacher_cache_only_where_exact(folder: Path) -> None:
    plain = data.load(f"folder:{folder}", image_size=10, augment="none", stats_samples=30)
    torch.manual_seed(1)
    teacher = TinyNet().eval()
    cache = TeacherCache(teacher, plain.train, num_workers=2)
    x, _ = data.as_tensors(plain.train)
    with torch.no_grad():
        torch.testing.assert_close(cache[torch.arange(5)], teacher(x[:5]), rtol=1e-5, atol=1e-5)
    assert cache.ensure(teacher, plain.train).computed == 1
    aug = plain.with_augment("crop+flip")
    with pytest.raises(ConfigError, match="cannot cache"):
        distill(teacher, TinyNet(), aug, "ce+kd", cache_teacher=True, epochs=1, **KW)
    r = distill(teacher, TinyNet(), aug, "ce+kd", epochs=1, **KW)  # auto: live teacher
    assert r.history[0]["train_kd"] > 0


# -- any dataset --------------------------------------------------------------------------------------------
class PilSet(torch.utils.data.Dataset):
    """A user's dataset: PIL images of mixed sizes and integer labels, no edgekd anywhere."""

    def __init__(self, n: int = 60) -> None:
        rng = np.random.default_rng(0)
        self.items = [(Image.fromarray(pattern(i % 3, 3, 10 + i % 4, 12, rng)), i % 3) for i in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return self.items[i]


def test_any_map_style_dataset_trains(tmp_path: Path) -> None:
    r = train(TinyNet(), PilSet(), epochs=2, **KW)  # distill() splits it by a seeded stratified draw
    assert 0 <= r.metrics["test_acc"] <= 1 and len(r.history) == 2
    s = data.from_datasets(PilSet(), image_size=8)
    assert s.train.shape == (3, 8, 8) and s.num_classes == 3 and s.preprocessing().resize == "shorter_side"
    xs = torch.randn(40, 3, 6, 6)
    tensors = torch.utils.data.TensorDataset(xs, torch.arange(40) % 2)
    t = data.from_datasets(tensors, deterministic=True)
    assert torch.equal(t.train[0][0], xs[int(t.train.index[0])])  # float tensors are used as they are
    assert t.train.deterministic and t.num_classes == 2
    with pytest.raises(ConfigError, match="expected DataSplits"):
        train(TinyNet(), {"x": xs})


# -- the whole pipeline from a folder, through the CLI -----------------------------------------------------
def test_cli_folder_distill_export_bench(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`edgekd train/distill --data folder:…` → `export` → `bench --eval-data folder:…` on a non-zoo CNN; the
    runner's accuracy (it resizes, crops and normalises the decoded test images itself) equals eager PyTorch's."""
    import json

    from edgekd.bundle import Bundle
    from edgekd.cli import main
    from edgekd.models import MODELS
    from edgekd.models.saved import load_model

    monkeypatch.setitem(MODELS._items, "folder_tinynet",
                        lambda num_classes=10, in_channels=3: TinyNet(in_channels, num_classes))
    spec, common = f"folder:{folder}", ["--image-size", "12", "--batch-size", "16", "--no-progress"]
    assert main(["train", "--model", "folder_tinynet", "--data", spec, "--epochs", "3", "--out",
                 str(tmp_path / "t"), *common]) == 0  # crop+flip by default
    assert main(["distill", "--teacher", str(tmp_path / "t" / "model.pt"), "--student", "folder_tinynet",
                 "--data", spec, "--augment", "none", "--epochs", "3", "--num-workers", "2",
                 "--out", str(tmp_path / "kd"), *common]) == 0  # no augmentation: the teacher cache is exact
    student, meta = load_model(tmp_path / "kd" / "model.pt")
    assert meta["data"] == spec and meta["preprocessing"]["resize"] == "shorter_side"
    assert main(["export", str(tmp_path / "kd" / "model.pt"), "--formats", "pte,tflite", "--precisions", "fp32",
                 "--calibration", "16", "--parity-samples", "24", "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    bundle = Bundle.load(tmp_path / "b")
    assert bundle.preprocessing is not None and bundle.preprocessing.to_dict() == meta["preprocessing"]
    assert all(f.parity is not None and f.parity.passed for f in bundle.files) and len(bundle.files) == 2
    assert main(["bench", str(tmp_path / "b"), "--runs", "3", "--warmup", "1", "--eval-data", spec,
                 "--eval-samples", "24", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    with np.load(tmp_path / "run" / "eval.npz") as ev:
        assert "pixels" in ev.files and ev["shapes"].shape == (24, 3) and int(ev["pre_resize_to"]) == 12
    splits = data.load(spec, image_size=12, mean=bundle.preprocessing.mean, std=bundle.preprocessing.std)
    x, y = data.sample(splits.test, 24)
    with torch.no_grad():
        eager = float((student(x).argmax(1) == y).float().mean())
    assert len(rows) == 2 and all(r["eval_samples"] == 24 for r in rows)
    assert all(abs(r["accuracy"] - eager) <= 1 / 24 + 1e-9 for r in rows), ([r["accuracy"] for r in rows], eager)


def test_an_empty_train_set_is_a_data_error() -> None:
    import torch
    from torch.utils.data import TensorDataset

    from edgekd.data import from_datasets
    from edgekd.errors import DataError

    empty = TensorDataset(torch.zeros(0, 1, 4, 4), torch.zeros(0, dtype=torch.long))
    with pytest.raises(DataError, match="the train data set is empty"):
        from_datasets(empty)
