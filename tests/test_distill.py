"""Distillation: loss values, method composition, taps, the trainer (teacher frozen, exact resume)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from edgekd import data, models
from edgekd.distillation import (
    DistillLoss,
    StepContext,
    Taps,
    build_objective,
    distill,
    methods,
    parse_method,
    register_method,
    train,
)
from edgekd.distillation.methods import METHODS, modifiers, parse_terms
from edgekd.distillation.parallel import mixed_batches
from edgekd.distillation.strategies.offline import OfflineStrategy
from edgekd.errors import ConfigError


@pytest.fixture(scope="module")
def digits() -> data.DataSplits:
    return data.load("digits", limit=600)


def _ctx(s: torch.Tensor, t: torch.Tensor | None, y: torch.Tensor) -> StepContext:
    return StepContext(student_logits=s, teacher_logits=t, targets=y)


# -- losses -------------------------------------------------------------------------------------
def test_kd_value_by_hand() -> None:
    T = 2.0
    # teacher softmax(t/T) = [3/4, 1/4]; student softmax(s/T) = [1/2, 1/2]; 2nd row: identical -> 0
    t = torch.tensor([[2 * math.log(3.0), 0.0], [1.0, 3.0]])
    s = torch.tensor([[0.0, 0.0], [1.0, 3.0]])
    kl_row0 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    expected = T**2 * (kl_row0 + 0.0) / 2  # batchmean
    kd = build_objective("kd", kd_T=T).losses["kd"]
    assert kd(_ctx(s, t, torch.tensor([0, 1]))).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.2616, abs=1e-4)  # 2 * (0.75 ln 1.5 + 0.25 ln 0.5)


def test_ce_value_and_label_smoothing() -> None:
    s, y = torch.tensor([[0.0, 0.0]]), torch.tensor([0])
    assert build_objective("ce").losses["ce"](_ctx(s, None, y)).item() == pytest.approx(math.log(2))
    s2 = torch.tensor([[math.log(3.0), 0.0]])  # p = [3/4, 1/4]; smoothed target [0.95, 0.05]
    want = -(0.95 * math.log(0.75) + 0.05 * math.log(0.25))
    got = build_objective("ce", ce_label_smoothing=0.1).losses["ce"](_ctx(s2, None, y)).item()
    assert got == pytest.approx(want, rel=1e-6)


def test_objective_weights_terms() -> None:
    obj = build_objective("ce:0.5 + kd:2", kd_T=1.0)
    s, t, y = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([1])
    total, parts = obj(_ctx(s, t, y))
    assert set(parts) == {"ce", "kd"} and obj.needs_teacher
    assert total.item() == pytest.approx(0.5 * parts["ce"].item() + 2 * parts["kd"].item())


def test_gradients_reach_student_never_teacher() -> None:
    torch.manual_seed(0)
    student, teacher = nn.Linear(4, 3), nn.Linear(4, 3)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        t_logits = teacher(x)
    total, _ = build_objective("ce+kd")(_ctx(student(x), t_logits, y))
    total.backward()
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0
    assert teacher.weight.grad is None


# -- method strings and options ----------------------------------------------------------------
@pytest.mark.parametrize(("spec", "expected"), [
    ("kd", [("kd", 1.0)]),
    ("ce+kd", [("ce", 1.0), ("kd", 1.0)]),
    ("ce:1 + kd:0.9", [("ce", 1.0), ("kd", 0.9)]),
    (" CE : 0.5+KD ", [("ce", 0.5), ("kd", 1.0)]),
    ("kd:1e-1", [("kd", 0.1)]),
    ("ce:0", [("ce", 0.0)]),
    ({"ce": 0.1, "kd": 0.9}, [("ce", 0.1), ("kd", 0.9)]),
    ([("kd", 2)], [("kd", 2.0)]),
])
def test_parse_method(spec: object, expected: list[tuple[str, float]]) -> None:
    assert parse_method(spec) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("spec", "message"), [
    ("kd:-1", "not a finite number >= 0"),
    ("kd:abc", "not a finite number >= 0"),
    ("kd:nan", "not a finite number >= 0"),
    ("kd:inf", "not a finite number >= 0"),
    ("kdd", "unknown method 'kdd'; known: .*ce, .*kd"),
    ("ce+ce", "appears twice"),
    ("ce++kd", "cannot parse"),
    ("", "cannot parse"),
    ({}, "empty method"),
    ("ce kd", "cannot parse"),
])
def test_parse_method_errors(spec: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_method(spec)  # type: ignore[arg-type]


@pytest.mark.parametrize(("spec", "expected"), [
    ("ce + kd:9(ls)", [("ce", 1.0, {}), ("kd", 9.0, {"std": True})]),
    ("kd(ls)", [("kd", 1.0, {"std": True})]),
    ("ce:0.1 + mlkd:0.9( LS )", [("ce", 0.1, {}), ("mlkd", 0.9, {"std": True})]),
    ({"kd(ls)": 2}, [("kd", 2.0, {"std": True})]),
])
def test_parse_terms_reads_modifiers(spec: object, expected: list) -> None:
    assert parse_terms(spec) == expected  # type: ignore[arg-type]
    assert parse_method(spec) == [(n, w) for n, w, _ in expected]  # type: ignore[arg-type]


@pytest.mark.parametrize(("spec", "options", "message"), [
    ("ce + kd(xx)", {}, r"unknown modifier \(xx\) of 'kd'.*known: ls"),
    ("ce + crd(ls)", {}, r"modifier \(ls\) does not apply to 'crd'.*only .*dkd.*kd.*mlkd"),
    ("kd(ls)", {"kd_std": False}, "its modifier sets std=True but the options say std=False"),
    ("ce + kd:9(ls", {}, "cannot parse"),
])
def test_modifier_errors_are_clear(spec: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_objective(spec, **options)


def test_modifier_round_trips_through_the_spec() -> None:
    obj = build_objective("ce + kd:9(ls) + dkd:1", kd_T=2.0, dkd_std=True)
    assert obj.losses["kd"].std and obj.losses["dkd"].std and not hasattr(obj.losses["ce"], "std")
    assert obj.spec == "ce:1 + kd:9(ls) + dkd:1(ls)"  # what checkpoints and results record
    assert build_objective(obj.spec).spec == obj.spec
    assert "ls: std=True" in modifiers()


def test_method_options_routing() -> None:
    assert build_objective("ce+kd", kd_T=2.0).losses["kd"].T == 2.0
    assert build_objective("ce+kd", kd={"T": 3.0}).losses["kd"].T == 3.0
    with pytest.raises(ConfigError, match=r"(?s)method 'kd' has no option X.*its options are: T"):
        build_objective("kd", kd_X=1)
    with pytest.raises(ConfigError, match="belongs to no method in use"):
        build_objective("ce", kd_T=4.0)
    with pytest.raises(ConfigError, match="T=0"):
        build_objective("kd", kd_T=0)
    assert "ce" in methods() and "kd" in methods()


# -- taps ---------------------------------------------------------------------------------------
def test_taps_record_and_always_remove_hooks() -> None:
    model = models.create("resnet8", in_channels=1)
    x = torch.randn(2, 1, 8, 8)
    with Taps(model, ["layer3", "fc", "layer1.0.conv1"]) as taps:
        logits = model(x)
        assert taps["layer3"].shape == (2, 64, 2, 2)
        assert torch.equal(taps["fc"], logits) and taps["layer1.0.conv1"].shape == (2, 16, 8, 8)
    assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(RuntimeError), Taps(model, ["fc"]):
        raise RuntimeError("boom")
    assert not any(m._forward_hooks for m in model.modules())


def test_taps_prerelu_records_the_stage_output_before_its_last_relu() -> None:
    torch.manual_seed(0)
    model = models.create("resnet8", in_channels=1)
    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    with Taps(model, ["layer3@prerelu", "layer3"]) as taps:
        model(x)
        pre, post = taps["layer3@prerelu"], taps["layer3"]
    block, h = model.layer3[0], model.layer2(model.layer1(model.relu(model.bn1(model.conv1(x)))))
    manual = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(h))))) + block.downsample(h)
    torch.testing.assert_close(pre, manual)  # not overwritten by the in-place ReLU
    assert (pre < 0).any() and torch.equal(post, pre.clamp(min=0))
    pre.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients flow through the recorded tensor
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    with pytest.raises(ConfigError, match="has no nn.ReLU inside"):
        Taps(model, ["fc@prerelu"])
    ends_linear = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    with pytest.raises(ConfigError, match="is not the output of its last ReLU"), Taps(ends_linear, ["@prerelu"]):
        ends_linear(torch.randn(1, 3))


def test_taps_unknown_path_lists_nearby_names() -> None:
    with pytest.raises(ConfigError, match=r"no module 'layer4'; nearby: layer\d.*top level: conv1, bn1"):
        Taps(models.create("resnet8"), ["layer4"])


@register_method("testhint")
class _HintWithAdapter(DistillLoss):
    """Test-only method: MSE between adapted student and teacher ``layer3`` features."""

    student_taps = ("layer3",)
    teacher_taps = ("layer3",)

    def setup(self, ctx: StepContext, num_train: int) -> None:
        s, t = ctx.student_features["layer3"], ctx.teacher_features["layer3"]
        self.adapter = nn.Conv2d(s.shape[1], t.shape[1], 1)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        s = self.adapter(ctx.student_features["layer3"])
        return (s - ctx.teacher_features["layer3"]).pow(2).mean()


def test_new_method_with_taps_and_trainable_adapter(digits: data.DataSplits) -> None:
    hint_method = "testhint"
    torch.manual_seed(0)
    teacher = models.create("resnet8x4", in_channels=1)
    student = models.create("resnet8", in_channels=1)
    r = distill(teacher, student, digits, f"ce+{hint_method}:0.5", epochs=1, batch_size=128, progress=False)
    adapter = r.objective.losses[hint_method].adapter  # type: ignore[union-attr]
    assert adapter.weight.shape == (256, 64, 1, 1)
    assert adapter.weight.grad is not None  # it was trained with the student
    assert r.history[0]["train_testhint"] > 0


def teardown_module() -> None:
    METHODS._items.pop("testhint", None)  # keep the shared registry clean for other test files


# -- trainer ------------------------------------------------------------------------------------
def _student(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return models.create("resnet8", in_channels=1)


def test_train_loss_decreases_and_checkpoints(digits: data.DataSplits, tmp_path: Path) -> None:
    student = _student()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    r = train(student, digits, epochs=3, batch_size=64, out_dir=tmp_path, progress=False)
    losses = [h["train_loss"] for h in r.history]
    assert losses[2] < losses[0] and r.metrics["val_acc"] > 0.5 and r.metrics["test_acc"] > 0.5
    assert r.checkpoint == tmp_path / "checkpoint.pt" and r.checkpoint.exists() and r.best_path.exists()
    state = torch.load(r.checkpoint, weights_only=True)
    assert state["epoch"] == 3 and len(state["history"]) == 3 and {"optimizer", "scheduler", "rng"} <= set(state)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())  # input untouched


class _Stop(Exception):
    pass


def test_resume_is_bit_identical(digits: data.DataSplits, tmp_path: Path) -> None:
    kw = {"epochs": 3, "batch_size": 64, "progress": False, "seed": 3}
    full = train(_student(), digits, out_dir=tmp_path / "full", **kw)

    def stop_after_two(row: dict) -> None:
        if row["epoch"] == 2:
            raise _Stop

    with pytest.raises(_Stop):
        train(_student(), digits, out_dir=tmp_path / "cut", on_epoch_end=stop_after_two, **kw)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["epoch"] == 2
    resumed = train(_student(seed=99), digits, out_dir=tmp_path / "cut", resume=True, **kw)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert [h["val_loss"] for h in full.history] == [h["val_loss"] for h in resumed.history]
    with pytest.raises(ConfigError, match="written by method 'ce:1'"):
        distill(full.model, _student(), digits, "kd", out_dir=tmp_path / "cut", resume=True, **kw)


def test_teacher_frozen_and_restored(digits: data.DataSplits) -> None:
    torch.manual_seed(1)
    teacher = models.create("resnet8", in_channels=1).train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    r = distill(teacher, _student(), digits, "ce:0.1+kd:0.9", epochs=1, progress=False)
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN stats too: eval mode
    assert all(p.grad is None and p.requires_grad for p in teacher.parameters())
    assert teacher.training and r.history[0]["train_kd"] > 0


def test_trainer_config_errors(digits: data.DataSplits) -> None:
    with pytest.raises(ConfigError, match="needs a teacher"):
        distill(None, _student(), digits, "ce+kd", epochs=1, progress=False)
    with pytest.raises(ConfigError, match="outputs 5 classes but digits has 10"):
        train(models.create("resnet8", num_classes=5, in_channels=1), digits, epochs=1, progress=False)
    with pytest.raises(ConfigError, match="resume=True needs out_dir"):
        train(_student(), digits, resume=True, progress=False)
    with pytest.raises(ConfigError, match="unknown optimizer 'adam'"):
        train(_student(), digits, optimizer="adam", progress=False)


def test_val_every_validates_every_nth_and_the_last_epoch(digits: data.DataSplits, tmp_path: Path) -> None:
    r = train(_student(), digits, epochs=5, batch_size=128, val_every=2, out_dir=tmp_path, progress=False)
    assert [h["epoch"] for h in r.history if "val_acc" in h] == [2, 4, 5]
    assert r.metrics["val_acc"] == r.history[-1]["val_acc"] and r.best_path.exists()
    with pytest.raises(ConfigError, match="val_every=0"):
        train(_student(), digits, val_every=0, progress=False)


def test_mixed_batches_hold_the_labelled_share_and_cover_the_unlabelled_once() -> None:
    labelled, unlabelled = list(range(10)), list(range(10, 105))  # 95 unlabelled: the last batch is short
    batches = mixed_batches(labelled, unlabelled, batch_size=16, per_batch=6, seed=5)
    assert len(batches) == 10 and [n for _, n in batches] == [16] * 9 + [11]
    stream = [i for idx, _ in batches for i in idx if i < 10]
    assert all(sum(i < 10 for i in idx) == 6 for idx, _ in batches)
    assert sorted(i for idx, _ in batches for i in idx if i >= 10) == unlabelled  # each unlabelled once
    assert all(sorted(stream[k:k + 10]) == labelled for k in range(0, 60, 10))  # labels in turn, no early repeat
    assert mixed_batches(labelled, unlabelled, 16, 6, seed=5) == batches != mixed_batches(labelled, unlabelled, 16, 6, 6)
    shards = [mixed_batches(labelled, unlabelled, 16, 6, seed=5, rank=r, world_size=2) for r in (0, 1)]
    for (a, n), (b, _), (whole, _) in zip(*shards, batches, strict=True):
        assert sorted(a + b) == sorted(whole) and n == len(whole)


def test_labelled_per_batch_gives_every_batch_the_same_labels(digits: data.DataSplits,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    few = data.few_labels(digits, 40, transfer=True)  # 40 labelled train images, the rest y = -1
    seen: list[torch.Tensor] = []
    step = OfflineStrategy.step

    def recording(self: OfflineStrategy, x: torch.Tensor, y: torch.Tensor, *a: object) -> object:
        seen.append(y.clone())
        return step(self, x, y, *a)

    monkeypatch.setattr(OfflineStrategy, "step", recording)
    distill(None, _student(), few, "ce", epochs=1, batch_size=32, labelled_per_batch=16, progress=False)
    n_unlabelled = int((data.as_tensors(few.train)[1] < 0).sum())
    assert len(seen) == math.ceil(n_unlabelled / 16)
    assert all(int((y >= 0).sum()) == 16 for y in seen) and sum(int((y < 0).sum()) for y in seen) == n_unlabelled
    with pytest.raises(ConfigError, match="needs a transfer set.*all labelled"):
        distill(None, _student(), digits, "ce", epochs=1, batch_size=32, labelled_per_batch=16, progress=False)
    with pytest.raises(ConfigError, match="labelled_per_batch=32 must be in 0..batch_size-1"):
        distill(None, _student(), few, "ce", epochs=1, batch_size=32, labelled_per_batch=32, progress=False)


def test_one_progress_bar_per_run(digits: data.DataSplits, capsys: pytest.CaptureFixture[str]) -> None:
    """One bar for the whole run (epoch and metrics in its postfix), not one per epoch."""
    train(models.create("resnet8", in_channels=1), digits, epochs=3, batch_size=128, progress=True)
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err[-500:]  # the bar's one line, closed once
    final = err.rsplit("\r", 1)[-1]
    assert "12/12" in final and "epoch=3/3" in final and "val_acc=" in final  # 3 epochs of 4 steps, one bar
