"""``edgekd report RUN_DIR [RUN_DIR ...]``: one HTML page (and its PNGs) for one or several run folders.

Reads each ``RUN_DIR/results.jsonl`` (the latest row for each target and file), draws with
matplotlib's Agg backend (no display needed) and writes into the output folder (default
``RUN_DIR/report/``; for several runs ``<parent of the first>/report/``):

- ``index.html``: device facts per target; the status table (every file ok / failed on device /
  failed to export, with the reason; trimmed mean, CV and the stability verdict); with several
  runs or targets, a comparison table of p50s; the per-op top list of every file with an op table;
  every error. Images are linked relatively, so the folder opens from disk.
- ``pareto.png``: accuracy against p50 latency, marker area = file size, labels placed so they do
  not overlap, the Pareto front (nothing else both faster and more accurate) drawn as a step line;
- ``latency.png``: one small latency histogram per file (1st-99.5th percentile, at most 4/6 IQR beyond the
  quartiles, so a far burst does not squash the peak; p50 marked, the count left outside noted);
- ``sustained.png``: p50 and temperature over time for results measured with ``--sustained``.

Op tables: a result's ``profile`` field (a path relative to its run folder), else
``RUN_DIR/profiles/<file stem>__<threads>t.ops.json``; see :func:`load_ops`.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bench.report import COLUMNS, STATUS_COLUMNS, speed_warnings
from edgekd.bench.results import OK, RESULTS, SUMMARY, BenchResult, load_results
from edgekd.errors import ConfigError

PROFILES = "profiles"
TOP_OPS = 10


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "model"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (latency, accuracy) points no other point beats on both, by rising latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


@dataclass
class _Row:
    """One result with the run folder it came from and a label that tells it apart from the others."""

    r: BenchResult
    run: Path
    label: str = ""


def _rows(runs: list[Path]) -> list[_Row]:
    rows: list[_Row] = []
    for run in runs:
        latest = {(r.target, r.model): r for r in load_results(run / RESULTS)}
        rows += [_Row(r, run) for r in latest.values()]
    several_runs = len(runs) > 1
    several_targets = len({x.r.target for x in rows}) > 1
    several_models = len({x.r.model_name for x in rows}) > 1
    for x in rows:
        parts = ([x.r.model_name] if several_models else []) + [f"{x.r.format}/{x.r.precision}"]
        if x.r.converter not in ("executorch", "torch", "unknown") and x.r.format == "tflite":
            parts[-1] += f" ({x.r.converter})"
        if several_targets:
            parts.append(f"@{_target(x.r.target)}")
        if several_runs:
            parts.append(f"[{x.run.name}]")
        x.label = " ".join(parts)
    counts: dict[str, int] = {}
    for x in rows:
        counts[x.label] = counts.get(x.label, 0) + 1
    for x in rows:
        if counts[x.label] > 1:  # two files with the same key (e.g. a sustained and a plain run): name the file
            x.label += f" {Path(x.r.model).stem}"
    return rows


def _target(url: str) -> str:
    return url.split("?")[0]


# -- op tables -------------------------------------------------------------------------------------
def ops_path(run: Path, r: BenchResult) -> Path:
    """Where the op table of ``r`` lives: its ``profile`` field, else ``profiles/<stem>__<threads>t.ops.json``."""
    if r.profile:
        return run / r.profile
    return run / PROFILES / f"{Path(r.model).stem}__{r.threads}t.ops.json"


def load_ops(path: Path) -> list[dict[str, Any]] | None:
    """The ops of an op table file, sorted by total time (None where there is none or it is unreadable)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    ops = doc.get("ops") if isinstance(doc, dict) else doc
    if not isinstance(ops, list):
        return None
    good = [o for o in ops if isinstance(o, dict) and "name" in o]
    return sorted(good, key=lambda o: -float(o.get("total_ms") or 0.0))


def _ops_note(path: Path) -> str | None:
    """The op table's top-level ``note`` and ``source`` (e.g. a delegate that shows up as one blob)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    bits = [f"source: {doc['source']}" if doc.get("source") else "", str(doc.get("note") or "")]
    return "; ".join(b for b in bits if b) or None


def _ops_html(rows: list[_Row]) -> str:
    parts = []
    for x in rows:
        path = ops_path(x.run, x.r)
        ops = load_ops(path)
        if not ops:
            continue
        total = sum(float(o.get("total_ms") or 0.0) for o in ops) or None
        deleg = any("delegated" in o for o in ops)

        def pct(o: dict[str, Any], total: float | None = total) -> Any:
            return o.get("pct") if o.get("pct") is not None else (
                100 * float(o.get("total_ms") or 0) / total if total else None)

        body = "".join(
            f"<tr><td>{i + 1}</td><td><code>{html.escape(str(o['name']))}</code></td><td>{o.get('count', '-')}</td>"
            f"<td>{_f(o.get('total_ms'), '.3f')}</td><td>{_f(o.get('mean_ms'), '.4f')}</td><td>{_f(pct(o), '.1f')}</td>"
            + (f"<td>{'yes' if o.get('delegated') else 'no'}</td>" if deleg else "") + "</tr>"
            for i, o in enumerate(ops[:TOP_OPS]))
        note = _ops_note(path)
        parts.append(f"<div class='ops'><h3>{html.escape(x.label)}</h3><table><tr><th>#</th><th>op</th><th>count</th>"
                     f"<th>total ms</th><th>mean ms</th><th>%</th>{'<th>delegated</th>' if deleg else ''}</tr>{body}"
                     f"</table><p class='note'>top {min(TOP_OPS, len(ops))} of {len(ops)} ops"
                     + (f"; {html.escape(note)}" if note else "") + "</p></div>")
    return "".join(parts)


def _f(v: Any, fmt: str) -> str:
    try:
        return "-" if v is None else format(float(v), fmt)
    except (TypeError, ValueError):
        return html.escape(str(v))


# -- plots -----------------------------------------------------------------------------------------
def _overlaps(a: Any, boxes: list[Any]) -> bool:
    return any(a.overlaps(b) for b in boxes)


def _place_labels(ax: Any, fig: Any, xy: list[tuple[float, float]], texts: list[str], order: list[int],
                  avoid: list[Any] | None = None, fontsize: float = 7, radii_px: Sequence[float] | None = None) -> bool:
    """Annotate each point with its text where it overlaps no other label, no marker and nothing in ``avoid``
    (greedy, nearest position first). Returns False (and draws nothing) when some label finds no free place."""
    from matplotlib.transforms import Bbox

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    pix = ax.transData.transform(np.asarray(xy, dtype=float))
    rad = list(radii_px) if radii_px is not None else [6.0] * len(xy)
    taken = [Bbox.from_extents(px - r, py - r, px + r, py + r) for (px, py), r in zip(pix, rad, strict=True)]
    taken += list(avoid or [])
    frame = ax.get_window_extent(renderer)
    steps = [(8, 4), (8, -12), (-8, 4), (-8, -12), (0, 10), (0, -18), (14, -4), (-14, -4)]
    made = []
    for i in order:
        placed = None
        for radius in (1.0, 1.6, 2.3, 3.2, 4.4, 6.0, 8.0):
            for dx, dy in steps:
                ann = ax.annotate(texts[i], xy[i], xytext=(dx * radius, dy * radius), textcoords="offset points",
                                  fontsize=fontsize, ha="left" if dx > 0 else "right" if dx < 0 else "center",
                                  va="bottom", zorder=4,
                                  arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.55"} if radius > 1.6 else None)
                box = ann.get_window_extent(renderer).expanded(1.04, 1.2)
                if (not any(box.overlaps(b) for b in taken) and frame.x0 <= box.x0 and box.x1 <= frame.x1
                        and frame.y0 <= box.y0 and box.y1 <= frame.y1):
                    placed = box
                    break
                ann.remove()
            if placed is not None:
                break
        if placed is None:
            for a in made:
                a.remove()
            return False
        made.append(ann)
        taken.append(placed)
    return True


def _pareto(rows: list[_Row], out: Path, plt: Any) -> tuple[Path | None, list[str]]:
    """The plot, and (when the points were too crowded for full labels) the key to its numbered markers."""
    pts = [x for x in rows if x.r.ok and x.r.accuracy is not None and x.r.latency_ms is not None]
    if not pts:
        return None, []
    xy = [(x.r.latency_ms.p50, 100 * x.r.accuracy) for x in pts]  # type: ignore[union-attr,operator]
    kb = np.array([max(x.r.bytes, 1) / 1024 for x in pts])
    sizes = 40 + 460 * kb / kb.max()
    fig, ax = plt.subplots(figsize=(11, 6.2))
    groups = sorted({f"{x.r.format}/{x.r.precision}" for x in pts})
    colors = dict(zip(groups, plt.cm.tab10.colors, strict=False))
    for g in groups:
        idx = [i for i, x in enumerate(pts) if f"{x.r.format}/{x.r.precision}" == g]
        ax.scatter([xy[i][0] for i in idx], [xy[i][1] for i in idx], s=sizes[idx], color=colors[g], alpha=0.55,
                   edgecolors="k", linewidths=0.6, label=g, zorder=3)
    front = pareto_front(xy)
    fx, fy = [xy[i][0] for i in front], [xy[i][1] for i in front]
    ax.step(fx, fy, where="post", color="k", lw=1.2, ls="--", label="Pareto front", zorder=2)
    lat = [p[0] for p in xy]
    if max(lat) / max(min(lat), 1e-9) > 8:
        ax.set_xscale("log")
    accs = [p[1] for p in xy]
    span = max(max(accs) - min(accs), 1.0)
    ax.set_ylim(min(accs) - 0.25 * span, max(accs) + 0.35 * span)
    xs = ax.get_xlim()
    ax.set_xlim(xs[0] * (0.8 if ax.get_xscale() == "log" else 1) - (0 if ax.get_xscale() == "log" else 0.08 * (xs[1] - xs[0])),
                xs[1] * (1.6 if ax.get_xscale() == "log" else 1) + (0 if ax.get_xscale() == "log" else 0.25 * (xs[1] - xs[0])))
    ax.set(xlabel="p50 latency per inference (ms)", ylabel="top-1 accuracy (%)",
           title="accuracy vs latency (marker area = file size; dashed: Pareto front)")
    ax.grid(alpha=0.3)
    leg = ax.legend(fontsize=7, loc="lower right", markerscale=0.5)
    for h in leg.legend_handles:
        if hasattr(h, "set_sizes"):
            h.set_sizes([40])
    order = front + [i for i in range(len(pts)) if i not in front]
    fig.tight_layout()
    fig.canvas.draw()
    from matplotlib.transforms import Bbox

    avoid = [leg.get_window_extent(fig.canvas.get_renderer())]
    step = ax.transData.transform(np.column_stack([np.repeat(fx, 2)[1:], np.repeat(fy, 2)[:-1]])) if len(fx) > 1 else []
    for (x0, y0), (x1, y1) in zip(step[:-1], step[1:], strict=False):  # the front's segments, in pixels
        n = max(2, int(math.hypot(x1 - x0, y1 - y0) // 6))
        avoid += [Bbox.from_extents(x - 2, y - 2, x + 2, y + 2) for x, y in zip(np.linspace(x0, x1, n), np.linspace(y0, y1, n), strict=True)]
    radii = [math.sqrt(float(sz)) / 2 * fig.dpi / 72 + 2 for sz in sizes]
    key: list[str] = []
    if not _place_labels(ax, fig, xy, [f"{x.label} ({kb[i]:.0f} KB)" for i, x in enumerate(pts)], order, avoid,
                         radii_px=radii):
        key = [f"{x.label} ({kb[i]:.0f} KB)" for i, x in enumerate(pts)]  # too crowded: numbers, the key below
        if not _place_labels(ax, fig, xy, [str(i + 1) for i in range(len(pts))], order, avoid, fontsize=8,
                             radii_px=radii):
            for i, (px, py) in enumerate(xy):
                ax.annotate(str(i + 1), (px, py), fontsize=7, ha="center", va="center", zorder=5)
    path = out / "pareto.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, key


def _histograms(rows: list[_Row], out: Path, plt: Any) -> Path | None:
    have = [x for x in rows if x.r.ok and x.r.latency_samples_ms]
    if not have:
        return None
    ncols = min(3, len(have))
    nrows = math.ceil(len(have) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.6 * nrows), squeeze=False)
    for ax, x in zip(axes.flat, have, strict=False):
        a = np.asarray(x.r.latency_samples_ms)
        q1, q3 = np.percentile(a, [25, 75])
        iqr = q3 - q1
        lo, hi = np.percentile(a, [1, 99.5])
        if iqr > 0:  # a far cluster (another process's burst) must not squash the main peak into one bar
            lo, hi = max(lo, q1 - 4 * iqr), min(hi, q3 + 6 * iqr)
        inside = a[(a >= lo) & (a <= hi)] if hi > lo else a
        ax.hist(inside, bins=min(40, max(8, len(inside) // 4)), color="#4c72b0", alpha=0.85)
        p50 = float(np.median(a))
        ax.axvline(p50, color="#c44e52", lw=1.2)
        cut = len(a) - len(inside)
        verdict = x.r.spread.verdict if x.r.spread else ""
        cv = f"CV {100 * x.r.spread.cv:.2f}% {verdict}" if x.r.spread else ""
        ax.set_title(x.label, fontsize=8)
        ax.text(0.98, 0.95, f"p50 {p50:.3f} ms\n{cv}\nn={len(a)}" + (f", {cut} outside" if cut else ""),
                transform=ax.transAxes, ha="right", va="top", fontsize=7,
                bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
        ax.set_xlabel("ms", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(have):]:
        ax.axis("off")
    fig.tight_layout()
    path = out / "latency.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _sustained(rows: list[_Row], out: Path, plt: Any) -> Path | None:
    have = [x for x in rows if x.r.sustained]
    if not have:
        return None
    fig, ax = plt.subplots(figsize=(9, 4))
    twin = None
    for x in have:
        w = x.r.sustained or []
        line = ax.plot([p["t_s"] for p in w], [p["p50"] for p in w], marker="o", ms=3, label=f"{x.label} p50")[0]
        temps = [(p["t_s"], p["temp_c"]) for p in w if p.get("temp_c") is not None]
        if temps:
            twin = twin or ax.twinx()
            twin.plot(*zip(*temps, strict=True), ls=":", color=line.get_color(), label=f"{x.label} °C")
    ax.set(xlabel="time since the timed loop began (s)", ylabel="p50 per interval (ms)",
           title="sustained load: latency" + (" and temperature" if twin else " (temperature n/a on this target)"))
    ax.grid(alpha=0.3)
    top = max((p["p50"] for x in have for p in (x.r.sustained or [])), default=1.0)
    ax.set_ylim(0, 1.25 * top)
    handles, labels = ax.get_legend_handles_labels()
    if twin:
        twin.set_ylabel("hottest thermal zone (°C)")
        h2, l2 = twin.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=7, loc="lower right")
    fig.tight_layout()
    path = out / "sustained.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- tables ----------------------------------------------------------------------------------------
def _facts_html(rows: list[_Row]) -> str:
    by_facts: dict[str, tuple[list[str], dict[str, Any]]] = {}  # identical facts (minus date and load) shown once
    for x in rows:
        if not x.r.machine:
            continue
        same = json.dumps({k: v for k, v in x.r.machine.items() if k not in ("date", "load_avg_1_5_15")},
                          sort_keys=True, default=str)
        where = _target(x.r.target) + (f" [{x.run.name}]" if len({y.run for y in rows}) > 1 else "")
        names, _ = by_facts.setdefault(same, ([], x.r.machine))
        if where not in names:
            names.append(where)
    seen = {", ".join(names): m for names, m in by_facts.values()}
    if not seen:
        return "<p class='note'>no device facts recorded</p>"
    names = ("cpu_model", "arch", "isa", "logical_cpus", "usable_cpus", "governor", "frequency", "load_avg_1_5_15",
             "virtualized", "os", "platform", "hostname", "python", "runtimes")
    body = []
    for key, m in seen.items():
        cells = []
        for n in names:
            v = m.get(n)
            if v in (None, {}, []):
                continue
            if n == "isa" and isinstance(v, dict):
                v = " ".join(k for k, on in v.items() if on) or "none of the tracked flags"
            elif n == "frequency" and isinstance(v, dict):
                v = ", ".join(f"{k} {val}" for k, val in v.items() if val is not None) or None
            elif n == "runtimes" and isinstance(v, dict):
                v = ", ".join(f"{k} {val}" for k, val in v.items())
            if v is not None:
                cells.append(f"<tr><th>{html.escape(n)}</th><td>{html.escape(str(v))}</td></tr>")
        body.append(f"<div class='facts'><h3>{html.escape(key)}</h3><table>{''.join(cells)}</table></div>")
    return "".join(body)


def _status_html(rows: list[_Row]) -> str:
    results = [x.r for x in rows]
    cols = [c for c in STATUS_COLUMNS if c != "model" and (
        any(COLUMNS[c][0](r) is not None for r in results) or c in ("format", "precision", "status"))]
    head = "<tr><th>file</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"
    body = []
    for x in rows:
        cells = []
        for c in cols:
            try:
                v = COLUMNS[c][1](COLUMNS[c][0](x.r))
            except (TypeError, ValueError, KeyError, AttributeError):
                v = "?"
            cls = {"status": "ok" if x.r.status == OK else "bad", "stability": v if c == "stability" else ""}.get(c, "")
            cells.append(f"<td class='{cls}'>{html.escape(v)}</td>")
        body.append(f"<tr><td>{html.escape(x.label)}</td>{''.join(cells)}</tr>")
    return f"<table class='results'>{head}{''.join(body)}</table>"


def _warnings_html(rows: list[_Row]) -> str:
    """The speed warnings of each run folder (:func:`edgekd.bench.report.speed_warnings`), above the table."""
    by_run: dict[Path, list[BenchResult]] = {}
    for x in rows:
        by_run.setdefault(x.run, []).append(x.r)
    items = [f"<li class='bad'>{html.escape(w)}</li>" for rs in by_run.values() for w in speed_warnings(rs)]
    return f"<ul>{''.join(items)}</ul>" if items else ""


def _compare_html(rows: list[_Row]) -> str:
    """p50 of each file (model + format/precision/converter) in each run x target, and its ratio to the first."""
    columns = list(dict.fromkeys((x.run, x.r.target) for x in rows))
    if len(columns) < 2:
        return ""
    files = list(dict.fromkeys((Path(x.r.model).name, x.r.key) for x in rows))
    cell = {(x.run, x.r.target, Path(x.r.model).name, x.r.key): x.r for x in rows}
    names = [f"{run.name} @ {_target(t)}" for run, t in columns]
    head = "<tr><th>file</th>" + "".join(f"<th>{html.escape(n)}<br>p50 ms</th>" for n in names) + "</tr>"
    body = []
    for model, key in files:
        vals = [cell.get((run, t, model, key)) for run, t in columns]
        base = next((v.latency_ms.p50 for v in vals if v is not None and v.ok and v.latency_ms), None)
        tds = []
        for v in vals:
            if v is None:
                tds.append("<td>-</td>")
            elif not v.ok or v.latency_ms is None:
                tds.append(f"<td class='bad'>{html.escape(v.status)}</td>")
            else:
                ratio = f" <span class='note'>×{v.latency_ms.p50 / base:.2f}</span>" if base else ""
                tds.append(f"<td>{v.latency_ms.p50:.3f}{ratio}</td>")
        body.append(f"<tr><td>{html.escape(model)} {html.escape(key)}</td>{''.join(tds)}</tr>")
    return ("<h2>Compared</h2><p class='note'>p50 per run folder and target; × is the ratio to the first column "
            f"that has the file</p><table class='results'>{head}{''.join(body)}</table>")


STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222;max-width:1400px}"
         "h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}"
         "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left}"
         "th{background:#f3f3f3}table.results td{font-variant-numeric:tabular-nums}"
         ".ok{color:#1a7f37;font-weight:600}.bad{color:#c62828;font-weight:600}.stable{color:#1a7f37}"
         ".noisy{color:#b26a00}.unstable{color:#c62828}.note{color:#666;font-size:12px}"
         ".facts,.ops{display:inline-block;vertical-align:top;margin:0 1.5em 1em 0}"
         ".key{columns:3;font-size:12px}img{max-width:100%;display:block;margin:.8em 0;border:1px solid #eee}code{font-size:12px}")


def write_html_report(run_dirs: str | Path | Sequence[str | Path], out_dir: str | Path | None = None) -> Path:
    """Write ``index.html`` and the PNGs for one run folder or several compared; returns the path of ``index.html``."""
    runs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(r) for r in run_dirs]
    if not runs:
        raise ConfigError("no run folder given", stage="bench/report", hint="edgekd report RUN_DIR [RUN_DIR ...]")
    for run in runs:
        if not load_results(run / RESULTS):
            raise ConfigError(f"no results in {run / RESULTS}", stage="bench/report",
                              hint="pass a run folder written by `edgekd bench` (it holds results.jsonl)")
    rows = _rows(runs)
    out = Path(out_dir) if out_dir else (runs[0] / "report" if len(runs) == 1 else runs[0].parent / "report")
    out.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for stale in ("pareto.png", "latency.png", "sustained.png"):
        (out / stale).unlink(missing_ok=True)
    (pareto, key), hist, sus = _pareto(rows, out, plt), _histograms(rows, out, plt), _sustained(rows, out, plt)
    key_html = ("<ol class='key'>" + "".join(f"<li>{html.escape(k)}</li>" for k in key) + "</ol>") if key else ""
    n_bad = sum(1 for x in rows if not x.r.ok)
    title = runs[0].name if len(runs) == 1 else f"{len(runs)} runs: " + ", ".join(r.name for r in runs)
    created = []
    for run in runs:
        try:
            created.append(json.loads((run / SUMMARY).read_text()).get("created", ""))
        except (OSError, json.JSONDecodeError):
            continue

    def img(p: Path | None, alt: str, missing: str) -> str:
        return f"<img src='{p.name}' alt='{alt}'>" if p else f"<p class='note'>{missing}</p>"

    ops = _ops_html(rows)
    errors = "".join(f"<li><b>{html.escape(x.label)}</b>: <code>{html.escape(x.r.error or '')}</code></li>"
                     for x in rows if not x.r.ok)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>edgekd report {html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>"
            f"<h1>edgekd report: {html.escape(title)}</h1>"
            f"<p class='note'>models {html.escape(', '.join(dict.fromkeys(x.r.model_name for x in rows)))}: "
            f"{len(rows)} results, {len(rows) - n_bad} ok, {n_bad} failed"
            + (f"; measured {html.escape(', '.join(c for c in created if c))}" if any(created) else "") + "</p>"
            f"<h2>Devices</h2>{_facts_html(rows)}"
            f"<h2>Results</h2>{_warnings_html(rows)}{_status_html(rows)}"
            "<p class='note'>stability: CV = std/mean of the timed runs; stable ≤ 5%, noisy ≤ 10%, unstable above. "
            "trim ms: mean of the middle 80%. load: cold (first in the process); warm: the same file loaded again.</p>"
            + _compare_html(rows)
            + "<h2>Accuracy vs latency</h2>" + img(pareto, "accuracy vs latency", "no accuracy-vs-latency plot: no file has an accuracy (pass --eval-data)") + key_html
            + "<h2>Latency per file</h2>" + img(hist, "latency histograms", "no latency histograms: no file was measured")
            + (f"<h2>Sustained load</h2>{img(sus, 'sustained load', '')}" if sus else "")
            + (f"<h2>Where the time goes: top ops</h2>{ops}" if ops else "")
            + (f"<h2>Errors</h2><ul>{errors}</ul>" if errors else "") + "</body></html>")
    index = out / "index.html"
    index.write_text(page)
    return index
