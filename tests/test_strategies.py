"""Strategies: ensemble teacher math, DML/AFD online training, self-distillation, method checks."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgekd import data, models
from edgekd.distillation import (
    EnsembleTeacher,
    StepContext,
    Taps,
    TrainConfig,
    Trainer,
    build_objective,
    distill,
    methods,
)
from edgekd.distillation.strategies import OnlineStrategy
from edgekd.distillation.strategies.online import mutual_kl, peers_ce
from edgekd.errors import ConfigError
from edgekd.models.exits import ExitModel, exit_accuracy


@pytest.fixture(scope="module")
def digits() -> data.DataSplits:
    return data.load("digits", limit=300)


def _net(seed: int, name: str = "resnet8") -> nn.Module:
    torch.manual_seed(seed)
    return models.create(name, in_channels=1)


def test_strategy_methods_are_registered() -> None:
    assert {"dml", "afd", "feat_l1", "ensemble", "self"} <= set(methods())


def test_strategies_registry_picks_by_the_losses_declared_kind() -> None:
    from edgekd.distillation.strategies import STRATEGIES, ResidualStrategy, SelfStrategy, make_strategy
    from edgekd.errors import RegistryError

    assert STRATEGIES.names() == ["offline", "online", "progressive", "residual", "self"]
    assert isinstance(make_strategy(build_objective("self"), _net(0)), SelfStrategy)
    assert isinstance(make_strategy(build_objective("resdistill"), _net(0, "resnet8_plain"), _net(1)),
                      ResidualStrategy)
    assert isinstance(make_strategy(build_objective("dml"), [_net(0), _net(1)]), OnlineStrategy)
    objective = build_objective("ce")
    objective.losses["ce"].strategy = "swarm"  # a loss naming a kind nobody registered
    with pytest.raises(RegistryError, match="unknown strategy 'swarm'; known: offline, online, progressive"):
        make_strategy(objective, _net(0))


def test_ensemble_teacher_averages_soft_targets_and_features() -> None:
    a, b = _net(1).eval(), _net(2).eval()
    ens = EnsembleTeacher([a, b], weights=[3, 1], T=4.0, features=["layer3"]).eval()
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad(), Taps(ens, ["layer3"]) as taps:
        out = ens(x)
        want = 0.75 * F.softmax(a(x) / 4, 1) + 0.25 * F.softmax(b(x) / 4, 1)
        with Taps(a, ["layer3"]) as ta, Taps(b, ["layer3"]) as tb:
            a(x), b(x)
            want_feat = 0.75 * ta["layer3"] + 0.25 * tb["layer3"]
    torch.testing.assert_close(F.softmax(out / 4, 1), want)
    torch.testing.assert_close(taps["layer3"], want_feat)
    with pytest.raises(ConfigError, match="do not fit 2 teachers"):
        EnsembleTeacher([a, b], weights=[1.0])


def test_ensemble_distill_runs_with_two_teachers(digits: data.DataSplits) -> None:
    t1, t2 = _net(1), _net(2)
    r = distill([t1, t2], _net(0), digits, "ce+ensemble", epochs=1, batch_size=64, progress=False,
                teacher_weights=[1, 2], ensemble_T=2.0)
    assert r.history[0]["train_ensemble"] > 0 and r.method == "ce:1 + ensemble:1"
    assert all(p.requires_grad for p in t1.parameters())  # teachers restored


def test_mutual_kl_by_hand() -> None:
    z = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]]])  # peer 0: [1/2, 1/2]; peer 1: [3/4, 1/4]
    kl_10 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL(p1 || p0)
    kl_01 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL(p0 || p1)
    assert mutual_kl(z, T=1.0).item() == pytest.approx(kl_10 + kl_01, rel=1e-6)
    z3 = torch.cat([z, z[:1]])  # K=3, peers (p0, p1, p0): each averages its KL from the 2 others
    assert mutual_kl(z3, T=1.0).item() == pytest.approx((kl_10 + 2 * kl_01 + kl_10) / 2, rel=1e-6)


def test_dml_trains_every_peer(digits: data.DataSplits) -> None:
    peers = [_net(1), _net(2)]
    before = [p.fc.weight.clone() for p in peers]
    r = distill(None, peers, digits, "dml", epochs=2, batch_size=64, progress=False)
    assert len(r.models) == 2 and r.model in r.models
    assert {"val_acc_net0", "val_acc_net1", "test_acc_net0", "test_acc_net1"} <= set(r.metrics)
    assert all(not torch.equal(m.fc.weight, w) for m, w in zip(r.models, before, strict=True))
    assert all(torch.equal(p.fc.weight, w) for p, w in zip(peers, before, strict=True))  # inputs untouched
    assert r.metrics["val_acc"] > 0.3 and r.history[-1]["train_dml"] > 0


def test_afd_has_own_discriminator_optimizer(digits: data.DataSplits) -> None:
    objective = build_objective("afd", afd_layer="layer3", afd_disc_lr=0.1)
    trainer = Trainer(None, digits, objective, TrainConfig(epochs=1, batch_size=64, lr=1e-3, progress=False),
                      strategy=OnlineStrategy([_net(1), _net(2)], objective))
    history = trainer.fit()
    assert set(trainer.optimizers) == {"net0", "net1", "afd_disc"}
    assert trainer.optimizers["afd_disc"].param_groups[0]["initial_lr"] == pytest.approx(1e-4)
    assert trainer.optimizers["net0"].param_groups[0]["initial_lr"] == pytest.approx(1e-3)
    assert len(objective.losses["afd"].discriminators) == 2
    assert history[0]["train_afd_disc"] > 0 and "val_acc_net1" in history[0]


def test_feat_l1_value_and_gradient_direction() -> None:
    """feat_l1 = DML + mean |F_k - sg(F_{k-1})|: the hand value, and each map is pulled to its peer only."""
    loss = build_objective("feat_l1", feat_l1_weight=2.0, feat_l1_T=1.0).losses["feat_l1"]
    z = torch.tensor([[[2.0, 0.0]], [[0.0, 0.0]]])
    f0 = torch.zeros(1, 1, 2, 2, requires_grad=True)
    f1 = torch.full((1, 1, 2, 2), 3.0, requires_grad=True)
    ctx = StepContext(student_logits=z, teacher_logits=None, targets=torch.tensor([0]), indices=torch.tensor([0]),
                      student_features={"peers": [{"stage:-1": f0}, {"stage:-1": f1}]})
    value = loss(ctx)
    expected = peers_ce(z, ctx.targets) + mutual_kl(z, 1.0) + 2.0 * (3.0 + 3.0)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()
    assert torch.allclose(f0.grad, torch.full_like(f0, -2.0 / 4)) and torch.allclose(f1.grad, torch.full_like(f1, 2.0 / 4))


def test_self_distillation_trains_exits(digits: data.DataSplits) -> None:
    student = _net(0, "resnet20")
    r = distill(None, student, digits, "self", epochs=4, batch_size=32, progress=False)
    assert isinstance(r.model, ExitModel) and r.model.exits == ["layer1.2", "layer2.0"]
    assert r.model.backbone is not student and r.history[-1]["train_self"] > 0
    acc = exit_accuracy(r.model, digits.val)
    assert set(acc) == {"layer1.2", "layer2.0", "final"} and acc["final"] == pytest.approx(r.metrics["val_acc"])
    assert acc["final"] > 0.3 and max(acc["layer1.2"], acc["layer2.0"]) > 0.15


@pytest.mark.parametrize(("teacher", "students", "method", "message"), [
    (None, 1, "dml", "trains two or more networks"),
    (None, 2, "ce", "trains one student; got 2"),
    (None, 2, "dml+kd", "mixes online training with kd"),
])
def test_strategy_errors(digits: data.DataSplits, teacher: nn.Module | None, students: int, method: str,
                         message: str) -> None:
    student = _net(0) if students == 1 else [_net(0), _net(1)]
    with pytest.raises(ConfigError, match=message):
        distill(teacher, student, digits, method, epochs=1, progress=False)


def test_resdistill_joint_phase_trains_teacher_on_its_own_ce_only(digits: data.DataSplits) -> None:
    """Joint phase (JointRD code, stage JOINT): the teacher's gradients are those of its own CE and
    its batch-norm statistics see only its own forward; the routed student features still get
    gradients through the teacher's later stages."""
    from contextlib import ExitStack

    from edgekd.distillation.strategies import ResidualStrategy
    from edgekd.distillation.strategies.residual import routing

    teacher, student = _net(0, "resnet14"), _net(1, "resnet14_plain")
    strategy = ResidualStrategy(student, teacher, build_objective("resdistill", resdistill_freeze_epochs=0))
    x, y = torch.stack([digits.train[i][0] for i in range(8)]), torch.tensor([digits.train[i][1] for i in range(8)])
    ref = copy.deepcopy(strategy.teacher).train()
    with ExitStack() as stack:
        strategy.enter(stack, "cpu", digits.train)
        strategy.setup((x, y, torch.arange(8)), digits)  # eval-mode probe: builds the margin loss's connector
        strategy.teacher.train(), strategy.student.train()
        losses, parts = strategy.step(x, y, torch.arange(8), epoch=0, step=0)
        (_, loss), = losses
        loss.backward()
    F.cross_entropy(ref(x), y).backward()  # the teacher alone, from the same weights and statistics
    for (name, p), q in zip(strategy.teacher.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=lambda m, n=name: f"{n}: {m}")
    for name, buf in strategy.teacher.named_buffers():
        torch.testing.assert_close(buf, ref.get_buffer(name), msg=lambda m, n=name: f"{n}: {m}")
    assert "teacher_ce" in parts and student.conv1.weight.grad is not None
    assert student.conv1.weight.grad.abs().sum() > 0
    # routing() leaves the teacher as it found it
    flags = [p.requires_grad for p in strategy.teacher.parameters()]
    with routing(strategy.teacher):
        assert not strategy.teacher.training and not any(p.requires_grad for p in strategy.teacher.parameters())
    assert strategy.teacher.training and [p.requires_grad for p in strategy.teacher.parameters()] == flags
