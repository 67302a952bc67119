"""The arithmetic behind benchmarks/kd_methods.py's table: gap recovered, agreement, KL."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def kd_methods():  # noqa: ANN201 - a module
    sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location("kd_methods", ROOT / "kd_methods.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_gap_recovered_and_step_ratio(kd_methods) -> None:  # noqa: ANN001
    rows = [{"method": "vanilla", "kind": "offline", "spec": "ce", "test_acc": a, "agree": 0.8, "kl": 0.3,
             "epoch_s": 10.0} for a in (0.80, 0.82)]
    rows += [{"method": "kd", "kind": "offline", "spec": "kd", "test_acc": a, "agree": 0.9, "kl": 0.1,
              "epoch_s": 12.0} for a in (0.85, 0.87)]
    summary = {r["method"]: r for r in kd_methods._summary(rows, teacher_acc=0.91)}
    assert summary["vanilla"]["gap_recovered"] == pytest.approx(0.0)
    assert summary["kd"]["gap_recovered"] == pytest.approx((0.86 - 0.81) / (0.91 - 0.81))
    assert summary["kd"]["acc_std"] == pytest.approx(math.sqrt(2 * 0.01**2))
    assert summary["kd"]["epoch_time_vs_vanilla"] == pytest.approx(1.2)
    assert "| kd | offline | `kd` | 86.00 ± 1.41 | +50 % |" in kd_methods.table(list(summary.values()), 0.91)


def test_gap_recovered_is_paired_by_seed(kd_methods) -> None:  # noqa: ANN001
    """A one-seed row is measured against vanilla's run on that seed, not vanilla's mean."""
    row = {"kind": "offline", "agree": 0.9, "kl": 0.1, "epoch_s": 10.0}
    rows = [{**row, "method": "vanilla", "spec": "ce", "seed": s, "test_acc": a} for s, a in ((0, 0.80), (1, 0.84))]
    rows.append({**row, "method": "crd", "spec": "crd", "seed": 1, "test_acc": 0.86})
    rows.append({**row, "method": "odd", "spec": "kd", "seed": 7, "test_acc": 0.86})  # no vanilla run on seed 7
    summary = {r["method"]: r for r in kd_methods._summary(rows, teacher_acc=0.90)}
    assert summary["crd"]["gap_recovered"] == pytest.approx((0.86 - 0.84) / (0.90 - 0.84))
    assert summary["crd"]["paired_delta"] == [pytest.approx(0.02)]
    assert summary["odd"]["gap_recovered"] == pytest.approx((0.86 - 0.82) / (0.90 - 0.82))
    assert "paired_delta" not in summary["odd"]
    table = kd_methods.table(list(summary.values()), 0.90)
    assert "| 1 | +2.00 |" in table and "| 1 | — |" in table


def test_agreement_and_kl(kd_methods) -> None:  # noqa: ANN001
    t = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    assert kd_methods.agreement(t, t) == {"agree": 1.0, "kl": pytest.approx(0.0, abs=1e-7)}
    s = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    p = torch.softmax(t, -1)
    kl = float((p * (p.log() - torch.log_softmax(s, -1))).sum(-1).mean())
    got = kd_methods.agreement(t, s)
    assert got["agree"] == 0.5 and got["kl"] == pytest.approx(kl, rel=1e-6)


def test_bad_method_keeps_finished_runs(kd_methods, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """A typo in --only fails before anything is touched; a fresh start keeps the old runs as .bak."""
    monkeypatch.setattr(kd_methods, "HERE", tmp_path)
    runs = tmp_path / "results" / "kd_methods_work_long" / "runs.jsonl"
    runs.parent.mkdir(parents=True)
    runs.write_text('{"method": "vanilla", "seed": 0, "test_acc": 0.9}\n')
    with pytest.raises(SystemExit):
        kd_methods.main(["--budget", "long", "--only", "kd_t2,nosuch"])
    assert runs.read_text().startswith('{"method": "vanilla"')
    assert not runs.with_name("runs.jsonl.bak").exists()


SCRIPTS = sorted(p for p in [*ROOT.glob("*.py"), *ROOT.glob("investigations/*.py")] if not p.name.startswith("_"))


def test_every_benchmark_script_imports_and_parses_help() -> None:
    """Each script under benchmarks/ (and benchmarks/investigations/) still imports the package as it is laid out now and builds its parser."""
    import os
    import subprocess

    assert SCRIPTS, "no benchmark scripts found"
    env = {**os.environ, "PYTHONPATH": str(ROOT.parent)}
    failed = []
    for pair in (SCRIPTS[i:i + 2] for i in range(0, len(SCRIPTS), 2)):  # two at a time: a 2-core machine
        procs = [(p, subprocess.Popen([sys.executable, str(p), "--help"], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT.parent)) for p in pair]
        for p, proc in procs:
            out, err = proc.communicate(timeout=300)
            if proc.returncode != 0 or "usage:" not in out:
                failed.append(f"{p.name}: exit {proc.returncode}\n{err[-1500:]}")
    assert not failed, "\n\n".join(failed)
