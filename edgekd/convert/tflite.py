"""TFLite files from two converters: Google's litert-torch and onnx2tf (PyTorch → ONNX → TF → TFLite).

- **litert-torch** keeps PyTorch's NCHW layout. fp32: ``litert_torch.convert(model, (x,))``. int8:
  PT2E with litert-torch's own ``PT2EQuantizer`` (per-channel symmetric), ``convert_pt2e(...,
  fold_quantize=False)``, then ``convert(..., quant_config=QuantConfig(pt2e_quantizer=q))``; the
  file takes and returns int8 tensors with their own scale and zero point. A softmax (attention) is
  first rewritten to ``aten._softmax`` so the quantizer gives it the fixed output scale 1/256 the
  TFLite kernel requires (:func:`_softmax_as_aten_softmax`).
- **onnx2tf** takes NHWC input (it transposes the graph). ONNX comes from the TorchScript exporter
  (``dynamo=False``: the dynamo exporter needs onnxscript, not in the stack). int8 is full-integer
  (int8 in, int8 out), calibrated with OUR samples written to an ``.npy`` file. onnx2tf fetches a
  sample image set from the internet whenever every input is 4-D with 3 channels; edgekd replaces
  ``download_test_image_data`` for the duration of the call with our samples (NHWC), or with a
  function that raises :class:`ExportError`, so it can never go online.

``ModelFile.extra["ops"]`` counts op types and ``extra["tensor_dtypes"]`` the tensor dtypes in the
file, which shows whether an int8 file is int8 end to end or falls back to float kernels.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.convert.executorch import first_line
from edgekd.errors import ExportError
from edgekd.extras import requires
from edgekd.formats import to_layout

STAGE = "export/tflite"


@contextlib.contextmanager
def quiet(verbose: bool) -> Iterator[None]:
    """Silence converter console spam (Python and C-level stdout/stderr) unless ``verbose``."""
    if verbose:
        yield
        return
    import io
    import sys

    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def xnnpack_coverage(path: Path) -> dict[str, Any]:
    """Which ops of a .tflite file LiteRT's default XNNPACK delegate takes, as ``ModelFile.extra["partition"]``
    of a .pte: ``{"partitions", "delegated_ops", "non_delegated_ops", "non_delegated": {op: count}}``.

    The interpreter (default delegates on) appends one ``DELEGATE`` node per delegated subgraph; an
    original op is delegated when it lies between a delegate node's inputs and outputs (a walk back
    from the outputs through the ops that produce each tensor, stopping at the inputs).
    """
    with requires("tflite", "reading .tflite files (the LiteRT interpreter)"):
        from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    ops = it._get_ops_details()
    original = [o for o in ops if o["op_name"] != "DELEGATE"]
    producer = {int(t): o for o in original for t in o["outputs"]}
    delegated: set[int] = set()
    delegates = [o for o in ops if o["op_name"] == "DELEGATE"]
    for d in delegates:
        stop, stack = {int(t) for t in d["inputs"]}, [int(t) for t in d["outputs"]]
        while stack:
            t = stack.pop()
            o = producer.get(t)
            if t in stop or o is None or o["index"] in delegated:
                continue
            delegated.add(o["index"])
            stack.extend(int(i) for i in o["inputs"] if i >= 0)
    outside = Counter(o["op_name"] for o in original if o["index"] not in delegated)
    return {"partitions": len(delegates), "delegated_ops": len(delegated), "non_delegated_ops": sum(outside.values()),
            "non_delegated": dict(outside)}


def graph_summary(path: Path) -> dict[str, Any]:
    """Op-type counts and tensor-dtype counts of a .tflite file, read with the LiteRT interpreter, and what
    its XNNPACK delegate takes (:func:`xnnpack_coverage`)."""
    with requires("tflite", "reading .tflite files (the LiteRT interpreter)"):
        from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    ops = Counter(op["op_name"] for op in it._get_ops_details())
    dtypes = Counter(np.dtype(t["dtype"]).name for t in it.get_tensor_details())
    float_ops = sorted({
        op["op_name"] for op in it._get_ops_details()
        if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
        and any(i >= 0 and it._get_tensor_details(i, 0)["dtype"] == np.float32 for i in op["inputs"])
    })
    return {"ops": dict(ops), "tensor_dtypes": dict(dtypes), "float_compute_ops": float_ops,
            "partition": xnnpack_coverage(path)}


# Known converter failures: (text in the error, what it means, what to do).
KNOWN_FAILURES = (
    ("Attempting to convert non-NHWC compatible node to NHWC",
     "its NHWC layout pass loses a quantized tensor's shape next to explicit pad ops (TF-style 'SAME' padding, "
     "e.g. a Hugging Face MobileNetV2 with tf_padding=True)",
     "build the model with symmetric conv padding (edgekd's hf:mobilenet_v2 default, tf_padding=False), or "
     "export this int8 file with tflite_converter='onnx2tf' or as .pte"),
)


def xnnpack_delegation(path: Path) -> dict[str, Any]:
    """Which operators of a .tflite file LiteRT hands to its XNNPACK delegate, and which it runs itself.

    The interpreter applies XNNPACK (its default delegate, as on a device) and appends one ``DELEGATE``
    node per delegated partition after the model's own nodes; Python does not expose which nodes a
    partition replaced, so they are found from the tensors: a node runs outside every delegate when an
    output of it is read by a delegate or is a model output (or is read by another such node) and no
    delegate produces it. Returns ``{"partitions": n, "outside": {op: count}, "nodes": total}``; an
    empty ``outside`` means the whole graph runs in XNNPACK (:func:`edgekd.convert.executorch.partition_coverage`
    is the ``.pte`` counterpart).
    """
    with requires("tflite", "reading .tflite files (the LiteRT interpreter)"):
        from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    raw = it._interpreter  # noqa: SLF001  (the node list after delegation is only on the wrapped interpreter)
    nodes = [(raw.NodeName(i), set(raw.NodeInputs(i).tolist()), set(raw.NodeOutputs(i).tolist()))
             for i in range(raw.NumNodes())]
    delegates = [n for n in nodes if n[0] == "DELEGATE"]
    own = [n for n in nodes if n[0] != "DELEGATE"]
    produced = set().union(*(d[2] for d in delegates))
    read = set().union(*(d[1] for d in delegates)) | set(raw.OutputIndices().tolist())
    outside: set[int] = set()
    grew = True
    while grew:  # an outside node's inputs may come from another outside node
        grew = False
        for i, (_, ins, outs) in enumerate(own):
            if i not in outside and outs & read and not outs & produced:
                outside.add(i)
                read |= ins
                grew = True
    return {"partitions": len(delegates), "outside": dict(Counter(own[i][0] for i in sorted(outside))),
            "nodes": len(own)}


def _converter_error(converter: str, precision: str, e: Exception, other: str, ops: Sequence[str] = ()) -> ExportError:
    why = f"no TFLite lowering for op(s) {', '.join(ops)} ({first_line(e)})" if ops else first_line(e)
    known = next(((meaning, fix) for text, meaning, fix in KNOWN_FAILURES if text in str(e)), None)
    if known is not None:
        return ExportError(f"{converter} could not convert the {precision} model: {first_line(e)}: {known[0]}",
                           stage=STAGE, hint=known[1])
    return ExportError(
        f"{converter} could not convert the {precision} model: {why}",
        stage=STAGE,
        hint=f"try tflite_converter={other!r}, export precision=('fp32',) only, "
        "or replace the op named above with a supported one",
    )


# -- litert-torch --------------------------------------------------------------------------------
def to_tflite_litert(
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
    """Write ``path`` with litert-torch (fp32, or int8 in/out via its PT2EQuantizer).

    int8 quantizes a copy of ``program`` (the call's one ``torch.export``) with ``observer``; fp32 lets
    litert-torch trace the model itself (its layout passes read the module metadata of its own trace).
    """
    import time

    with requires("tflite"):
        import litert_torch

    t0 = time.perf_counter()
    try:
        with quiet(verbose):
            if precision == "int8":
                edge = _litert_int8(model, example_inputs, calibration, program=program, observer=observer)
            else:
                edge = litert_torch.convert(model.eval(), example_inputs)
            edge.export(str(path))
    except ExportError:
        raise
    except Exception as e:
        raise _converter_error("litert-torch", precision, e, "onnx2tf", _unlowered_ops(model, example_inputs)) from e
    return {**graph_summary(path), "seconds": {"convert": time.perf_counter() - t0}}


def _unlowered_ops(model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> list[str]:
    """ATen ops of the model that litert-torch has no lowering for (its errors rarely name them)."""
    try:
        from litert_torch import fx_infra
        from litert_torch.backend import lowerings

        with quiet(False):
            ep = fx_infra.safe_run_decompositions(torch.export.export(model, example_inputs),
                                                  fx_infra.decomp.pre_lower_decomp())
    except Exception:  # diagnosis only: the caller reports the converter's own error
        return []
    return sorted({str(n.target) for n in ep.graph.nodes if n.op == "call_function"
                   and isinstance(n.target, torch._ops.OpOverload) and lowerings.lookup(n.target) is None})


def _litert_int8(model: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...],
                 calibration: torch.Tensor | None, *, program: torch.export.ExportedProgram | None = None,
                 observer: str = "histogram") -> Any:
    """PTQ with litert-torch's quantizer (calibrated on ``calibration``), then :func:`litert_int8`."""
    import copy

    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgekd.quantization import capture, iter_batches, program_module

    quantizer = litert_quantizer(observer)
    gm = program_module(program) if program is not None else capture(copy.deepcopy(model).eval(), example_inputs,
                                                                      stage=STAGE)
    graph = _softmax_as_aten_softmax(gm)
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for args in iter_batches(calibration, example_inputs[0].shape[0]):
            prepared(*args)
    return litert_int8(convert_pt2e(prepared, fold_quantize=False), example_inputs, quantizer)


def litert_quantizer(observer: str = "histogram") -> Any:
    """litert-torch's PT2E quantizer, per-channel symmetric int8: the one scheme its int8 lowering takes
    (activations observed with ``observer``, see :mod:`edgekd.quantization`)."""
    with requires("tflite"):
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    from edgekd.quantization import with_observer

    return PT2EQuantizer().set_global(with_observer(get_symmetric_quantization_config(is_per_channel=True), observer))


def litert_int8(converted: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], quantizer: Any = None) -> Any:
    """The one litert-torch int8 path: a ``convert_pt2e(..., fold_quantize=False)`` graph → an int8-in/out
    TFLite model (call ``.export(path)``). PTQ (:func:`to_tflite_litert`) and QAT
    (:func:`edgekd.convert.qat.write_int8`) both end here; the graph already holds the q/dq pairs, and
    the quantizer only tells the converter which scheme to lower them to."""
    with requires("tflite"):
        import litert_torch
        from litert_torch.quantize.quant_config import QuantConfig

    return litert_torch.convert(converted, example_inputs,
                                quant_config=QuantConfig(pt2e_quantizer=quantizer or litert_quantizer()))


def _softmax_as_aten_softmax(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Rewrite ``aten.softmax.int`` (what ``torch.export`` keeps) as ``aten._softmax.default``, in place.

    litert-torch's ``PT2EQuantizer`` gives a softmax the fixed int8 output parameters the TFLite
    kernel demands (scale 1/256, zero point -128) only when the node is ``aten._softmax``. Left as
    ``softmax.int`` the node goes unannotated, the next op's observer picks the scale (e.g. 0.00036)
    and the interpreter refuses the file: ``output->params.scale not near 1.f / 256``.
    """
    changed = False
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target == torch.ops.aten.softmax.int:
            x, dim = node.args[0], node.args[1]
            dtype = node.args[2] if len(node.args) > 2 else node.kwargs.get("dtype")
            if dtype is not None and dtype != torch.float32:
                continue  # a cast inside softmax: leave it (and its observed scale) alone
            node.target, node.args, node.kwargs = torch.ops.aten._softmax.default, (x, dim, False), {}
            changed = True
    if changed:
        gm.graph.lint()
        gm.recompile()
    return gm


# -- onnx2tf -------------------------------------------------------------------------------------
def to_tflite_onnx2tf(
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
    """Write ``path`` with onnx2tf (NHWC input; fp32, or full-integer int8 calibrated on our data).

    ``program`` and ``observer`` are not used: the ONNX comes from the TorchScript exporter, and TF's
    converter calibrates int8 itself.
    """
    if len(example_inputs) != 1:
        raise ExportError(f"onnx2tf export takes one input tensor, got {len(example_inputs)}",
                          stage=STAGE, hint="use tflite_converter='litert-torch' for multi-input models")
    x = example_inputs[0]
    samples = calibration if calibration is not None else x
    with requires("onnx2tf", "the ONNX export before onnx2tf"):
        import onnx  # noqa: F401  (torch.onnx.export needs it; checked here, not inside the converter's try)
    with tempfile.TemporaryDirectory(prefix="edgekd_onnx2tf_") as tmp:
        work = Path(tmp)
        onnx_path = work / "model.onnx"
        try:
            with quiet(verbose):
                torch.onnx.export(model.eval(), (x,), str(onnx_path), dynamo=False,
                                  input_names=["input"], output_names=["output"])
        except Exception as e:
            raise _converter_error("torch.onnx (TorchScript exporter)", precision, e, "litert-torch") from e
        nhwc = to_layout(samples.detach().cpu().numpy().astype(np.float32), "NHWC")
        _run_onnx2tf(onnx_path, work / "tf", nhwc, verbose, precision)
        if precision == "int8":
            _full_integer(work / "tf", nhwc, x.shape[0], path, verbose)
        else:
            shutil.move(str(work / "tf" / "model_float32.tflite"), path)
    return {**graph_summary(path), "onnx_exporter": "torchscript"}


def _full_integer(saved_model: Path, samples_nhwc: np.ndarray, batch: int, path: Path, verbose: bool) -> None:
    """int8 in/out TFLite from onnx2tf's SavedModel, calibrated on our samples.

    onnx2tf's own int8 path (``custom_input_op_name_np_data_path``) mis-shapes a calibration file
    whose batch differs from the model's (1.29.24 drops the NHWC→NCHW transpose), so edgekd runs
    the same TF converter step itself.
    """
    with requires("onnx2tf", "onnx2tf's full-integer int8 (the TFLite converter)"):
        import tensorflow as tf

    def representative() -> Iterator[list[np.ndarray]]:
        for i in range(0, len(samples_nhwc) - batch + 1, batch):
            yield [samples_nhwc[i : i + batch]]

    with quiet(verbose):
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.representative_dataset = representative
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        try:
            path.write_bytes(conv.convert())
        except Exception as e:
            raise _converter_error("onnx2tf (TFLite int8 converter)", "int8", e, "litert-torch") from e


def _run_onnx2tf(onnx_path: Path, out: Path, samples_nhwc: np.ndarray, verbose: bool, precision: str) -> None:
    with quiet(verbose), requires("onnx2tf"):
        import onnx2tf
        import onnx2tf.onnx2tf as core

    def offline_test_images() -> np.ndarray:
        # onnx2tf would download 20 sample images here; give it ours, float32 NHWC.
        if samples_nhwc.ndim != 4:
            raise ExportError("onnx2tf tried to download sample images for a non-image input",
                              stage=STAGE, hint="use tflite_converter='litert-torch'")
        return samples_nhwc

    original = core.download_test_image_data
    core.download_test_image_data = offline_test_images
    cwd = os.getcwd()
    try:
        os.chdir(out.parent)  # onnx2tf reads/writes side files in the working directory
        with quiet(verbose):
            onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path=str(out),
                            output_signaturedefs=True, non_verbose=not verbose,
                            verbosity="info" if verbose else "error")
    except ExportError:
        raise
    except SystemExit as e:  # onnx2tf calls sys.exit(1) after logging an error
        raise _converter_error("onnx2tf", precision, RuntimeError(f"onnx2tf exited with status {e.code}"),
                               "litert-torch") from None
    except Exception as e:
        raise _converter_error("onnx2tf", precision, e, "litert-torch") from e
    finally:
        os.chdir(cwd)
        core.download_test_image_data = original


# -- running -------------------------------------------------------------------------------------
def tflite_runner(path: Path, layout: str | None = None, threads: int = 1) -> Any:
    """Return ``(run, inputs, outputs)``: ``run(x_nchw_float32) -> float32 output``, on ``threads`` threads.

    ``run`` converts to the file's layout (NHWC for 4-D inputs when ``layout == "NHWC"``) and, for
    int8 inputs/outputs, quantizes/dequantizes with the file's own scale and zero point.
    """
    with requires("tflite", "running .tflite files (the LiteRT interpreter)"):
        from ai_edge_litert.interpreter import Interpreter

    from edgekd.bundle import Quantization, TensorSpec
    from edgekd.formats import dequantize, quantize, to_layout

    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    ind, outd = it.get_input_details()[0], it.get_output_details()[0]

    def spec(d: dict[str, Any], lay: str | None) -> TensorSpec:
        scale, zp = d["quantization"]
        q = Quantization(float(scale), int(zp)) if scale else None
        return TensorSpec(d["name"], tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]).name, lay, q)

    in_layout = layout if len(ind["shape"]) == 4 else None
    inputs, outputs = (spec(ind, in_layout),), (spec(outd, None),)

    def run(x: np.ndarray) -> np.ndarray:
        it.set_tensor(ind["index"], quantize(to_layout(x, in_layout), inputs[0]))
        it.invoke()
        return dequantize(it.get_tensor(outd["index"]), outputs[0])

    return run, inputs, outputs
