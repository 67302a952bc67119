"""Teacher cache (logits and features): exact values, keyed by index, invalidated by teacher or data changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from edgekd import data, models
from edgekd.distillation import TeacherCache, distill
from edgekd.distillation.cache import cache_bytes, fingerprint
from edgekd.errors import ConfigError


@pytest.fixture(scope="module")
def digits() -> data.DataSplits:
    return data.load("digits", limit=300)


def _teacher(seed: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.create("resnet8", in_channels=1).eval()


def test_cache_values_and_invalidation(digits: data.DataSplits, tmp_path: Path) -> None:
    teacher = _teacher()
    cache = TeacherCache(teacher, digits.train, path=tmp_path / "t.pt")
    x = digits.train.tensors[0]
    idx = torch.tensor([5, 0, 17])
    with torch.no_grad():
        torch.testing.assert_close(cache[idx], teacher(x[idx]), rtol=1e-5, atol=1e-5)
    assert len(cache) == len(digits.train) and cache.computed == 1
    cache.ensure(teacher, digits.train)
    assert cache.computed == 1  # same teacher and data: reused
    assert TeacherCache(teacher, digits.train, path=tmp_path / "t.pt").computed == 0  # loaded from file
    with torch.no_grad():
        teacher.fc.bias.add_(1.0)
    cache.ensure(teacher, digits.train)
    assert cache.computed == 2  # weights changed: recomputed
    shifted = TensorDataset(digits.train.tensors[0] + 0.5, digits.train.tensors[1])
    assert fingerprint(teacher, shifted) != fingerprint(teacher, digits.train)
    assert cache.ensure(teacher, shifted).computed == 3
    with torch.no_grad():
        torch.testing.assert_close(cache[idx], teacher(shifted.tensors[0][idx]), rtol=1e-5, atol=1e-5)


def test_kd_with_cache_matches_kd_without(digits: data.DataSplits) -> None:
    # SGD: AdamW divides by the root of tiny second moments, which turns the teacher's batch-size-dependent
    # float rounding (cache: batches of 256, live: 64) into weight differences above the tolerance
    teacher, kw = _teacher(), {"epochs": 1, "batch_size": 64, "progress": False, "optimizer": "sgd"}
    torch.manual_seed(0)
    student = models.create("resnet8", in_channels=1)
    cached = distill(teacher, student, digits, "ce:0.1+kd:0.9", cache_teacher=True, **kw)
    live = distill(teacher, student, digits, "ce:0.1+kd:0.9", cache_teacher=False, **kw)
    for (k, a), b in zip(cached.model.state_dict().items(), live.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=k)
    assert cached.history[0]["train_kd"] == pytest.approx(live.history[0]["train_kd"], rel=1e-4)


def test_feature_cache_matches_live_teacher(digits: data.DataSplits) -> None:
    """FitNet + AT read cached teacher features: same training as running the teacher each step."""
    teacher, kw = _teacher(), {"epochs": 1, "batch_size": 64, "progress": False}
    torch.manual_seed(0)
    student = models.create("resnet8", in_channels=1)
    cache = TeacherCache(teacher, digits.train)
    assert cache.taps == []
    cached = distill(teacher, student, digits, "ce+fitnet+at", cache_teacher=cache, **kw)
    # the losses' default taps (the teacher's contract resolves them to layer1..3), cached under those names
    assert sorted(cache.taps) == ["stage:-1", "stage:-2", "stage:-3"] and cache.computed == 2  # widened once
    live = distill(teacher, student, digits, "ce+fitnet+at", cache_teacher=False, **kw)
    for (k, a), b in zip(cached.model.state_dict().items(), live.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=k)
    assert cached.history[0]["train_fitnet"] == pytest.approx(live.history[0]["train_fitnet"], rel=1e-4)
    distill(teacher, student, digits, "ce+at", cache_teacher=cache, **kw)
    assert cache.computed == 2  # a subset of the cached taps: reused
    idx = torch.tensor([3, 1])
    assert cache.features(idx, ["stage:-2"])["stage:-2"].shape[:2] == (2, 32)  # layer2 of the resnet8 teacher
    with pytest.raises(ConfigError, match="holds no"):
        cache.features(idx, ["layer9"])


def test_feature_cache_size_limit(digits: data.DataSplits) -> None:
    teacher = _teacher()
    need = cache_bytes(teacher, digits.train, ["layer1"])
    h, w = digits.train.tensors[0].shape[-2:]
    assert need == len(digits.train) * 4 * (10 + 16 * h * w)  # fp32 logits + layer1 maps
    with pytest.raises(ConfigError, match="max_bytes"):
        TeacherCache(teacher, digits.train, taps=["layer1"], max_bytes=need - 1)
    assert TeacherCache(teacher, digits.train, taps=["layer1"], max_bytes=need).taps == ["layer1"]


def test_explicit_cache_goes_to_disk_beyond_memory(digits: data.DataSplits, monkeypatch: pytest.MonkeyPatch) -> None:
    """cache_teacher=True beyond the RAM limit keeps the cache in memory-mapped files (same training); beyond the
    disk limit too it fails with a clear error, before any training."""
    import edgekd.distillation.strategies.offline as offline

    need = cache_bytes(_teacher(), digits.train)  # logits only
    student = models.create("resnet8", in_channels=1)
    kw = {"epochs": 1, "progress": False, "optimizer": "sgd"}
    in_ram = distill(_teacher(), student, digits, "ce+kd", cache_teacher=True, **kw)
    made: list[TeacherCache] = []

    class Recorded(TeacherCache):
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(*a, **k)  # type: ignore[arg-type]
            made.append(self)

    monkeypatch.setattr(offline, "TeacherCache", Recorded)
    monkeypatch.setattr(offline, "memory_limit", lambda: need - 1)
    on_disk = distill(_teacher(), student, digits, "ce+kd", cache_teacher=True, **kw)
    assert made[-1].storage == "disk" and isinstance(made[-1].logits, torch.Tensor)
    assert on_disk.history[0]["train_kd"] == in_ram.history[0]["train_kd"]
    monkeypatch.setattr(offline, "disk_limit", lambda: need - 1)
    with pytest.raises(ConfigError, match="max_bytes"):
        distill(_teacher(), student, digits, "ce+kd", cache_teacher=True, **kw)


def test_disk_cache_is_memory_mapped_and_reloads(digits: data.DataSplits, tmp_path: Path) -> None:
    teacher = _teacher()
    ram = TeacherCache(teacher, digits.train, taps=["layer1"])
    disk = TeacherCache(teacher, digits.train, taps=["layer1"], storage="disk", path=tmp_path / "c")
    idx = torch.tensor([7, 2, 40])
    assert torch.equal(disk[idx], ram[idx])
    assert torch.equal(disk.features(idx)["layer1"], ram.features(idx)["layer1"])
    mm = np.load(tmp_path / "c" / "logits.npy", mmap_mode="r")
    assert mm.shape == (len(digits.train), 10) and np.array_equal(mm[7], ram[idx][0].numpy())
    again = TeacherCache(teacher, digits.train, taps=["layer1"], storage="disk", path=tmp_path / "c")
    assert again.computed == 0 and torch.equal(again[idx], ram[idx])  # the files are read, not recomputed
    with torch.no_grad():
        teacher.fc.bias.add_(1.0)
    assert again.ensure(teacher, digits.train, ["layer1"]).computed == 1  # another teacher: recomputed
    with pytest.raises(ConfigError, match="storage"):
        TeacherCache(teacher, digits.train, storage="tape")


def test_a_disk_cache_of_another_dtype_or_a_damaged_index_is_computed_again(digits: data.DataSplits,
                                                                            tmp_path: Path) -> None:
    teacher = _teacher()
    TeacherCache(teacher, digits.train, taps=["layer1"], storage="disk", path=tmp_path / "c")
    half = TeacherCache(teacher, digits.train, taps=["layer1"], storage="disk", path=tmp_path / "c",
                        feature_dtype=torch.float16)
    assert half.computed == 1 and half.features(torch.tensor([0]))["layer1"].dtype == torch.float16
    (tmp_path / "c" / "index.json").write_text("{not json")
    again = TeacherCache(teacher, digits.train, taps=["layer1"], storage="disk", path=tmp_path / "c",
                         feature_dtype=torch.float16)
    assert again.computed == 1  # a damaged index is a miss, not a JSONDecodeError
