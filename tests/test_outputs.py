"""A full disk or an unwritable folder while exporting or benchmarking: one message naming the stage, the file
or folder and the fix; nothing half-written under a final name; rows already measured stay readable.

The full disk is a real one: a tmpfs of a few pages (``mount -t tmpfs -o size=...``), filled where needed;
the unwritable folder is a read-only tmpfs (root ignores permission bits, so chmod would prove nothing).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgekd.bench import benchmark
from edgekd.bench.results import RESULTS, load_results
from edgekd.cli import main
from edgekd.errors import OutputError
from edgekd.files import atomic_path, write_atomic

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def _mount(path: Path, opts: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if p.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    return path


@pytest.fixture
def disks(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(a tmpfs of 64 KB, a read-only tmpfs)."""
    full, ro = _mount(tmp_path / "small", "size=64k"), _mount(tmp_path / "ro", "size=64k,ro")
    yield full, ro
    for p in (full, ro):
        subprocess.run(["umount", "-l", str(p)], check=False)


def _fill(folder: Path) -> None:
    """Fill the file system of ``folder`` to the last byte."""
    with open(folder / "pad", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC


def _visible_and_hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "pad")


def test_atomic_writes_leave_the_old_file_or_nothing(disks: tuple[Path, Path]) -> None:
    full, _ = disks
    write_atomic(full / "a.json", "old", stage="test")
    _fill(full)
    with pytest.raises(OutputError) as e:
        write_atomic(full / "a.json", "x" * 100_000, stage="test", what="the thing")
    assert e.value.stage == "test" and f"cannot write the thing {full / 'a.json'}" in e.value.message
    assert f"the disk holding {full} is full" in e.value.message and "free space there" in str(e.value.hint)
    assert (full / "a.json").read_text() == "old" and _visible_and_hidden(full) == ["a.json"]
    with pytest.raises(OutputError), atomic_path(full / "b.bin", stage="test") as tmp:
        tmp.write_bytes(b"y" * 100_000)  # a writer that fails half way: no b.bin, no temporary file
    assert _visible_and_hidden(full) == ["a.json"]


def test_export_to_a_full_disk_and_to_a_read_only_folder(disks: tuple[Path, Path]) -> None:
    from conftest import trained_tiny_cnn

    import edgekd

    full, ro = disks
    model, x, _ = trained_tiny_cnn()
    _fill(full)
    kw = dict(formats=("pte",), precision=("fp32",), parity_data=x[1500:1520], progress=False)
    with pytest.raises(OutputError) as e:
        edgekd.export(model, (x[:1],), out_dir=full, **kw)
    assert e.value.stage == "export/pte"
    assert f"cannot write the fp32 .pte file {full / 'model_fp32.pte'}: the disk holding {full} is full" in str(e.value)
    assert "export to another folder (--out DIR)" in str(e.value.hint)
    assert _visible_and_hidden(full) == []  # no model file, no temporary file, no manifest
    with pytest.raises(OutputError) as e:
        edgekd.export(model, (x[:1],), out_dir=ro / "bundle", **kw)
    assert e.value.stage == "export" and f"{ro} is on a read-only file system" in e.value.message
    with pytest.raises(OutputError, match="read-only file system"):
        edgekd.export(model, (x[:1],), out_dir=ro, **kw)


def test_bench_on_a_full_disk_keeps_the_rows_it_wrote_and_names_the_one_it_could_not(
        tiny_models, disks: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    full, ro = disks
    [first] = benchmark(tiny_models.tflite, out_dir=full, runs=2, warmup=0, threads=1, progress=False)
    assert first.ok
    size = (full / RESULTS).stat().st_size
    _fill(full)
    with pytest.raises(OutputError) as e:
        benchmark(tiny_models.tflite_int8, out_dir=full, runs=400, warmup=0, threads=1, progress=False)
    text = str(e.value)
    assert e.value.stage == "bench" and f"cannot write the results file {full / RESULTS}" in text
    assert "is full" in text and "the result of tiny_int8.tflite [tflite/int8/" in text and "was not saved" in text
    assert (full / RESULTS).stat().st_size == size  # no half row
    assert [Path(r.model).name for r in load_results(full / RESULTS)] == ["tiny.tflite"]
    assert not load_results(full / RESULTS).skipped
    code = main(["bench", str(tiny_models.tflite), "--out", str(ro / "run"), "--runs", "1", "--warmup", "0",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "edgekd: error: bench: cannot write the folder" in err and "read-only file system" in err
    assert "Traceback" not in err
    assert json.loads(json.dumps(first.to_dict()))["status"] == "ok"
