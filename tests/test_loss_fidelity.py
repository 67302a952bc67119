"""Fidelity: every registered loss against its paper's formula, written out here in plain numpy.

Each test feeds fixed float64 tensors to the edgekd loss and recomputes the value from the formula
of the paper / reference implementation (RepDistiller for KD, FitNet, AT, RKD, SP, CRD;
mdistiller for DKD; the authors' code for OFD, BYOT, DML, AFD, MiniLM, PKKD) without calling
edgekd, then asserts both agree to ~1e-10. Where edgekd deliberately deviates (documented in each
loss's docstring), the test computes edgekd's documented variant and says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.distillation import EnsembleTeacher, StepContext, build_objective
from edgekd.models.exits import FINAL, ExitOutputs

RTOL = 1e-10


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _ctx(s: np.ndarray | None = None, t: np.ndarray | None = None, y: np.ndarray | None = None,
         sf: dict[str, Any] | None = None, tf: dict[str, Any] | None = None, **kw: Any) -> StepContext:
    n = len(y) if y is not None else (len(s) if s is not None else 2)
    return StepContext(student_logits=_t(s) if s is not None else torch.zeros(n, 3, dtype=torch.float64),
                       teacher_logits=_t(t) if t is not None else None,
                       targets=torch.as_tensor(y if y is not None else np.zeros(n), dtype=torch.long),
                       student_features=sf or {}, teacher_features=tf or {}, **kw)


def _loss(method: str, **options: Any) -> nn.Module:
    return build_objective(method, **{f"{method}_{k}": v for k, v in options.items()}).losses[method].double()


def _close(got: torch.Tensor | float, want: float, rtol: float = RTOL) -> None:
    got_f = float(got)
    assert got_f == pytest.approx(want, rel=rtol, abs=1e-13), (got_f, want)


# -- plain-numpy building blocks ---------------------------------------------------------------------
def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def kl_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) along the last axis (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(-1)


def kd_np(s: np.ndarray, t: np.ndarray, T: float) -> float:
    """RepDistiller DistillKL: kl_div(log_softmax(s/T), softmax(t/T), 'sum') * T^2 / N."""
    return float(kl_rows(softmax(t / T), softmax(s / T)).sum() * T**2 / len(s))


def ce_np(s: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(softmax(s)[np.arange(len(y)), y]).mean())


def avg_pool(f: np.ndarray, h: int, w: int) -> np.ndarray:
    """Adaptive average pooling for sizes that divide evenly (the only case used here)."""
    n, c, H, W = f.shape
    return f.reshape(n, c, h, H // h, w, W // w).mean(axis=(3, 5))


def l2n(a: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=axis, keepdims=True), eps)


def smooth_l1(a: np.ndarray, b: np.ndarray) -> float:
    d = np.abs(a - b)
    return float(np.where(d < 1, 0.5 * d * d, d - 0.5).mean())


# -- response-based --------------------------------------------------------------------------------
def test_kd_equals_hinton_repdistiller() -> None:
    r = _rng(1)
    s, t = r.normal(size=(5, 7)) * 3, r.normal(size=(5, 7)) * 3
    for T in (1.0, 2.0, 4.0):
        _close(_loss("kd", T=T)(_ctx(s, t)), kd_np(s, t, T))


def test_ce_skips_unlabelled_samples() -> None:
    r = _rng(2)
    s, y = r.normal(size=(6, 4)), np.array([0, -1, 3, -1, 2, 1])
    lab = y >= 0
    _close(_loss("ce")(_ctx(s, y=y)), ce_np(s[lab], y[lab]))
    assert float(_loss("ce")(_ctx(s, y=np.full(6, -1)))) == 0.0
    eps = 0.1  # label smoothing: (1 - eps) CE + eps * mean_k(-log p_k)
    logp = np.log(softmax(s[lab]))
    want = float(((1 - eps) * -logp[np.arange(lab.sum()), y[lab]] - eps * logp.mean(1)).mean())
    _close(_loss("ce", label_smoothing=eps)(_ctx(s, y=y)), want)


def dkd_np(s: np.ndarray, t: np.ndarray, y: np.ndarray, T: float, alpha: float, beta: float) -> float:
    """mdistiller dkd_loss, line by line: cat_mask for TCKD, logits - 1000 * gt_mask for NCKD."""
    n, k = s.shape
    gt = np.zeros((n, k))
    gt[np.arange(n), y] = 1.0
    ps, pt = softmax(s / T), softmax(t / T)
    bs = np.stack([(ps * gt).sum(1), (ps * (1 - gt)).sum(1)], 1)
    bt = np.stack([(pt * gt).sum(1), (pt * (1 - gt)).sum(1)], 1)
    tckd = (bt * (np.log(bt) - np.log(bs))).sum() * T**2 / n
    pt2 = softmax(t / T - 1000.0 * gt)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ps2 = np.log(softmax(s / T - 1000.0 * gt))
        nckd = np.where(pt2 > 0, pt2 * (np.log(pt2) - log_ps2), 0.0).sum() * T**2 / n
    return float(alpha * tckd + beta * nckd)


def test_dkd_equals_mdistiller() -> None:
    r = _rng(3)
    s, t, y = r.normal(size=(6, 5)) * 2, r.normal(size=(6, 5)) * 2, np.array([0, 4, 2, 2, 1, 3])
    want = dkd_np(s, t, y, T=4.0, alpha=1.0, beta=8.0)
    _close(_loss("dkd", T=4.0, alpha=1.0, beta=8.0, warmup=0)(_ctx(s, t, y)), want)
    # mdistiller's ramp min(epoch / warmup, 1) counts epochs from 1; StepContext.epoch from 0
    _close(_loss("dkd", T=4.0, warmup=5)(_ctx(s, t, y, epoch=1)), 2 / 5 * want)
    _close(_loss("dkd", T=2.0, alpha=0.5, beta=2.0, warmup=0)(_ctx(s, t, y)),
           dkd_np(s, t, y, T=2.0, alpha=0.5, beta=2.0))
    # unlabelled samples (y = -1, a transfer set) split around the teacher's top class
    y_part = np.where(np.arange(6) % 2 == 0, y, -1)
    _close(_loss("dkd", warmup=0)(_ctx(s, t, y_part)),
           dkd_np(s, t, np.where(y_part >= 0, y_part, t.argmax(1)), T=4.0, alpha=1.0, beta=8.0))


# -- feature-based ---------------------------------------------------------------------------------
def test_fitnet_equals_hint_mse_through_the_regressor() -> None:
    r = _rng(4)
    fs, ft = r.normal(size=(3, 4, 4, 4)), r.normal(size=(3, 6, 2, 2))
    sf, tf = {"stage:-2": _t(fs)}, {"stage:-2": _t(ft)}  # the default tap: the second deepest stage
    loss = _loss("fitnet")
    loss.setup(_ctx(sf=sf, tf=tf), num_train=3)
    loss.double()
    w, b = r.normal(size=(6, 4)), r.normal(size=6)
    with torch.no_grad():
        loss.regressors[0].weight.copy_(_t(w).view(6, 4, 1, 1))
        loss.regressors[0].bias.copy_(_t(b))
    pooled = avg_pool(fs, 2, 2)  # student map pooled to the teacher's 2x2 grid, then the 1x1 conv
    reg = np.einsum("oc,nchw->nohw", w, pooled) + b[None, :, None, None]
    _close(loss(_ctx(sf=sf, tf=tf)), float(((reg - ft) ** 2).mean()))


def at_np(f: np.ndarray, p: float = 2.0) -> np.ndarray:
    """RepDistiller Attention.at: F.normalize(f.pow(p).mean(1).view(N, -1))."""
    return l2n((np.abs(f) ** p).mean(1).reshape(len(f), -1))


def test_at_equals_repdistiller_same_and_different_resolution() -> None:
    r = _rng(5)
    fs1, ft1 = r.normal(size=(2, 3, 4, 4)), r.normal(size=(2, 5, 4, 4))  # same grid
    fs2, ft2 = r.normal(size=(2, 3, 4, 4)), r.normal(size=(2, 5, 2, 2))  # teacher coarser
    sf, tf = {"layer1": _t(fs1), "layer2": _t(fs2)}, {"layer1": _t(ft1), "layer2": _t(ft2)}
    taps = ["layer1", "layer2"]
    # RepDistiller at_loss: the larger FEATURE map is pooled to the smaller grid, then attention
    want = float(((at_np(fs1) - at_np(ft1)) ** 2).mean() + ((at_np(avg_pool(fs2, 2, 2)) - at_np(ft2)) ** 2).mean())
    _close(_loss("at", student_taps=taps)(_ctx(sf=sf, tf=tf)), want)
    # at_pool="attention": the attention map (mean of f^2) is pooled instead, then normalised
    def att_pooled(f: np.ndarray) -> np.ndarray:
        a = (f**2).mean(1, keepdims=True)
        return l2n(avg_pool(a, 2, 2).reshape(len(f), -1))
    want_att = float(((at_np(fs1) - at_np(ft1)) ** 2).mean() + ((att_pooled(fs2) - at_np(ft2)) ** 2).mean())
    _close(_loss("at", student_taps=taps, pool="attention")(_ctx(sf=sf, tf=tf)), want_att)
    assert abs(want - want_att) > 1e-3  # the two poolings really differ on these maps
    # the paper's un-squared norm per sample, averaged over the batch
    want_paper = float(np.linalg.norm(at_np(fs1) - at_np(ft1), axis=1).mean()
                       + np.linalg.norm(at_np(avg_pool(fs2, 2, 2)) - at_np(ft2), axis=1).mean())
    _close(_loss("at", student_taps=taps, mode="paper")(_ctx(sf=sf, tf=tf)), want_paper)
    # p = 4 keeps |.|^p (the paper's definition)
    want4 = float(((at_np(fs1, 4) - at_np(ft1, 4)) ** 2).mean())
    _close(_loss("at", student_taps=["layer1"], p=4.0)(_ctx(sf=sf, tf=tf)), want4)


def test_ofd_equals_heo_distillation_loss() -> None:
    r = _rng(6)
    fs, ft = r.normal(size=(3, 2, 2, 2)), r.normal(size=(3, 4, 2, 2))
    ft[:, 3] = np.abs(ft[:, 3])  # a channel with no negative response: margin 0
    key = "stage:-1@prerelu"  # the default tap
    loss = _loss("ofd")
    loss.setup(_ctx(sf={key: _t(fs)}, tf={key: _t(ft)}), num_train=3)
    loss.double()
    w = r.normal(size=(4, 2))
    conv, bn = loss.connectors[0][0], loss.connectors[0][1]
    with torch.no_grad():
        conv.weight.copy_(_t(w).view(4, 2, 1, 1))
    loss.eval()  # BN with running stats (0, 1) and affine (1, 0): the connector is the 1x1 conv
    assert isinstance(bn, nn.BatchNorm2d)
    # margin: E[t | t < 0] per channel, measured on the probe batch (edgekd's documented variant)
    neg = np.where(ft < 0, ft, 0.0).sum((0, 2, 3)) / np.maximum((ft < 0).sum((0, 2, 3)), 1)
    torch.testing.assert_close(loss.margins()[0], _t(neg), rtol=0, atol=1e-14)
    src = np.einsum("oc,nchw->nohw", w, fs) / np.sqrt(1 + 1e-5)  # BN eval: x / sqrt(1 + eps)
    target = np.maximum(ft, neg[None, :, None, None])
    # Heo et al.: mse * ((source > target) | (target > 0)), summed; edgekd: the mean of it
    want = float(((src - target) ** 2 * ((src > target) | (target > 0))).mean())
    _close(loss(_ctx(sf={key: _t(fs)}, tf={key: _t(ft)})), want)


def test_rkd_equals_repdistiller() -> None:
    r = _rng(7)
    es, et = r.normal(size=(5, 3)), r.normal(size=(5, 6))

    def pdist(e: np.ndarray) -> np.ndarray:
        d = np.sqrt(np.maximum(((e[:, None] - e[None]) ** 2).sum(-1), 1e-12))
        np.fill_diagonal(d, 0.0)
        return d / d[d > 0].mean()

    def angle(e: np.ndarray) -> np.ndarray:
        td = l2n(e[None, :, :] - e[:, None, :], axis=2)  # td[i, j] = e_j - e_i
        return np.einsum("ijd,ikd->ijk", td, td).reshape(-1)

    want = 25 * smooth_l1(pdist(es), pdist(et)) + 50 * smooth_l1(angle(es), angle(et))
    got = _loss("rkd")(_ctx(sf={"embedding": _t(es).view(5, 3, 1, 1)}, tf={"embedding": _t(et).view(5, 6, 1, 1)}))
    _close(got, want)


def test_sp_equals_tung_mori() -> None:
    r = _rng(8)
    fs, ft = r.normal(size=(4, 3, 2, 2)), r.normal(size=(4, 5, 2, 2))

    def g(f: np.ndarray) -> np.ndarray:
        q = f.reshape(len(f), -1)
        return l2n(q @ q.T, axis=1)

    want = float(((g(ft) - g(fs)) ** 2).sum() / 4**2)
    _close(_loss("sp", student_taps=["layer3"])(_ctx(sf={"layer3": _t(fs)}, tf={"layer3": _t(ft)})), want)


@pytest.mark.parametrize("bank_size", [12, 400])  # the GEMM route and the row-gather route of crd.scores
def test_crd_equals_repdistiller_contrast_memory_and_loss(bank_size: int) -> None:
    r = _rng(9)
    n, ds, dt, dim, k, T, mom = 4, 5, 7, 3, 3, 0.07, 0.5
    u, v = r.normal(size=(n, ds)), r.normal(size=(n, dt))
    sf, tf = {"embedding": _t(u).view(n, ds, 1, 1)}, {"embedding": _t(v).view(n, dt, 1, 1)}
    loss = _loss("crd", feat_dim=dim, k=k, T=T, momentum=mom)
    torch.manual_seed(0)
    loss.setup(_ctx(sf=sf, tf=tf), num_train=bank_size)
    loss.double()
    ws, bs, wt, bt = r.normal(size=(dim, ds)), r.normal(size=dim), r.normal(size=(dim, dt)), r.normal(size=dim)
    with torch.no_grad():
        loss.embed_s.weight.copy_(_t(ws))
        loss.embed_s.bias.copy_(_t(bs))
        loss.embed_t.weight.copy_(_t(wt))
        loss.embed_t.bias.copy_(_t(bt))
    bank_s, bank_t = loss.bank_s.numpy().copy(), loss.bank_t.numpy().copy()
    idx = np.array([0, 3, 5, 11])
    rows = np.concatenate([idx[:, None], r.integers(0, bank_size, size=(n, k))], 1)
    loss._sample = lambda i, y: torch.as_tensor(rows)  # fixed negatives (the reference's alias draw)

    def contrast_loss(x: np.ndarray) -> float:  # RepDistiller ContrastLoss, noise Pn = 1/n_data
        m, pn, eps = x.shape[1] - 1, 1.0 / bank_size, 1e-7
        log_d1 = np.log(x[:, 0] / (x[:, 0] + m * pn + eps))
        log_d0 = np.log(m * pn / (x[:, 1:] + m * pn + eps))
        return float(-(log_d1.sum() + log_d0.sum()) / len(x))

    z: list[float] = []
    for _step in range(2):
        s, t = l2n(u @ ws.T + bs), l2n(v @ wt.T + bt)  # Embed: linear + l2norm
        out_s = np.exp(np.einsum("nkd,nd->nk", bank_t[rows], s) / T)  # teacher memory vs student anchor
        out_t = np.exp(np.einsum("nkd,nd->nk", bank_s[rows], t) / T)
        if not z:  # Z is set once, on the first batch: mean * n_data
            z = [out_s.mean() * bank_size, out_t.mean() * bank_size]
        want = contrast_loss(out_s / z[0]) + contrast_loss(out_t / z[1])
        got = loss(_ctx(y=np.zeros(n, dtype=np.int64), sf=sf, tf=tf, indices=torch.as_tensor(idx)))
        _close(got, want, rtol=1e-9)
        bank_s[idx] = l2n(bank_s[idx] * mom + s * (1 - mom))  # memory update after scoring
        bank_t[idx] = l2n(bank_t[idx] * mom + t * (1 - mom))
        np.testing.assert_allclose(loss.bank_s.numpy(), bank_s, rtol=0, atol=1e-12)
        np.testing.assert_allclose(loss.bank_t.numpy(), bank_t, rtol=0, atol=1e-12)


# -- several teachers, peers, exits --------------------------------------------------------------------
class _Affine(nn.Module):
    def __init__(self, w: np.ndarray, dtype: torch.dtype) -> None:
        super().__init__()
        self.fc = nn.Linear(w.shape[1], w.shape[0], bias=False).to(dtype)
        with torch.no_grad():
            self.fc.weight.copy_(torch.as_tensor(w))
        self.pool = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(x))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ensemble_averages_probabilities_with_exact_weights(dtype: torch.dtype) -> None:
    r = _rng(10)
    ws = [r.normal(size=(4, 3)) * 2 for _ in range(3)]
    x, s, T = r.normal(size=(5, 3)), r.normal(size=(5, 4)), 3.0
    weights = np.array([2.0, 1.0, 0.5])  # float64, normalised to 4/7, 2/7, 1/7
    teachers = [_Affine(w, dtype) for w in ws]
    ens = EnsembleTeacher(teachers, list(weights), T=T, features=["pool"])
    xin = torch.as_tensor(x, dtype=dtype)
    out = ens(xin)
    assert out.dtype == dtype  # float64 weights do not promote float32 teachers, nor round float64 ones
    wn = weights / weights.sum()
    logits = [x @ w.T for w in ws]
    if dtype == torch.float32:  # the teachers' own float32 logits, then exact float64 arithmetic
        logits = [t(xin).detach().double().numpy() for t in teachers]
    pbar = sum(wk * softmax(lk / T) for wk, lk in zip(wn, logits, strict=True))
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    np.testing.assert_allclose(out.detach().double().numpy(), T * np.log(pbar), rtol=tol, atol=tol)
    # KD against it is KL(pbar || softmax(s / T)) * T^2
    got = _loss("ensemble", T=T)(StepContext(student_logits=_t(s), teacher_logits=out.detach().double(),
                                             targets=torch.zeros(5, dtype=torch.long)))
    want = float(kl_rows(pbar, softmax(s / T)).sum() * T**2 / 5)
    _close(got, want, rtol=1e-10 if dtype == torch.float64 else 1e-5)


def _peers_ctx(logits: np.ndarray, y: np.ndarray, maps: list[np.ndarray] | None = None, epoch: int = 0
               ) -> StepContext:
    feats = [{"stage:-1": _t(m)} for m in maps] if maps is not None else [{} for _ in logits]
    return StepContext(student_logits=_t(logits), teacher_logits=None, targets=torch.as_tensor(y),
                       student_features={"peers": feats}, epoch=epoch)


def dml_np(z: np.ndarray, y: np.ndarray, T: float) -> float:
    """Zhang et al. DML, K peers: sum_k CE_k + 1/(K-1) sum_{j != k} T^2 KL(p_j || p_k)."""
    K = len(z)
    total = sum(ce_np(zk, y) for zk in z)
    for k in range(K):
        for j in range(K):
            if j != k:
                total += kl_rows(softmax(z[j] / T), softmax(z[k] / T)).mean() * T**2 / (K - 1)
    return float(total)


def test_dml_equals_deep_mutual_learning() -> None:
    r = _rng(11)
    y = np.array([0, 2, 1, 2])
    for K in (2, 3):
        z = r.normal(size=(K, 4, 3)) * 2
        _close(_loss("dml")(_peers_ctx(z, y)), dml_np(z, y, 1.0))
        _close(_loss("dml", T=3.0, ce=0.5)(_peers_ctx(z, y)), dml_np(z, y, 3.0) - 0.5 * sum(ce_np(zk, y) for zk in z))
    z, y_part = r.normal(size=(2, 4, 3)), np.array([0, -1, 1, -1])  # CE on the labelled, mutual KL on all
    ce_part = sum(ce_np(zk[y_part >= 0], y_part[y_part >= 0]) for zk in z)
    _close(_loss("dml")(_peers_ctx(z, y_part)), dml_np(z, y, 1.0) - sum(ce_np(zk, y) for zk in z) + ce_part)


def test_feat_l1_equals_dml_plus_l1_to_the_previous_peer() -> None:
    r = _rng(12)
    z, y = r.normal(size=(3, 4, 3)), np.array([0, 1, 2, 0])
    maps = [r.normal(size=(4, 2, 3, 3)) for _ in range(3)]
    l1 = sum(np.abs(maps[k] - maps[k - 1]).mean() for k in range(3))  # cyclic peer k-1
    _close(_loss("feat_l1", T=3.0, weight=0.7)(_peers_ctx(z, y, maps)), dml_np(z, y, 3.0) + 0.7 * l1)


def test_afd_equals_lsgan_objectives_of_chung_et_al() -> None:
    r = _rng(13)
    z, y = r.normal(size=(2, 4, 3)), np.array([2, 1, 0, 0])
    maps = [r.normal(size=(4, 8, 3, 3)) for _ in range(2)]
    loss = _loss("afd", T=3.0, adv=0.4)
    ctx = _peers_ctx(z, y, maps)
    loss.setup(ctx, num_train=4)
    loss.double()
    with torch.no_grad():  # the discriminators are plain torch layers: their scores, computed by torch
        d = [[float(v) for v in disc(_t(m))] for disc, m in zip(loss.discriminators, [maps[0], maps[1]], strict=True)]
        d_peer = [[float(v) for v in disc(_t(maps[k - 1]))] for k, disc in enumerate(loss.discriminators)]
    fool = sum(np.mean((np.array(dk) - 1) ** 2) for dk in d)  # each net: E[(D_k(F_k) - 1)^2]
    _close(loss(ctx), dml_np(z, y, 3.0) + 0.4 * fool)
    disc = sum(np.mean((np.array(dp) - 1) ** 2) + np.mean(np.array(dk) ** 2) for dp, dk in zip(d_peer, d, strict=True))
    _close(loss.discriminator_loss(ctx), disc)


def test_self_distillation_equals_byot() -> None:
    r = _rng(14)
    y = np.array([1, 0, 2])
    q = {"a": r.normal(size=(3, 3)), "b": r.normal(size=(3, 3)), FINAL: r.normal(size=(3, 3)) * 2}
    f = {name: r.normal(size=(3, 6)) for name in q}
    out = ExitOutputs(logits={k: _t(v) for k, v in q.items()}, features={k: _t(v) for k, v in f.items()})
    alpha, T, lam = 0.3, 3.0, 0.03
    # Zhang et al. 2019: sum over every classifier i of (1-a) CE(q_i, y) + a T^2 KL(q_C || q_i) + l ||F_i - F_C||^2
    want = (1 - alpha) * ce_np(q[FINAL], y)
    for name in ("a", "b"):
        want += (1 - alpha) * ce_np(q[name], y) + alpha * T**2 * kl_rows(softmax(q[FINAL] / T), softmax(q[name] / T)).mean()
        want += lam * ((f[name] - f[FINAL]) ** 2).sum(1).mean()
    got = _loss("self", alpha=alpha, T=T, feat=lam)(StepContext(
        student_logits=_t(q[FINAL]), teacher_logits=None, targets=torch.as_tensor(y), student_features={"exits": out}))
    _close(got, float(want))


# -- transformers, embeddings ----------------------------------------------------------------------
def _relation(a: np.ndarray, b: np.ndarray, heads: int, mask: np.ndarray | None) -> np.ndarray:
    n, length, d = a.shape
    ah = a.reshape(n, length, heads, d // heads).transpose(0, 2, 1, 3)
    bh = b.reshape(n, length, heads, d // heads).transpose(0, 2, 1, 3)
    scores = ah @ bh.transpose(0, 1, 3, 2) / np.sqrt(d // heads)
    if mask is not None:
        scores = np.where(mask[:, None, None, :], scores, -np.inf)
    return softmax(scores)


def _relation_kl(pt: np.ndarray, ps: np.ndarray, mask: np.ndarray | None) -> float:
    kl = kl_rows(pt, ps)  # (N, H, L)
    if mask is None:
        return float(kl.mean())
    rows = np.broadcast_to(mask[:, None, :], kl.shape)
    return float(kl[rows].mean())


class _Bert(nn.Module):
    """Just enough of a BERT for MiniLM's bind(): the tap paths, heads and width."""

    def __init__(self, heads: int, width: int) -> None:
        super().__init__()
        self.num_heads, self.hidden_size, self.pad_token_id = heads, width, 0

    def qkv_paths(self, layer: int) -> list[str]:
        return [f"l.{name}" for name in "qkv"]


@pytest.mark.parametrize("padded", [False, True])
def test_minilm_v1_and_v2_equal_the_papers(padded: bool) -> None:
    r = _rng(15)
    n, length = 2, 4
    s = [r.normal(size=(n, length, 6)) for _ in range(3)]
    t = [r.normal(size=(n, length, 12)) for _ in range(3)]
    ids = np.array([[5, 6, 7, 8], [5, 6, 0, 0]]) if padded else np.ones((n, length), dtype=np.int64)
    mask = ids != 0 if padded else None
    ctx = StepContext(student_logits=torch.zeros(n, 1, dtype=torch.float64), teacher_logits=None,
                      targets=torch.zeros(n, dtype=torch.long),
                      student_features={f"l.{k}": _t(v) for k, v in zip("qkv", s, strict=True)},
                      teacher_features={f"l.{k}": _t(v) for k, v in zip("qkv", t, strict=True)},
                      inputs=torch.as_tensor(ids))
    v1 = _loss("minilm_v1")
    v1.bind(_Bert(3, 6), _Bert(3, 12))
    want1 = (_relation_kl(_relation(t[0], t[1], 3, mask), _relation(s[0], s[1], 3, mask), mask)
             + _relation_kl(_relation(t[2], t[2], 3, mask), _relation(s[2], s[2], 3, mask), mask))
    _close(v1(ctx), want1)
    v2 = _loss("minilm_v2", relation_heads=2)
    v2.bind(_Bert(3, 6), _Bert(4, 12))
    want2 = sum(_relation_kl(_relation(ti, ti, 2, mask), _relation(si, si, 2, mask), mask)
                for si, ti in zip(s, t, strict=True))
    _close(v2(ctx), want2)


def test_emb_mse_equals_reimers_gurevych() -> None:
    r = _rng(16)
    s, t = r.normal(size=(3, 5)), r.normal(size=(3, 5))
    _close(_loss("emb_mse")(_ctx(s, t)), float(((s - t) ** 2).sum(1).mean()))


def test_pkkd_kernels_and_loss_equal_xu_et_al() -> None:
    r = _rng(17)
    n, c_in, c_out, k, size = 2, 2, 3, 3, 4
    x, w = r.normal(size=(n, c_in, size, size)), r.normal(size=(c_out, c_in, k, k))
    conv = nn.Conv2d(c_in, c_out, k, padding=1, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(_t(w))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    patches = np.stack([xp[:, :, i:i + k, j:j + k].reshape(n, -1) for i in range(size) for j in range(size)], -1)
    filt = w.reshape(c_out, -1)
    # CNN side: Gaussian kernel of ||X_p - F_o||^2, sigma^2 = the batch mean of that distance
    dist_sq = ((patches[:, None, :, :] - filt[None, :, :, None]) ** 2).sum(2).reshape(n, c_out, size, size)
    psi_c = np.exp(-dist_sq / (2 * dist_sq.mean()))
    y_t = conv(_t(x)).detach()
    np.testing.assert_allclose(y_t.numpy(), np.einsum("od,ndp->nop", filt, patches).reshape(n, c_out, size, size),
                               rtol=1e-12, atol=1e-12)  # the patches above are the conv's
    # adder side: output -||X_p - F_o||_1 of some student filter, Laplacian kernel exp(-d / mean d)
    w_a = r.normal(size=(c_out, c_in * k * k))
    dist_l1 = np.abs(patches[:, None, :, :] - w_a[None, :, :, None]).sum(2).reshape(n, c_out, size, size)
    psi_a = np.exp(-dist_l1 / dist_l1.mean())
    s, t, labels, T = r.normal(size=(n, 5)), r.normal(size=(n, 5)), np.array([1, 4]), 4.0
    loss = _loss("pkkd", T=T, kd=0.5, feat=2.0, layers=["l"])
    ctx = StepContext(student_logits=_t(s), teacher_logits=_t(t), targets=torch.as_tensor(labels),
                      student_features={"l": (_t(x), _t(-dist_l1), None)}, teacher_features={"l": (_t(x), y_t, conv)})
    loss.setup(ctx, num_train=n)
    loss.double()
    g = r.normal(size=(c_out, c_out))
    with torch.no_grad():  # the trainable 1x1 transform on the adder side, set to known values
        loss.transforms["l"].weight.copy_(_t(g).view(c_out, c_out, 1, 1))
        loss.transforms["l"].bias.zero_()
    feat = float(((np.einsum("oc,nchw->nohw", g, psi_a) - psi_c) ** 2).mean())
    _close(loss(ctx), ce_np(s, labels) + 0.5 * kd_np(s, t, T) + 2.0 * feat, rtol=1e-9)


# -- the modern logit losses (issue 28): logit standardization, DIST, NKD, WTTM, MLKD; ReviewKD --------------
def zscore(z: np.ndarray) -> np.ndarray:
    """The logit-standardization code's normalize(): (z - mean) / (1e-7 + std), std unbiased (torch's default)."""
    return (z - z.mean(-1, keepdims=True)) / (1e-7 + z.std(-1, ddof=1, keepdims=True))


def test_logit_standardization_of_kd_dkd_and_their_modifier() -> None:
    r = _rng(20)
    s, t, y = r.normal(size=(6, 5)) * 3, r.normal(size=(6, 5)) * 9, np.array([0, 4, 2, 2, 1, 3])
    for T in (1.0, 2.0):
        want = kd_np(zscore(s), zscore(t), T)
        _close(_loss("kd", T=T, std=True)(_ctx(s, t)), want)
        _close(build_objective("kd(ls)", kd_T=T).losses["kd"].double()(_ctx(s, t)), want)
    _close(_loss("dkd", T=2.0, warmup=0, std=True)(_ctx(s, t, y)), dkd_np(zscore(s), zscore(t), y, 2.0, 1.0, 8.0))
    # what standardization buys: a teacher 10x as confident (scaled logits) gives the same loss
    _close(_loss("kd", T=2.0, std=True)(_ctx(s, 10 * t + 3)), kd_np(zscore(s), zscore(t), 2.0), rtol=1e-7)
    assert abs(kd_np(s, 10 * t, 2.0) - kd_np(s, t, 2.0)) > 1.0  # and without it, not at all
    assert build_objective("ce + kd:9(ls)").spec == "ce:1 + kd:9(ls)"


def pearson_np(a: np.ndarray, b: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Row-wise Pearson correlation, as DIST's code: cosine of the centred rows, eps on the norms' product."""
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + eps)


def test_dist_equals_huang_et_al() -> None:
    r = _rng(21)
    s, t = r.normal(size=(7, 5)) * 2, r.normal(size=(7, 5)) * 4
    for T, beta, gamma in ((1.0, 1.0, 1.0), (4.0, 2.0, 0.5)):
        ys, yt = softmax(s / T), softmax(t / T)
        inter = 1 - pearson_np(ys, yt).mean()  # per sample, over classes
        intra = 1 - pearson_np(ys.T, yt.T).mean()  # per class, over the batch
        _close(_loss("dist", T=T, beta=beta, gamma=gamma)(_ctx(s, t)), T**2 * (beta * inter + gamma * intra))
    ys, yt = softmax(zscore(s) / 2), softmax(zscore(t) / 2)
    _close(_loss("dist", T=2.0, std=True)(_ctx(s, t)),
           4 * ((1 - pearson_np(ys, yt).mean()) + (1 - pearson_np(ys.T, yt.T).mean())))


def nkd_np(s: np.ndarray, t: np.ndarray, y: np.ndarray, T: float, gamma: float) -> float:
    """cls_KD NKDLoss, line by line: -(t_t * log s_t).mean() - gamma T^2 mean_i sum_k N(t/T)_k log N(s/T)_k."""
    n, k = s.shape
    rows = np.arange(n)
    loss_t = -(softmax(t)[rows, y] * np.log(softmax(s)[rows, y])).mean()
    keep = np.ones((n, k), dtype=bool)
    keep[rows, y] = False
    s_n, t_n = s[keep].reshape(n, k - 1), t[keep].reshape(n, k - 1)
    loss_non = (softmax(t_n / T) * np.log(softmax(s_n / T))).sum(1).mean()
    return float(loss_t - gamma * T**2 * loss_non)


def test_nkd_equals_yang_et_al() -> None:
    r = _rng(22)
    s, t, y = r.normal(size=(6, 5)) * 2, r.normal(size=(6, 5)) * 3, np.array([1, 4, 0, 2, 2, 3])
    _close(_loss("nkd")(_ctx(s, t, y)), nkd_np(s, t, y, 1.0, 1.5))
    _close(_loss("nkd", T=4.0, gamma=1.0)(_ctx(s, t, y)), nkd_np(s, t, y, 4.0, 1.0))
    y_part = np.where(np.arange(6) % 3 == 0, -1, y)  # unlabelled: the teacher's top class stands in
    _close(_loss("nkd")(_ctx(s, t, y_part)), nkd_np(s, t, np.where(y_part >= 0, y_part, t.argmax(1)), 1.0, 1.5))
    _close(_loss("nkd", std=True)(_ctx(s, t, y)), nkd_np(zscore(s), zscore(t), y, 1.0, 1.5))


def wttm_np(s: np.ndarray, t: np.ndarray, gamma: float) -> float:
    """TTM repo's WTTM: p_t^gamma normalised by U = sum p_t^gamma; mean over the batch of U * KL(.||softmax(s))."""
    q = softmax(t) ** gamma
    u = q.sum(1)
    q = q / u[:, None]
    return float((u * kl_rows(q, softmax(s))).mean())


def test_wttm_equals_zheng_yang() -> None:
    r = _rng(23)
    s, t = r.normal(size=(6, 5)) * 2, r.normal(size=(6, 5)) * 5
    for gamma in (0.1, 0.5, 1.0):
        _close(_loss("wttm", gamma=gamma)(_ctx(s, t)), wttm_np(s, t, gamma))
    _close(_loss("wttm", gamma=1.0)(_ctx(s, t)), kd_np(s, t, 1.0))  # gamma = 1: plain KD at T = 1 (U = 1)
    _close(_loss("wttm", gamma=0.3, std=True)(_ctx(s, t)), wttm_np(zscore(s), zscore(t), 0.3))
    # a very confident teacher (p ~ e^-300) stays finite: the log-space form does not underflow
    assert np.isfinite(float(_loss("wttm")(_ctx(s, t * 200))))


def mlkd_np(sw: np.ndarray, tw: np.ndarray, ss: np.ndarray, ts: np.ndarray, T: float, std: bool,
            w_cls: float = 1.0, w_bat: float = 1.0) -> float:
    """Multi-Level-Logit-Distillation KD_ours.forward_train minus its CE, line by line (reduce=True KD)."""
    n, c = sw.shape
    pw = softmax(tw)
    conf = pw.max(1)
    mask = conf <= np.percentile(conf, 50)
    cconf = pw.sum(0)
    cmask = cconf <= np.percentile(cconf, 50)
    z = zscore if std else (lambda a: a)

    def kd(a: np.ndarray, b: np.ndarray, tau: float) -> float:
        return kd_np(z(a), z(b), tau)

    def cc(a: np.ndarray, b: np.ndarray, tau: float) -> float:
        ps, pt = softmax(a / tau), softmax(b / tau)
        return float(((pt.T @ pt - ps.T @ ps) ** 2).sum() / c)

    def bc(a: np.ndarray, b: np.ndarray, tau: float) -> float:
        ps, pt = softmax(a / tau), softmax(b / tau)
        return float(((pt @ pt.T - ps @ ps.T) ** 2).sum() / n)

    temps = [T, 3.0, 5.0, 2.0, 6.0]
    kd_weak = sum((kd(sw, tw, tau) * mask).mean() for tau in temps)  # a scalar times the mask, then its mean
    kd_strong = kd(ss, ts, T) + kd(ss, ts, 3.0) + kd(ss, ts, 5.0) + kd(sw, tw, 2.0) + kd(sw, tw, 6.0)
    cc_weak = sum((cc(sw, tw, tau) * cmask).mean() for tau in temps)
    bc_weak = sum((bc(sw, tw, tau) * mask).mean() for tau in temps)
    return float(kd_weak + kd_strong + w_cls * cc_weak + w_bat * bc_weak)  # the strong cc/bc: not in losses_dict


def test_mlkd_equals_jin_et_al_code() -> None:
    r = _rng(24)
    sw, tw, ss, ts = (r.normal(size=(8, 5)) * k for k in (2, 4, 2, 3))
    views = {"strong": (_t(ss), _t(ts))}
    for T, std in ((4.0, False), (2.0, True)):
        _close(_loss("mlkd", T=T, std=std)(_ctx(sw, tw, views=views)), mlkd_np(sw, tw, ss, ts, T, std))
    # the confidence masks only scale: an odd batch has (n + 1) / 2 samples at or below the median
    sw7, tw7 = sw[:7], tw[:7]
    _close(_loss("mlkd")(_ctx(sw7, tw7, views={"strong": (_t(ss[:7]), _t(ts[:7]))})),
           mlkd_np(sw7, tw7, ss[:7], ts[:7], 4.0, False))
    # scale="reference": the class / batch levels in the code's proportions at N = 64, C = 100
    n, c = sw.shape
    _close(_loss("mlkd", scale="reference", cls=0.5)(_ctx(sw, tw, views=views)),
           mlkd_np(sw, tw, ss, ts, 4.0, False, w_cls=0.5 * (64**2 / 100) / (n**2 / c), w_bat=64 / n))
    # CE of "ce + mlkd" is the code's CE of both views
    y = r.integers(0, 5, size=8)
    _close(_loss("ce")(_ctx(sw, tw, y, views=views)), ce_np(sw, y) + ce_np(ss, y))


def nearest_np(f: np.ndarray, h: int, w: int) -> np.ndarray:
    """torch nearest interpolation to (h, w): source index floor(i * in / out)."""
    rows = (np.arange(h) * f.shape[2] // h)
    cols = (np.arange(w) * f.shape[3] // w)
    return f[:, :, rows][:, :, :, cols]


def conv3x3_np(f: np.ndarray, w: np.ndarray) -> np.ndarray:
    p = np.pad(f, ((0, 0), (0, 0), (1, 1), (1, 1)))
    h, wd = f.shape[2:]
    return sum(np.einsum("oc,nchw->nohw", w[:, :, i, j], p[:, :, i:i + h, j:j + wd]) for i in range(3) for j in range(3))


def hcl_np(fs: np.ndarray, ft: np.ndarray) -> float:
    """ReviewKD's hcl for one stage."""
    loss, cnt, tot = ((fs - ft) ** 2).mean(), 1.0, 1.0
    for lvl in (4, 2, 1):
        if lvl >= fs.shape[2]:
            continue
        cnt /= 2.0
        loss += ((avg_pool(fs, lvl, lvl) - avg_pool(ft, lvl, lvl)) ** 2).mean() * cnt
        tot += cnt
    return float(loss / tot)


def test_reviewkd_equals_chen_et_al() -> None:
    r = _rng(25)
    n = 2
    fs = [r.normal(size=(n, 2, 4, 4)), r.normal(size=(n, 3, 2, 2)), r.normal(size=(n, 3, 1, 1))]
    ft = [r.normal(size=(n, 3, 8, 8)), r.normal(size=(n, 4, 4, 4)), r.normal(size=(n, 5, 1, 1))]  # a finer teacher
    names = ["layer1", "layer2", "pool"]
    t_names = ["layer1@prerelu", "layer2@prerelu", "pool"]  # the default taps: the teacher's maps pre-ReLU
    sf, tf = dict(zip(names, map(_t, fs), strict=True)), dict(zip(t_names, map(_t, ft), strict=True))
    loss = _loss("reviewkd", student_taps=names, warmup=2)
    assert loss.teacher_taps == tuple(t_names)
    loss.setup(_ctx(sf=sf, tf=tf), num_train=n)
    loss.double().eval()  # BN with running stats (0, 1 - eps) and affine (1, 0): identity
    mid = 3  # min(512, width of the deepest student tap)
    w1 = [r.normal(size=(mid, f.shape[1])) for f in fs]
    w2 = [r.normal(size=(g.shape[1], mid, 3, 3)) for g in ft]
    wa, ba = [r.normal(size=(2, 2 * mid)) for _ in range(2)], [r.normal(size=2) for _ in range(2)]
    with torch.no_grad():
        for i, abf in enumerate(loss.abfs):
            abf.conv1[0].weight.copy_(_t(w1[i]).view(mid, -1, 1, 1))
            abf.conv2[0].weight.copy_(_t(w2[i]))
            for bn in (abf.conv1[1], abf.conv2[1]):
                bn.running_var.fill_(1 - bn.eps)
            if i < 2:
                abf.att[0].weight.copy_(_t(wa[i]).view(2, 2 * mid, 1, 1))
                abf.att[0].bias.copy_(_t(ba[i]))
    assert loss.abfs[2].att is None  # the deepest stage has nothing deeper to fuse
    want, deeper = 0.0, None
    for i in (2, 1, 0):
        x = np.einsum("oc,nchw->nohw", w1[i], fs[i])
        if deeper is not None:
            up = nearest_np(deeper, *x.shape[2:])
            z = 1 / (1 + np.exp(-(np.einsum("oc,nchw->nohw", wa[i], np.concatenate([x, up], 1))
                                  + ba[i][None, :, None, None])))
            x = x * z[:, :1] + up * z[:, 1:2]
        x = nearest_np(x, *ft[i].shape[2:])
        want += hcl_np(conv3x3_np(x, w2[i]), ft[i])
        deeper = x
    _close(loss(_ctx(sf=sf, tf=tf, epoch=1)), want)
    _close(loss(_ctx(sf=sf, tf=tf, epoch=0)), want / 2)  # warm-up: (epoch + 1) / 2


def test_warmups_ramp_at_dml_and_feat_l1_linearly() -> None:
    """The ``warmup`` options (an edgekd extension, off by default): the term times (epoch + 1) / warmup."""
    r = _rng(26)
    fs, ft = r.normal(size=(2, 3, 4, 4)), r.normal(size=(2, 5, 4, 4))
    sf, tf = {"layer1": _t(fs)}, {"layer1": _t(ft)}
    full = float(((at_np(fs) - at_np(ft)) ** 2).mean())
    at = _loss("at", student_taps=["layer1"], warmup=4)
    for epoch in (0, 2, 3, 7):
        _close(at(_ctx(sf=sf, tf=tf, epoch=epoch)), min((epoch + 1) / 4, 1.0) * full)
    z, y = r.normal(size=(2, 4, 3)), np.array([0, 2, 1, 1])
    ce = sum(ce_np(zk, y) for zk in z)
    _close(_loss("dml", warmup=2)(_peers_ctx(z, y, epoch=0)), ce + 0.5 * (dml_np(z, y, 1.0) - ce))
    maps = [r.normal(size=(4, 2, 3, 3)) for _ in range(2)]
    l1 = sum(np.abs(maps[k] - maps[k - 1]).mean() for k in range(2))
    _close(_loss("feat_l1", warmup=3, weight=0.5)(_peers_ctx(z, y, maps, epoch=0)),
           ce + (dml_np(z, y, 3.0) - ce + 0.5 * l1) / 3)
    zs = np.stack([zscore(zk) for zk in z])  # std: the mutual KL of standardized logits, CE on the raw ones
    _close(_loss("dml", std=True)(_peers_ctx(z, y)), ce + dml_np(zs, y, 1.0) - sum(ce_np(zk, y) for zk in zs))
