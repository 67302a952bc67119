"""AdderNet layer (forward, custom gradients vs finite differences, export formulation) and PKKD."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgekd import data, models
from edgekd.distillation import distill
from edgekd.distillation.losses.pkkd import PKKDLoss, default_layer, gaussian_kernel, laplacian_kernel
from edgekd.errors import ConfigError
from edgekd.models.adder import Adder2d, AdderFunction, adaptive_grad, adaptive_lr, adder_reference


def _layer(fused: bool = False) -> Adder2d:
    torch.manual_seed(0)
    return Adder2d(2, 3, kernel_size=3, stride=2, padding=1, fused=fused).double()


def test_forward_is_negative_l1_distance_by_hand() -> None:
    m = _layer()
    x = torch.randn(2, 2, 5, 5, dtype=torch.double)
    y = m(x)
    xp = F.pad(x, (1, 1, 1, 1))
    want = -(xp[1, :, 2:5, 0:3] - m.weight[2]).abs().sum()  # sample 1, filter 2, output (1, 0)
    torch.testing.assert_close(y[1, 2, 1, 0], want)
    torch.testing.assert_close(y, adder_reference(x, m.weight, m.patches.double(), 2, 1))
    assert y.shape == (2, 3, 3, 3) and bool((y <= 0).all())


def test_custom_gradients_match_finite_differences_of_their_definition() -> None:
    torch.manual_seed(1)
    cols = (0.4 * torch.randn(2, 4, 5, dtype=torch.double)).requires_grad_()
    w = (0.4 * torch.randn(3, 4, dtype=torch.double)).requires_grad_()
    g = torch.randn(2, 3, 5, dtype=torch.double)
    (AdderFunction.apply(cols, w, False) * g).sum().backward()
    # full-precision W gradient: d/dW of sum g * (-(1/2)||X - W||^2), a smooth surrogate with grad X - W
    w_fd = torch.autograd.functional.jacobian(
        lambda w_: (g * -0.5 * (cols.detach()[:, None] - w_[None, :, :, None]).pow(2).sum(2)).sum(), w.detach())
    torch.testing.assert_close(w.grad, w_fd)
    # clipped input gradient: central differences of the true output where |W - X| < 1 (HardTanh = identity)
    # differ from sign; check against sum_o g * clamp(W - X, -1, 1) computed element by element
    eps, i = 1e-6, (1, 2, 3)
    want = sum(float(g[1, o, 3]) * max(-1.0, min(1.0, float(w.detach()[o, 2] - cols.detach()[i]))) for o in range(3))
    assert cols.grad[i].item() == pytest.approx(want)
    # and against finite differences of the surrogate whose gradient is exactly W - X when unclipped
    small = (0.1 * torch.randn(2, 4, 5, dtype=torch.double)).requires_grad_()
    w_small = 0.1 * torch.randn(3, 4, dtype=torch.double)
    (AdderFunction.apply(small, w_small, False) * g).sum().backward()
    x_fd = torch.autograd.functional.jacobian(
        lambda x_: (g * -0.5 * (x_[:, None] - w_small[None, :, :, None]).pow(2).sum(2)).sum(), small.detach())
    torch.testing.assert_close(small.grad, x_fd, atol=eps, rtol=1e-5)


def test_fused_kernels_match_eager() -> None:
    x = torch.randn(3, 2, 6, 6)
    eager, fused = _layer(False).float(), _layer(True).float()
    xe, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    ye, yf = eager(xe), fused(xf)
    torch.testing.assert_close(yf, ye, rtol=1e-5, atol=1e-4)
    g = torch.randn_like(ye)
    (ye * g).sum().backward()
    (yf * g).sum().backward()
    torch.testing.assert_close(xf.grad, xe.grad, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(fused.weight.grad, eager.weight.grad, rtol=1e-5, atol=1e-3)


def test_adaptive_lr_scales_each_layer_to_eta_sqrt_k() -> None:
    g = torch.randn(4, 3, 3, 3) * 7
    assert adaptive_grad(g, 0.2).norm().item() == pytest.approx(0.2 * (4 * 27) ** 0.5, rel=1e-5)
    net = models.create("resnet8_adder", in_channels=1)
    handles = adaptive_lr(net, eta=0.2)
    assert len(handles) == 8  # 2 per block x 3 + 2 projections
    net(torch.randn(2, 1, 8, 8)).sum().backward()
    w = net.layer2[0].conv1.weight.grad
    assert w is not None and w.norm().item() == pytest.approx(0.2 * w.numel() ** 0.5, rel=1e-4)
    for h in handles:
        h.remove()
    with pytest.raises(ConfigError, match="no Adder2d"):
        adaptive_lr(models.create("resnet8"))


def test_adaptive_lr_applies_under_trainer_and_distill_warns_it_would_drop_it() -> None:
    """distill()/train() train a deep copy, and deepcopy drops tensor hooks: that must not be silent.
    Trainer trains the module itself, so there the hooks change the update."""
    from edgekd.distillation import TrainConfig, Trainer, build_objective, train

    digits = data.load("digits", limit=60)
    config = TrainConfig(epochs=1, batch_size=32, optimizer="sgd", lr=0.05, progress=False)
    nets = []
    for eta in (None, 0.2):
        torch.manual_seed(0)
        net = models.create("resnet8_adder", in_channels=1)
        handles = adaptive_lr(net, eta) if eta else []
        Trainer(net, digits, build_objective("ce"), config).fit()
        nets.append(net)
    assert not torch.equal(nets[0].layer1[0].conv1.weight, nets[1].layer1[0].conv1.weight)
    with pytest.warns(UserWarning, match="gradient hooks on its parameters layer1.0.conv1.weight.*do not carry over"):
        train(nets[1], digits, epochs=1, batch_size=32, progress=False)
    for h in handles:
        h.remove()


def test_adder_resnet_mirrors_the_cnn_and_exports_with_standard_ops() -> None:
    cnn, ann = models.create("resnet8", in_channels=1), models.create("resnet8_adder", in_channels=1)
    assert [n for n, _ in cnn.named_modules()] == [n for n, _ in ann.named_modules()]
    assert isinstance(ann.conv1, torch.nn.Conv2d) and isinstance(ann.layer3[0].downsample[0], Adder2d)
    ann.eval()
    x = torch.randn(2, 1, 8, 8)
    ep = torch.export.export(ann, (x,))
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert {"aten.abs.default", "aten.sum.dim_IntList", "aten.sub.Tensor"} <= ops
    assert not any("cdist" in o or "im2col" in o for o in ops)
    torch.testing.assert_close(ep.module()(x), ann(x), rtol=1e-4, atol=1e-3)


def test_kernels_are_similarities_in_unit_interval() -> None:
    conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=False)
    x = torch.randn(2, 2, 5, 5)
    psi = gaussian_kernel(x, conv(x), conv, sigma=1.0)
    xp = F.pad(x, (1, 1, 1, 1))
    d2 = (xp[0, :, 0:3, 1:4] - conv.weight[1]).pow(2).sum()
    torch.testing.assert_close(psi[0, 1, 0, 1], torch.exp(-d2 / 2), rtol=1e-4, atol=1e-6)
    y = torch.tensor([0.0, -1.0, -3.0])
    torch.testing.assert_close(laplacian_kernel(y, sigma=2.0), torch.exp(y / 2))
    assert laplacian_kernel(y).min() > 0 and laplacian_kernel(y).max() == 1


def test_pkkd_trains_adder_student_with_cnn_teacher_end_to_end() -> None:
    digits = data.load("digits", limit=200)
    torch.manual_seed(0)
    teacher, student = models.create("resnet8", in_channels=1), models.create("resnet8_adder", in_channels=1)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    r = distill(teacher, student, digits, "pkkd", epochs=1, batch_size=64, progress=False, optimizer="sgd")
    h = r.history[0]
    assert h["train_pkkd"] > 0 and h["train_teacher_ce"] > 0 and 0 <= r.metrics["test_acc"] <= 1
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())  # caller's teacher untouched
    assert not torch.equal(r.model.layer1[0].conv1.weight, student.layer1[0].conv1.weight)
    with pytest.raises(ConfigError, match="no adder layer"):
        distill(teacher, models.create("resnet8", in_channels=1), digits, "pkkd", epochs=1, progress=False)


@pytest.mark.parametrize(("name", "want"), [("resnet8_adder", "layer3.0.conv2"), ("resnet14_adder", "layer3.1.conv2"),
                                            ("resnet20_adder", "layer3.2.conv2")])
def test_pkkd_default_layer_is_last_main_path_adder_not_the_projection(name: str, want: str) -> None:
    """resnet8_adder's last Adder2d in module order is its 1x1 projection shortcut; PKKD must not
    distil there by default."""
    student = models.create(name, in_channels=1)
    assert default_layer(student) == want
    loss = PKKDLoss()
    loss.bind(student)
    assert loss.layers == (want,)
    explicit = PKKDLoss(layers=["layer3.0.downsample.0"])
    explicit.bind(models.create("resnet8_adder", in_channels=1))
    assert explicit.layers == ("layer3.0.downsample.0",)  # still reachable when asked for
