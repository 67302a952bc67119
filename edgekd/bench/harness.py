"""The host side of benchmarking: run the device runner on every model file, keep every result.

``benchmark(bundle_or_file, target=...)`` runs ``runtimes/python/edgekd_runner.py`` once per
model file through a target (one process per file, so a crash in one runtime cannot take the
others down), turns its JSON line into a :class:`BenchResult` and appends that to
``out_dir/results.jsonl`` at once (flushed and fsynced). A failing file becomes a result with
``error`` set and the run goes on; ``resume=True`` skips files already measured successfully.

``repeat=N`` measures in N interleaved rounds: every file once per round, the order reversed every
other round (A B C, C B A, A B C, ...), so a neighbour's load, clock drift and whatever a file's
position in the run does to it fall on every file alike. Each file's row gets the p50s of all its
rounds; their range is its noise band (:func:`edgekd.bench.stats.noise_band`), and files whose
bands overlap are the same speed within noise (:func:`edgekd.bench.stats.noise_groups`).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bench.lock import timing_lock as timing_lock_of
from edgekd.bench.machine import machine_of
from edgekd.bench.native import check_runner
from edgekd.bench.native_profile import PROFILES, dump_name, store_op_table
from edgekd.bench.report import write_summary
from edgekd.bench.results import RESULTS, SUMMARY, BenchResult, append_result, load_results
from edgekd.bench.runner_bundle import native_failure
from edgekd.bench.stats import MLPERF_MIN_DURATION_S, MLPERF_MIN_QUERIES, Spread, Stats, agreement
from edgekd.bench.targets import RunnerArgs, RunnerOutcome, Target, get_target
from edgekd.bundle import MANIFEST, Bundle, ModelFile, sha256_of
from edgekd.errors import BenchError, ConfigError, DataError, EdgekdError
from edgekd.files import atomic_path, make_folder
from edgekd.formats import FORMATS, format_of, guess_row, suffixes

_FIX = "bench into another folder (--out DIR)"


@dataclass(frozen=True)
class _Job:
    """One model file to measure, with what the manifest (or the format table) says about it."""

    path: Path
    model_name: str
    format: str
    precision: str
    converter: str
    sha256: str | None = None
    layout: str = "auto"  # the layout of the file's image input, passed to the runner (--layout)

    @property
    def key(self) -> str:
        return f"{self.format}/{self.precision}/{self.converter}"


def _job_from_file(path: Path) -> _Job:
    """Describe a loose model file from the format table: its suffix (an unknown one is a ConfigError listing
    the known suffixes), its converter where the name says (``*_onnx2tf.tflite``), precision from the name."""
    fmt = format_of(path)
    r = guess_row(path)
    name = path.stem.lower()
    precision = next((p for p in ("int8", "fp16", "fp32") if p in name),
                     r.precisions[0] if r is not None and len(r.precisions) == 1 else "unknown")
    return _Job(path, path.stem, fmt, precision, r.converter if r else "unknown", layout=r.layout if r else "auto")


def _jobs(source: str | Path | Bundle, files: Sequence[str] | None) -> tuple[list[_Job], Bundle | None]:
    if isinstance(source, Bundle):
        bundle = source
    elif Path(source).is_dir() or Path(source).name == MANIFEST:
        bundle = Bundle.load(source)
    elif Path(source).is_file():
        return [_job_from_file(Path(source))], None
    else:
        raise ConfigError(f"no model file or bundle at {source}", stage="bench",
                          hint=f"pass a bundle folder (with edgekd.json) or a {'/'.join(suffixes())} file")
    chosen: list[ModelFile] = [bundle.file(k) for k in files] if files else list(bundle.files)
    return [_Job(bundle.path_of(f), bundle.model_name, f.format, f.precision, f.converter, f.sha256,
                 _layout(f)) for f in chosen], bundle


def _layout(f: ModelFile) -> str:
    """The layout the runner feeds a bundle file: its recorded input layout, else its format row's."""
    if f.inputs and len(f.inputs[0].shape) == 4 and f.inputs[0].layout:
        return f.inputs[0].layout
    r = FORMATS.get((f.format, f.converter))
    return r.layout if r is not None and f.inputs and len(f.inputs[0].shape) == 4 else "auto"


def _as_array(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor, without importing torch here
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _savez(path: Path, **arrays: np.ndarray) -> Path:
    with atomic_path(path, stage="bench", what="the runner's input file", fix=_FIX) as tmp:
        np.savez(tmp, **arrays)
    return path


@dataclass(frozen=True)
class EvalImages:
    """Decoded 8-bit images (each uint8 (C, H, W), in the model's channel order, any size) with labels: an eval
    set the device runner preprocesses itself with the bundle's preprocessing (resize, crop, normalise)."""

    pixels: Sequence[np.ndarray]
    y: np.ndarray


IMAGE_SOURCES = ("folder:", "csv:")


def eval_images(spec: str, bundle: Bundle | None, n: int = 500, seed: int = 0) -> EvalImages:
    """``n`` images of the test split of ``folder:PATH`` / ``csv:FILE`` (drawn across classes, decoded on this
    host into the bundle's channel order), for :func:`benchmark`'s ``eval_data``."""
    if bundle is None or bundle.preprocessing is None:
        raise ConfigError(f"eval data {spec} holds image files, and only a bundle says how to preprocess them",
                          stage="bench", hint="benchmark the bundle folder (edgekd.json), not a single model file")
    from edgekd.data import load
    from edgekd.data.images import raw_sample

    pre = bundle.preprocessing
    splits = load(spec, seed=seed, image_size=pre.size, channels=pre.channel_order, mean=pre.mean, std=pre.std)
    pixels, y = raw_sample(splits.test, n, seed)
    return EvalImages(pixels, y)


def _write_images(path: Path, ev: EvalImages, bundle: Bundle | None) -> None:
    """The eval .npz of decoded images plus the preprocessing as numbers (and ``x``, this host's preprocessing of
    them by :func:`edgekd.android.logical_input`, for runners that take ready inputs)."""
    from edgekd.android import logical_input, preprocessing_of

    if bundle is None:
        raise ConfigError("eval images need a bundle's preprocessing", stage="bench", hint="benchmark a bundle folder")
    pre = preprocessing_of(bundle)
    flat = [np.ascontiguousarray(p, dtype=np.uint8) for p in ev.pixels]
    _savez(path, pixels=np.concatenate([p.reshape(-1) for p in flat]) if flat else np.zeros(0, np.uint8),
             shapes=np.asarray([p.shape for p in flat], dtype=np.int64).reshape(-1, 3),
             y=np.asarray(ev.y, dtype=np.int64), x=np.stack([logical_input(p, pre) for p in flat]).astype(np.float32),
             pre_size=np.asarray(pre.size, dtype=np.int64),
             pre_resize_to=np.asarray(pre.resize_to if pre.resize == "shorter_side" else 0, dtype=np.int64),
             pre_crop=np.asarray(int(pre.crop == "center"), dtype=np.int64),
             pre_scale=np.asarray(pre.scale, dtype=np.float64), pre_mean=np.asarray(pre.mean, dtype=np.float64),
             pre_std=np.asarray(pre.std, dtype=np.float64))


def _prepare_npz(out_dir: Path, eval_data: Any, inputs: Any, bundle: Bundle | None) -> tuple[Path | None, Path | None]:
    """Write (or locate) the inputs and eval .npz files the runner reads.

    ``inputs`` keeps its dtype: the runner converts it to the file's input and says so in the result
    (``notes``), as it does for an ``.npz`` given as it is (``edgekd bench --inputs X.npz``)."""
    eval_npz = None
    if isinstance(eval_data, str) and eval_data.startswith(IMAGE_SOURCES):
        eval_data = eval_images(eval_data, bundle)
    if isinstance(eval_data, EvalImages):
        eval_npz = out_dir / "eval.npz"
        _write_images(eval_npz, eval_data, bundle)
    elif isinstance(eval_data, (str, Path)):
        eval_npz = Path(eval_data)
        if not eval_npz.is_file():
            raise DataError(f"eval data {eval_npz} not found", stage="bench", hint="pass an .npz with x and y, or (x, y)")
    elif eval_data is not None:
        x, y = eval_data
        eval_npz = _savez(out_dir / "eval.npz", x=_as_array(x).astype(np.float32), y=_as_array(y).astype(np.int64))
    if isinstance(inputs, (str, Path)):
        if not Path(inputs).is_file():
            raise DataError(f"inputs {inputs} not found", stage="bench",
                            hint="pass an .npz holding the input under key x (np.savez(path, x=array)), or an array")
        return Path(inputs), eval_npz
    if inputs is not None:
        x = _as_array(inputs)
    elif bundle is not None and bundle.inputs:
        x = np.zeros(bundle.inputs[0].shape, np.float32)
    elif eval_npz is not None:
        with np.load(eval_npz) as ev:
            x = ev["x"][:1].astype(np.float32)
    else:
        return None, eval_npz  # the runner feeds zeros of the file's own input shape
    return _savez(out_dir / "inputs.npz", x=x), eval_npz


def _parse(outcome: RunnerOutcome, timeout_s: float) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """The runner's result dict, or (None, error text, error type)."""
    objs = []
    for line in outcome.stdout.splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            objs.append(obj)
    result = next((o for o in reversed(objs) if o.get("event") == "result"), None)
    err = next((o for o in reversed(objs) if o.get("event") == "error"), None)
    tail = outcome.stderr.strip()[-300:]
    if outcome.timed_out:
        return None, f"runner timed out after {timeout_s:g}s", "timeout"
    if err is not None:
        return None, f"{err.get('message')} (exit {outcome.returncode}; fix: {err.get('hint')})", err.get("error_type")
    if outcome.runner == "native" and result is None and (why := native_failure(outcome.returncode, outcome.stderr)):
        kind, cause, fix = why
        return None, f"{cause}; stderr: {tail}; fix: {fix}", kind
    if outcome.returncode < 0:
        sig = signal.Signals(-outcome.returncode).name if -outcome.returncode in signal.valid_signals() else "?"
        return None, f"runner killed by {sig} before it printed a result; stderr: {tail}", "crash"
    if outcome.returncode != 0:
        return None, f"runner exited {outcome.returncode} without an error line; stderr: {tail}", "crash"
    if result is None:
        return None, f"no result line in runner output {outcome.stdout[:200]!r}; stderr: {tail}", "bad_output"
    return result, None, None


def _blank(job: _Job, target: Target, args: RunnerArgs) -> BenchResult:
    return BenchResult(target=target.url, model=str(job.path), model_name=job.model_name, key=job.key,
                       format=job.format, precision=job.precision, converter=job.converter,
                       bytes=job.path.stat().st_size if job.path.is_file() else 0, threads=args.threads,
                       warmup=args.warmup, runs=args.runs, created=datetime.now().isoformat(timespec="seconds"))


def _failed(r: BenchResult, text: str, error_type: str | None, exit_code: int | None = None) -> BenchResult:
    r.error = f"bench/{r.target}: {Path(r.model).name} [{r.key}]: {text}"
    r.error_type, r.exit_code = error_type, exit_code
    return r


def _filled(r: BenchResult, data: dict[str, Any]) -> BenchResult:
    for name in ("runtime", "runtime_version", "interpreter", "load_ms", "warm_load_ms", "first_inference_ms",
                 "peak_mem_mb", "baseline_mem_mb", "accuracy", "machine", "input"):
        setattr(r, name, data.get(name))
    r.runs = int(data.get("runs") or r.runs)  # with --min-duration: the count actually timed
    r.eval_samples = int(data.get("eval_samples") or 0)
    r.latency_samples_ms = [float(s) for s in data.get("latency_samples_ms", [])]
    r.latency_ms = Stats.from_samples(r.latency_samples_ms) if r.latency_samples_ms else None
    r.spread = Spread.from_samples(r.latency_samples_ms) if r.latency_samples_ms else None
    r.min_duration_s = float(data.get("min_duration_s") or 0.0)
    r.notes = [str(n) for n in data.get("notes") or []]
    r.exit_code = 0
    return r


@dataclass(frozen=True)
class Modes:
    """How long and how often each file is measured (beyond warmup/runs)."""

    repeat: int = 1  # run the runner this many times per file; the row is the median-p50 one, `repeat` says if they agree
    sustained: float = 0.0  # seconds of back-to-back runs with temperature every `interval` s (0: off)
    interval: float = 10.0


def plan_runs(runs: int, min_runs: int = 0, min_duration: float = 0.0, mlperf: bool = False) -> tuple[int, float]:
    """(runs, min_duration) for the runner: ``min_runs`` raises ``runs``; ``mlperf`` applies MLPerf Mobile's
    publishable minimum (>= 1024 queries and >= 60 s)."""
    if runs < 1 or min_runs < 0 or min_duration < 0:
        raise ConfigError(f"need runs >= 1, min_runs >= 0, min_duration >= 0 (got {runs}, {min_runs}, {min_duration})",
                          stage="bench", hint="e.g. --runs 100 --min-runs 1024 --min-duration 60, or --mlperf")
    if mlperf:
        min_runs, min_duration = max(min_runs, MLPERF_MIN_QUERIES), max(min_duration, MLPERF_MIN_DURATION_S)
    return max(runs, min_runs), min_duration


Source = str | Path | Bundle


def benchmark(bundle_or_file: Source | Sequence[Source], target: str | Target = "local", *, warmup: int = 10,
              runs: int = 50, threads: int = 2, eval_data: Any = None, inputs: Any = None,
              out_dir: str | Path | None = None, files: Sequence[str] | None = None, resume: bool = False,
              timeout_s: float = 300, progress: bool = True, cpus: str | None = None, runner: str = "auto",
              profile: bool = False, min_runs: int = 0, min_duration: float = 0.0, mlperf: bool = False,
              repeat: int = 1, sustained: float = 0.0, interval: float = 10.0,
              print_table: bool | None = None, timing_lock: str | Path | None = None) -> list[BenchResult]:
    """Measure every model file of a bundle (or one file) on ``target``; see the module docstring.

    ``cpus`` pins the runner to those CPUs ("0,1") before the runtime starts its thread pool.
    ``runner``: ``auto`` | ``python`` | ``native`` (:mod:`edgekd.bench.native`; each result says which ran).
    ``profile``: where the native runner runs a file, also store its per-operator table
    (:mod:`edgekd.bench.native_profile`) and set the result's ``profile``.
    ``min_runs``/``min_duration``: time at least that many runs and that many seconds (``mlperf=True``:
    1024 and 60 s, MLPerf Mobile's publishable minimum). ``repeat=N`` measures every file in N
    interleaved rounds (see the module docstring) and records each round's p50 and whether they agree
    within 5%; ``sustained=S`` times back to back for S seconds and reads the temperature every
    ``interval`` s (see :mod:`edgekd.bench.sustained`). Several bundles or files (a list) are
    measured as one run: one results.jsonl, and their rounds interleaved with each other.
    ``print_table`` (default: ``progress``) prints the status table: every file, ok or why not.
    ``timing_lock``: a file to hold an exclusive lock on while measuring (:mod:`edgekd.bench.lock`), so
    timing runs on a shared machine take turns.

    ``eval_data``/``inputs``: an ``.npz`` path or arrays/tensors (``(x, y)`` for eval data); for eval data also
    ``"folder:PATH"``/``"csv:FILE"`` or :class:`EvalImages`: decoded images that the runner preprocesses itself
    with the bundle's preprocessing (so the accuracy covers resize, crop and normalisation too);
    ``files``: keys (``pte/int8/executorch``) or paths within the bundle. Returns one
    :class:`BenchResult` per file, failures included (``result.error``).
    """
    if runs < 1 or warmup < 0 or threads < 1 or repeat < 1:
        raise ConfigError(f"need runs >= 1, warmup >= 0, threads >= 1, repeat >= 1 (got {runs}, {warmup}, {threads}, "
                          f"{repeat})", stage="bench", hint="e.g. warmup=10, runs=50, threads=2")
    runs, min_duration = plan_runs(runs, min_runs, min_duration, mlperf)
    modes = Modes(repeat, sustained, interval)
    tgt = get_target(target)
    sources = list(bundle_or_file) if isinstance(bundle_or_file, (list, tuple)) else [bundle_or_file]
    if not sources:
        raise ConfigError("no bundle or model file to benchmark", stage="bench", hint="pass a bundle folder or a file")
    found = [_jobs(source, files) for source in sources]
    jobs = [job for js, _ in found for job in js]
    bundles = [b for _, b in found if b is not None]
    out = Path(out_dir) if out_dir else Path("edgekd_runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    make_folder(out, stage="bench", fix=_FIX)
    inputs_npz, eval_npz = _prepare_npz(out, eval_data, inputs, bundles[0] if bundles else None)
    args = RunnerArgs(warmup=warmup, runs=runs, threads=threads, cpus=cpus, runner=check_runner(runner),
                      min_duration=min_duration)
    jsonl = out / RESULTS
    done = {(r.target, r.model): r for r in load_results(jsonl) if r.ok and _complete(r, modes)} if resume else {}
    todo = [job for job in jobs if (tgt.url, str(job.path)) not in done]
    profile_dir = out if profile else None
    with timing_lock_of(timing_lock):
        if modes.repeat > 1 and not modes.sustained:
            measured = measure_rounds(todo, tgt, args, inputs_npz, eval_npz, timeout_s, modes.repeat, jsonl,
                                      progress=progress, profile_dir=profile_dir)
        else:
            from tqdm import tqdm

            measured = {}
            for job in tqdm(todo, desc=f"bench {tgt.url}", unit="file", disable=not progress):
                measured[job.path] = measure_job(job, tgt, args, inputs_npz, eval_npz, timeout_s, modes,
                                                 profile_dir=profile_dir)
                append_result(jsonl, measured[job.path])
    results = [done.get((tgt.url, str(job.path))) or measured[job.path] for job in jobs]
    for failed in (row for b in bundles for row in export_failures(b, tgt, args)):  # files the export could not write
        results.append(failed)
        append_result(jsonl, failed)
    latest = {(r.target, r.model): r for r in load_results(jsonl)}  # every file this folder has seen
    write_summary(list(latest.values()), out / SUMMARY, extra={"target": tgt.describe(), "results_jsonl": str(jsonl)})
    if progress if print_table is None else print_table:
        from edgekd.bench.report import format_status

        print(format_status(results))
    return results


def export_failures(bundle: Bundle | None, tgt: Target, args: RunnerArgs) -> list[BenchResult]:
    """A ``failed to export`` row for each file the bundle's export recorded as failed (``extra["failed"]``)."""
    rows = []
    for f in (bundle.extra.get("failed") or []) if bundle is not None else []:
        fmt, precision, converter = (f.get("key", "?/?/?").split("/") + ["?", "?", "?"])[:3]
        job = _Job(bundle.root / f.get("path", "?"), bundle.model_name, fmt, precision, converter)
        r = _blank(job, tgt, args)
        r.error = f"export: {Path(f.get('path', '?')).name} [{job.key}]: {f.get('error', 'failed')}"
        r.error_type = "export"
        rows.append(r)
    return rows


def _complete(r: BenchResult, modes: Modes) -> bool:
    """Whether a row from an earlier run needs no more measuring: it has every round ``--repeat`` asks for."""
    return modes.repeat <= 1 or len((r.repeat or {}).get("p50s") or ()) >= modes.repeat


def measure_rounds(jobs: Sequence[_Job], tgt: Target, args: RunnerArgs, inputs_npz: Path | None,
                   eval_npz: Path | None, timeout_s: float, rounds: int, jsonl: Path, *, progress: bool = True,
                   profile_dir: Path | None = None) -> dict[Path, BenchResult]:
    """Every file ``rounds`` times, in interleaved rounds (order reversed every other round).

    Accuracy (the eval set) and the per-operator profile are taken in the first round only; later
    rounds time. After each measurement the file's row so far (:func:`combine_rounds`) is appended
    to ``jsonl``, so an interrupted run keeps every round it finished. A file that fails in a round
    is a failed file and is not run again.
    """
    from tqdm import tqdm

    tries: dict[Path, list[BenchResult]] = {job.path: [] for job in jobs}
    with tqdm(total=rounds * len(jobs), desc=f"bench {tgt.url} x{rounds} rounds", unit="file",
              disable=not progress) as bar:
        for k in range(rounds):
            for job in jobs if k % 2 == 0 else jobs[::-1]:
                done = tries[job.path]
                if not done or done[-1].ok:
                    done.append(_measure(job, tgt, args, inputs_npz, eval_npz if k == 0 else None, timeout_s,
                                         profile_dir=profile_dir if k == 0 else None))
                    append_result(jsonl, combine_rounds(done))
                bar.update()
    return {path: combine_rounds(done) for path, done in tries.items()}


def combine_rounds(tries: Sequence[BenchResult]) -> BenchResult:
    """One row from a file's rounds: the first round's row (accuracy, memory, loads: the eval ran there)
    with the latency of the round whose p50 is the median, and every round's p50 (``repeat``)."""
    failed = next((r for r in tries if not r.ok), None)
    if failed is not None:
        return failed  # a file that failed once is a failed file
    timed = sorted((r for r in tries if r.latency_ms), key=lambda r: r.latency_ms.p50)  # type: ignore[union-attr]
    if not timed:
        return tries[0]
    mid = timed[len(timed) // 2]
    return replace(tries[0], latency_samples_ms=mid.latency_samples_ms, latency_ms=mid.latency_ms, spread=mid.spread,
                   runs=mid.runs, repeat=agreement([r.latency_ms.p50 for r in tries]).to_dict())  # type: ignore[union-attr]


def measure_job(job: _Job, tgt: Target, args: RunnerArgs, inputs_npz: Path | None, eval_npz: Path | None,
                timeout_s: float, modes: Modes = Modes(), profile_dir: Path | None = None) -> BenchResult:
    """One file in the chosen mode: once, ``repeat`` times back to back (:func:`measure_rounds` interleaves
    several files instead), or sustained; never raises for a per-file failure.

    ``profile_dir``: see :func:`_measure` (the per-operator table comes from the first try)."""
    if modes.sustained:
        from edgekd.bench.sustained import run_sustained

        a = replace(args, runs=1, min_duration=modes.sustained)
        n_eval = 0
        if eval_npz is not None:
            with np.load(eval_npz) as ev:
                n_eval = len(ev["y"])
        return run_sustained(lambda: _measure(job, tgt, a, inputs_npz, eval_npz, max(timeout_s, 2 * modes.sustained + 120)),
                             tgt, modes.sustained, modes.interval, eval_samples=n_eval)
    tries = [_measure(job, tgt, args, inputs_npz, eval_npz if i == 0 else None, timeout_s,
                      profile_dir=profile_dir if i == 0 else None) for i in range(modes.repeat)]
    return tries[0] if modes.repeat == 1 else combine_rounds(tries)


def _measure(job: _Job, tgt: Target, args: RunnerArgs, inputs_npz: Path | None, eval_npz: Path | None,
             timeout_s: float, profile_dir: Path | None = None) -> BenchResult:
    """Check the file against its manifest entry, run it, and never raise for a per-file failure.

    With ``profile_dir`` (the run folder) the runner is asked for a per-operator dump (pulled back from a
    device), which becomes ``profiles/<profile_stem>.ops.json`` there; where none can be made (the Python
    runner ran the file, the runtime gave no events, the dump is unreadable) ``profile_error`` says why."""
    r = _blank(job, tgt, args)
    if not job.path.is_file():
        return _failed(r, f"{job.path} is missing (copy the whole bundle folder)", "missing_file")
    if job.sha256 and sha256_of(job.path) != job.sha256:
        return _failed(r, "file does not match its sha256 in edgekd.json (truncated or modified; "
                          "re-export the bundle or copy it again)", "checksum")
    dump = profile_dir / PROFILES / dump_name(job.path, job.key, args.threads) if profile_dir else None
    if dump is not None:
        make_folder(dump.parent, stage="bench/profile", fix=_FIX)
        dump.unlink(missing_ok=True)
    try:
        outcome = tgt.run_runner(job.path, inputs_npz, replace(args, layout=job.layout,
                                                               profile_path=str(dump) if dump else None),
                                 timeout_s, eval_npz=eval_npz)
    except (EdgekdError, OSError) as e:  # the target itself failed (lost device, copy error)
        return _failed(r, str(e), "target" if isinstance(e, BenchError) else type(e).__name__)
    r.runner = outcome.runner
    data, text, error_type = _parse(outcome, timeout_s)
    if data is None:
        return _failed(r, str(text), error_type, outcome.returncode)
    r = _filled(r, data)
    r.machine = {**machine_of(tgt), **(r.machine or {})}  # CPU model, ISA, governor; the runner's own keys on top
    if dump is not None and profile_dir is not None:
        r.profile, r.profile_error = _op_table(profile_dir, job, args.threads, dump, outcome.runner, data)
    return r


def _op_table(run_dir: Path, job: _Job, threads: int, dump: Path, runner: str,
              data: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the op table's path in the run folder, None) or (None, why there is none); the result stands either way."""
    if runner != "native":
        return None, (f"--profile needs the native runner, and the {runner} runner ran this file (pass --runner "
                      "native, or ?runner=native in the target URL)")
    if not dump.is_file():
        said = data.get("profile_error") or ("the runner reported a dump that did not come back"
                                             if data.get("profile_dump") else "the runner wrote no profile dump")
        return None, str(said)
    try:
        return store_op_table(run_dir, job.path, job.key, threads, dump), None
    except (EdgekdError, OSError, ValueError, KeyError, RuntimeError) as e:
        return None, f"cannot read the profile dump {dump.name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
