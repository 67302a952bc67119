"""Parity: every exported file, run by its real runtime, against the eager PyTorch model.

Each file runs on held-out samples (never the calibration ones, by default the tail of
``calibration``) one batch at a time: the ExecuTorch runtime for ``.pte``, the LiteRT interpreter
for ``.tflite`` (NHWC and int8 inputs/outputs handled with the file's own scale and zero point),
``torch.export.load`` for ``.pt2``. The (dequantized) outputs are compared with the eager model's.

Default thresholds (override any of them with ``export(..., thresholds={"int8": {...}})``):

=========  ==========================  =====================================================
precision  metric                      passes when
=========  ==========================  =====================================================
fp32       ``max_abs_error_rel``       max |y - y_eager| ≤ 1e-3 · (1 + max |y_eager|)
fp32       ``top1_agreement``          ≥ 0.99 (argmax equal to the eager model's)
int8       ``top1_agreement``          ≥ 0.90
int8       ``accuracy_drop``           accuracy(eager) − accuracy(file) ≤ 0.03 (labels given)
=========  ==========================  =====================================================

With ``task="embedding"`` (sentence encoders: top-1 of an embedding means nothing) the defaults
are :data:`EMBEDDING_THRESHOLDS`: fp32 ``max_abs_error_rel`` ≤ 1e-3 and ``cosine_min`` ≥ 0.9999;
int8 ``cosine_min`` ≥ 0.95 (the lowest cosine between a file's output row and eager's).

fp32 files should match to float rounding (seen: 3e-8); anything larger is a converter bug. int8
is judged on decisions, not logits: a per-tensor int8 output has a step of ~1 % of its range.
A file beyond a threshold raises :class:`~edgekd.errors.ParityError` naming the file, the metric,
its value and the threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edgekd.bundle import Parity
from edgekd.errors import ConfigError, ParityError
from edgekd.formats import format_of, guess_row, row

DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "fp32": {"max_abs_error_rel": 1e-3, "top1_agreement": 0.99},
    "int8": {"top1_agreement": 0.90, "accuracy_drop": 0.03},
}


EMBEDDING_THRESHOLDS: dict[str, dict[str, float]] = {
    "fp32": {"max_abs_error_rel": 1e-3, "cosine_min": 0.9999},
    "int8": {"cosine_min": 0.95},
}
TASKS = {"classification": DEFAULT_THRESHOLDS, "embedding": EMBEDDING_THRESHOLDS}


def thresholds_for(precision: str, overrides: dict[str, dict[str, float]] | None,
                   task: str = "classification") -> dict[str, float]:
    """The defaults for ``precision`` and ``task`` updated with ``overrides[precision]`` (unknown metrics rejected)."""
    if task not in TASKS:
        raise ConfigError(f"unknown parity task {task!r}; known: {', '.join(TASKS)}", stage="export/parity",
                          hint="pass task='classification' (logits) or task='embedding' (sentence embeddings)")
    t = dict(TASKS[task][precision])
    extra = (overrides or {}).get(precision, {})
    unknown = set(extra) - {"max_abs_error_rel", "max_abs_error", "top1_agreement", "accuracy_drop", "cosine_min"}
    if unknown:
        raise ConfigError(f"unknown parity threshold(s) {sorted(unknown)} for {precision}", stage="export/parity",
                          hint="use max_abs_error_rel, max_abs_error, top1_agreement, accuracy_drop or cosine_min")
    t.update(extra)
    return t


def run_batches(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int,
                expected: tuple[int, ...] | None = None) -> np.ndarray:
    """Run ``run`` over ``x`` in batches of the traced size and concatenate the outputs.

    Every batch must give an output of one shape (``expected`` when given): a model whose output
    shape depends on its input values is a :class:`ConfigError` naming the samples, not a numpy error.
    """
    n = x.shape[0] - x.shape[0] % batch
    outs = [np.asarray(run(x[i : i + batch])) for i in range(0, n, batch)]
    shapes = [o.shape for o in outs]
    ref = expected if expected is not None else (shapes[0] if shapes else None)
    odd = [i for i, s in enumerate(shapes) if s != ref]
    if odd:
        i = odd[0]
        raise ConfigError(
            f"the model's output shape depends on its input: {ref} for the example input but {shapes[i]} for "
            f"samples {i * batch}..{i * batch + batch - 1} of the parity data ({len(odd)} of {len(shapes)} batches "
            "differ); a converted file has one fixed output shape", stage="export/parity",
            hint="make forward() return one shape for one input shape: replace value-dependent control flow "
                 "(if on tensor values, x[x > 0], nonzero, early returns) with shape-stable ops (torch.where, masks)")
    return np.concatenate(outs)


def eager_outputs(model: torch.nn.Module, x: np.ndarray, batch: int,
                  expected: tuple[int, ...] | None = None) -> np.ndarray:
    """The eager model's outputs on ``x`` (batches of ``batch``), each checked to have ``expected``'s shape."""
    def run(a: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(a)).numpy()

    return run_batches(run, x, batch, expected)


def measure(y: np.ndarray, y_eager: np.ndarray, labels: np.ndarray | None, thresholds: dict[str, float]) -> Parity:
    """Compare outputs; return a :class:`Parity` whose ``passed`` says whether all thresholds hold."""
    err = np.abs(y.astype(np.float64) - y_eager.astype(np.float64))
    agree = float(np.mean(y.argmax(-1) == y_eager.argmax(-1))) if y.ndim > 1 else 1.0
    acc = acc_eager = None
    if labels is not None:
        acc = float(np.mean(y.argmax(-1) == labels[: len(y)]))
        acc_eager = float(np.mean(y_eager.argmax(-1) == labels[: len(y)]))
    a, b = y.reshape(len(y), -1).astype(np.float64), y_eager.reshape(len(y_eager), -1).astype(np.float64)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    p = Parity(n_samples=int(y.shape[0]), max_abs_error=float(err.max()), mean_abs_error=float(err.mean()),
               top1_agreement=agree, accuracy=acc, accuracy_eager=acc_eager, thresholds=dict(thresholds),
               cosine_min=float(cos.min()) if len(cos) else None)
    return Parity(**{**p.__dict__, "passed": not failures(p, float(np.abs(y_eager).max()))})


def failures(p: Parity, max_logit: float) -> list[str]:
    """Human-readable ``metric value < threshold`` strings for every threshold ``p`` misses."""
    t, out = p.thresholds, []
    if "max_abs_error_rel" in t and p.max_abs_error > t["max_abs_error_rel"] * (1 + max_logit):
        out.append(f"max abs error {p.max_abs_error:.3g} > {t['max_abs_error_rel']:g}·(1+{max_logit:.3g})")
    if "max_abs_error" in t and p.max_abs_error > t["max_abs_error"]:
        out.append(f"max abs error {p.max_abs_error:.3g} > {t['max_abs_error']:g}")
    if "top1_agreement" in t and p.top1_agreement < t["top1_agreement"]:
        out.append(f"top-1 agreement {p.top1_agreement:.3f} < {t['top1_agreement']:g}")
    if "cosine_min" in t and p.cosine_min is not None and p.cosine_min < t["cosine_min"]:
        out.append(f"min cosine with eager {p.cosine_min:.4f} < {t['cosine_min']:g}")
    if "accuracy_drop" in t and p.accuracy is not None and p.accuracy_eager is not None:
        drop = p.accuracy_eager - p.accuracy
        if drop > t["accuracy_drop"]:
            out.append(f"accuracy drop {drop:.3f} ({p.accuracy_eager:.3f} → {p.accuracy:.3f}) > {t['accuracy_drop']:g}")
    return out


def check(p: Parity, y_eager: np.ndarray, *, stage: str, what: str, precision: str) -> None:
    """Raise :class:`ParityError` if ``p`` misses a threshold; ``what`` names the file."""
    bad = failures(p, float(np.abs(y_eager).max()))
    if bad:
        hint = ("fp32 should match eager PyTorch to rounding: report the converter and op, or try the other "
                "converter" if precision == "fp32" else
                "calibrate on more (and representative) samples, use QAT (edgekd.quantization.prepare_qat), "
                "try the other converter, or loosen thresholds={'int8': {...}} if the drop is acceptable")
        raise ParityError(f"{what}: {precision} " + "; ".join(bad) + f" vs eager on {p.n_samples} samples",
                          stage=stage, hint=hint)


def file_accuracy(path: str | Path, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of a model file run by its real host runtime, one sample at a time (files are
    exported at batch 1); the file's layout and int8 conventions come from the format table."""
    r = guess_row(path) or row(format_of(path))
    run, _, _ = r.load("host_runner")(Path(path), r.layout)
    xs = x.numpy().astype(np.float32)
    preds = np.array([int(run(xs[i : i + 1]).argmax(-1)[0]) for i in range(len(xs))])
    return float(np.mean(preds == y.numpy()))
