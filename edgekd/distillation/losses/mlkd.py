"""MLKD: instance-, batch- and class-level alignment of predictions over several temperatures and two views."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgekd.distillation.losses.kd import kd_kl
from edgekd.distillation.losses.logit_std import LogitLoss
from edgekd.distillation.methods import StepContext, register_method
from edgekd.errors import ConfigError

STAGE = "distill/mlkd"
EXTRA_T = (3.0, 5.0, 2.0, 6.0)  # the code's temperatures besides the base one
VIEW = "strong"
SCALES = ("code", "reference")
REFERENCE = (64, 100)  # the code's CIFAR-100 batch size and class count


def class_correlation(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """:math:`\\|P_t^\\top P_t - P_s^\\top P_s\\|_F^2 / C` for :math:`P = \\mathrm{softmax}(z/T)` (N × C): class level."""
    p_s, p_t = F.softmax(s / T, 1), F.softmax(t / T, 1)
    return (p_t.T @ p_t - p_s.T @ p_s).pow(2).sum() / s.shape[1]


def batch_correlation(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """:math:`\\|P_t P_t^\\top - P_s P_s^\\top\\|_F^2 / N`: batch (sample-similarity) level."""
    p_s, p_t = F.softmax(s / T, 1), F.softmax(t / T, 1)
    return (p_t @ p_t.T - p_s @ p_s.T).pow(2).sum() / s.shape[0]


def below_median(v: torch.Tensor) -> torch.Tensor:
    """The fraction of ``v`` at or below its median (numpy's linear-interpolated 50th percentile)."""
    return (v <= torch.quantile(v, 0.5)).to(v.dtype).mean()


@register_method("mlkd")
class MLKDLoss(LogitLoss):
    r"""Multi-level logit distillation on the batch (the *weak* view) and a RandAugment *strong* view.

    With temperatures :math:`\mathcal T = \{T, 3, 5, 2, 6\}`, :math:`\mathrm{KD}_\tau` Hinton's term at
    :math:`\tau` (:math:`\tau^2` · batch-mean KL), weak-view logits :math:`s_w, t_w` (the batch the
    loader gives) and strong-view logits :math:`s_s, t_s` (:func:`edgekd.data.augment.strong` of it):

    .. math::

        \rho = \mathrm{frac}_i\big[\max_k p^{t_w}_{ik} \le \mathrm{median}\big],\qquad
        \kappa = \mathrm{frac}_j\big[\textstyle\sum_i p^{t_w}_{ij} \le \mathrm{median}\big],\qquad p = \mathrm{softmax}(z)

        L_{ins} = \rho \sum_{\tau\in\mathcal T} \mathrm{KD}_\tau(s_w, t_w)
                + \sum_{\tau\in\{T,3,5\}} \mathrm{KD}_\tau(s_s, t_s) + \sum_{\tau\in\{2,6\}} \mathrm{KD}_\tau(s_w, t_w)

        L_{cls} = \kappa \sum_{\tau} \tfrac1C\big\|P_{t_w}^{\top}P_{t_w} - P_{s_w}^{\top}P_{s_w}\big\|_F^2,\qquad
        L_{bat} = \rho \sum_{\tau} \tfrac1N\big\|P_{t_w}P_{t_w}^{\top} - P_{s_w}P_{s_w}^{\top}\big\|_F^2

        L_{MLKD} = L_{ins} + L_{cls} + L_{bat},\qquad P = \mathrm{softmax}(z/\tau)\ (N\times C)

    Instance level: KL per sample; class level: the C × C class-correlation (Gram) matrices; batch
    level: the N × N sample-similarity matrices — each over several temperatures ("prediction
    augmentation"). The student and the teacher both see the strong view: the teacher runs live on
    it, the weak view's teacher logits may come from the cache (it is the plain batch). With a
    label term, ``"ce + mlkd"`` trains the student's cross-entropy on both views (as the code).

    Paper: Jin, Wang, Lin, "Multi-Level Logit Distillation", CVPR 2023,
    https://openaccess.thecvf.com/content/CVPR2023/html/Jin_Multi-Level_Logit_Distillation_CVPR_2023_paper.html;
    code: https://github.com/Jin-Ying/Multi-Level-Logit-Distillation (``KD_ours.forward_train``, also
    ``MLKD.py`` of the logit-standardization code). This follows the code, which differs from the paper:

    - the confidence masks multiply *batch-mean* losses (the per-sample ``reduce=False`` is commented
      out), so they only scale the weak-view terms by the fraction :math:`\rho` (:math:`\kappa`) of
      samples (classes) at or below the median confidence, about one half;
    - the strong view's class- and batch-level terms are computed but not added to the loss;
    - two of the strong view's five instance terms (τ = 2, 6) read the weak view's logits.

    Its CIFAR-100 settings: T = 4, weights CE 0.1 / MLKD 0.9 (``"ce:0.1 + mlkd:0.9"``); with logit
    standardization (``mlkd(ls)``, applied to the instance terms only, as that code does) T = 2 and
    weights 1 / 9.

    **Scale.** The levels do not scale alike: the class-level term grows as :math:`N^2/C` (batch size
    :math:`N`, :math:`C` classes) and the batch-level one as :math:`N`, the instance terms not at all. The
    code's proportions hold at its CIFAR-100 setting (:math:`N = 64`, :math:`C = 100`); at :math:`N = 128`,
    :math:`C = 10` the class term is 40× larger relative to the others and swamps them (a student trained
    so fell *below* the student alone here). ``cls`` and ``bat`` weight the two levels (1 = the code);
    ``scale="reference"`` sets them to :math:`(64^2/100)/(N^2/C)` and :math:`64/N`, the code's proportions at
    this batch size and class count.

    Args:
        T: the base temperature > 0 (the others, 3, 5, 2 and 6, are fixed, as in the code).
        std: logit standardization of the instance-level terms (:mod:`~edgekd.distillation.losses.logit_std`).
        cls: weight of the class-level term (1: the code).
        bat: weight of the batch-level term (1: the code).
        scale: ``"code"`` (``cls`` and ``bat`` as given) or ``"reference"`` (times the factors above).

    Options: ``mlkd_T=4``, ``mlkd_std=True`` (or ``"mlkd(ls)"``), ``mlkd_scale="reference"``; use as
    ``"ce:0.1 + mlkd:0.9"``.
    """

    views = (VIEW,)

    def __init__(self, T: float = 4.0, std: bool = False, cls: float = 1.0, bat: float = 1.0,
                 scale: str = "code") -> None:
        super().__init__(std)
        if not T > 0 or min(cls, bat) < 0 or scale not in SCALES:
            raise ConfigError(f"mlkd needs T > 0, cls, bat >= 0 and scale in {', '.join(SCALES)}; got T={T}, "
                              f"cls={cls}, bat={bat}, scale={scale!r}", stage=STAGE,
                              hint="pass e.g. mlkd_T=4, mlkd_scale='reference'")
        self.T, self.cls, self.bat, self.scale = float(T), float(cls), float(bat), scale

    def level_weights(self, n: int, c: int) -> tuple[float, float]:
        """The class- and batch-level weights for a batch of ``n`` samples and ``c`` classes."""
        if self.scale == "code":
            return self.cls, self.bat
        ref_n, ref_c = REFERENCE
        return self.cls * (ref_n**2 / ref_c) / (n**2 / c), self.bat * ref_n / n

    def forward(self, ctx: StepContext) -> torch.Tensor:
        s_w, t_w = ctx.student_logits, self.teacher(ctx, "mlkd")
        if VIEW not in ctx.views or ctx.views[VIEW][1] is None:
            raise ConfigError("mlkd needs the student's and the teacher's logits on the strong view, and this "
                              "training strategy made none", stage=STAGE,
                              hint="train offline (distill(teacher, student, ...)), which makes the views "
                                   "the losses declare")
        s_s, t_s = ctx.views[VIEW][0], ctx.views[VIEW][1].detach()  # type: ignore[union-attr]
        p_t = F.softmax(t_w, 1)
        rho, kappa = below_median(p_t.max(1).values), below_median(p_t.sum(0))
        temps = (self.T, *EXTRA_T)
        zs_w, zt_w, zs_s, zt_s = self.z(s_w), self.z(t_w), self.z(s_s), self.z(t_s)
        weak = sum(kd_kl(zs_w, zt_w, tau) for tau in temps)
        strong = sum(kd_kl(zs_s, zt_s, tau) for tau in temps[:3]) + sum(kd_kl(zs_w, zt_w, tau) for tau in temps[3:])
        cls = sum(class_correlation(s_w, t_w, tau) for tau in temps)
        bat = sum(batch_correlation(s_w, t_w, tau) for tau in temps)
        w_cls, w_bat = self.level_weights(*s_w.shape)
        return rho * weak + strong + w_cls * kappa * cls + w_bat * rho * bat  # type: ignore[return-value]
