"""From measurements to a choice: which candidates meet the budget, which get a proxy run, which one wins.

A :class:`Candidate` is one architecture in one deployment (format, precision, threads) with its
untrained export's coverage and its row per target. :func:`classify` gives each one its verdict, in
this order (the first that applies): ``cannot build``, ``failed export``, ``op fallback`` (only
with ``strict_delegation``; otherwise a flag), ``failed on device``, ``unstable``, ``over budget``
(a latency budget holds on the **slowest** target's p50; a ``bytes`` budget on the exported file;
``params`` on the parameter count), ``misses requirement`` (``require`` terms other than accuracy,
on every target's row), else ``feasible``.

Proxies (:func:`proxy_set`) go to the architectures on or near the measured front: among the
feasible ones, each architecture's best (lowest slowest-target p50) feasible deployment, and the
front of low latency against high capacity (FLOPs) — no other feasible architecture is at least as
fast with at least as many FLOPs — widened by ``near`` (also kept: an architecture that only one at
least ``near`` (10 %) faster beats). Largest first, family by family in turn, up to ``k``. The chosen
one (:func:`choose`) has the best proxy validation accuracy (ties: the faster), in its fastest
feasible deployment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgekd.bench.gate import METRICS, Requirement
from edgekd.edge.budget import Budget
from edgekd.errors import ConfigError
from edgekd.fit.coverage import FileCoverage
from edgekd.fit.measure import Measured
from edgekd.fit.proxy import ProxyResult
from edgekd.fit.space import Arch, Deploy

STAGE = "fit/select"
REJECTIONS = ("cannot build", "failed export", "op fallback", "failed on device", "unstable", "over budget",
              "misses requirement", "not measured")
_COST = {"latency_ms": "p50 (slowest target)", "bytes": "file size", "params": "parameters"}


@dataclass
class Candidate:
    """One architecture in one deployment; ``verdict`` is ``feasible`` or one of :data:`REJECTIONS`."""

    arch: Arch
    deploy: Deploy
    input_shape: tuple[int, ...]
    params: int = 0
    flops: int = 0
    coverage: FileCoverage | None = None
    measured: dict[str, Measured] = field(default_factory=dict)
    build_error: str | None = None
    verdict: str = ""
    reason: str = ""
    flags: list[str] = field(default_factory=list)
    proxy: ProxyResult | None = None
    role: str = ""  # "chosen", "front" (accuracy/latency front), "proxied"

    @property
    def name(self) -> str:
        return f"{self.arch.name} {self.deploy.name}"

    @property
    def bytes(self) -> int:
        return self.coverage.bytes if self.coverage is not None else 0

    def p50(self, url: str) -> float | None:
        m = self.measured.get(url)
        return m.p50_ms if m is not None else None

    @property
    def worst_p50(self) -> float | None:
        """The slowest target's p50, when every target measured it (None otherwise)."""
        vals = [m.p50_ms for m in self.measured.values()]
        return max(vals) if vals and all(v is not None for v in vals) else None  # type: ignore[type-var]

    def cost(self, kind: str) -> float | None:
        return {"latency_ms": self.worst_p50, "bytes": float(self.bytes) if self.coverage else None,
                "params": float(self.params)}[kind]

    @property
    def feasible(self) -> bool:
        return self.verdict == "feasible"

    def to_dict(self) -> dict[str, Any]:
        rows = {u: m.row for u, m in self.measured.items() if m.row is not None}
        return {
            "arch": self.arch.name, "spec": self.arch.spec, "family": self.arch.family, "model": self.arch.model,
            "kwargs": dict(self.arch.kwargs), "resolution": list(self.arch.resolution) if self.arch.resolution else None,
            "input_shape": list(self.input_shape), "format": self.deploy.format, "precision": self.deploy.precision,
            "threads": self.deploy.threads, "params": self.params, "flops": self.flops, "bytes": self.bytes,
            "coverage": self.coverage.to_dict() if self.coverage else None,
            "p50_ms": {u: m.p50_ms for u, m in self.measured.items()},
            "latency_ms": {u: r.latency_ms.to_dict() if r.latency_ms else None for u, r in rows.items()},
            "trimmed_mean_ms": {u: r.spread.trimmed_mean if r.spread else None for u, r in rows.items()},
            "cv": {u: r.spread.cv if r.spread else None for u, r in rows.items()},
            "verdict_stability": {u: r.spread.verdict if r.spread else None for u, r in rows.items()},
            "repeat": {u: r.repeat for u, r in rows.items() if r.repeat},
            "peak_mem_mb": {u: r.peak_mem_mb for u, r in rows.items()},
            "source": {u: m.source for u, m in self.measured.items()},
            "verdict": self.verdict, "reason": self.reason, "flags": self.flags, "role": self.role,
            "proxy": None if self.proxy is None else {"val_acc": self.proxy.val_acc, "test_acc": self.proxy.test_acc,
                                                      "seconds": self.proxy.seconds, "epochs": self.proxy.epochs},
        }


def _fmt(kind: str, v: float) -> str:
    return f"{v:.3g} ms" if kind == "latency_ms" else f"{v / 1024:.1f} KB" if kind == "bytes" else f"{v:,.0f}"


def classify(cands: Sequence[Candidate], budgets: Sequence[Budget], requirements: Sequence[Requirement],
             strict_delegation: bool) -> None:
    """Set every candidate's ``verdict``, ``reason`` and ``flags`` (see the module docstring)."""
    search_reqs = [r for r in requirements if r.metric != "accuracy"]
    for c in cands:
        c.flags = []
        cov = c.coverage
        if cov is not None and cov.fallback:
            ops = ", ".join(f"{k}×{v}" for k, v in sorted(cov.outside.items()))
            c.flags.append(f"op fallback: {ops} outside XNNPACK")
        verdict, reason = "feasible", ""
        bad = [m for m in c.measured.values() if not m.ok]
        if c.build_error:
            verdict, reason = "cannot build", c.build_error
        elif cov is not None and not cov.ok:
            verdict, reason = "failed export", str(cov.error)
        elif strict_delegation and cov is not None and cov.fallback:
            verdict, reason = "op fallback", c.flags[-1] + " (strict delegation)"
        elif bad:
            m = bad[0]
            verdict = "unstable" if m.reason.startswith("unstable") else "failed on device"
            where = next(u for u, x in c.measured.items() if x is m).split("?")[0]
            reason = f"{where}: {m.reason}"
        elif not c.measured:
            verdict, reason = "failed on device", "not measured"
        else:
            over = [(b, c.cost(b.kind)) for b in budgets]
            over = [(b, v) for b, v in over if v is None or v > b.limit]
            if over:
                b, v = over[0]
                verdict = "over budget"
                reason = f"{_COST[b.kind]} {_fmt(b.kind, v) if v is not None else '?'} > {_fmt(b.kind, b.limit)}"
            else:
                misses = [(u, q, METRICS[q.metric].value(m.row)) for q in search_reqs for u, m in c.measured.items()]
                misses = [(u, q, v) for u, q, v in misses if v is None or not q.holds(float(v))]
                if misses:
                    u, q, v = misses[0]
                    verdict = "misses requirement"
                    reason = f"{u.split('?')[0]}: {q.metric} = {'?' if v is None else f'{v:.4g}'}, required {q.op} {q.limit:g}"
        c.verdict, c.reason = verdict, reason


def impossible(cands: Sequence[Candidate], budgets: Sequence[Budget], space: dict[str, Any], targets: Sequence[str]
               ) -> ConfigError:
    """The error for a search where nothing is feasible: the best value reached for each budget, and what
    to relax (the budget to that value, or the axes that could go further)."""
    measured = [c for c in cands if c.verdict in ("over budget", "misses requirement", "feasible")]
    if not measured:
        reasons = sorted({c.verdict for c in cands})
        return ConfigError(f"no candidate could be measured ({len(cands)} tried: {', '.join(reasons) or 'none'})",
                           stage=STAGE, hint="see the rejected candidates in fit.json; widen the search (--families, "
                           "--formats, --precisions) or fix the target")
    parts, relax = [], []
    for b in budgets:
        best = min((c for c in measured if c.cost(b.kind) is not None), key=lambda c: c.cost(b.kind))  # type: ignore[arg-type,return-value]
        v = best.cost(b.kind)
        if v is not None and v > b.limit:
            parts.append(f"the {'fastest' if b.kind == 'latency_ms' else 'smallest'} of {len(measured)} measured "
                         f"candidates, {best.name}, has {_COST[b.kind]} {_fmt(b.kind, v)} on "
                         f"{', '.join(t.split('?')[0] for t in targets)} > {_fmt(b.kind, b.limit)}")
            relax.append(f"{b.kind}={v:.3g}" if b.kind == "latency_ms" else f"{b.kind}={v:.0f}")
    if not parts:
        return ConfigError(f"no candidate meets the budget and the requirements together ({len(measured)} measured)",
                           stage=STAGE, hint="relax the --require terms or the budget; fit.json lists each reason")
    more = []
    if max(space.get("threads") or [1]) < 2:
        more.append("more threads (--threads 1,2)")
    if "int8" not in (space.get("precisions") or []):
        more.append("int8 (--precisions fp32,int8)")
    if not space.get("resolutions"):
        more.append("a lower input resolution (--resolutions)")
    more.append("smaller widths (--widths) or other --families")
    budget_text = ", ".join(f"{b.kind}<={b.limit:g}" for b in budgets)
    return ConfigError(f"no candidate meets {budget_text}: " + "; ".join(parts), stage=STAGE,
                       hint=f"relax the budget to {' and '.join(relax)} or more, or widen the search: {', '.join(more)}")


def best_deploy(cands: Sequence[Candidate]) -> dict[Arch, Candidate]:
    """Each architecture's feasible deployment with the lowest slowest-target p50 (ties: fp32, fewer threads)."""
    out: dict[Arch, Candidate] = {}
    for c in cands:
        if not c.feasible or c.worst_p50 is None:
            continue
        key = (c.worst_p50, c.deploy.precision != "fp32", c.deploy.threads)
        cur = out.get(c.arch)
        if cur is None or key < (cur.worst_p50, cur.deploy.precision != "fp32", cur.deploy.threads):  # type: ignore[operator]
            out[c.arch] = c
    return out


def proxy_set(cands: Sequence[Candidate], k: int, near: float = 0.1) -> list[Candidate]:
    """The architectures (in their best deployment) that get a proxy run; see the module docstring."""
    best = list(best_deploy(cands).values())
    keep = []
    for c in best:
        lat = c.worst_p50 or 0.0
        beaten = any(o is not c and (o.worst_p50 or 0.0) <= lat * (1 - near) and o.flops >= c.flops for o in best)
        tie_beaten = any(o is not c and (o.worst_p50 or 0.0) <= lat and o.flops >= c.flops
                         and ((o.worst_p50 or 0.0) < lat or o.flops > c.flops) for o in best)
        if not beaten:
            keep.append((tie_beaten, c))
    order = [c for _, c in sorted(keep, key=lambda t: (t[0], -(t[1].worst_p50 or 0.0)))]  # front first, largest first
    return _round_robin(order, k, lambda c: c.arch.family)


def _round_robin(items: Sequence[Candidate], k: int, group: Callable[[Candidate], Any]) -> list[Candidate]:
    """Up to ``k`` items (kept in their order within a group), one group after another in turn."""
    by: dict[Any, list[Candidate]] = {}
    for item in items:
        by.setdefault(group(item), []).append(item)
    out: list[Candidate] = []
    while len(out) < k and any(by.values()):
        for g in list(by):
            if by[g] and len(out) < k:
                out.append(by[g].pop(0))
    return out


def choose(cands: Sequence[Candidate]) -> Candidate:
    """The feasible candidate (its architecture's best deployment) with the best proxy validation accuracy."""
    best = [c for c in best_deploy(cands).values() if c.proxy is not None]
    if not best:
        raise ConfigError("no feasible candidate has a proxy result", stage=STAGE, hint="raise --proxies (>= 1)")
    return max(best, key=lambda c: (c.proxy.val_acc, -(c.worst_p50 or 0.0)))  # type: ignore[union-attr]


def fronts(cands: Sequence[Candidate], targets: Sequence[str]) -> dict[str, list[int]]:
    """Per target: indices (into ``cands``) of the proxied candidates on the accuracy/p50 front."""
    from edgekd.bench.html_report import pareto_front

    out = {}
    for url in targets:
        idx = [i for i, c in enumerate(cands) if c.proxy is not None and c.feasible and c.p50(url) is not None]
        pts = [(cands[i].p50(url), cands[i].proxy.val_acc) for i in idx]  # type: ignore[union-attr]
        out[url] = [idx[j] for j in pareto_front(pts)]  # type: ignore[arg-type]
    return out
