"""Edge pipelines: one KD stage shared by joint and sequential, one teacher cache for every stage."""

from __future__ import annotations

import pytest
import torch

from edgekd.data import load
from edgekd.distillation import TeacherCache
from edgekd.edge.pipeline import EdgeOptions, distill_stage, gradual_stage, joint, sequential
from edgekd.edge.prune import channels_of
from edgekd.errors import ConfigError
from edgekd.models import create


@pytest.fixture(scope="module")
def digits() -> object:
    return load("digits", limit=400)


def test_shared_kd_stage_and_cache(digits: object) -> None:
    torch.manual_seed(0)
    teacher = create("resnet8", num_classes=10, in_channels=1).eval()
    student = create("resnet8", num_classes=10, in_channels=1)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    cache = TeacherCache(teacher, digits.train)
    kd = distill_stage(teacher, student, digits, kd_epochs=1, method="ce:0.5+kd:0.5", batch_size=64, cache=cache,
                       kd_T=2.0)
    runs = {ft: sequential(teacher, student, digits, 0.5, kd=kd, ft_epochs=1, method="ce:0.5+kd:0.5",
                           finetune_method=ft, batch_size=64, cache=cache, kd_T=2.0)
            for ft in ("ce:0.5+kd:0.5", "ce")}
    assert cache.computed == 1  # one teacher pass served the KD stage and the KD fine-tune
    for r in runs.values():
        assert r.metrics["kd_fp32_acc"] == kd.metrics["test_acc"]  # started from the shared stage
        full = channels_of(kd.model)
        assert channels_of(r.float_model) == {k: v // 2 for k, v in full.items()}
        assert 0.0 <= r.metrics["int8_acc"] <= 1.0
    # the two fine-tunes differ only in their objective, so their float models differ
    a, b = (runs[k].float_model.state_dict() for k in runs)
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())  # the input is untouched


def test_gradual_pruning_reaches_one_shot_widths(digits: object) -> None:
    torch.manual_seed(0)
    teacher = create("resnet8", num_classes=10, in_channels=1).eval()
    student = create("resnet8", num_classes=10, in_channels=1)
    full = channels_of(student)
    cache = TeacherCache(teacher, digits.train)
    kd, pruned = gradual_stage(teacher, student, digits, 0.5, kd_epochs=3, method="ce:0.5+kd:0.5", batch_size=64,
                               cache=cache, kd_T=2.0)
    target = {k: v // 2 for k, v in full.items()}
    assert channels_of(pruned) == target  # the same architecture as a one-shot cut
    widths = [(h["channels"], h["channels_after"]) for h in kd.history]
    total, final = sum(full.values()), sum(target.values())
    assert widths[0][0] == total and final < widths[0][1] < total  # cut half-way after epoch 1
    assert widths[1] == (widths[0][1], final) and widths[2] == (final, final)  # last epoch at the final widths
    # the KD stage's learning rate follows one cosine over its 3 epochs, not a restart each epoch
    assert [h["lr"] for h in kd.history] == sorted((h["lr"] for h in kd.history), reverse=True)
    assert kd.history[-1]["lr"] < 1e-6
    assert 0.0 <= kd.metrics["test_acc"] <= 1.0
    r = joint(teacher, student, digits, EdgeOptions(qat=False, prune=0.5), kd_epochs=2, ft_epochs=1,
              method="ce:0.5+kd:0.5", batch_size=64, cache=cache, gradual=True, kd_T=2.0)
    assert channels_of(r.float_model) == target and r.ratio == 0.5
    assert 0.0 <= r.metrics["fp32_acc"] <= 1.0 and r.prepared is None  # float fine-tune + PTQ: its float twin
    assert cache.computed == 1  # every gradual epoch and the fine-tune read one teacher pass
    with pytest.raises(ConfigError, match="gradual"):
        joint(teacher, student, digits, EdgeOptions(prune=0.5), kd=kd, gradual=True)
    with pytest.raises(ConfigError, match="kd_epochs >= 1"):
        gradual_stage(teacher, student, digits, 0.5, kd_epochs=0)
    from edgekd.distillation import distill

    with pytest.raises(ConfigError, match="schedule_span"):
        distill(teacher, student, digits, "ce", epochs=1, schedule_span=(0.5, 0.5))
