"""Feature plumbing shared by every feature loss: tap options, tapped tensors, width adapters.

Teacher and student widths may differ: :func:`adapter` builds the 1×1 conv (for N×C×H×W maps)
or linear layer (for N×C vectors) that maps a student feature to the teacher's width, created in
a loss's ``setup`` from the probe batch and trained with the student. :func:`match_spatial` pools
two maps to a common grid when their resolutions differ (e.g. a MobileNet student of a ResNet).

Defaults are symbolic taps that each model's family contract resolves (:mod:`edgekd.models.contract`):
``stage:-2`` (the second deepest stage), ``embedding`` (the pooled feature), so one default fits a
CIFAR ResNet (``layer2``, ``pool``), torchvision's MobileNetV3 (``features.8``, ``avgpool``) and a Hugging
Face ConvNeXt alike; any dotted path from ``model.named_modules()`` works for any model::

    distill(teacher, student, data, "ce+fitnet", fitnet_student_taps=["layer3"], fitnet_teacher_taps=["layer3"])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.distillation.methods import StepContext
from edgekd.errors import ConfigError

#: The stages a multi-stage feature loss taps when none are given (``at``, ``reviewkd``): the three deepest
#: stages of each net's family contract (:mod:`edgekd.models.contract`; ``layer1..3`` of a CIFAR ResNet).
STAGES: tuple[str, ...] = ("stage:-3", "stage:-2", "stage:-1")
#: The pooled embedding of the contract (N×C, or N×C×1×1), the deepest "stage" ReviewKD reviews from.
POOLED = "embedding"
#: Taps that name a pooled embedding (the contract's alias, the zoo's and torchvision's module names): no pre-ReLU form.
POOLED_NAMES: tuple[str, ...] = (POOLED, "pool", "avgpool")


def tap_pairs(method: str, student: Sequence[str] | str | None, teacher: Sequence[str] | str | None,
              default: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Resolve a loss's tap options: ``None`` -> ``default``; teacher ``None`` -> same as student.

    Accepts a list or a comma string; the two lists must pair up one to one.
    """
    def norm(value: Sequence[str] | str, side: str) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value)
        out = tuple(str(v).strip() for v in items)
        if not out or any(not v for v in out):
            raise ConfigError(f"{method} {side}_taps={value!r} names no module", stage=f"distill/{method}",
                              hint=f"pass {method}_{side}_taps=['layer2'] (dotted paths from named_modules())")
        return out

    s = norm(default if student is None else student, "student")
    t = s if teacher is None else norm(teacher, "teacher")
    if len(s) != len(t):
        raise ConfigError(f"{method} pairs taps one to one, got {len(s)} student taps {list(s)} and "
                          f"{len(t)} teacher taps {list(t)}", stage=f"distill/{method}",
                          hint=f"give {method}_student_taps and {method}_teacher_taps the same length")
    return s, t


def tapped(ctx: StepContext, side: str, path: str, method: str) -> torch.Tensor:
    """The recorded output of ``path`` on ``side`` ("student"/"teacher"), or a clear error.

    Teacher features are detached: feature losses treat the teacher as fixed, so no gradient
    reaches it even when it runs with autograd on (adapters on the teacher side still train).
    """
    feats: dict[str, Any] = ctx.student_features if side == "student" else ctx.teacher_features
    if path not in feats:
        raise ConfigError(f"{method} needs the {side} feature {path!r} but it was not recorded "
                          f"(recorded: {', '.join(feats) or 'none'})", stage=f"distill/{method}",
                          hint="run through distill()/Trainer, which taps every module a loss names")
    out = feats[path]
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"{side} module {path!r} returns {type(out).__name__}, not a tensor",
                          stage=f"distill/{method}", hint="tap a module whose output is one tensor")
    return out.detach() if side == "teacher" else out


def flat(x: torch.Tensor) -> torch.Tensor:
    """(N, ...) -> (N, D): e.g. the ``pool`` output (N, C, 1, 1) as an embedding."""
    return x.reshape(x.shape[0], -1)


def adapter(student_shape: Sequence[int], teacher_shape: Sequence[int], *, bn: bool = False) -> nn.Module:
    """A trainable map from the student's width to the teacher's.

    4-D (N, C, H, W) features get a 1×1 conv (optionally followed by BatchNorm); 2-D (N, C)
    features get a linear layer. Spatial sizes are left alone (see :func:`match_spatial`).
    """
    c_s, c_t = int(student_shape[1]), int(teacher_shape[1])
    if len(student_shape) == 4 and len(teacher_shape) == 4:
        conv = nn.Conv2d(c_s, c_t, kernel_size=1, bias=not bn)
        return nn.Sequential(conv, nn.BatchNorm2d(c_t)) if bn else conv
    if len(student_shape) == 2 and len(teacher_shape) == 2:
        return nn.Linear(c_s, c_t)
    raise ConfigError(f"cannot bridge a student feature of shape {tuple(student_shape)} to a teacher "
                      f"feature of shape {tuple(teacher_shape)}", stage="distill/adapters",
                      hint="tap modules whose outputs are both N×C×H×W maps or both N×C vectors")


def match_spatial(s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the larger of two N×C×H×W maps down to the other's H×W (no-op when equal)."""
    if s.dim() != 4 or s.shape[-2:] == t.shape[-2:]:
        return s, t
    size = (min(s.shape[-2], t.shape[-2]), min(s.shape[-1], t.shape[-1]))
    return F.adaptive_avg_pool2d(s, size), F.adaptive_avg_pool2d(t, size)


def spatial_pairs(ctx: StepContext, student_taps: Sequence[str], teacher_taps: Sequence[str],
                  method: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each (student, teacher) tapped feature pair of ``method``, pooled to a common H×W."""
    return [match_spatial(tapped(ctx, "student", s, method), tapped(ctx, "teacher", t, method))
            for s, t in zip(student_taps, teacher_taps, strict=True)]


def require_setup(modules: nn.ModuleList | None, expected: int, method: str) -> None:
    """Fail clearly when a loss with adapters is called before ``setup`` built them."""
    if modules is None or len(modules) != expected:
        raise ConfigError(f"{method} has no adapters yet: setup(ctx, num_train) was not called",
                          stage=f"distill/{method}",
                          hint="train through distill()/Trainer, or call loss.setup(probe_ctx, num_train) first")
