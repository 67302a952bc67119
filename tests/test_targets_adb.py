"""The adb:// target through the real adb client against the adbd stand-in (tests/standins/adbd.py)."""

# ruff: noqa: F811  (pytest fixtures imported from standins.fixtures are re-bound as arguments)
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from standins import RUNNER_SRC
from standins.fixtures import adb_server, adbd, odd_dir  # noqa: F401

from edgekd.bench import benchmark
from edgekd.bench.devices import big_core_mask, list_devices, parse_facts
from edgekd.bench.targets import get_target
from edgekd.bench.targets.adb import adb_serials
from edgekd.cli import main
from edgekd.errors import TargetError


def test_adb_push_run_pull_with_odd_paths(tiny_models, adbd, odd_dir, tmp_path: Path) -> None:
    model = odd_dir / "it's a ; model_int8.tflite"
    shutil.copy(tiny_models.tflite_int8, model)
    workdir = odd_dir / "data local; tmp"
    url = adbd.url(workdir=str(workdir))
    [r] = benchmark(model, target=url, runs=3, warmup=1, threads=1, eval_data=tiny_models.eval,
                    out_dir=tmp_path / "run", progress=False)
    assert r.ok, r.error
    assert r.precision == "int8" and r.input["dtype"] == "int8" and len(r.latency_samples_ms) == 3
    assert r.accuracy is not None and r.accuracy > 0.5
    assert list(workdir.iterdir()) == []
    d = get_target(url).describe()
    assert d["kind"] == "adb" and d["facts"]["props"]["ro.product.model"] == "Pixel Stand-in"
    assert d["facts"]["props"]["ro.product.cpu.abi"] == "arm64-v8a" and d["facts"]["temp_c"] == 45.0


def test_native_runner_speaks_the_same_protocol(tiny_models, adbd, tmp_path: Path) -> None:
    native = tmp_path / "edgekd runner"
    native.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{RUNNER_SRC}" "$@"\n')
    native.chmod(0o755)
    [r] = benchmark(tiny_models.tflite, target=adbd.url(runner=str(native), workdir=str(tmp_path / "w")), runs=2,
                    warmup=0, out_dir=tmp_path / "run", progress=False)
    assert r.ok, r.error
    with pytest.raises(TargetError, match="native runner .* is not an executable"):
        get_target(adbd.url(runner=str(tmp_path / "missing"))).check()


def test_devices_lists_the_stand_in(adbd, capsys) -> None:
    serial = adbd.url_base.removeprefix("adb://")
    get_target(adbd.url()).check()  # connects it
    assert serial in adb_serials()
    rows = {d["url"]: d for d in list_devices()}
    assert rows["local"]["kind"] == "local" and rows[f"adb://{serial}"]["facts"]["props"]["ro.product.model"]
    assert main(["devices", "--target", "ssh://nobody@127.0.0.1:1?timeout=2"]) == 0
    out = capsys.readouterr().out
    assert "Pixel Stand-in" in out and "UNREACHABLE" in out and "ssh://nobody@127.0.0.1:1" in out


@pytest.mark.parametrize(("text", "key", "want"), [
    ("vcgencmd_temp=temp=48.3'C\nthermal_zone_milli_c=51000", "temp_c", 48.3),
    ("thermal_zone_milli_c=51000\nbattery_deci_c=312", "temp_c", 51.0),
    ("battery_deci_c=312", "temp_c", 31.2),
    ("throttled=throttled=0x50005", "throttled_now", True),
    ("throttled=throttled=0x0", "under_voltage_now", False),
    ("maxfreq.0=1800000\nmaxfreq.1=1800000\nmaxfreq.4=2400000\nmaxfreq.5=2400000", "maxfreq_khz",
     {0: 1800000, 1: 1800000, 4: 2400000, 5: 2400000}),
])
def test_parse_facts(text: str, key: str, want: object) -> None:
    assert parse_facts(text)[key] == want


def test_big_core_mask() -> None:
    assert big_core_mask(parse_facts("maxfreq.0=1800000\nmaxfreq.1=1800000\nmaxfreq.4=2400000\nmaxfreq.5=2400000")) == "30"
    assert big_core_mask(parse_facts("maxfreq.0=1800000\nmaxfreq.1=1800000")) is None
    assert big_core_mask({}) is None
