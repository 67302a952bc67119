"""The export stage: one PyTorch model → a bundle of ``.pte`` / ``.tflite`` / ``.pt2`` files + ``edgekd.json``.

The format table (:data:`edgekd.formats.FORMATS`, one row per ``(format, converter)``) drives the
argument checks, the dispatch, the file suffixes and the runtimes parity uses::

    bundle = export(model, (x,), formats=("pte", "tflite"), precision=("fp32", "int8"),
                    calibration=calib, out_dir="bundle")

Every file is run with its real runtime and compared with the eager model (see
:mod:`edgekd.convert.parity`); ``edgekd.json`` is written only when every file passes (or, with
``keep_going=True``, records each file that failed: converter, stage, the error and its fix).

One ``torch.export`` of the model serves every file of a call (``.pte`` fp32 and int8, litert-torch
int8, ``.pt2``); litert-torch fp32 traces the model itself and onnx2tf goes through the TorchScript
ONNX exporter. Each file records where its seconds went (``extra["seconds"]``: ``write``, of which
``quantize`` and ``lower``/``convert``, then ``parity``, all wall-clock; ``cpu``: the process's CPU seconds
for write + parity, the figure to compare on a loaded machine) and the bundle the shared export's
(``extra["torch_export_s"]``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.bundle import Bundle, ModelFile, Preprocessing, TensorSpec, sha256_of
from edgekd.errors import ConfigError, EdgekdError, ExportError, OutputError
from edgekd.extras import check as check_extra
from edgekd.files import atomic_path, make_folder, output_error, output_oserror_in
from edgekd.formats import FORMATS, PRECISIONS, Format, converters, format_of, row

__all__ = ["FORMATS", "Bundle", "Format", "export", "format_of", "status_rows"]

def _plan(formats_: Sequence[str], precision: Sequence[str], tflite_converter: str | Sequence[str],
          has_calibration: bool, converter: Mapping[str, str | Sequence[str]] | None = None
          ) -> list[tuple[Format, str, str]]:
    """Check the arguments against the table; return ``(row, precision, file name)`` jobs."""
    formats_ = (formats_,) if isinstance(formats_, str) else tuple(formats_)
    precision = (precision,) if isinstance(precision, str) else tuple(precision)
    wanted = {f: (c,) if isinstance(c, str) else tuple(c)
              for f, c in {"tflite": tflite_converter, **(converter or {})}.items()}
    for f in formats_:
        row(f)  # an unknown format fails here, naming the known ones
    for f, names in wanted.items():  # so does a misspelt converter= key or name, even for a format not asked for
        for c in names:
            row(f, c)
    for p in precision:
        if p not in PRECISIONS:
            raise ConfigError(f"unknown precision {p!r}; known: {', '.join(PRECISIONS)}", stage="export")
    jobs = []
    for f in formats_:
        chosen = [row(f, c) for c in wanted.get(f, converters(f)[:1])]
        for r in chosen:
            for p in precision:
                if p in r.precisions:
                    tag = f"_{r.converter}" if len(chosen) > 1 else ""
                    jobs.append((r, p, f"model_{p}{tag}.{r.suffix}"))
    if "int8" in precision and not has_calibration:
        raise ConfigError("int8 export needs calibration data and none was given", stage="export",
                          hint="pass calibration=<Tensor of ~100-500 training samples or a DataLoader>, "
                          "or precision=('fp32',)")
    return jobs


def _as_samples(data: Any, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor | None, np.ndarray | None]:
    """A Tensor of samples, an ``(x, y)`` pair or an iterable of ``x`` / ``(x, y)`` batches → (x, y).

    ``x`` is cast to ``dtype``: the example input's (float32 for images, int64 for token ids).
    """
    if data is None:
        return None, None
    if isinstance(data, torch.Tensor):
        return data.detach().to(dtype), None
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor) \
            and isinstance(data[1], torch.Tensor | np.ndarray) and np.ndim(data[1]) == 1:
        return data[0].detach().to(dtype), np.asarray(data[1])  # one (x, labels) pair
    xs, ys = [], []
    for b in data if isinstance(data, Iterable) else [data]:
        x, y = (b[0], b[1] if len(b) > 1 else None) if isinstance(b, (tuple, list)) else (b, None)
        xs.append(torch.as_tensor(x).to(dtype))
        if y is not None:
            ys.append(np.asarray(y))
    if not xs:
        raise ConfigError("calibration / parity data is empty", stage="export", hint="pass at least one sample")
    return torch.cat(xs), (np.concatenate(ys) if len(ys) == len(xs) else None)


def _split(calibration: Any, parity_data: Any, example: torch.Tensor) -> tuple[
        torch.Tensor | None, np.ndarray, np.ndarray | None]:
    """(calibration samples, parity x, parity labels). Parity defaults to the calibration tail."""
    dtype = example.dtype if not example.is_floating_point() else torch.float32
    calib, calib_y = _as_samples(calibration, dtype)
    if parity_data is not None:
        px, py = _as_samples(parity_data, dtype)
        return calib, px.numpy(), py
    if calib is None:
        g = torch.Generator().manual_seed(0)
        if not example.is_floating_point():  # token ids: random ids below the example's largest
            high = int(example.max()) + 1
            return None, torch.randint(0, max(high, 2), (16, *example.shape[1:]), generator=g,
                                       dtype=example.dtype).numpy(), None
        return None, torch.randn((16, *example.shape[1:]), generator=g).numpy(), None
    k = min(64, max(1, len(calib) // 5)) if len(calib) > 1 else 1
    head = calib[:-k] if len(calib) > k else calib
    return head, calib[-k:].numpy(), (calib_y[-k:] if calib_y is not None else None)


def _check_inputs(model: torch.nn.Module, example_inputs: Any
                  ) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...], torch.Tensor]:
    """The model (its forward made to return logits when it returns an output object or a tuple), the
    example inputs as compact tensors, and the model's output on them."""
    ex = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    # compact copies: a broadcast view (stride 0, e.g. from_numpy(a[:, None])) cannot be lowered
    ex = tuple(t.detach().clone(memory_format=torch.contiguous_format) if isinstance(t, torch.Tensor) else t
               for t in ex)
    try:
        with torch.no_grad():
            out = model(*ex)
    except Exception as e:
        shapes = ", ".join(str(tuple(t.shape)) for t in ex if isinstance(t, torch.Tensor))
        raise ConfigError(f"the model cannot run on example_inputs of shape {shapes}: {e}", stage="export",
                          hint="pass example_inputs as a tuple with one batch the model accepts, "
                          "e.g. (torch.randn(1, 1, 28, 28),)") from e
    if not isinstance(out, torch.Tensor):
        from edgekd.models.logits import logits_only, to_logits

        try:
            out = to_logits(out, type(model).__name__)
        except ConfigError:
            raise ConfigError(f"forward() returned {type(out).__name__}; export needs a single Tensor output",
                              stage="export", hint="wrap the model so forward() returns the logits Tensor") from None
        model = logits_only(model, in_place=True)  # export() works on its own copy
    return model, ex, out


def _logical(t: torch.Tensor, name: str) -> TensorSpec:
    dtype = str(t.dtype).removeprefix("torch.")  # float32 for images, int64 for token ids
    return TensorSpec(name, tuple(t.shape), dtype, "NCHW" if t.ndim == 4 else None)


def export(
    model: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...] | torch.Tensor,
    *,
    formats: Sequence[str] = ("pte", "tflite"),
    precision: Sequence[str] = ("fp32", "int8"),
    calibration: Any = None,
    out_dir: str | Path = "bundle",
    labels: list[str] | None = None,
    preprocessing: Preprocessing | None = None,
    model_name: str | None = None,
    tflite_converter: str | Sequence[str] = "litert-torch",
    converter: Mapping[str, str | Sequence[str]] | None = None,
    parity_data: Any = None,
    thresholds: dict[str, dict[str, float]] | None = None,
    check_parity: bool = True,
    progress: bool = True,
    verbose: bool = False,
    keep_going: bool = False,
    task: str = "classification",
    qat: torch.fx.GraphModule | None = None,
    observer: str = "histogram",
    check_speed: bool = True,
) -> Bundle:
    """Convert ``model`` to every requested (format, converter, precision), check parity, write the bundle.

    Args:
        model: the float model (deep-copied and put in eval mode; the original is not touched).
        example_inputs: one batch as a tuple of Tensors (or one Tensor), e.g. ``(torch.randn(1, 1, 28, 28),)``.
        formats: any of ``"pte"``, ``"tflite"``, ``"pt2"`` (the fp32 eager baseline).
        precision: ``"fp32"`` and/or ``"int8"`` (int8 needs ``calibration``).
        calibration: a Tensor of samples, an ``(x, y)`` pair, or an iterable of ``x`` / ``(x, y)`` batches.
        converter: the converter(s) of each format, ``{"tflite": ("litert-torch", "onnx2tf")}`` (several: the
            files get a ``_<converter>`` tag); a format left out gets its default, the table's first
            (``edgekd list formats``). ``tflite_converter``: the same for ``tflite`` alone (``converter`` wins).
        parity_data: held-out ``x`` or ``(x, y)``; default: the last fifth (≤ 64) of ``calibration``,
            which is then not used to calibrate.
        thresholds: overrides per precision, e.g. ``{"int8": {"top1_agreement": 0.95}}``
            (see :mod:`edgekd.convert.parity`).
        check_parity: raise :class:`ParityError` when a file misses a threshold (parity is always recorded).
        keep_going: a file that fails to export (or misses parity with ``check_parity``) is recorded in
            ``bundle.extra["failed"]`` (key, path, stage, error, fix) and the other files go on; the benchmark
            shows it as "failed to export" and :func:`status_rows` lists every file. Default: raise at the
            first failure (the ``edgekd export`` CLI keeps going by default).
        task: ``"classification"`` (judge top-1 agreement) or ``"embedding"`` (judge the cosine of each
            output row with eager's; top-1 of an embedding means nothing). See :mod:`edgekd.convert.parity`.
        qat: a trained fake-quant graph (:func:`edgekd.edge.qat.distill_qat`'s ``prepared``): the int8
            files are lowered from it (no calibration, no PTQ) and their parity is judged against the
            graph itself in eval mode, the model they must reproduce; fp32 files still come from
            ``model``. litert-torch and ExecuTorch only (onnx2tf takes no PT2E graph).
        observer: the int8 calibration observer, ``"histogram"`` (default), ``"minmax"`` or
            ``"histogram_torchao"`` (see :mod:`edgekd.quantization`).
        check_speed: when the bundle has both a fp32 ``.pte`` and a fp32 ``.tflite``, time the two on this
            host (alternating blocks, ~1 s) and record ``extra["fp32_pte_vs_tflite"]``; a ``.pte`` that
            takes 1.5x the ``.tflite``'s time or more gets a warning (see :mod:`edgekd.convert.speed`:
            on x86 CPUs with AVX2 but no AVX-512, the executorch wheel's fp32 convolutions are ~2.5x slower).

    Returns:
        the :class:`Bundle`, saved as ``out_dir/edgekd.json``.
    """
    from edgekd._version import __version__
    from edgekd.convert.parity import eager_outputs
    from edgekd.settings import OBSERVERS

    if observer not in OBSERVERS:  # checked before any file is written, not at the first int8 file
        raise ConfigError(f"unknown calibration observer {observer!r}; known: {', '.join(OBSERVERS)}", stage="export",
                          hint="pass observer='histogram' (default), 'minmax' or 'histogram_torchao'")
    model, ex, y_ex = _check_inputs(copy.deepcopy(model).eval(), example_inputs)
    calib, px, py = _split(calibration, parity_data, ex[0])
    jobs = _plan(formats, precision, tflite_converter, calib is not None or qat is not None, converter)
    for r in dict.fromkeys(e for e, _, _ in jobs):  # a missing backend fails now, not after the first file
        check_extra(r.extra, f"{r.format} export through {r.converter}")
    y_qat = _qat_reference(qat, jobs, px, batch=ex[0].shape[0]) if qat is not None else None
    root = make_folder(out_dir, stage="export", fix="export to another folder (--out DIR)")
    batch = ex[0].shape[0]
    y_eager = eager_outputs(model, px, batch, expected=tuple(y_ex.shape))
    program, export_s = _shared_program(model, ex, jobs)
    inputs, outputs = (_logical(ex[0], "input"),), (_logical(y_ex, "output"),)
    files: list[ModelFile] = []
    failed: list[dict[str, str]] = []
    bar = _progress(jobs, progress)
    for exporter, prec, name in bar:
        path = root / name
        if hasattr(bar, "set_description"):
            bar.set_description(f"export {exporter.format}/{prec}/{exporter.converter}")
        try:
            files.append(_export_one(model, ex, exporter, prec, path, calib, px, py, y_eager, y_qat, qat, root,
                                     inputs, outputs, thresholds, task, check_parity, verbose, program, observer))
        except Exception as e:  # converters raise their own types; keep_going records them all
            if isinstance(e, OutputError) or not keep_going:
                raise  # a full disk or an unwritable folder fails every file: no point going on
            path.unlink(missing_ok=True)  # a half-written file must not be benchmarked as if it were good
            failed.append(failure_record(e, f"{exporter.format}/{prec}/{exporter.converter}", name))
    speed = _speed_check(files, root, px[:batch]) if check_speed else None
    bundle = Bundle(root=root, model_name=model_name or type(model).__name__, inputs=inputs, outputs=outputs,
                    files=files, preprocessing=preprocessing, labels=labels, edgekd_version=__version__,
                    extra={"calibration_samples": 0 if calib is None else len(calib), "parity_samples": len(px),
                           "torch_export_s": export_s, "observer": observer,
                           **({"failed": failed} if failed else {}),
                           **({"fp32_pte_vs_tflite": speed} if speed else {})})
    bundle.save()
    return bundle


def _speed_check(files: list[ModelFile], root: Path, x: np.ndarray) -> dict[str, Any] | None:
    """:func:`edgekd.convert.speed.host_check` of the fp32 ``.pte`` against the first fp32 ``.tflite``, when the
    bundle has both; a ``.pte`` much slower than the ``.tflite`` is also a ``UserWarning``. A check that cannot
    run records why and never fails the export."""
    import warnings

    from edgekd.convert.speed import host_check

    pte = next((f for f in files if f.format == "pte" and f.precision == "fp32"), None)
    tfl = next((f for f in files if f.format == "tflite" and f.precision == "fp32"), None)
    if pte is None or tfl is None or x.dtype != np.float32:
        return None
    try:
        check = host_check(root / pte.path, root / tfl.path, row(tfl.format, tfl.converter).layout, x)
    except Exception as e:  # a timing check must never cost the user the bundle
        return {"pte": pte.path, "tflite": tfl.path, "error": f"{type(e).__name__}: {e}"[:300]}
    if check["note"]:
        warnings.warn(f"export: {check['note']}", stacklevel=3)
    return {"pte": pte.path, "tflite": tfl.path, **check}


def _export_one(model: torch.nn.Module, ex: tuple[torch.Tensor, ...], exporter: Format, prec: str, path: Path,
                calib: Any, px: np.ndarray, py: Any, y_eager: np.ndarray, y_qat: np.ndarray | None, qat: Any,
                root: Path, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], thresholds: Any,
                task: str, check_parity: bool, verbose: bool, program: Any = None,
                observer: str = "histogram") -> ModelFile:
    """Write one file, run it, measure and (optionally) check its parity with the reference."""
    from edgekd.convert.parity import check, measure, thresholds_for

    name, batch = path.name, ex[0].shape[0]
    ref = y_qat if y_qat is not None and prec == "int8" else y_eager
    t0, c0 = time.perf_counter(), time.process_time()
    if ref is y_qat:
        from edgekd.convert.qat import write_int8

        write_int8(qat, ex, root, formats=(exporter.format,), name=path.stem)  # type: ignore[arg-type]
        extra: dict[str, Any] = {"quantization": "qat"}
    else:
        stage, what = f"export/{exporter.format}", f"the {prec} .{exporter.format} file"
        fn = exporter.load("exporter")
        shared = {k: v for k, v in (("program", program), ("observer", observer)) if _takes(fn, k)}
        try:  # the converter writes a temporary name; the final name appears only once the file is whole
            with atomic_path(path, stage=stage, what=what, fix="export to another folder (--out DIR)") as tmp:
                extra = fn(model, ex, tmp, precision=prec, calibration=calib, verbose=verbose, **shared)
        except OutputError:
            raise
        except Exception as e:  # a converter that wrapped the OSError of its writer in its own error type
            if (ose := output_oserror_in(e)) is None:
                raise
            raise output_error(ose, path, stage=stage, what=what,
                               fix="export to another folder (--out DIR)") from None
    t1 = time.perf_counter()
    y, f_in, f_out = _run_written(exporter, path, px, batch, prec)
    seconds = {**extra.get("seconds", {}), "write": t1 - t0, "parity": time.perf_counter() - t1,  # write ⊇ its parts
               "cpu": time.process_time() - c0}  # CPU seconds of write + parity (all threads): wall time under load
    extra = {**extra, "seconds": {k: round(v, 3) for k, v in seconds.items()}}
    t = thresholds_for(prec, thresholds, task)
    p = measure(y, ref[: len(y)], py, t)
    if check_parity:
        check(p, ref, stage=f"export/{exporter.format}", what=name, precision=prec)
    return ModelFile(path=name, format=exporter.format, precision=prec, converter=exporter.converter,
                     bytes=path.stat().st_size, sha256=sha256_of(path), inputs=f_in or inputs,
                     outputs=f_out or outputs, parity=p, extra=extra)


def _takes(fn: Any, name: str) -> bool:
    """Whether exporter ``fn`` takes keyword ``name`` (the shared program and the observer are optional
    for an exporter: a format row written before them keeps working)."""
    import inspect

    params = inspect.signature(fn).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _shared_program(model: torch.nn.Module, ex: tuple[torch.Tensor, ...],
                    jobs: list[tuple[Format, str, str]]) -> tuple[Any, float | None]:
    """One ``torch.export`` of ``model`` for every file that starts from it, and the seconds it took.

    A model torch.export cannot trace gives ``None``: each exporter then tries on its own and raises
    its own error (onnx2tf's TorchScript exporter may still succeed)."""
    if not any(e.format in ("pte", "pt2") or (e.converter == "litert-torch" and p == "int8") for e, p, _ in jobs):
        return None, None
    from edgekd.quantization import export_program

    t0 = time.perf_counter()
    try:
        return export_program(model, ex, stage="export"), round(time.perf_counter() - t0, 3)
    except EdgekdError:
        return None, None


def failure_record(e: BaseException, key: str, path: str) -> dict[str, str]:
    """What ``keep_going`` keeps of a failed file: its key and path, the stage, the error's first line and
    the fix (for edgekd's own errors)."""
    text = e.message if isinstance(e, EdgekdError) else f"{type(e).__name__}: {e}"
    record = {"key": key, "path": path, "stage": getattr(e, "stage", None) or "export",
              "error": (str(text).splitlines() or ["?"])[0][:400]}
    hint = getattr(e, "hint", None)
    if hint:
        record["fix"] = str(hint)[:300]
    return record


def export_seconds(extra: dict[str, Any]) -> float | None:
    """A file's export time: writing it (``quantize``, ``lower``/``convert`` are parts of that) plus its parity run."""
    secs = extra.get("seconds", {})
    return round(secs["write"] + secs.get("parity", 0.0), 3) if "write" in secs else None


def status_rows(bundle: Bundle) -> list[dict[str, Any]]:
    """One row per file an :func:`export` call tried, in the bundle's order: ``status`` ``ok`` or
    ``failed``, size, parity (max error, top-1 agreement, accuracy), seconds, and for a failure the
    stage, the error and the fix. What ``edgekd export`` prints."""
    rows: list[dict[str, Any]] = []
    for f in bundle.files:
        p = f.parity
        rows.append({"file": f.path, "key": f.key, "status": "ok", "kb": round(f.bytes / 1024, 1),
                     "max_abs_error": p.max_abs_error if p else None, "top1_agreement": p.top1_agreement if p else None,
                     "accuracy": p.accuracy if p else None, "seconds": export_seconds(f.extra)})
    for r in bundle.extra.get("failed", []):
        rows.append({"file": r["path"], "key": r["key"], "status": "failed", "stage": r.get("stage"),
                     "error": r.get("error"), "fix": r.get("fix")})
    return rows


def _qat_reference(qat: torch.fx.GraphModule, jobs: list[tuple[Format, str, str]], px: np.ndarray,
                   batch: int) -> np.ndarray:
    """Logits of the trained fake-quant graph (eval mode) on the parity inputs: what int8 files must match."""
    from edgekd.convert.parity import eager_outputs
    from edgekd.convert.qat import CONVERTERS, Logits, set_mode

    bad = sorted({e.converter for e, p, _ in jobs if p == "int8" and e.converter not in CONVERTERS})
    if bad:
        raise ConfigError(f"a QAT graph cannot be lowered by {', '.join(bad)}", stage="export",
                          hint="use tflite_converter='litert-torch' (and .pte) for QAT int8 files")
    set_mode(qat, train=False)
    return eager_outputs(Logits(qat), px, batch)


def _run_written(exporter: Format, path: Path, px: np.ndarray, batch: int, precision: str
                 ) -> tuple[np.ndarray, Any, Any]:
    """Load a just-written file in its real runtime and run the parity inputs through it.

    A runtime that refuses the file (an interpreter check, an unsupported kernel) becomes an
    :class:`~edgekd.errors.ExportError` naming the file and the stage; the file is left for inspection.
    """
    from edgekd.convert.executorch import first_line
    from edgekd.convert.parity import run_batches

    try:
        run, f_in, f_out = exporter.load("host_runner")(path, exporter.layout)
        return run_batches(run, px, batch), f_in, f_out
    except EdgekdError:
        raise
    except Exception as e:  # runtimes raise RuntimeError, ValueError, their own types
        other = [c for c in converters(exporter.format) if c != exporter.converter]
        raise ExportError(f"{path} was written, but {exporter.converter}'s {exporter.format} runtime cannot run it "
                          f"({precision}): {first_line(e)}", stage=f"export/{exporter.format}",
                          hint="export this precision with another converter"
                               + (f" ({', '.join(other)})" if other else "") + " or in fp32") from e


def _progress(jobs: list[Any], enabled: bool) -> Any:
    if not enabled:
        return jobs
    from tqdm.auto import tqdm

    return tqdm(jobs, unit="file", desc="export")

