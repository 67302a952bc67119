"""What ``edgekd demo`` shows, for people: the KD table, the speed pairs, and the report's first section.

The demo's HTML report opens with what the demo is about (``RUN_DIR/about.html``, which
:func:`edgekd.bench.html_report.write_html_report` puts above the benchmark sections): the teacher,
the student alone vs with KD on every seed (margin and seed spread), both students' validation
curves, and whether the two students — the same architecture — run at the same speed within noise.
Nothing here trains or measures; it renders what :func:`edgekd.demo.run_demo` measured.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from edgekd.bench.stats import noise_band

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.bench.results import BenchResult

KD, ALONE = "student_kd", "student_alone"  # the exported students' model names


def curve(history: Sequence[dict[str, Any]], steps_per_epoch: int) -> list[tuple[int, float]]:
    """(training step, val accuracy) at every validated epoch of a run's history."""
    return [(int(row["epoch"]) * steps_per_epoch, float(row["val_acc"])) for row in history if "val_acc" in row]


def speed_pairs(results: Sequence[BenchResult]) -> list[dict[str, Any]]:
    """The two students' files side by side, per format/precision/converter: p50s, noise bands, difference.

    ``same`` is True when the two bands overlap (the same speed within noise), False when they do not,
    None when a file was measured once (no band) or failed.
    """
    by = {(r.model_name, r.key): r for r in results}
    pairs = []
    for key in dict.fromkeys(r.key for r in results):
        kd, alone = by.get((KD, key)), by.get((ALONE, key))
        if kd is None or alone is None or not (kd.ok and alone.ok and kd.latency_ms and alone.latency_ms):
            continue
        a, b = noise_band(kd.repeat), noise_band(alone.repeat)
        p_kd, p_alone = kd.latency_ms.p50, alone.latency_ms.p50
        pairs.append({"key": key, "kd_p50_ms": p_kd, "alone_p50_ms": p_alone, "kd_band_ms": a, "alone_band_ms": b,
                      "diff_pct": 100 * (p_kd - p_alone) / min(p_kd, p_alone),
                      "same": None if a is None or b is None else a[0] <= b[1] and b[0] <= a[1]})
    return pairs


def format_speed_pairs(pairs: Sequence[dict[str, Any]]) -> str:
    """The terminal lines under the benchmark table: does the same network run at the same speed?"""
    if not pairs:
        return ""
    lines = ["same architecture, same speed? p50 of the KD student vs the student alone, per file "
             "(range: lowest-highest p50 over the rounds)"]
    for p in pairs:
        verdict = {True: "same within noise", False: "DIFFER beyond noise", None: "measured once: no noise band"}
        lines.append(f"  {p['key']:<28} {p['kd_p50_ms']:.4f} ({_band(p['kd_band_ms'])}) vs "
                     f"{p['alone_p50_ms']:.4f} ({_band(p['alone_band_ms'])}) ms  {p['diff_pct']:+5.1f}%  "
                     f"{verdict[p['same']]}")
    return "\n".join(lines)


def _band(b: tuple[float, float] | None) -> str:
    return "-" if b is None else f"{b[0]:.4f}-{b[1]:.4f}"


def curves_png(curves: dict[int, dict[str, list[tuple[int, float]]]], teacher_acc: float) -> bytes:
    """Validation accuracy against training steps for every seed: alone dashed, KD solid, the teacher dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2))
    colors = plt.cm.tab10.colors
    for i, (seed, runs) in enumerate(sorted(curves.items())):
        for name, style in (("kd", "-"), ("alone", "--")):
            pts = runs.get(name) or []
            if pts:
                ax.plot([s for s, _ in pts], [100 * a for _, a in pts], style, marker="o", ms=3,
                        color=colors[i % len(colors)], label=f"seed {seed}: {'with KD' if name == 'kd' else 'alone'}")
    ax.axhline(100 * teacher_acc, color="0.4", ls=":", lw=1.2, label="teacher (test)")
    ax.set(xlabel="training step", ylabel="validation accuracy (%)",
           title="the student's validation accuracy: alone (dashed) vs with KD (solid)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def about_html(*, teacher: str, teacher_acc: float, student: str, labels: int, n_train: int, kd_T: float,
               steps: dict[str, int], runs: Sequence[dict[str, Any]], verdict: dict[str, Any],
               curves_png_bytes: bytes | None, pairs: Sequence[dict[str, Any]]) -> str:
    """The report's first section: what the demo is about and what it found (an HTML fragment)."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{r['seed']}</td><td>{100 * r['alone']:.2f}</td><td>{100 * r['kd']:.2f}</td>"
        f"<td class='{'won' if m > 0 else 'lost'}'>{m:+.2f}</td></tr>"
        for r, m in zip(runs, verdict["margins"], strict=True))
    n = len(runs)
    said = (f"KD won on every seed ({verdict['wins']}/{n}), by a mean margin larger than the seed spread."
            if verdict["won"] else f"KD did NOT win on every seed by more than the seed spread "
            f"(ahead on {verdict['wins']}/{n} seeds).")
    img = ("<img alt='validation curves' src='data:image/png;base64,"
           + base64.b64encode(curves_png_bytes).decode() + "'>") if curves_png_bytes else ""
    speed = ""
    if pairs:
        body = "".join(
            f"<tr><td>{e(p['key'])}</td><td>{p['kd_p50_ms']:.4f}</td><td>{_band(p['kd_band_ms'])}</td>"
            f"<td>{p['alone_p50_ms']:.4f}</td><td>{_band(p['alone_band_ms'])}</td><td>{p['diff_pct']:+.1f}</td>"
            f"<td class='{'won' if p['same'] else 'lost' if p['same'] is False else ''}'>"
            f"{ {True: 'same within noise', False: 'differ beyond noise', None: 'no band'}[p['same']] }</td></tr>"
            for p in pairs)
        speed = ("<h3>Same network, same speed?</h3><p class='note'>Both students are the same architecture, so "
                 "their files should run equally fast; a difference beyond the noise band would be the harness's, "
                 "not the model's. Range: the lowest and highest p50 of the interleaved rounds, at least ±1 % of "
                 "the p50.</p>"
                 "<table class='results'><tr><th>file</th><th>KD p50 ms</th><th>range</th><th>alone p50 ms</th>"
                 f"<th>range</th><th>KD vs alone %</th><th>verdict</th></tr>{body}</table>")
    return (f"<h2>What this demo shows</h2><p>A teacher <code>{e(teacher)}</code> trained on all {n_train} "
            f"labelled train images scores <b>{100 * teacher_acc:.2f}%</b> on the test set. The student "
            f"<code>{e(student)}</code> gets only {labels} labels: trained <i>alone</i> on them ({steps['alone']} "
            f"steps) and, from the same initialisation, <i>with KD</i> ({steps['kd']} steps: cross-entropy on the "
            f"labelled images plus the teacher's soft labels, T = {kd_T:g}, on all {n_train} images). Test "
            "accuracy, per seed:</p>"
            f"<table class='results'><tr><th>seed</th><th>alone %</th><th>KD %</th><th>KD − alone</th></tr>{rows}"
            "</table>"
            f"<p>Mean margin <b>{verdict['mean_margin']:+.2f}</b> points; seed spread {verdict['spread']:.2f} points "
            f"(the larger max − min over seeds of the two columns). <b>{e(said)}</b></p>{img}{speed}"
            "<p class='note'>Below: every exported file of the first seed's two students, measured on this "
            "machine.</p>")
