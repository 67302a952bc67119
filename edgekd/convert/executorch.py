"""ExecuTorch ``.pte`` files, lowered to the XNNPACK delegate (ATen → Edge → ExecuTorch).

fp32: ``torch.export`` → ``to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])`` →
``to_executorch().buffer``. int8: :func:`edgekd.quantization.quantize` (PT2E, XNNPACKQuantizer), export the
converted module again, lower the same way. The model is put in eval mode first, so batch norm is
exported as inference batch norm, which XNNPACK's ``FuseBatchNormPass`` folds into the preceding
conv during lowering (int8: ``convert_pt2e`` folds it before quantizing the weights).

``ModelFile.extra["partition"]`` records the coverage: how many XNNPACK partitions (delegate calls)
the graph became, how many call_function ops went into them and the names of those left to
ExecuTorch's portable CPU kernels (usually much slower). A small CNN lowers to ONE partition with
nothing outside; int8 runs XNNPACK's static int8 operators (``Convolution (NHWC, QC8) IGEMM``, the
same ``qs8_qc8w`` micro-kernels TFLite runs). :func:`xnnpack_operators` reads what the runtime
actually executed from an ETDump. See benchmarks/RESULTS.md, "ExecuTorch int8 vs TFLite int8", for why ExecuTorch int8 is
on a par with TFLite int8 on AVX512-VNNI CPUs but cannot be on AMX Xeons with the executorch wheel
(its XNNPACK has no AMX kernels).
"""

from __future__ import annotations

import re
import subprocess
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
    calls = sum(1 for n in gm.graph.nodes if n.op == "call_function" and "executorch_call_delegate" in str(n.target))
    return {
        "partitions": calls,
        "delegated_ops": sum(delegated.values()),
        "non_delegated_ops": sum(outside.values()),
        "non_delegated": dict(outside),
        "delegated": dict(delegated),
    }


def keepdim_spatial_means(gm: torch.fx.GraphModule) -> int:
    """Rewrite ``x.mean((2, 3))`` of a 4-D ``x`` as ``x.mean((2, 3), keepdim=True).view(n, c)``, in place.

    XNNPACK lowers a spatial mean to global average pooling only with ``keepdim=True``
    (``MeanDimConfig`` in executorch 1.5); without it the mean runs in ExecuTorch's portable kernels
    between two XNNPACK partitions (int8: dequantize, float mean, quantize again). ``nn.AdaptiveAvgPool2d``
    keeps the dims; hand-written heads (``x.mean((2, 3))``, timm's flattening pool) do not. On resnet8x4
    the split costs 7% (int8) / 3% (fp32) latency. Returns the number of means rewritten; the graph
    computes the same values.
    """
    mean_dim = torch.ops.aten.mean.dim
    done = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target != mean_dim or node.kwargs.get("dtype") is not None:
            continue
        x, dims = node.args[0], node.args[1]
        keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        val, out = getattr(x, "meta", {}).get("val"), node.meta.get("val")
        if keepdim or not isinstance(val, torch.Tensor) or val.dim() != 4 or not isinstance(out, torch.Tensor):
            continue
        if sorted(int(d) % 4 for d in dims) != [2, 3]:
            continue
        with gm.graph.inserting_after(node):
            view = gm.graph.call_function(torch.ops.aten.view.default, (node, [int(s) for s in out.shape]))
        node.replace_all_uses_with(view, delete_user_cb=lambda user, v=view: user is not v)
        node.args, node.kwargs = (x, list(dims), True), {}
        node.meta["val"] = val.mean(list(dims), keepdim=True)
        view.meta.update({k: v for k, v in node.meta.items() if k not in ("val", "tensor_meta")})
        view.meta["val"] = out
        done += 1
    if done:
        gm.graph.lint()
        gm.recompile()
    return done


def xnnpack_nodes(edge_program: Any) -> dict[str, int] | None:
    """The node types of the XNNPACK graphs an edge program was lowered to, counted over all its delegates:
    what the XNNPACK runtime will be given, e.g. ``{"XNNConv2d": 9, "XNNStaticTranspose": 2, ...}`` (a
    convolution is one ``XNNConv2d`` with its batch norm folded in and its ReLU fused; layout transposes
    are ``XNNStaticTranspose``). Read from each delegate's flatbuffer with the ``flatc`` the executorch
    wheel ships; ``None`` when it is missing."""
    import tempfile

    import executorch
    from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize as ser

    flatc = Path(executorch.__path__[0]) / "data" / "bin" / "flatc"
    schema = Path(ser.__file__).parent / "schema.fbs"
    if not flatc.is_file() or not schema.is_file():
        return None
    counts: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (_, sub) in enumerate(edge_program.graph_module.named_children()):
            blob = getattr(sub, "processed_bytes", None)
            if not blob or getattr(sub, "backend_id", "") != "XnnpackBackend":
                continue
            header = ser.XNNHeader.from_bytes(blob[: ser.XNNHeader.EXPECTED_LENGTH])
            graph = Path(tmp) / f"g{i}.bin"
            graph.write_bytes(blob[header.flatbuffer_offset:header.flatbuffer_offset + header.flatbuffer_size])
            subprocess.run([str(flatc), "--json", "--raw-binary", "-o", tmp, str(schema), "--", str(graph)],
                           check=True, capture_output=True, timeout=60)
            text = (Path(tmp) / f"g{i}.json").read_text()
            counts.update(re.findall(r'xnode_union_type:\s*"?(\w+)"?', text))
    return dict(counts)


def _lower(program: torch.export.ExportedProgram) -> tuple[bytes, dict[str, Any]]:
    with requires("executorch"):
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    coverage = partition_coverage(edge.exported_program())
    try:
        nodes = xnnpack_nodes(edge.exported_program())
    except (OSError, ValueError, subprocess.SubprocessError):  # a diagnostic: never costs the export
        nodes = None
    if nodes is not None:
        coverage["xnnpack_nodes"] = nodes
    return edge.to_executorch().buffer, coverage


def to_pte(
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
    """Write ``path`` (.pte, XNNPACK-lowered) and return notes for ``ModelFile.extra``.

    ``program``: the model's ``torch.export`` made once per :func:`edgekd.convert.export` call (copied,
    never changed); ``observer``: the int8 calibration observer (:mod:`edgekd.quantization`).
    ``extra["seconds"]`` says where the time went (``quantize``, ``lower``).
    """
    import copy
    import time

    from edgekd.quantization import export_program, quantize

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    if precision == "int8":
        q = quantize(model, example_inputs, calibration, transform=keepdim_spatial_means, observer=observer,
                     program=program)
        seconds["quantize"] = time.perf_counter() - t0
        program = export_program(q, example_inputs, stage=STAGE)
    else:
        program = copy.deepcopy(program) if program is not None else export_program(model, example_inputs, stage=STAGE)
        gm = program.module()
        if keepdim_spatial_means(gm):  # re-export so the new nodes get torch.export's metadata and checks
            program = export_program(gm, example_inputs, stage=STAGE)
    t1 = time.perf_counter()
    try:
        buffer, coverage = _lower(program)
    except Exception as e:
        raise ExportError(
            f"ExecuTorch could not lower the {precision} model: {first_line(e)}",
            stage=STAGE,
            hint="export fp32 only, or replace the op named above with a supported one",
        ) from e
    seconds["lower"] = time.perf_counter() - t1
    path.write_bytes(buffer)
    return {"partition": coverage, "seconds": seconds}


_FRAMEWORK_EVENTS = {"Method::init", "Program::load_method", "Method::execute", "DELEGATE_CALL"}


def xnnpack_operators(path: Path, *, runs: int = 3) -> dict[str, Any]:
    """What the ExecuTorch runtime executes for ``path``: XNNPACK operators and anything outside them.

    Loads the file with ETDump profiling, runs it ``runs`` times on zeros and reads the dump with
    ``executorch.devtools.Inspector``. Returns ``{"delegated": {operator type: count}, "outside":
    {event name: count}, "p50_ms": {event name: p50}}``. Operator types are XNNPACK's own names
    without the ``#n`` suffix, e.g. ``"Convolution (NHWC, QC8) IGEMM"`` (static int8, per-channel
    weights) vs ``"Convolution (NHWC, F32) IGEMM"`` (fp32) or ``"Fully Connected (NC, QD8, F32, QC8W)"``
    (dynamic int8). ``outside`` lists ExecuTorch kernels that ran outside every delegate (framework
    events such as ``Method::execute`` are left out). Note: this resets ExecuTorch's process-wide
    thread pool to one thread.
    """
    import tempfile

    from executorch.extension.pybindings import _C

    _C._unsafe_reset_threadpool(1)
    program = _C._load_program(str(path), enable_etdump=True, debug_buffer_size=0)
    method = program.load_method("forward")
    meta = method.method_meta().input_tensor_meta(0)
    x = torch.zeros(tuple(meta.sizes()))
    for _ in range(runs):
        method.call([x])
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "run.etdump"
        program.write_etdump_result_to_file(str(dump), "")
        events = etdump_events(dump)
    delegated: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    p50: dict[str, float] = {}
    for name, is_delegated, samples in events:
        if name in _FRAMEWORK_EVENTS:
            continue
        (delegated if is_delegated else outside)[name.split(" #")[0]] += 1
        if samples:
            p50[name] = float(np.median(samples))
    return {"delegated": dict(delegated), "outside": dict(outside), "p50_ms": p50}


def etdump_events(dump: Path) -> list[tuple[str, bool, list[float]]]:
    """The events of an ETDump file's ``Execute`` blocks, read with ``executorch.devtools.Inspector``:
    ``(name, is_delegated_op, milliseconds per run)``, in the order the runtime ran them. Framework
    events (``Method::execute``, ``DELEGATE_CALL``, ``OPERATOR_CALL``) are included; a delegate that
    reports no per-operator events shows up as its ``DELEGATE_CALL`` alone."""
    with requires("executorch"):
        from executorch.devtools import Inspector

    inspector = Inspector(etdump_path=str(dump))
    out = []
    for block in inspector.event_blocks:
        if block.name != "Execute":
            continue
        for event in block.events:
            raw = [float(v) for v in event.perf_data.raw] if event.perf_data is not None else []
            out.append((str(event.name), bool(event.is_delegated_op), raw))
    return out


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
