"""ExecuTorch ``.pte`` files, lowered to the XNNPACK delegate (ATen → Edge → ExecuTorch).

fp32: ``torch.export`` → ``to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])`` →
``to_executorch().buffer``. int8: :func:`edgekd.quantization.quantize` (PT2E, XNNPACKQuantizer), export the
converted module again, lower the same way. The model is put in eval mode first, so batch norm is
exported as inference batch norm, which XNNPACK's ``FuseBatchNormPass`` folds into the preceding
conv during lowering (int8: ``convert_pt2e`` folds it before quantizing the weights).

``ModelFile.extra["partition"]`` records the coverage: how many call_function ops went into XNNPACK
delegates and the names of those left to ExecuTorch's portable CPU kernels (usually much slower).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.errors import ExportError
from edgekd.extras import requires

STAGE = "export/pte"


def _op_name(node: torch.fx.Node) -> str:
    target = node.target
    name = getattr(target, "__name__", None) or str(target)
    return name.split(":")[0].replace("<EdgeOpOverload", "").strip(" <>")


def partition_coverage(edge_program: Any) -> dict[str, Any]:
    """Count call_function ops inside XNNPACK delegates vs left outside (by op name)."""
    gm = edge_program.graph_module
    delegated: Counter[str] = Counter()
    for _, sub in gm.named_children():
        original = getattr(sub, "original_module", None)
        if original is not None:
            delegated.update(_op_name(n) for n in original.graph.nodes
                             if n.op == "call_function" and "getitem" not in _op_name(n))
    outside = Counter(
        _op_name(n) for n in gm.graph.nodes
        if n.op == "call_function" and "executorch_call_delegate" not in str(n.target)
        and "getitem" not in _op_name(n)
    )
    return {
        "delegated_ops": sum(delegated.values()),
        "non_delegated_ops": sum(outside.values()),
        "non_delegated": dict(outside),
        "delegated": dict(delegated),
    }


def _lower(program: torch.export.ExportedProgram) -> tuple[bytes, dict[str, Any]]:
    with requires("executorch"):
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    coverage = partition_coverage(edge.exported_program())
    return edge.to_executorch().buffer, coverage


def to_pte(
    model: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: Path,
    *,
    precision: str,
    calibration: torch.Tensor | None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Write ``path`` (.pte, XNNPACK-lowered) and return notes for ``ModelFile.extra``."""
    from edgekd.quantization import export_program, quantize

    m: torch.nn.Module = quantize(model, example_inputs, calibration) if precision == "int8" else model
    program = export_program(m, example_inputs, stage=STAGE)
    try:
        buffer, coverage = _lower(program)
    except Exception as e:
        raise ExportError(
            f"ExecuTorch could not lower the {precision} model: {first_line(e)}",
            stage=STAGE,
            hint="export fp32 only, or replace the op named above with a supported one",
        ) from e
    path.write_bytes(buffer)
    return {"partition": coverage}


def first_line(e: BaseException) -> str:
    """The first non-empty line of an exception message (converters print pages)."""
    for line in str(e).splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(e).__name__


def pte_runner(path: Path, layout: str | None = None) -> Any:
    """Return ``(run, inputs, outputs)`` for a .pte file; ``run(x) -> first output`` (float32).

    A .pte file keeps PyTorch's float32 NCHW view (int8 files too: the q/dq is inside), so the
    specs are left to the caller (``None``).
    """
    with requires("executorch"):
        from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(method.execute([torch.from_numpy(np.ascontiguousarray(x))])[0], dtype=np.float32)

    return run, None, None
