"""``edgekd report RUN_DIR [RUN_DIR ...]``: one HTML page (and its PNGs) for one or several run folders.

Reads each ``RUN_DIR/results.jsonl`` (the latest row for each target and file), draws with
matplotlib's Agg backend (no display needed) and writes into the output folder (default
``RUN_DIR/report/``; for several runs ``<parent of the first>/report/``):

- ``index.html``: what the run is about, where the run folder says (``RUN_DIR/about.html``, an HTML
  fragment written by whoever started the run: ``edgekd demo`` puts its teacher, KD-vs-alone table
  and validation curves there); device facts per target; the status table (every file ok / failed
  on device / failed to export, with the reason; trimmed mean, CV and the stability verdict; with
  ``--repeat``, each file's p50 range over the rounds and its noise group: files with the same
  letter are the same speed within noise); with several runs or targets, a comparison table of
  p50s; the per-op top list of every file with an op table; every error. Images are linked
  relatively, so the folder opens from disk.
- ``pareto.png``: accuracy against p50 latency, marker area = file size, labels placed so they do
  not overlap, the Pareto front (nothing else both faster and more accurate) drawn as a step line;
  with ``--repeat``, a horizontal bar per file spans its p50 range (overlapping bars: same speed
  within noise);
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bench.native_profile import PROFILES, profile_stem
from edgekd.bench.report import (
    COLUMNS,
    GROUP,
    NOISE_NOTE,
    STATUS_COLUMNS,
    noise_columns,
    speed_warnings,
    status_groups,
)
from edgekd.bench.results import ABOUT, OK, RESULTS, SUMMARY, BenchResult, load_results
from edgekd.bench.stats import noise_band
from edgekd.errors import ConfigError
from edgekd.files import atomic_path, make_folder, write_atomic
from edgekd.formats import FORMATS, converters

TOP_OPS = 10


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
        if x.r.converter != "unknown" and len(converters(x.r.format)) > 1:  # name the converter where there are several
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
    """Where the op table of ``r`` lives: its ``profile`` field, else ``profiles/<profile_stem>.ops.json`` (one per
    file: the stem, the key and the threads), else the name older runs used (``<stem>__<threads>t.ops.json``,
    shared by a .pte and a .tflite of one stem), taken only where its source is the row's runtime's."""
    if r.profile:
        return run / r.profile
    keyed = run / PROFILES / f"{profile_stem(r.model, r.key, r.threads)}.ops.json"
    legacy = run / PROFILES / f"{Path(r.model).stem}__{r.threads}t.ops.json"
    if keyed.is_file() or not legacy.is_file():
        return keyed
    try:
        source = json.loads(legacy.read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        return keyed
    rows = [f for f in FORMATS.values() if f.format == r.format and f.profile]  # the source its runtime writes
    return legacy if rows and source == rows[0].profile[0] else keyed


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
        if x.r.profile_error:  # asked for, but none could be taken: say why rather than show nothing
            parts.append(f"<div class='ops'><h3>{html.escape(x.label)}</h3><p class='note'>no operator table: "
                         f"{html.escape(x.r.profile_error)}</p></div>")
            continue
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
    bands = [noise_band(x.r.repeat) for x in pts]
    for (_, py), b in zip(xy, bands, strict=True):  # the p50 range over the rounds: overlap = same within noise
        if b is not None:
            ax.plot([b[0], b[1]], [py, py], color="0.25", lw=1.4, solid_capstyle="butt", zorder=4)
            ax.plot([b[0], b[1]], [py, py], ls="none", marker="|", ms=7, color="0.25", zorder=4)
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
           title="accuracy vs latency (marker area = file size; dashed: Pareto front"
                 + ("; bars: p50 range over the rounds" if any(bands) else "") + ")")
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
    _savefig(fig, path, dpi=110)
    plt.close(fig)
    return path, key


def _savefig(fig: Any, path: Path, dpi: int) -> None:
    with atomic_path(path, stage="bench/report", what="the plot", fix="pass another --out folder") as tmp:
        fig.savefig(tmp, dpi=dpi)


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
        rcv = x.r.spread.robust_cv if x.r.spread else None
        cv = (f"robust CV {100 * rcv:.2f}% {verdict}" if rcv is not None else
              f"CV {100 * x.r.spread.cv:.2f}% {verdict}" if x.r.spread else "")
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
    _savefig(fig, path, dpi=100)
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
    _savefig(fig, path, dpi=100)
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
    groups: list[str | None] = [None] * len(rows)
    for key in dict.fromkeys((x.run, x.r.target) for x in rows):  # a letter compares files of one run on one device
        idx = [i for i, x in enumerate(rows) if (x.run, x.r.target) == key]
        for i, g in zip(idx, status_groups([results[i] for i in idx]), strict=True):
            groups[i] = g
    cols = noise_columns(cols, groups)
    head = "<tr><th>file</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"
    body = []
    for x, group in zip(rows, groups, strict=True):
        cells = []
        for c in cols:
            try:
                v = (group or "-") if c == GROUP else COLUMNS[c][1](COLUMNS[c][0](x.r))
            except (TypeError, ValueError, KeyError, AttributeError):
                v = "?"
            cls = {"status": "ok" if x.r.status == OK else "bad", "stability": v if c == "stability" else "",
                   GROUP: "group"}.get(c, "")
            cells.append(f"<td class='{cls}'>{html.escape(v)}</td>")
        body.append(f"<tr><td>{html.escape(x.label)}</td>{''.join(cells)}</tr>")
    note = f"<p class='note'>{html.escape(NOISE_NOTE)}.</p>" if any(groups) else ""
    return f"<table class='results'>{head}{''.join(body)}</table>{note}"


def _about_html(runs: list[Path]) -> str:
    """The fragment each run folder carries about itself (``about.html``), in run order."""
    parts = []
    for run in runs:
        try:
            parts.append((run / ABOUT).read_text())
        except OSError:
            continue
    return "".join(parts)


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


# -- a run folder written by `edgekd fit` (fit.json beside results.jsonl) -----------------------------
FIT_JSON = "fit.json"


def _fit_front_plot(doc: dict[str, Any], out: Path, plt: Any) -> Path | None:
    """Proxy accuracy against measured p50, one panel per target: marker area = file size, the chosen point
    starred, the front (nothing else both faster and more accurate) dashed, the latency budget dotted."""
    urls = [t["url"] for t in doc["targets"]]
    pts = [c for c in doc["candidates"] if c.get("proxy") and c["verdict"] == "feasible"]
    if not pts:
        return None
    fig, axes = plt.subplots(1, len(urls), figsize=(6.5 * len(urls), 4.8), squeeze=False)
    kb = np.array([max(c["bytes"], 1) / 1024 for c in pts])
    sizes = 30 + 400 * kb / kb.max()
    groups = sorted({f"{c['format']}/{c['precision']}/{c['threads']}t" for c in pts})
    colors = dict(zip(groups, plt.cm.tab10.colors, strict=False))
    limit = next((b["limit"] for b in doc["budget"] if b["kind"] == "latency_ms"), None)
    for ax, url in zip(axes[0], urls, strict=True):
        xy = [(c["p50_ms"].get(url), 100 * c["proxy"]["val_acc"]) for c in pts]
        for g in groups:
            idx = [i for i, c in enumerate(pts) if f"{c['format']}/{c['precision']}/{c['threads']}t" == g
                   and xy[i][0] is not None]
            ax.scatter([xy[i][0] for i in idx], [xy[i][1] for i in idx], s=sizes[idx], color=colors[g], alpha=0.55,
                       edgecolors="k", linewidths=0.5, label=g, zorder=3)
        have = [i for i, p in enumerate(xy) if p[0] is not None]
        front = [have[j] for j in pareto_front([xy[i] for i in have])]  # type: ignore[misc]
        ax.step([xy[i][0] for i in front], [xy[i][1] for i in front], where="post", color="k", lw=1, ls="--",
                label="front", zorder=2)
        for i, c in enumerate(pts):
            if c["role"] == "chosen" and xy[i][0] is not None:
                ax.scatter([xy[i][0]], [xy[i][1]], marker="*", s=260, color="gold", edgecolors="k", zorder=5,
                           label="chosen")
                ax.annotate(c["arch"], xy[i], xytext=(6, 6), textcoords="offset points", fontsize=8)
        if limit is not None:
            ax.axvline(limit, color="#c62828", ls=":", lw=1.2, label=f"budget {limit:g} ms")
        xs = [xy[i][0] for i in have] + ([limit] if limit is not None else [])
        if xs and max(xs) / max(min(xs), 1e-9) > 8:  # type: ignore[type-var,arg-type]
            ax.set_xscale("log")
        ax.set(xlabel=f"p50 ms on {_target(url)}", ylabel="proxy validation accuracy (%)",
               title=f"{_target(url)}: marker area = file size")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right", markerscale=0.5)
    fig.tight_layout()
    path = out / "fit_front.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fit_section(doc: dict[str, Any], out: Path, plt: Any) -> str:
    """The search of ``edgekd fit``: budget, schedule, the front plot, the chosen student, the final benchmark and
    every rejected candidate with its reason (``doc``: the run's ``fit.json``)."""
    plot = _fit_front_plot(doc, out, plt)
    budget = ", ".join(f"{b['kind']} ≤ {b['limit']:g}" for b in doc["budget"])
    urls = [t["url"] for t in doc["targets"]]
    chosen = doc.get("chosen")
    parts = [f"<h2>Fit: the student for {html.escape(budget)}</h2>",
             f"<p class='note'>{len(doc['candidates'])} candidates ({doc['feasible']} feasible) measured on "
             f"{html.escape(', '.join(_target(u) for u in urls))}; proxy runs: {html.escape(doc['schedule']['proxy'])}; "
             f"full run: {html.escape(doc['schedule']['final'])}. Search {doc['timings_s'].get('search', 0):.0f} s, "
             f"{doc['counts']['measured']} measured, {doc['counts']['measurements_reused']} from the latency table "
             f"({html.escape(doc['table']['path'])}).</p>"]
    if chosen:
        p50s = ", ".join(f"{_target(u)} {_f(v, '.4f')} ms" for u, v in chosen["p50_ms"].items())
        parts.append(f"<p><b>chosen:</b> {html.escape(chosen['name'])} — {chosen['params']:,} parameters, "
                     f"{chosen['bytes'] / 1024:.1f} KB, p50 {html.escape(p50s)}, proxy validation accuracy "
                     f"{_f(100 * chosen['proxy']['val_acc'] if chosen.get('proxy') else None, '.2f')}%</p>")
    final = doc.get("final")
    if final:
        rows = "".join(f"<tr><td>{html.escape(_target(b['target']))}</td><td>{html.escape(b['key'])}</td>"
                       f"<td>{_f(b['p50_ms'], '.4f')}</td><td>{_f(100 * b['accuracy'] if b['accuracy'] is not None else None, '.2f')}</td>"
                       f"<td>{_f(b['peak_mem_mb'], '.1f')}</td></tr>" for b in final["bench"])
        verdict = ("<span class='ok'>meets the budget on every target</span>" if final["passed"] else
                   "<span class='bad'>misses: " + html.escape("; ".join(final["misses"]) or "a target failed") + "</span>")
        parts.append("<table class='results'><tr><th>target</th><th>file</th><th>p50 ms</th><th>accuracy %</th>"
                     f"<th>peak MB</th></tr>{rows}</table><p>{verdict}</p>")
    parts.append(f"<img src='{plot.name}' alt='accuracy vs latency of the candidates'>" if plot else
                 "<p class='note'>no front plot: no feasible candidate got a proxy run</p>")
    head = ("<tr><th>candidate</th><th>deploy</th><th>params</th><th>KB</th>"
            + "".join(f"<th>p50 ms {html.escape(_target(u))}</th>" for u in urls)
            + "<th>peak MB</th><th>proxy val %</th><th>verdict</th><th>reason / flags</th></tr>")
    body = []
    for c in sorted(doc["candidates"], key=lambda c: (c["verdict"] != "feasible", c["verdict"], c["arch"])):
        why = "; ".join([c["reason"], *c["flags"]] if c["reason"] else c["flags"])
        body.append(f"<tr><td>{html.escape(c['arch'])}{' ★' if c['role'] == 'chosen' else ''}</td>"
                    f"<td>{c['format']}/{c['precision']}/{c['threads']}t</td><td>{c['params']:,}</td>"
                    f"<td>{_f(c['bytes'] / 1024 if c['bytes'] else None, '.1f')}</td>"
                    + "".join(f"<td>{_f(c['p50_ms'].get(u), '.4f')}</td>" for u in urls)
                    + f"<td>{_f(max([v for v in c['peak_mem_mb'].values() if v is not None] or [None]), '.1f')}</td>"
                    + f"<td>{_f(100 * c['proxy']['val_acc'] if c.get('proxy') else None, '.2f')}</td>"
                    f"<td class='{'ok' if c['verdict'] == 'feasible' else 'bad'}'>{html.escape(c['verdict'])}</td>"
                    f"<td>{html.escape(why)}</td></tr>")
    parts.append(f"<h3>Every candidate</h3><table class='results'>{head}{''.join(body)}</table>")
    return "".join(parts)


STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222;max-width:1400px}"
         "h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}"
         "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left}"
         "th{background:#f3f3f3}table.results td{font-variant-numeric:tabular-nums}"
         "table.results{display:block;overflow-x:auto;max-width:100%}"  # a wide table scrolls, the page does not
         ".ok{color:#1a7f37;font-weight:600}.bad{color:#c62828;font-weight:600}.stable{color:#1a7f37}"
         ".noisy{color:#b26a00}.unstable{color:#c62828}.note{color:#666;font-size:12px}"
         ".facts,.ops{display:inline-block;vertical-align:top;margin:0 1.5em 1em 0}"
         ".key{columns:3;font-size:12px}img{max-width:100%;display:block;margin:.8em 0;border:1px solid #eee}code{font-size:12px}"
         "td.group{font-weight:600;text-align:center}.won{color:#1a7f37;font-weight:600}.lost{color:#c62828;font-weight:600}")


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
    make_folder(out, stage="bench/report", fix="pass another --out folder")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for stale in ("pareto.png", "latency.png", "sustained.png", "fit_front.png"):
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
    fit_doc = runs[0] / FIT_JSON
    fit_html = fit_section(json.loads(fit_doc.read_text()), out, plt) if fit_doc.is_file() else ""
    errors = "".join(f"<li><b>{html.escape(x.label)}</b>: <code>{html.escape(x.r.error or '')}</code></li>"
                     for x in rows if not x.r.ok)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>edgekd report {html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>"
            f"<h1>edgekd report: {html.escape(title)}</h1>"
            f"<p class='note'>models {html.escape(', '.join(dict.fromkeys(x.r.model_name for x in rows)))}: "
            f"{len(rows)} results, {len(rows) - n_bad} ok, {n_bad} failed"
            + (f"; measured {html.escape(', '.join(c for c in created if c))}" if any(created) else "") + "</p>"
            + _about_html(runs)
            + fit_html
            + f"<h2>Devices</h2>{_facts_html(rows)}"
            f"<h2>Results</h2>{_warnings_html(rows)}{_status_html(rows)}"
            "<p class='note'>stability, from the robust CV (1.4826 × median absolute deviation / median of the timed "
            "runs: the spread of their bulk, which a few preempted runs do not inflate, as they do not move the p50): "
            "stable ≤ 5%, noisy ≤ 10%, unstable above; cv: std/mean, the tail's share. "
            "trim ms: mean of the middle 80%. load: cold (first in the process); warm: the same file loaded again.</p>"
            + _compare_html(rows)
            + "<h2>Accuracy vs latency</h2>" + img(pareto, "accuracy vs latency", "no accuracy-vs-latency plot: no file has an accuracy (pass --eval-data)") + key_html
            + "<h2>Latency per file</h2>" + img(hist, "latency histograms", "no latency histograms: no file was measured")
            + (f"<h2>Sustained load</h2>{img(sus, 'sustained load', '')}" if sus else "")
            + (f"<h2>Where the time goes: top ops</h2>{ops}" if ops else "")
            + (f"<h2>Errors</h2><ul>{errors}</ul>" if errors else "") + "</body></html>")
    return write_atomic(out / "index.html", page, stage="bench/report", what="the report",
                        fix="pass another --out folder")
