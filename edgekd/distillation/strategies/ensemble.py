r"""Multi-teacher distillation: one student learns from the (weighted) average of several teachers.

.. math::

    \bar p^{T}_i = \sum_{k=1}^{K} w_k \,\mathrm{softmax}(t^{(k)}_i / T), \qquad
    L_{ens} = T^2 \frac{1}{N}\sum_i \mathrm{KL}\big(\bar p^{T}_i \,\|\, \mathrm{softmax}(s_i / T)\big),
    \qquad \bar F_\ell = \sum_k w_k F^{(k)}_\ell

with weights :math:`w_k \ge 0` normalised to sum to 1 (default uniform). Paper: the review
"Knowledge Distillation: A Survey" (Gou et al., IJCV 2021), multi-teacher section ("distilling
from ensembles of models", after Hinton et al. 2015 and You et al., KDD 2017), see
``/work/shared/reference/knowledge-distillation-review.txt``.

:class:`EnsembleTeacher` wraps the teachers as one frozen module whose output is
:math:`T \log \bar p^{T}`, so *any* logit loss at temperature :math:`T` (``kd``, ``dkd``...)
sees exactly the averaged soft targets, and whose modules named in ``features`` output the
averaged teacher features, so feature losses tap them by the usual path. ``distill(teacher=[a, b])``
builds it (taking ``T`` from the method); ``method="ensemble"`` is KD against it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edgekd.distillation.losses.kd import KDLoss
from edgekd.distillation.methods import register_method
from edgekd.distillation.strategies.base import STAGE
from edgekd.distillation.taps import Taps
from edgekd.errors import ConfigError


def _mirror(root: nn.Module, path: str) -> nn.Identity:
    """Create ``root.<path>`` as nested containers ending in an Identity (taps hook onto it)."""
    node = root
    *parents, leaf = path.split(".")
    for name in parents:
        if not hasattr(node, name):
            node.add_module(name, nn.Module())
        node = getattr(node, name)
    ident = nn.Identity()
    node.add_module(leaf, ident)
    return ident


class EnsembleTeacher(nn.Module):
    """K teachers as one module: averaged soft targets at temperature ``T`` and averaged ``features``."""

    def __init__(self, teachers: Sequence[nn.Module], weights: Sequence[float] | None = None, T: float = 1.0,
                 features: Sequence[str] = ()) -> None:
        super().__init__()
        if len(teachers) < 1:
            raise ConfigError("an ensemble needs at least one teacher", stage=STAGE, hint="pass teachers=[a, b]")
        # float64, so float64 teachers get exact weights; each use casts to the teachers' dtype
        w = torch.ones(len(teachers), dtype=torch.float64) if weights is None else \
            torch.tensor([float(v) for v in weights], dtype=torch.float64)
        if len(w) != len(teachers) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ConfigError(f"ensemble weights {list(map(float, w))} do not fit {len(teachers)} teachers",
                              stage=STAGE, hint="give one weight >= 0 per teacher, not all zero")
        if not T > 0:
            raise ConfigError(f"ensemble temperature T={T} must be > 0", stage=STAGE, hint="pass T=4.0")
        self.teachers = nn.ModuleList(teachers)
        self.register_buffer("weights", w / w.sum())
        self.T = float(T)
        self.features = list(features)
        self._outs = {p: _mirror(self, p) for p in self.features}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs: list[torch.Tensor] = []
        feats: dict[str, torch.Tensor] = {}
        for k, teacher in enumerate(self.teachers):
            with Taps(teacher, self.features) as taps:
                p = torch.softmax(teacher(x) / self.T, dim=1)
                probs.append(self.weights[k].to(p.dtype) * p)
            for path in self.features:
                f = taps[path]
                w = self.weights[k].to(f.dtype)
                if path in feats and feats[path].shape != f.shape:
                    raise ConfigError(f"teachers disagree on the shape of {path!r}: {tuple(feats[path].shape)} "
                                      f"vs {tuple(f.shape)}", stage=STAGE,
                                      hint="average features only across teachers of the same widths")
                feats[path] = w * f if path not in feats else feats[path] + w * f
        for path, ident in self._outs.items():
            ident(feats[path])
        return self.T * torch.log(torch.stack(probs).sum(0).clamp_min(1e-12))


@register_method("ensemble")
class EnsembleKDLoss(KDLoss):
    r"""KD against an :class:`EnsembleTeacher` (the averaged soft targets; formula in the module doc).

    With one teacher it is plain KD. ``distill(teacher=[a, b, c], ..., method="ce+ensemble",
    ensemble_T=4, teacher_weights=[...])``.

    Options: ``ensemble_T=4.0``.
    """
