"""Distillation losses DKD, FitNet, AT, RKD, SP, CRD, OFD: hand-checked values, gradients, widths, errors."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from edgekd import data, models
from edgekd.distillation import StepContext, Taps, build_objective, distill
from edgekd.distillation.losses.crd import nce_loss
from edgekd.errors import ConfigError

FEATURE_METHODS = ("fitnet", "at", "rkd", "sp", "crd", "ofd")


def _ctx(s_feats: dict[str, torch.Tensor] | None = None, t_feats: dict[str, torch.Tensor] | None = None,
         s: torch.Tensor | None = None, t: torch.Tensor | None = None, y: torch.Tensor | None = None,
         **kw: Any) -> StepContext:
    n = next(iter((s_feats or {}).values()), s if s is not None else torch.zeros(1, 2)).shape[0]
    return StepContext(student_logits=s if s is not None else torch.zeros(n, 2),
                       teacher_logits=t, targets=y if y is not None else torch.zeros(n, dtype=torch.long),
                       student_features=s_feats or {}, teacher_features=t_feats or {}, **kw)


def _loss(method: str, **options: Any) -> torch.nn.Module:
    return build_objective(method, **{f"{method}_{k}": v for k, v in options.items()}).losses[method]


# -- values by hand ------------------------------------------------------------------------------
def test_dkd_value_by_hand_and_warmup() -> None:
    # T=1: teacher p = [1/2, 1/4, 1/4], student p = [1/4, 1/4, 1/2], label 0
    t = torch.tensor([[math.log(2.0), 0.0, 0.0]])
    s = torch.tensor([[0.0, 0.0, math.log(2.0)]])
    y = torch.tensor([0])
    tckd = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # b_t = [1/2, 1/2], b_s = [1/4, 3/4]
    nckd = 0.5 * math.log(0.5 / (1 / 3)) + 0.5 * math.log(0.5 / (2 / 3))  # [1/2, 1/2] vs [1/3, 2/3]
    dkd = _loss("dkd", T=1.0, alpha=1.0, beta=8.0, warmup=0)
    assert dkd(_ctx(s=s, t=t, y=y)).item() == pytest.approx(tckd + 8 * nckd, rel=1e-5)
    # KD decomposes as TCKD + (1 - p_t[y]) * NCKD (the paper's eq. 7)
    kd = _loss("kd", T=1.0)(_ctx(s=s, t=t, y=y)).item()
    assert kd == pytest.approx(tckd + 0.5 * nckd, rel=1e-5)
    ramped = _loss("dkd", T=1.0, warmup=4)
    assert ramped(_ctx(s=s, t=t, y=y, epoch=0)).item() == pytest.approx((tckd + 8 * nckd) / 4, rel=1e-5)
    assert ramped(_ctx(s=s, t=t, y=y, epoch=9)).item() == pytest.approx(tckd + 8 * nckd, rel=1e-5)


def test_fitnet_value_with_known_regressor() -> None:
    s = {"stage:-2": torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)}
    t = {"stage:-2": torch.zeros(1, 3, 1, 1)}
    fitnet = _loss("fitnet")
    fitnet.setup(_ctx(s, t), num_train=1)
    conv = fitnet.regressors[0]
    assert conv.weight.shape == (3, 2, 1, 1)  # 1x1 conv from student width 2 to teacher width 3
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]).view(3, 2, 1, 1))
        conv.bias.zero_()
    assert fitnet(_ctx(s, t)).item() == pytest.approx((1 + 4 + 9) / 3)  # W s = [1, 2, 3]


def test_at_value_by_hand_code_and_paper_modes() -> None:
    s = {"layer1": torch.tensor([[[[1.0, 0.0]]], [[[1.0, 0.0]]]]).view(1, 2, 1, 2)}  # attention [1, 0]
    t = {"layer1": torch.tensor([0.0, 1.0]).repeat(3, 2, 1).view(1, 3, 2, 2)}  # 2x2, pooled to 1x2: [0, 1]
    code = _loss("at", student_taps=["layer1"])(_ctx(s, t)).item()
    paper = _loss("at", student_taps=["layer1"], mode="paper")(_ctx(s, t)).item()
    assert code == pytest.approx((1 + 1) / 2) and paper == pytest.approx(math.sqrt(2))  # diff [1, -1]


def _smooth_l1(a: float, b: float) -> float:
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


def _rkd_by_hand(s: list[tuple[float, float]], t: list[tuple[float, float]]) -> tuple[float, float]:
    """Plain-Python RKD distance and angle terms (Huber means over N^2 pairs and N^3 triplets)."""
    def dist(e: list[tuple[float, float]]) -> list[list[float]]:
        d = [[math.dist(a, b) for b in e] for a in e]
        mu = sum(x for row in d for x in row if x > 0) / sum(1 for row in d for x in row if x > 0)
        return [[x / mu for x in row] for row in d]

    def cos(e: list[tuple[float, float]], i: int, j: int, k: int) -> float:
        u = (e[j][0] - e[i][0], e[j][1] - e[i][1])
        v = (e[k][0] - e[i][0], e[k][1] - e[i][1])
        nu, nv = math.hypot(*u), math.hypot(*v)
        return 0.0 if nu == 0 or nv == 0 else (u[0] * v[0] + u[1] * v[1]) / (nu * nv)

    n = len(s)
    ds, dt = dist(s), dist(t)
    d_term = sum(_smooth_l1(ds[i][j], dt[i][j]) for i in range(n) for j in range(n)) / n**2
    a_term = sum(_smooth_l1(cos(s, i, j, k), cos(t, i, j, k))
                 for i, j, k in itertools.product(range(n), repeat=3)) / n**3
    return d_term, a_term


def test_rkd_value_by_hand_and_scale_invariance() -> None:
    tri, line = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)], [(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)]
    feats = {name: torch.tensor(p).view(3, 2, 1, 1) for name, p in (("tri", tri), ("line", line))}
    d_term, a_term = _rkd_by_hand(line, tri)
    assert d_term > 0.01 and a_term > 0.01
    got = _loss("rkd", distance_weight=2.0, angle_weight=3.0)(_ctx({"embedding": feats["line"]}, {"embedding": feats["tri"]}))
    assert got.item() == pytest.approx(2 * d_term + 3 * a_term, rel=1e-5)
    scaled = _loss("rkd")(_ctx({"embedding": 5 * feats["tri"]}, {"embedding": feats["tri"]}))  # same shape, other scale
    assert scaled.item() == pytest.approx(0.0, abs=1e-5)


def test_sp_value_by_hand() -> None:
    s = {"embedding": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}  # G_s = I
    t = {"embedding": torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])}  # G_t rows [1/sqrt2, 1/sqrt2]
    r = 1 / math.sqrt(2)
    expected = (2 * (1 - r) ** 2 + 2 * r**2) / 2**2
    assert _loss("sp")(_ctx(s, t)).item() == pytest.approx(expected, rel=1e-6)


def test_ofd_margin_and_partial_l2_by_hand() -> None:
    from edgekd.distillation.losses.ofd import margin_relu, negative_mean, partial_l2

    # channel 0: negatives -1 and -3 -> margin -2; channel 1: none -> 0
    t = torch.tensor([[-1.0, 2.0], [-3.0, 0.5]]).view(2, 2, 1, 1)
    torch.testing.assert_close(negative_mean(t), torch.tensor([-2.0, 0.0]))
    target = margin_relu(torch.tensor([-1.0, -3.0, 2.0]).view(1, 3, 1, 1), torch.tensor([-2.0, -2.0, 0.0]))
    assert target.flatten().tolist() == [-1.0, -2.0, 2.0]
    # s <= t <= 0 costs nothing; s above a negative target, or any positive target, costs (s - t)^2
    s = torch.tensor([-5.0, -1.0, 1.0]).view(1, 3, 1, 1)
    assert partial_l2(s, target).item() == pytest.approx((0.0 + 1.0 + 1.0) / 3)
    ofd = _loss("ofd", momentum=0.5)
    ofd.setup(_ctx({"stage:-1@prerelu": torch.zeros(2, 2, 1, 1)}, {"stage:-1@prerelu": t}), 2)
    torch.testing.assert_close(ofd.margins()[0], torch.tensor([-2.0, 0.0]))  # from the probe batch
    ofd.train()
    ofd(_ctx({"stage:-1@prerelu": torch.zeros(2, 2, 1, 1)}, {"stage:-1@prerelu": t - 2}))  # negatives -3, -5 / -1.5
    torch.testing.assert_close(ofd.margins()[0], torch.tensor([-3.0, -0.75]))  # running mean, momentum 0.5
    ofd.eval()
    ofd(_ctx({"stage:-1@prerelu": torch.zeros(2, 2, 1, 1)}, {"stage:-1@prerelu": t - 9}))
    torch.testing.assert_close(ofd.margins()[0], torch.tensor([-3.0, -0.75]))  # frozen outside training


def test_crd_nce_value_by_hand() -> None:
    scores, m = torch.tensor([[2.0, 0.5, 1.0]]), 10  # k = 2 negatives, noise k/m = 0.2
    expected = -(math.log(2.0 / 2.2) + math.log(0.2 / 0.7) + math.log(0.2 / 1.2))
    assert nce_loss(scores, m, eps=0.0).item() == pytest.approx(expected, rel=1e-6)


def test_crd_memory_negatives_and_cap() -> None:
    torch.manual_seed(0)
    n_train, dim = 12, 4
    s = {"embedding": torch.randn(4, 6, 1, 1)}
    t = {"embedding": torch.randn(4, 10, 1, 1)}
    y, idx = torch.tensor([0, 1, 0, 1]), torch.tensor([3, 7, 0, 11])
    crd = _loss("crd", feat_dim=dim, negatives="other_class")
    with pytest.warns(UserWarning, match="k=16384 negatives capped at 11"):
        crd.setup(_ctx(s, t), n_train)
    assert crd.k == 11 and crd.bank_s.shape == (n_train, dim)
    old = crd.bank_s[idx].clone()
    ctx = _ctx(s, t, y=y, indices=idx)
    loss = crd(ctx)
    assert torch.isfinite(loss) and loss.item() > 0 and (crd.z > 0).all()
    with torch.no_grad():
        emb = F.normalize(crd.embed_s(s["embedding"].flatten(1)), dim=1)
    assert torch.allclose(crd.bank_s[idx], F.normalize(0.5 * old + 0.5 * emb, dim=1), atol=1e-6)
    rows = crd._sample(idx, y)  # labels of idx are now known: negatives among them avoid the class
    assert torch.equal(rows[:, 0], idx) and rows.shape == (4, 12)
    for i in range(4):
        assert not any(int(j) in idx.tolist() and crd.labels[j] == y[i] for j in rows[i, 1:])


# -- gradients, mismatched widths ------------------------------------------------------------------
@pytest.fixture(scope="module")
def nets() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)  # resnet8 student (widths 16/32/64), resnet8x4 teacher (64/128/256)
    return models.create("resnet8", in_channels=1), models.create("resnet8x4", in_channels=1)


@pytest.mark.parametrize("method", ["dkd", *FEATURE_METHODS])
def test_gradients_reach_student_and_adapters_never_teacher(method: str, nets: tuple) -> None:
    student, teacher = nets
    student.zero_grad(set_to_none=True)
    teacher.zero_grad(set_to_none=True)
    loss = build_objective(method, **({"dkd_warmup": 0} if method == "dkd" else {})).losses[method]
    x, y = torch.randn(8, 1, 8, 8), torch.arange(8) % 3
    with Taps(student, loss.student_taps) as s_taps, Taps(teacher, loss.teacher_taps) as t_taps:
        ctx = StepContext(student(x), teacher(x), y, indices=torch.arange(8), student_features=s_taps.outputs,
                          teacher_features=t_taps.outputs)  # the teacher even runs with autograd on
        loss.setup(ctx, num_train=20)
        value = loss(ctx)
    value.backward()
    assert torch.isfinite(value) and value.item() > 0
    assert sum(p.grad.abs().sum().item() for p in student.parameters() if p.grad is not None) > 0
    assert all(p.grad is None for p in teacher.parameters())
    adapters = list(loss.parameters())
    assert len(adapters) == {"fitnet": 2, "crd": 4, "ofd": 3}.get(method, 0)  # conv w+b; two linear embeds; conv w + BN
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapters)


def test_mobilenet_student_of_resnet_teacher(nets: tuple) -> None:
    student, teacher = models.create("mobilenetv2_x0_25", in_channels=1), nets[1]
    obj = build_objective("fitnet+at+rkd+sp+crd", fitnet_student_taps=["layer3"])
    x = torch.randn(6, 1, 8, 8)
    with Taps(student, obj.student_taps) as s_taps, Taps(teacher, obj.teacher_taps) as t_taps:
        ctx = StepContext(student(x), teacher(x), torch.zeros(6, dtype=torch.long), indices=torch.arange(6),
                          student_features=s_taps.outputs, teacher_features=t_taps.outputs)
        obj.setup(ctx, num_train=6)
        total, parts = obj(ctx)
    assert torch.isfinite(total) and set(parts) == {"fitnet", "at", "rkd", "sp", "crd"}
    assert obj.losses["fitnet"].regressors[0].weight.shape[:2] == (256, 8)  # 8 -> 256 channels (layer3 4x4 vs 2x2)


# -- end to end and errors ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits() -> data.DataSplits:
    return data.load("digits", limit=150)


def test_every_loss_trains_one_epoch_and_crd_composition(digits: data.DataSplits, nets: tuple) -> None:
    student, teacher = nets
    r = distill(teacher, student, digits, "ce + dkd + fitnet + at:100 + rkd + sp:100", epochs=1,
                batch_size=64, progress=False, dkd_warmup=1)
    row = r.history[0]
    for name in ("ce", "dkd", "fitnet", "at", "rkd", "sp"):
        assert math.isfinite(row[f"train_{name}"]) and row[f"train_{name}"] > 0, name
    with pytest.warns(UserWarning, match="capped"):
        r = distill(teacher, student, digits, "ce:1 + kd:0.9 + crd:0.8", epochs=1, batch_size=48, progress=False)
    assert r.objective.spec == "ce:1 + kd:0.9 + crd:0.8" and math.isfinite(r.history[0]["train_crd"])
    crd = r.objective.losses["crd"]
    assert crd.bank_s.shape == (len(digits.train), 128) and crd.k == len(digits.train) - 1
    for bank in (crd.bank_s, crd.bank_t):  # every sample's row was written once (random init is not unit norm)
        assert torch.allclose(bank.norm(dim=1), torch.ones(len(digits.train)), atol=1e-5)
    assert torch.equal(crd.labels, digits.train.tensors[1])  # indices from the loader match the samples


def test_ofd_trains_from_the_teacher_cache_of_pre_relu_maps(digits: data.DataSplits, nets: tuple) -> None:
    student, teacher = nets
    r = distill(teacher, student, digits, "ce + ofd", epochs=1, batch_size=64, progress=False, cache_teacher=True)
    assert math.isfinite(r.history[0]["train_ofd"]) and r.history[0]["train_ofd"] > 0
    margin = r.objective.losses["ofd"].margins()[0]
    assert margin.shape == (256,) and (margin <= 0).all() and (margin < 0).any()


@pytest.mark.parametrize(("method", "options", "message"), [
    ("ce+fitnett", {}, "unknown method 'fitnett'; known: .*crd.*dkd"),
    ("ce+crd:-0.8", {}, "weight '-0.8' of method 'crd' is not a finite number >= 0"),
    ("fitnet", {"fitnet_student_taps": []}, "names no module"),
    ("at", {"at_student_taps": ["layer1"], "at_teacher_taps": ["layer1", "layer2"]}, "one to one"),
    ("at", {"at_mode": "both"}, "mode must be one of code, paper"),
    ("crd", {"crd_T": 0}, "T > 0"),
    ("dkd", {"dkd_beta": -8}, "beta"),
    ("rkd", {"rkd_stride": 2}, "has no option stride"),
    ("ofd", {"ofd_momentum": 1.0}, "momentum=1.0 must be in"),
    ("dist", {"dist_gamma": -1}, "gamma >= 0"),
    ("nkd", {"nkd_T": 0}, "T > 0"),
    ("wttm", {"wttm_gamma": 1.5}, r"gamma=1.5 must be in \(0, 1\]"),
    ("mlkd", {"mlkd_T": -1}, "T=-1"),
    ("mlkd", {"mlkd_scale": "paper"}, "scale in code, reference"),
    ("reviewkd", {"reviewkd_warmup": -1}, "warmup=-1 must be >= 0"),
    ("at", {"at_warmup": -2}, "warmup=-2"),
])
def test_bad_options_are_clear(method: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_objective(method, **options)


def test_missing_tap_and_missing_indices_are_clear(digits: data.DataSplits, nets: tuple) -> None:
    student, teacher = nets
    with pytest.raises(ConfigError, match=r"no module 'layer9'; nearby: layer\d"):
        distill(teacher, student, digits, "ce+fitnet", fitnet_student_taps=["layer9"], epochs=1, progress=False)
    crd = _loss("crd", k=2)
    feats = {"embedding": torch.randn(3, 4)}
    crd.setup(_ctx(feats, feats), 5)
    with pytest.raises(ConfigError, match="needs each sample's index"):
        crd(_ctx(feats, feats))
    with pytest.raises(ConfigError, match="feature 'stage:-2' but it was not recorded"):
        _loss("fitnet").setup(_ctx({"embedding": torch.zeros(1, 2)}, {}), 1)
    with pytest.raises(ConfigError, match="setup.*was not called"):
        _loss("fitnet")(_ctx({"stage:-2": torch.zeros(1, 2, 1, 1)}, {"stage:-2": torch.zeros(1, 2, 1, 1)}))


# -- augmented views (MLKD) and the modern losses end to end ----------------------------------------------
def test_strong_view_is_seeded_in_range_and_changes_the_batch() -> None:
    from edgekd.data.augment import VIEWS

    x = torch.randn(16, 1, 12, 12) * 0.3 + 0.2
    before = x.clone()
    torch.manual_seed(3)
    a = VIEWS.get("strong")(x)
    torch.manual_seed(3)
    b = VIEWS.get("strong")(x)
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == x.dtype
    assert not torch.equal(a, x) and (a - x).abs().flatten(1).amax(1).gt(1e-3).float().mean() > 0.8
    assert float(a.min()) >= float(x.min()) - 1e-5 and float(a.max()) <= float(x.max()) + 1e-5  # black .. white
    assert torch.equal(x, before)  # the input is not modified in place


def test_mlkd_reads_the_cache_on_the_batch_and_runs_the_teacher_live_on_the_strong_view(
        digits: data.DataSplits, nets: tuple) -> None:
    from edgekd.data.augment import VIEWS
    from edgekd.distillation import TeacherCache
    from edgekd.distillation.strategies.offline import OfflineStrategy

    student, teacher = nets
    teacher.eval()
    x, y = digits.train.tensors[0][:8], digits.train.tensors[1][:8]
    obj = build_objective("ce + mlkd")
    cache = TeacherCache(teacher, digits.train)
    strategy = OfflineStrategy(student, obj, teacher, cache=cache)
    strategy.cache = cache
    torch.manual_seed(5)
    ctx = strategy.context(x, y, torch.arange(8), epoch=0, step=0)
    torch.manual_seed(5)
    with torch.no_grad():
        want = teacher(VIEWS.get("strong")(x))
    assert torch.allclose(ctx.teacher_logits, cache[torch.arange(8)])
    assert set(ctx.views) == {"strong"} and torch.allclose(ctx.views["strong"][1], want, atol=1e-5)
    assert ctx.views["strong"][0].requires_grad and not torch.allclose(ctx.views["strong"][1], ctx.teacher_logits)
    with pytest.raises(ConfigError, match="strong view"):
        obj.losses["mlkd"](StepContext(ctx.student_logits, ctx.teacher_logits, y))
    r = distill(teacher, student, digits, "ce:0.1 + mlkd:0.9(ls)", epochs=1, batch_size=64, progress=False,
                mlkd_T=2.0, cache_teacher=True)
    row = r.history[0]
    assert r.method == "ce:0.1 + mlkd:0.9(ls)" and math.isfinite(row["train_mlkd"]) and row["train_mlkd"] > 0


def test_new_logit_and_review_losses_train_one_epoch(digits: data.DataSplits, nets: tuple) -> None:
    student, teacher = nets
    r = distill(teacher, student, digits, "ce + dist:2 + nkd + wttm:4 + kd(ls) + reviewkd", epochs=1, batch_size=64,
                progress=False, reviewkd_warmup=1, cache_teacher=True)
    row = r.history[0]
    for name in ("dist", "nkd", "wttm", "kd", "reviewkd"):
        assert math.isfinite(row[f"train_{name}"]) and row[f"train_{name}"] > 0, name
    abfs = r.objective.losses["reviewkd"].abfs
    assert [a.conv2[0].out_channels for a in abfs] == [64, 128, 256, 256]  # to resnet8x4's widths, pool last
