"""Residual distillation: routing of plain-student stages into the ResNet teacher, phases, end to end."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
import torch

from edgekd import data, models
from edgekd.distillation import TrainConfig, Trainer, build_objective, distill
from edgekd.distillation.strategies import ResidualStrategy
from edgekd.distillation.strategies.residual import ROUTED, run_from
from edgekd.errors import ConfigError


@pytest.fixture(scope="module")
def digits() -> data.DataSplits:
    return data.load("digits", limit=200)


def _pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    return models.create("resnet14", in_channels=1), models.create("resnet14_plain", in_channels=1)


def test_run_from_equals_teacher_forward_on_its_own_stage() -> None:
    teacher = models.create("resnet14", in_channels=1).eval()
    x = torch.randn(3, 1, 8, 8)
    h = teacher.layer1(teacher.relu(teacher.bn1(teacher.conv1(x))))
    torch.testing.assert_close(run_from(teacher, h, ["layer2", "layer3"]), teacher(x))


def test_routed_losses_reach_student_early_layers_through_teacher(digits: data.DataSplits) -> None:
    teacher, student = _pair()
    objective = build_objective("resdistill", resdistill_kd=0.0, resdistill_feat=0.0)
    strategy = ResidualStrategy(student, teacher, objective)
    x, y = digits.train[0][0][None].repeat(4, 1, 1, 1), torch.tensor([1, 2, 3, 4])
    with ExitStack() as stack:
        strategy.enter(stack, "cpu", digits.train)
        ctx = strategy.context(x, y, torch.arange(4), epoch=0, step=0)
        assert len(ctx.student_features[ROUTED]) == 2
        routed = sum(torch.nn.functional.cross_entropy(z, y) for z in ctx.student_features[ROUTED])
        routed.backward()
    g_stem = student.conv1.weight.grad
    assert g_stem is not None and g_stem.abs().sum() > 0
    assert student.fc.weight.grad is None  # routed logits bypass the student's later stages


def test_frozen_then_joint_phase_and_only_plain_student_returned(digits: data.DataSplits) -> None:
    teacher, student = _pair()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    objective = build_objective("resdistill", resdistill_freeze_epochs=1)
    strategy = ResidualStrategy(student, teacher, objective)
    Trainer(None, digits, objective, TrainConfig(epochs=1, batch_size=64, progress=False), strategy=strategy).fit()
    t_after = strategy.teacher.state_dict()
    assert all(torch.equal(v, t_after[k]) for k, v in before.items() if "num_batches" not in k)  # frozen epoch
    r = distill(teacher, student, digits, "resdistill", epochs=2, batch_size=64, progress=False,
                resdistill_freeze_epochs=1)
    assert "train_teacher_ce" in r.history[1] and "train_teacher_ce" not in r.history[0]
    assert r.history[1]["train_resdistill"] > 0 and 0 <= r.metrics["test_acc"] <= 1
    assert not any(m.shortcut for m in r.model.modules() if hasattr(m, "shortcut"))
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())  # caller's teacher untouched


def test_bad_configurations_name_the_fix(digits: data.DataSplits) -> None:
    teacher, student = _pair()
    with pytest.raises(ConfigError, match="not stages before the last"):
        build_objective("resdistill", resdistill_routes=["layer3"])
    with pytest.raises(ConfigError, match="needs the ResNet teacher"):
        distill(None, student, digits, "resdistill", epochs=1, progress=False)
    with pytest.raises(ConfigError, match="mixes residual"):
        distill(teacher, student, digits, "resdistill+kd", epochs=1, progress=False)
    with pytest.raises(ConfigError, match="routing student stages"):
        distill(models.create("resnet8x4", in_channels=1), student, digits, "resdistill", epochs=1, progress=False)


def test_routed_weight_cosine_fade(digits: data.DataSplits) -> None:
    loss = build_objective("resdistill", resdistill_route=2.0, resdistill_fade_epochs=4,
                           resdistill_fade_to=0.25).losses["resdistill"]
    w = [loss.route_weight(e) for e in range(6)]
    assert w[0] == pytest.approx(2.0) and w[2] == pytest.approx(2.0 * (0.25 + 0.75 * 0.5))
    assert w[4] == w[5] == pytest.approx(0.5) and w == sorted(w, reverse=True)
    assert build_objective("resdistill").losses["resdistill"].route_weight(99) == 1.0  # default: constant β
    # faded to 0, the routed terms no longer enter the loss: it equals the route-off objective's
    teacher, student = _pair()
    # (pooled-feature MSE, the default: the margin loss's connectors would differ between two objectives)
    faded = build_objective("resdistill", resdistill_fade_epochs=1, resdistill_fade_to=0.0, resdistill_feat_kind="mse")
    off = build_objective("resdistill", resdistill_route=0.0, resdistill_feat_kind="mse")
    strategy = ResidualStrategy(student, teacher, faded)
    x, y = digits.train[0][0][None].repeat(4, 1, 1, 1), torch.tensor([1, 2, 3, 4])
    with ExitStack() as stack, torch.no_grad():
        strategy.enter(stack, "cpu", digits.train)
        late, early = (strategy.context(x, y, torch.arange(4), epoch=e, step=0) for e in (1, 0))
        assert faded(late)[0] == pytest.approx(off(late)[0].item())
        assert faded(early)[0].item() > off(early)[0].item()
    with pytest.raises(ConfigError, match="fade_to"):
        build_objective("resdistill", resdistill_fade_to=1.5)


def test_margin_feature_loss_on_pre_relu_features_trains_connector(digits: data.DataSplits) -> None:
    """feat_kind="margin" is the authors' margin loss between the last stage's pre-ReLU maps;
    its connector is in the student's optimiser group and gets gradients, the teacher none from it."""
    teacher, student = _pair()
    assert build_objective("resdistill").losses["resdistill"].feat_tap == "pool"  # default: pooled-feature MSE
    objective = build_objective("resdistill", resdistill_kd=0.0, resdistill_route=0.0, resdistill_feat_kind="margin")
    loss = objective.losses["resdistill"]
    assert loss.feat_tap == "layer3@prerelu" and loss.teacher_taps == ("layer3@prerelu",)
    strategy = ResidualStrategy(student, teacher, objective)
    x, y = torch.stack([digits.train[i][0] for i in range(8)]), torch.tensor([digits.train[i][1] for i in range(8)])
    with ExitStack() as stack:
        strategy.enter(stack, "cpu", digits.train)
        strategy.setup((x, y, torch.arange(8)), digits)
        margin = loss.margin.margins()[0]
        assert margin.shape == (64,) and (margin <= 0).all() and (margin < 0).sum() > 32  # mean negative response
        ctx = strategy.context(x, y, torch.arange(8), epoch=0, step=0)
        feat = loss.margin(ctx)
        feat.backward()
    connector = list(loss.margin.parameters())
    assert feat.item() > 0 and all(p.grad is not None and p.grad.abs().sum() > 0 for p in connector)
    assert student.layer3[0].conv2.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in strategy.teacher.parameters())
    student_group = {id(p) for p in strategy.param_groups()["student"][0]}
    assert all(id(p) in student_group for p in connector)
    with pytest.raises(ConfigError, match="feat_kind='l1' is not one of"):
        build_objective("resdistill", resdistill_feat_kind="l1")
