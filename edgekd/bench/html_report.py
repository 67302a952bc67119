"""``edgekd report RUN_DIR``: an HTML page and PNGs for a run folder, opened straight from disk.

Reads ``RUN_DIR/results.jsonl`` (the latest row for each target and file), draws with
matplotlib's Agg backend (no display needed) and writes, into ``RUN_DIR/report/``:

- ``latency_<model>.png``: a latency histogram per model, one series per file x target;
- ``pareto.png``: accuracy against p50 latency for every format, precision and target, with the
  Pareto front (nothing else is both faster and more accurate) drawn as a line;
- ``index.html``: both images (relative links), the results table and every error.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

from edgekd.bench.report import format_table
from edgekd.bench.results import RESULTS, BenchResult, load_results
from edgekd.errors import ConfigError


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "model"


def _label(r: BenchResult) -> str:
    return f"{r.format}/{r.precision} @ {r.target.split('?')[0]}"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (latency, accuracy) points no other point beats on both, by rising latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _histograms(ok: list[BenchResult], out: Path, plt) -> list[Path]:  # noqa: ANN001
    paths = []
    for model in sorted({r.model_name for r in ok}):
        rows = [r for r in ok if r.model_name == model and r.latency_samples_ms]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in rows:
            ax.hist(r.latency_samples_ms, bins=min(40, max(5, len(r.latency_samples_ms) // 3)), alpha=0.5,
                    label=f"{_label(r)} (p50 {r.latency_ms.p50:.3f} ms)" if r.latency_ms else _label(r))
        ax.set(xlabel="latency per inference (ms)", ylabel="runs", title=f"{model}: latency")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(out / f"latency_{_slug(model)}.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


def _pareto(ok: list[BenchResult], out: Path, plt) -> Path | None:  # noqa: ANN001
    rows = [r for r in ok if r.accuracy is not None and r.latency_ms is not None]
    if not rows:
        return None
    pts = [(r.latency_ms.p50, 100 * r.accuracy) for r in rows]  # type: ignore[union-attr,operator]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (x, y), r in zip(pts, rows, strict=True):
        ax.scatter(x, y, marker="o" if r.precision == "fp32" else "s")
        ax.annotate(f"{r.model_name} {_label(r)}", (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(pts)
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "k--", lw=1, label="Pareto front")
    ax.set(xlabel="p50 latency (ms)", ylabel="top-1 accuracy (%)", title="accuracy vs latency")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "pareto.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_html_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write ``index.html`` and the PNGs for ``run_dir``; returns the path of ``index.html``."""
    run = Path(run_dir)
    rows = load_results(run / RESULTS)
    if not rows:
        raise ConfigError(f"no results in {run / RESULTS}", stage="bench/report",
                          hint="pass a run folder written by `edgekd bench` (it holds results.jsonl)")
    latest = list({(r.target, r.model): r for r in rows}.values())
    out = Path(out_dir) if out_dir else run / "report"
    out.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in latest if r.ok]
    images = _histograms(ok, out, plt)
    pareto = _pareto(ok, out, plt)
    images = ([pareto] if pareto else []) + images
    tables = "".join(f"<h3>{html.escape(t.split('?')[0])}</h3><pre>{html.escape(format_table([r for r in latest if r.target == t]))}</pre>"
                     for t in dict.fromkeys(r.target for r in latest))
    errors = "".join(f"<li><code>{html.escape(r.error or '')}</code></li>" for r in latest if not r.ok)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>edgekd run {html.escape(run.name)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}pre{background:#f6f6f6;padding:1em;overflow:auto}"
            "img{max-width:100%;display:block;margin:1em 0}</style></head><body>"
            f"<h1>edgekd run {html.escape(run.name)}</h1><p>{len(latest)} results, {len(latest) - len(ok)} failed</p>"
            + "".join(f"<img src='{p.name}' alt='{p.stem}'>" for p in images)
            + f"<h2>Results</h2>{tables}"
            + (f"<h2>Errors</h2><ul>{errors}</ul>" if errors else "") + "</body></html>")
    index = out / "index.html"
    index.write_text(page)
    return index
