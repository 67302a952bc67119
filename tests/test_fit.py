# ruff: noqa: F811  (pytest fixtures imported from standins.fixtures are re-bound as arguments)
"""edgekd.fit: a tiny real search (2 families x 2 widths on the 8x8 digits, 1-epoch proxies) end to end on
``local`` and on the SSH stand-in, the latency table's reuse, resume after an interruption and after a lost
target, the impossible-budget message, bad input, and the pieces (trust, verdicts, the table) on their own.

Real exports, real runners, real training: nothing is mocked. The machine the suite runs on is shared, so
the end-to-end searches accept re-measured p50s that agree within 100% (``agree=1.0``); the stability rule
itself is tested on fixed rows (``test_trust_*``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from standins import start_sshd
from standins.fixtures import own_sshd  # noqa: F401

import edgekd
from edgekd import data, models
from edgekd.bench.results import BenchResult
from edgekd.bench.stats import Spread, Stats
from edgekd.edge.budget import parse_budget
from edgekd.errors import ConfigError, DataError, TargetError
from edgekd.fit.coverage import Exporter, FileCoverage
from edgekd.fit.measure import Measured, trust
from edgekd.fit.select import Candidate, classify, impossible, proxy_set
from edgekd.fit.space import Arch, Deploy, Space
from edgekd.fit.store import CoverageKey, LatencyStore, MeasureKey
from edgekd.models.saved import load_model, save_model

TINY = dict(families=("resnet", "resnet_plain"), widths=(0.25, 0.5), depths=(8,), precisions=("fp32",),
            proxy_epochs=1, proxy_limit=300, epochs=1, runs=30, warmup=3, agree=1.0, progress=False)

# Two students of a user's own module: one that torch.export cannot trace (data-dependent control flow),
# one with an op outside XNNPACK in both runtimes (cumsum).
USER_MODULE = '''
import torch
from torch import nn
from edgekd.models import register_model


class Branchy(nn.Module):
    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(in_channels, 4, 3, padding=1), nn.Linear(4, num_classes)

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:  # data-dependent: no graph can hold it
            y = y.relu()
        return self.fc(y.mean((2, 3)))


class Cumsum(nn.Module):
    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(in_channels, 4, 3, padding=1), nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(torch.cumsum(self.conv(x), dim=3).mean((2, 3)))


@register_model
def fit_test_branchy(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return Branchy(num_classes, in_channels)


@register_model
def fit_test_cumsum(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return Cumsum(num_classes, in_channels)
'''


@pytest.fixture(scope="module")
def digits() -> data.DataSplits:
    return data.load("digits")


@pytest.fixture(scope="module")
def teacher(digits, tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    kw = dict(num_classes=digits.num_classes, in_channels=digits.in_channels)
    t = edgekd.distill(None, models.create("resnet8", **kw), digits, method="ce", epochs=1, progress=False).model
    path = save_model(t, tmp_path_factory.mktemp("teacher") / "model.pt", "resnet8", **kw)
    return t, path


@pytest.fixture(scope="module")
def local_run(teacher, digits, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("fit_local")
    events: list[tuple[str, dict]] = []
    r = edgekd.fit(teacher[0], digits, target="local", budget="latency_ms=50", formats=("pte", "tflite"),
                   out=str(root / "out"), table=str(root / "table.sqlite"),
                   on_event=lambda k, i: events.append((k, i)), **TINY)
    return {"result": r, "events": events, "root": root, "table": root / "table.sqlite"}


def _kinds(events: list[tuple[str, dict]], kind: str) -> list[dict]:
    return [i for k, i in events if k == kind]


def test_search_end_to_end_on_local(local_run, digits) -> None:
    r, events = local_run["result"], local_run["events"]
    assert edgekd.fit is __import__("edgekd.fit").fit  # the package is the callable
    assert len(r.candidates) == 2 * 2 * 2  # 2 families x 2 widths x (pte, tflite), fp32, 1 thread
    assert {c.arch.family for c in r.candidates} == {"resnet", "resnet_plain"}
    assert {dict(c.arch.kwargs)["width"] for c in r.candidates} == {0.25, 0.5}
    for c in r.candidates:  # every file exported untrained, fully inside XNNPACK in both runtimes, measured here
        assert c.coverage is not None and c.coverage.ok and c.coverage.outside == {} and c.coverage.partitions >= 1
        assert c.measured["local"].source == "measured" and c.p50("local") > 0
        assert c.verdict == "feasible", (c.name, c.reason)
    assert len(_kinds(events, "exported")) == 8 and len(_kinds(events, "measured")) == 8
    assert LatencyStore(local_run["table"]).counts()["latency"] == 8
    proxied = [c for c in r.candidates if c.proxy is not None]
    assert 1 <= len({c.arch for c in proxied}) <= 6
    assert r.chosen.proxy.val_acc == max(c.proxy.val_acc for c in proxied)
    assert r.chosen.role == "chosen" and r.chosen.feasible
    # delivered: the full run's checkpoint rebuilds by name, the bundle holds the chosen deployment, benchmarked
    model, meta = load_model(r.model_path)
    assert meta["name"] == r.chosen.arch.model and meta["kwargs"]["width"] == dict(r.chosen.arch.kwargs)["width"]
    [f] = r.bundle.files
    assert (f.format, f.precision) == (r.chosen.deploy.format, r.chosen.deploy.precision) and f.parity.passed
    [b] = r.bench
    assert b.ok and b.accuracy is not None and b.threads == 1 and r.passed and not r.misses
    doc = json.loads((r.out / "fit.json").read_text())
    assert doc["status"] == "done" and doc["chosen"]["name"] == r.chosen.name and doc["final"]["passed"]
    assert doc["schedule"]["proxy"].startswith("1 epoch(s) of ce+kd from the teacher") and "300 train" in doc[
        "schedule"]["proxy"]
    assert doc["targets"][0]["runtimes"]["tflite"].startswith("python:tflite:ai-edge-litert==")
    page = (r.out / "report" / "index.html").read_text()
    assert "Fit: the student for latency_ms ≤ 50" in page and (r.out / "report" / "fit_front.png").is_file()
    assert r.chosen.arch.name in page


def test_second_run_measures_nothing_it_knows(local_run, teacher, tmp_path: Path, capsys) -> None:
    from edgekd.cli import main

    out = tmp_path / "again"
    code = main(["fit", "--teacher", str(teacher[1]), "--data", "digits", "--budget", "latency_ms=50",
                 "--families", "resnet,resnet_plain", "--widths", "0.25,0.5", "--depths", "8", "--formats",
                 "pte,tflite", "--precisions", "fp32", "--proxy-epochs", "1", "--proxy-limit", "300",
                 "--agree", "1", "--table", str(local_run["table"]), "--out", str(out), "--search-only",
                 "--no-progress"])
    assert code == 0
    doc = json.loads((out / "fit.json").read_text())
    assert doc["counts"]["measured"] == 0 and doc["counts"]["exported"] == 0  # no runner ran, no file was written
    assert doc["counts"]["measurements_reused"] == 8 and doc["counts"]["exports_reused"] == 8
    assert not (out / "measure").exists() and not (out / "candidates").exists()
    assert {c["source"]["local"] for c in doc["candidates"]} == {"table"}
    assert "chosen:" in capsys.readouterr().out


def test_impossible_budget_names_the_fastest_and_what_to_relax(local_run, digits, teacher, tmp_path: Path) -> None:
    events: list = []
    with pytest.raises(ConfigError) as e:
        edgekd.fit(teacher[0], digits, budget="latency_ms=0.00001", formats=("pte", "tflite"),
                   out=str(tmp_path / "o"), table=str(local_run["table"]), on_event=lambda k, i: events.append(k),
                   **TINY)
    fastest = min(local_run["result"].candidates, key=lambda c: c.p50("local"))
    text = str(e.value)
    assert "no candidate meets latency_ms<=1e-05" in text and "fastest of 8 measured" in text
    assert fastest.name in text and f"{fastest.p50('local'):.3g} ms" in text
    assert f"relax the budget to latency_ms={fastest.p50('local'):.3g}" in text and "--threads 1,2" in text
    assert events == []  # everything came from the table
    assert json.loads((tmp_path / "o" / "fit.json").read_text())["status"] == "failed"


def test_interrupted_search_resumes_without_measuring_again(teacher, digits, tmp_path: Path) -> None:
    table, out = str(tmp_path / "t.sqlite"), str(tmp_path / "out")
    kw = {**TINY, "families": ("resnet",), "widths": (0.25, 0.5, 0.75), "formats": ("tflite",), "table": table,
          "out": out, "search_only": True, "proxies": 1}
    first: list = []

    def stop_after_two(kind: str, info: dict) -> None:
        first.append(kind)
        if first.count("measured") == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        edgekd.fit(teacher[0], digits, budget="latency_ms=50", on_event=stop_after_two, **kw)
    assert json.loads((Path(out) / "fit.json").read_text())["status"] == "interrupted"
    assert LatencyStore(table).counts()["latency"] == 2
    with pytest.raises(ConfigError, match="--resume"):  # the folder holds the interrupted run
        edgekd.fit(teacher[0], digits, budget="latency_ms=50", **kw)
    again: list = []
    r = edgekd.fit(teacher[0], digits, budget="latency_ms=50", resume=True, on_event=lambda k, i: again.append(k),
                   **kw)
    assert again.count("measured") == 1 and again.count("exported") == 1  # only the third candidate
    assert r.counts["measurements_reused"] == 2 and r.counts["exports_reused"] == 2
    assert len(r.candidates) == 3 and all(c.feasible for c in r.candidates)


def test_ssh_stand_in_end_to_end_and_a_target_lost_mid_search(teacher, digits, own_sshd, tmp_path: Path) -> None:
    table, out = str(tmp_path / "t.sqlite"), str(tmp_path / "out")
    kw = {**TINY, "formats": ("tflite",), "table": table, "out": out}

    seen: list = []

    def kill_after_two(kind: str, info: dict) -> None:
        seen.append(kind)
        if seen.count("measured") == 2:
            own_sshd.stop()

    with pytest.raises(TargetError) as e:
        edgekd.fit(teacher[0], digits, target=own_sshd.url(), budget="latency_ms=50", on_event=kill_after_two, **kw)
    assert "was lost" in str(e.value) and "--resume" in str(e.value) and "2 measurement(s)" in str(e.value)
    assert LatencyStore(table).counts()["latency"] == 2  # the rows measured before are kept
    back = start_sshd(tmp_path / "sshd_back")  # the board comes back (on another port: the same device)
    try:
        events: list = []
        r = edgekd.fit(teacher[0], digits, target=back.url(), budget="latency_ms=50", resume=True,
                       on_event=lambda k, i: events.append(k), **kw)
    finally:
        back.stop()
    assert events.count("measured") == 2  # only the two it had not measured
    assert r.counts["measurements_reused"] == 2 and len(r.candidates) == 4
    assert all(c.feasible for c in r.candidates), [(c.name, c.reason) for c in r.candidates]
    [b] = r.bench
    assert b.ok and b.target == back.url() and b.accuracy is not None and r.passed
    doc = json.loads((Path(out) / "fit.json").read_text())
    assert doc["targets"][0]["url"] == back.url() and doc["targets"][0]["device"]["where"] == "ssh://127.0.0.1"


def test_user_modules_failed_export_and_op_fallback(teacher, digits, tmp_path: Path) -> None:
    mod = tmp_path / "my_students.py"
    mod.write_text(USER_MODULE)
    kw = dict(families=("fit_test_branchy", "fit_test_cumsum"), formats=("pte", "tflite"), precisions=("fp32",),
              modules=(str(mod),), proxy_limit=200, runs=20, warmup=2, agree=1.0, search_only=True, progress=False,
              table=str(tmp_path / "t.sqlite"))
    try:
        r = edgekd.fit(teacher[0], digits, budget="latency_ms=50", out=str(tmp_path / "a"), **kw)
        by = {(c.arch.model, c.deploy.format): c for c in r.candidates}
        for fmt in ("pte", "tflite"):
            assert by["fit_test_branchy", fmt].verdict == "failed export"  # recorded; the search went on
            cum = by["fit_test_cumsum", fmt]
            assert cum.feasible and cum.coverage.outside  # flagged, not dropped
            assert any("outside XNNPACK" in f for f in cum.flags)
        assert by["fit_test_cumsum", "pte"].coverage.outside == {"aten.cumsum.default": 1}
        assert by["fit_test_cumsum", "tflite"].coverage.outside == {"CUMSUM": 1}
        assert r.chosen.arch.model == "fit_test_cumsum"
        with pytest.raises(ConfigError, match="no candidate could be measured|no candidate meets"):
            edgekd.fit(teacher[0], digits, budget="latency_ms=50", strict_delegation=True, out=str(tmp_path / "b"),
                       **kw)
        doc = json.loads((tmp_path / "b" / "fit.json").read_text())
        assert {c["verdict"] for c in doc["candidates"]} == {"failed export", "op fallback"}
        assert doc["counts"]["measured"] == 0 and doc["counts"]["exported"] == 0  # all from the table
    finally:
        for name in ("fit_test_branchy", "fit_test_cumsum"):
            models.MODELS._items.pop(name, None)


def test_bad_input_fails_before_any_work(teacher, digits, tmp_path: Path) -> None:
    t = teacher[0]
    with pytest.raises(ConfigError, match=r"unknown unit 'us'.*latency_ms") as e:
        edgekd.fit(t, digits, budget="latency_ms=5us", out=str(tmp_path / "a"))
    assert "ms" in str(e.value.hint)
    with pytest.raises(ConfigError, match="cannot read budget 'fps=30'"):
        edgekd.fit(t, digits, budget="fps=30", out=str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="fit needs a budget"):
        edgekd.fit(t, digits, out=str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="unknown student family 'resnot'"):
        edgekd.fit(t, digits, budget="latency_ms=1", families=("resnot",), out=str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="int8 is not among the precisions"):
        edgekd.fit(t, digits, budget="latency_ms=1", qat=True, precisions=("fp32",), out=str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="did you mean 'widths'"):
        edgekd.fit(t, digits, budget="latency_ms=1", width=(0.5,), out=str(tmp_path / "a"))
    seven = models.create("resnet", depth=8, width=0.25, num_classes=7, in_channels=1)
    with pytest.raises(DataError, match=r"predicts 7 classes but digits has 10") as e:
        edgekd.fit(seven, digits, budget="latency_ms=1", out=str(tmp_path / "a"))
    assert "edgekd train --data digits" in str(e.value.hint)
    rgb = models.create("resnet8", num_classes=10, in_channels=3)
    with pytest.raises(DataError, match="cannot run on digits images of shape"):
        edgekd.fit(rgb, digits, budget="latency_ms=1", out=str(tmp_path / "a"))
    assert not (tmp_path / "a").exists()  # nothing was started


def test_cli_exit_codes_for_bad_input(teacher, capsys) -> None:
    from edgekd.cli import main

    assert main(["fit", "--teacher", str(teacher[1]), "--data", "digits", "--budget", "latency_ms=2us"]) == 2
    assert "unknown unit 'us'" in capsys.readouterr().err


# -- the pieces -----------------------------------------------------------------------------------------
def _row(samples: list[float], repeat: list[float] | None = None, error: str | None = None) -> BenchResult:
    r = BenchResult(target="local", model="m.tflite", model_name="m", key="tflite/fp32/litert-torch", format="tflite",
                    precision="fp32", converter="litert-torch", bytes=1000, latency_samples_ms=samples, error=error)
    if samples:
        r.latency_ms, r.spread = Stats.from_samples(samples), Spread.from_samples(samples)
    if repeat:
        r.repeat = {"p50s": repeat}
    return r


def test_trust_takes_stable_rows_and_re_measured_unstable_ones_that_agree() -> None:
    steady, jumpy = [1.0, 1.01, 0.99, 1.0] * 10, [0.7, 1.0, 1.3, 0.85, 1.15] * 8  # the bulk itself spreads
    assert trust(_row(steady), 0.05) == (True, "")
    assert trust(_row([1.0, 1.0, 1.0, 5.0] * 10), 0.05) == (True, "")  # a few preempted runs: the bulk is steady
    ok, why = trust(_row(jumpy), 0.05)
    assert not ok and why.startswith("unstable: robust CV")
    assert trust(_row(jumpy, repeat=[1.0, 1.02, 1.01]), 0.05) == (True, "")
    ok, why = trust(_row(jumpy, repeat=[1.0, 1.3, 1.01]), 0.05)
    assert not ok and "spread 30% > 5%" in why
    ok, why = trust(_row([], error="runner crashed"), 0.05)
    assert not ok and why.startswith("failed on device")


def _cand(width: float, fmt: str, p50: float, nbytes: int = 1000, flops: int = 0, outside: dict | None = None
          ) -> Candidate:
    arch = Arch("resnet", "resnet", (("depth", 8), ("width", width)))
    c = Candidate(arch, Deploy(fmt, "fp32", 1), (1, 1, 8, 8), params=int(width * 1000), flops=flops or int(width * 1e6),
                  coverage=FileCoverage(fmt, "fp32", bytes=nbytes, partitions=1, outside=outside or {}))
    c.measured = {"local": Measured(_row([p50] * 20), "measured")}
    return c


def test_verdicts_budget_kinds_strict_delegation_and_the_proxy_front() -> None:
    cands = [_cand(0.25, "pte", 0.5), _cand(0.5, "pte", 1.0), _cand(1.0, "pte", 3.0),
             _cand(0.5, "tflite", 0.96, outside={"CUMSUM": 1}), _cand(0.75, "tflite", 2.0, nbytes=500_000)]
    classify(cands, [parse_budget("latency_ms=2.5")], [], strict_delegation=True)
    assert [c.verdict for c in cands] == ["feasible", "feasible", "over budget", "op fallback", "feasible"]
    assert cands[2].reason == "p50 (slowest target) 3 ms > 2.5 ms"
    classify(cands, [parse_budget("latency_ms=2.5"), parse_budget("bytes=100KB")], [], strict_delegation=False)
    assert cands[3].feasible and cands[3].flags == ["op fallback: CUMSUM×1 outside XNNPACK"]
    assert cands[4].verdict == "over budget" and "file size 488.3 KB > 100.0 KB" in cands[4].reason
    front = proxy_set(cands, k=6)  # width 0.5 (pte, 1.0 ms) and its tflite twin: one architecture, best deploy
    assert [c.name for c in front] == ["resnet(depth=8,width=0.5) tflite/fp32/1t", "resnet(depth=8,width=0.25) pte/fp32/1t"]
    e = impossible(cands, [parse_budget("latency_ms=0.1")], {"threads": [1], "precisions": ["fp32"]}, ["local"])
    assert "the fastest of" in str(e) and "resnet(depth=8,width=0.25) pte/fp32/1t" in str(e)
    assert "latency_ms=0.5" in str(e.hint) and "--threads 1,2" in str(e.hint) and "int8" in str(e.hint)


def test_space_knobs_resolutions_and_registered_models() -> None:
    s = Space(families=("resnet", "mobilenetv2", "resnet8"), widths=(0.5,), depths=(8, 14), resolutions=(8, 6))
    names = [a.name for a in s.archs((8, 8))]
    assert names == ["resnet(depth=8,width=0.5)", "resnet(depth=8,width=0.5)@6x6", "resnet(depth=14,width=0.5)",
                     "resnet(depth=14,width=0.5)@6x6", "mobilenetv2(width=0.5)", "mobilenetv2(width=0.5)@6x6",
                     "resnet8()", "resnet8()@6x6"]
    plain = Space(families=("resnet_plain",), widths=(1.0,), depths=(8,)).archs((8, 8))[0]
    assert plain.model == "resnet_plain" and plain.kwargs == (("depth", 8), ("width", 1.0))
    from edgekd.models.resnet import BasicBlock

    blocks = [m for m in plain.build(10, 1).modules() if isinstance(m, BasicBlock)]
    assert blocks and not any(b.shortcut for b in blocks)
    assert len(Space(formats=("pte", "tflite"), precisions=("fp32", "int8"), threads=(1, 2)).deploys()) == 8
    with pytest.raises(ConfigError, match="unknown format 'onnx'"):
        Space(formats=("onnx",))
    default = Space()
    fams = default.family_names()
    assert "resnet" in fams and "mobilenetv2" in fams
    assert all(f.startswith("tv:") for f in default.skipped)  # torchvision families only where registered


def test_the_table_persists_across_processes_and_keys_by_every_part(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    key = MeasureKey('{"model": "resnet"}', (1, 1, 8, 8), "pte", "fp32", 1, "python:executorch:executorch==1.5.1",
                     "abc")
    LatencyStore(path).put_latency(key, _row([1.0] * 10).to_dict())
    again = LatencyStore(path)  # another connection, as another process would open it
    assert BenchResult.from_dict(again.latency(key)).latency_ms.p50 == 1.0
    for part in ({"threads": 2}, {"runtime": "python:executorch:executorch==1.6.0"}, {"device": "other"},
                 {"input_shape": (1, 1, 16, 16)}, {"precision": "int8"}):
        assert again.latency(MeasureKey(**{**key.__dict__, **part})) is None


def test_an_export_that_takes_the_process_down_is_retried_once_then_recorded(tmp_path: Path) -> None:
    store = LatencyStore(tmp_path / "t.sqlite")
    ex = Exporter(store, tmp_path / "c")
    arch = Arch("resnet", "resnet", (("depth", 8), ("width", 0.25)))
    key = ex.key(arch, (1, 1, 8, 8), "pte", "int8")
    assert isinstance(key, CoverageKey)
    store.put_coverage(key, {"state": "started", "tries": 1})  # a run died inside the converter
    assert ex.known(arch, (1, 1, 8, 8), "pte", "int8") is None  # tried again
    store.put_coverage(key, {"state": "started", "tries": 2})  # and died again
    cov = ex.known(arch, (1, 1, 8, 8), "pte", "int8")
    assert cov is not None and not cov.ok and "took the process down 2 times" in cov.error


def test_a_lower_resolution_candidate_trains_on_resized_images_against_the_full_size_teacher(teacher, digits) -> None:
    from edgekd.fit.proxy import Proxies, Resized, Schedule

    arch = Arch("resnet", "resnet", (("depth", 8), ("width", 0.25)), (6, 6))
    proxies = Proxies(teacher[0], digits, Schedule(epochs=1, limit=100))
    splits, t, cache = proxies.data(arch)
    assert tuple(splits.train.tensors[0].shape[1:]) == (1, 6, 6) and splits.image_size == (6, 6)
    assert len(splits.train) == 100 and isinstance(t, Resized) and cache is not None and len(cache) == 100
    assert splits.preprocessing().size == (6, 6)  # what the bundle tells an app to resize to
    assert t(splits.val.tensors[0][:2]).shape == (2, 10)  # the teacher sees its own 8x8
    r = proxies.run(arch, arch.build(10, 1))
    assert 0.0 <= r.val_acc <= 1.0 and r.name == "resnet(depth=8,width=0.25)@6x6"
    assert arch.input_shape(1, (8, 8)) == (1, 1, 6, 6)


@pytest.mark.slow
def test_qat_and_pruning_go_through_the_edge_pipeline(teacher, digits, tmp_path: Path) -> None:
    """``qat``/``prune``: the chosen student goes through edgekd.edge.pipeline.joint (KD -> prune -> KD + QAT) and
    its int8 file is lowered from the trained fake-quant graph (minutes on 2 cores: the slow tier)."""
    r = edgekd.fit(teacher[0], digits, budget="latency_ms=50", families=("resnet",), widths=(0.5,), depths=(8,),
                   formats=("tflite",), precisions=("fp32", "int8"), qat=True, prune=0.25, epochs=1, ft_epochs=1,
                   proxy_limit=200, runs=20, agree=1.0, out=str(tmp_path / "o"), table=str(tmp_path / "t.sqlite"),
                   progress=False)
    assert {c.deploy.precision for c in r.candidates} == {"int8"}  # QAT delivers int8 only
    [f] = r.bundle.files
    assert f.precision == "int8" and f.extra == {"quantization": "qat"} and f.parity.passed
    assert r.metrics["prune_ratio"] == 0.25 and "int8_acc" in r.metrics and r.passed
    model, meta = load_model(r.model_path)
    assert meta["channels"] == {"layer1.0": 6, "layer2.0": 12, "layer3.0": 24}  # 8/16/32 inner channels, 25 % cut


def test_a_search_requirement_reads_the_metrics_table() -> None:
    from edgekd.bench.gate import parse_require

    cands = [_cand(0.25, "pte", 0.5), _cand(0.5, "pte", 1.0)]
    classify(cands, [parse_budget("latency_ms=2.5")], parse_require("p50_ms<=0.8,accuracy>=0.99"),
             strict_delegation=False)
    assert [c.verdict for c in cands] == ["feasible", "misses requirement"]  # accuracy is judged after training
    assert cands[1].reason.endswith("p50_ms = 1, required <= 0.8")
