r"""PKKD: kernel-based distillation from a CNN into an AdderNet of the same shape.

CNN and adder layers produce features of different distributions (an inner product
:math:`X\cdot F` vs a negative L1 distance :math:`-\lVert X - F\rVert_1`). PKKD maps both into
one kernel space before matching them: a Gaussian kernel on the CNN layer (its squared distance
recovered from the conv output) and a Laplacian kernel on the adder layer, per output position
and channel:

.. math::

    \psi_c = \exp\Big(-\frac{\lVert X_p\rVert^2 + \lVert F_o\rVert^2 - 2\,(X_p\cdot F_o)}{2\sigma_c^2}\Big),
    \qquad
    \psi_a = \exp\Big(-\frac{\lVert X_p - F_o\rVert_1}{\sigma_a}\Big) = \exp(Y_a/\sigma_a)

then a trainable 1×1 convolution :math:`g` on the adder side, and

.. math::

    L = L_{CE}(s, y) + \alpha\,T^2\mathrm{KL}(p_t^T \| p_s^T)
        + \beta \sum_{l} \big\lVert g_l(\psi_{a,l}) - \mathrm{sg}(\psi_{c,l}) \big\rVert_2^2 / n

:math:`\sigma` defaults to the batch's mean distance (detached), so the kernels are scale-free.
"Progressive": the CNN teacher is not pre-trained; it trains from scratch at the same time (see
:mod:`edgekd.distillation.strategies.progressive`), so the student follows a teacher whose knowledge
grows with it.

Paper: Xu, Xu, Wang, Chen, Shi, Xu, Xu, "Kernel Based Progressive Distillation for Adder Neural
Networks", NeurIPS 2020, https://arxiv.org/abs/2009.13044. Deviation: the paper's σ are tuned
constants; here they are per-batch means unless ``pkkd_sigma`` is given.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.distillation.methods import DistillLoss, StepContext, register_method
from edgekd.errors import ConfigError
from edgekd.models.adder import Adder2d

STAGE = "distill/pkkd"


def gaussian_kernel(x: torch.Tensor, y: torch.Tensor, conv: nn.Conv2d, sigma: float | None = None) -> torch.Tensor:
    """:math:`\\psi_c`: Gaussian kernel of the distance between each input patch of ``conv`` (input
    ``x``, output ``y``, no bias) and each filter, from ``‖X_p‖² + ‖F‖² − 2y``."""
    ones = x.new_ones(1, *conv.weight.shape[1:])
    patch_sq = F.conv2d(x * x, ones, stride=conv.stride, padding=conv.padding)  # (N, 1, H, W)
    filt_sq = conv.weight.pow(2).sum((1, 2, 3)).reshape(1, -1, 1, 1)
    dist_sq = (patch_sq + filt_sq - 2 * y).clamp_min(0)
    s2 = dist_sq.mean().detach().clamp_min(1e-12) if sigma is None else sigma * sigma
    return torch.exp(-dist_sq / (2 * s2))


def laplacian_kernel(y: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """:math:`\\psi_a`: Laplacian kernel of an adder layer's output ``y = -‖X_p − F‖₁``."""
    dist = (-y).clamp_min(0)
    s = dist.mean().detach().clamp_min(1e-12) if sigma is None else sigma
    return torch.exp(-dist / s)


def default_layer(student: nn.Module) -> str:
    """The last adder layer on the student's main path: module order puts a block's projection
    shortcut (``downsample``) after its convolutions, so in ``resnet8_adder`` the plain last
    :class:`Adder2d` is the 1x1 projection ``layer3.0.downsample.0``, not ``layer3.0.conv2``.
    Shortcut projections are skipped unless they are the only adder layers."""
    adders = [n for n, m in student.named_modules() if isinstance(m, Adder2d)]
    main = [n for n in adders if "downsample" not in n.split(".")]
    return (main or adders)[-1]


def identity_1x1(channels: int) -> nn.Conv2d:
    """A 1×1 convolution initialised to the identity."""
    conv = nn.Conv2d(channels, channels, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(channels).reshape(channels, channels, 1, 1))
        conv.bias.zero_()
    return conv


@register_method("pkkd")
class PKKDLoss(DistillLoss):
    """PKKD (formula above). Options: ``pkkd_T=4.0``, ``pkkd_kd=1.0`` (α), ``pkkd_feat=1.0`` (β),
    ``pkkd_layers=None`` (adder layer paths; default: :func:`default_layer`, the student's last
    main-path adder layer),
    ``pkkd_sigma=None``, ``pkkd_eta=0.2`` (adaptive lr of the adder layers; 0 turns it off).

    Features arrive from :class:`~edgekd.distillation.strategies.progressive.ProgressiveStrategy` as
    ``(input, output, module)`` per layer path, for the student and the teacher alike.
    """

    needs_teacher = True
    strategy = "progressive"

    def __init__(self, T: float = 4.0, kd: float = 1.0, feat: float = 1.0, layers: Sequence[str] | None = None,
                 sigma: float | None = None, eta: float = 0.2) -> None:
        super().__init__()
        if not T > 0 or min(kd, feat, eta) < 0 or (sigma is not None and not sigma > 0):
            raise ConfigError(f"pkkd T={T}, sigma={sigma} must be > 0 and kd, feat, eta >= 0", stage=STAGE,
                              hint="e.g. pkkd_T=4.0 pkkd_feat=1.0 pkkd_eta=0.2")
        self.T, self.kd, self.feat, self.sigma, self.eta = float(T), float(kd), float(feat), sigma, float(eta)
        self.layers = tuple(layers) if layers is not None else ()
        self.transforms = nn.ModuleDict()

    def bind(self, student: nn.Module) -> None:
        """Resolve the default layer (the student's last :class:`Adder2d`) and check the named ones."""
        adders = [n for n, m in student.named_modules() if isinstance(m, Adder2d)]
        if not adders:
            raise ConfigError(f"pkkd student {type(student).__name__} has no adder layer", stage=STAGE,
                              hint="use an AdderNet student, e.g. models.create('resnet20_adder')")
        self.layers = self.layers or (default_layer(student),)
        bad = [n for n in self.layers if n not in adders]
        if bad:
            raise ConfigError(f"pkkd layers {bad} are not adder layers of the student", stage=STAGE,
                              hint=f"pick from {adders}")
        self.student_taps = self.teacher_taps = self.layers

    def setup(self, ctx: StepContext, num_train: int) -> None:
        for path in self.layers:
            _, y_t, conv = ctx.teacher_features[path]
            if not isinstance(conv, nn.Conv2d) or conv.bias is not None:
                raise ConfigError(f"pkkd teacher layer {path!r} is {type(conv).__name__}, not a biasless Conv2d",
                                  stage=STAGE, hint="use the CNN twin of the AdderNet, e.g. resnet20 for resnet20_adder")
            if ctx.student_features[path][1].shape != y_t.shape:
                raise ConfigError(f"pkkd layer {path!r}: student {tuple(ctx.student_features[path][1].shape)} vs "
                                  f"teacher {tuple(y_t.shape)}", stage=STAGE, hint="use same-shape twins")
        self.transforms = nn.ModuleDict({p.replace(".", "_"): identity_1x1(ctx.teacher_features[p][1].shape[1])
                                         for p in self.layers})

    def feature_loss(self, ctx: StepContext) -> torch.Tensor:
        """:math:`\\sum_l \\lVert g_l(\\psi_a) - \\psi_c\\rVert^2 / n` over the bound layers."""
        total = ctx.student_logits.new_zeros(())
        for path in self.layers:
            x_t, y_t, conv = ctx.teacher_features[path]
            psi_c = gaussian_kernel(x_t.detach(), y_t.detach(), conv, self.sigma).detach()
            psi_a = laplacian_kernel(ctx.student_features[path][1], self.sigma)
            total = total + F.mse_loss(self.transforms[path.replace(".", "_")](psi_a), psi_c)
        return total

    def forward(self, ctx: StepContext) -> torch.Tensor:
        s, t = ctx.student_logits, ctx.teacher_logits
        if t is None:
            raise ConfigError("pkkd needs teacher logits", stage=STAGE, hint="pass the CNN twin as teacher")
        kd = F.kl_div(F.log_softmax(s / self.T, 1), F.log_softmax(t.detach() / self.T, 1),
                      reduction="batchmean", log_target=True) * self.T**2
        return F.cross_entropy(s, ctx.targets) + self.kd * kd + self.feat * self.feature_loss(ctx)
