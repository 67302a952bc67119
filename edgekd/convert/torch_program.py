"""The ``.pt2`` baseline: the fp32 ``torch.export`` program, saved with ``torch.export.save``.

Benchmarks load it with ``torch.export.load(path).module()`` and run it in eager PyTorch: the
reference every converted file is measured against. fp32 only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.quantization import export_program

STAGE = "export/pt2"


def to_pt2(
    model: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: Path,
    *,
    precision: str,
    calibration: torch.Tensor | None,
    verbose: bool = False,
    program: torch.export.ExportedProgram | None = None,
    observer: str = "histogram",
) -> dict[str, Any]:
    """Write ``path`` with ``torch.export.save`` of the eval-mode fp32 program (``program`` when given)."""
    program = program if program is not None else export_program(model.eval(), example_inputs, stage=STAGE)
    torch.export.save(program, str(path))
    return {"torch_version": torch.__version__}


def pt2_runner(path: Path, layout: str | None = None) -> Any:
    """Return ``(run, None, None)``: ``run(x) -> first output`` of the loaded program (float32)."""
    module = torch.export.load(str(path)).module()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            y = module(torch.from_numpy(np.ascontiguousarray(x)))
        y = y[0] if isinstance(y, (tuple, list)) else y
        return y.numpy().astype(np.float32)

    return run, None, None
