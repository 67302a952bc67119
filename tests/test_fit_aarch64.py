# ruff: noqa: F811  (pytest fixtures imported from other modules are re-bound as arguments)
"""Slow tier (``pytest -m slow``): a tiny ``edgekd.fit`` against the bare arm64 root of ``test_native_aarch64.py``.

The device has no Python and no libc (see that module): the search must find the native runner bundle
(``make native-aarch64``), push it once, measure every candidate there through qemu-user over ssh, keep
the rows in its latency table keyed by that device (aarch64 facts) and runtime (the bundle), and deliver
a student whose final benchmark ran there. Emulated timings mean nothing: the budget is wide and the
re-measurement of an unstable row only has to agree within 1000%; this shows that the search runs on an
aarch64 userland with nothing installed, not how fast a board is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from standins import Daemon, start_sshd
from test_native_aarch64 import DEVICE_ENV, WORKDIR, arm_bundle, bare_root  # noqa: F401

import edgekd
from edgekd import data, models
from edgekd.bench.runner_bundle import RunnerBundle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bare_sshd(bare_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = start_sshd(tmp_path_factory.mktemp("fit_bare_sshd"), device_root=bare_root, env=DEVICE_ENV)
    yield d
    d.stop()


def test_a_tiny_fit_measures_and_delivers_on_the_aarch64_stand_in(bare_sshd: Daemon, arm_bundle: RunnerBundle,
                                                                  tmp_path: Path) -> None:
    splits = data.load("digits")
    kw = dict(num_classes=splits.num_classes, in_channels=splits.in_channels)
    teacher = edgekd.distill(None, models.create("resnet8", **kw), splits, method="ce", epochs=1, progress=False).model
    url = bare_sshd.url(workdir=WORKDIR, timeout="300")
    events: list[str] = []
    r = edgekd.fit(teacher, splits, target=url, budget="latency_ms=1000", families=("resnet", "resnet_plain"),
                   widths=(0.25, 0.5), depths=(8,), formats=("pte", "tflite"), precisions=("fp32", "int8"), runs=5,
                   warmup=1, retries=2, agree=10.0, proxies=2, proxy_limit=200, epochs=1, table=str(tmp_path / "t.sqlite"),
                   out=str(tmp_path / "out"), on_event=lambda k, i: events.append(k), progress=False)
    assert len(r.candidates) == 16 and events.count("measured") == 16
    for c in r.candidates:
        row = c.measured[url].row
        assert row is not None and row.ok and row.runner == "native", (c.name, row and row.error)
        assert row.machine.get("machine") == "aarch64" or row.machine.get("arch") == "aarch64"
    target = r.doc["targets"][0]
    assert target["device"]["arch"] == "aarch64"
    assert target["runtimes"]["pte"] == target["runtimes"]["tflite"] == f"native:{arm_bundle.sha256[:16]}"
    [b] = r.bench
    assert b.ok and b.runner == "native" and b.accuracy is not None and r.passed
    print(f"FIT ON AARCH64: chose {r.chosen.name}; final accuracy {b.accuracy:.4f} on the device; "
          f"{sum(c.feasible for c in r.candidates)} of 16 feasible")  # for benchmarks/RESULTS.md (pytest -rP)
