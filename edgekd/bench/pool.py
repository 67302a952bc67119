"""Several targets at once: one thread per target, one shared ``results.jsonl``, one progress bar.

``bench_pool(bundle, ["local", "ssh://pi@board", "adb://SERIAL"], out_dir=...)`` measures every
model file on every target. Each target works through the files in order in its own thread (a
device runs one model at a time, so timings do not disturb each other on the same device). Every
result is appended to the shared JSONL under a lock, flushed and fsynced as it lands, so a run
cut short loses nothing; ``resume=True`` skips the (target, file) pairs already measured. A target
that fails (unreachable, dropped mid-run) gives error rows for its files; the others go on.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from edgekd.bench.harness import _blank, _failed, _jobs, _measure, _prepare_npz, export_failures, plan_runs
from edgekd.bench.native import check_runner
from edgekd.bench.report import write_summary
from edgekd.bench.results import RESULTS, SUMMARY, BenchResult, append_result, load_results
from edgekd.bench.targets import RunnerArgs, Target, get_target
from edgekd.bundle import Bundle
from edgekd.errors import ConfigError, EdgekdError
from edgekd.files import make_folder


def bench_pool(bundle_or_file: str | Path | Bundle, targets: Sequence[str | Target], *, warmup: int = 10,
               runs: int = 50, threads: int = 2, eval_data: Any = None, inputs: Any = None,
               out_dir: str | Path | None = None, files: Sequence[str] | None = None, resume: bool = False,
               timeout_s: float = 300, progress: bool = True, runner: str = "auto", min_runs: int = 0,
               min_duration: float = 0.0, mlperf: bool = False) -> list[BenchResult]:
    """Measure every file on every target in parallel; arguments as :func:`edgekd.bench.benchmark`.

    Returns the results in (target, file) order, failures included.
    """
    if not targets:
        raise ConfigError("no target given", stage="bench/pool", hint="pass --target local (or ssh://, adb://)")
    if runs < 1 or warmup < 0 or threads < 1:
        raise ConfigError(f"need runs >= 1, warmup >= 0, threads >= 1 (got {runs}, {warmup}, {threads})",
                          stage="bench/pool", hint="e.g. warmup=10, runs=50, threads=2")
    runs, min_duration = plan_runs(runs, min_runs, min_duration, mlperf)
    jobs, bundle = _jobs(bundle_or_file, files)
    out = Path(out_dir) if out_dir else Path("edgekd_runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    make_folder(out, stage="bench/pool", fix="bench into another folder (--out DIR)")
    inputs_npz, eval_npz = _prepare_npz(out, eval_data, inputs, bundle)
    args = RunnerArgs(warmup=warmup, runs=runs, threads=threads, runner=check_runner(runner), min_duration=min_duration)
    jsonl = out / RESULTS
    done = {(r.target, r.model): r for r in load_results(jsonl) if r.ok} if resume else {}
    urls = [t.url if isinstance(t, Target) else t for t in targets]
    results: dict[tuple[int, int], BenchResult] = {}
    described: dict[str, Any] = {}
    lock = threading.Lock()

    from tqdm import tqdm

    bar = tqdm(total=len(urls) * len(jobs), desc=f"bench x{len(urls)} targets", unit="file", disable=not progress)

    failures: list[EdgekdError] = []  # a results file that cannot be written (full disk): raised after the join

    def work(ti: int, spec: str | Target) -> None:
        try:
            _work(ti, spec)
        except EdgekdError as e:
            failures.append(e)

    def _work(ti: int, spec: str | Target) -> None:
        tgt: Target | None = None
        error = ""
        try:
            tgt = get_target(spec)
        except EdgekdError as e:  # a bad URL: one error row per file, the other targets go on
            error = str(e)
        for ji, job in enumerate(jobs):
            previous = done.get((urls[ti], str(job.path)))
            if previous is not None:
                r = previous
            else:
                r = _measure(job, tgt, args, inputs_npz, eval_npz, timeout_s) if tgt else _failed(
                    _blank(job, _Named(urls[ti]), args), error, "target")
                with lock:
                    append_result(jsonl, r)
            with lock:
                results[ti, ji] = r
                bar.update(1)
                bar.set_postfix_str(f"{urls[ti].split('?')[0]}: {job.path.name} {'ok' if r.ok else 'FAILED'}")
        for r in export_failures(bundle, tgt or _Named(urls[ti]), args):
            with lock:
                append_result(jsonl, r)
                results[ti, len(jobs) + len(results)] = r
        described[urls[ti]] = tgt.describe() if tgt else {"url": urls[ti], "error": error}

    workers = [threading.Thread(target=work, args=(i, t), name=f"bench-{i}", daemon=True) for i, t in enumerate(targets)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    bar.close()
    if failures:
        raise failures[0]
    latest = {(r.target, r.model): r for r in load_results(jsonl)}
    write_summary(list(latest.values()), out / SUMMARY,
                  extra={"targets": [described.get(u, {"url": u}) for u in urls], "results_jsonl": str(jsonl)})
    return [results[key] for key in sorted(results)]


class _Named(Target):
    """A stand-in for a target whose URL could not be turned into one (for its error rows)."""

    def run_runner(self, *a: Any, **kw: Any) -> Any:  # pragma: no cover - never called
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"url": self.url}
