# ruff: noqa: F811  (pytest fixtures imported from standins.fixtures are re-bound as arguments)
"""A built wheel works on its own, and ``import edgekd`` is cheap.

The wheel is built with ``python -m build`` (the sdist, then the wheel from the sdist, as a release does) from a
clean copy of the sources plus the native runner bundles in ``build/native/<abi>/bundle`` (the real x86_64
bundle, which ``runtimes/cpp/build.sh`` builds here, and an aarch64 bundle that ``make_bundle.py`` makes around a
small cross-compiled stand-in runner: building the real aarch64 one is the slow tier's job,
tests/test_native_aarch64.py, which also benchs a bare arm64 device from a wheel carrying it). It is installed
(not editable) into a fresh venv outside the repository. That venv cannot download the ~4.7 GB stack, so a
``.pth`` file lists the site-packages of the interpreter running the tests: a ``.pth`` line only appends the
folder to ``sys.path`` (after the venv's own site-packages) and does not run that folder's ``.pth`` hooks, so
the editable edgekd installed there stays invisible and ``edgekd`` must come from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from standins.fixtures import adb_server, adbd, own_adbd  # noqa: F401

from edgekd.bench.runner_bundle import RunnerBundle
from edgekd.bundle import Bundle, ModelFile, TensorSpec, sha256_of

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "edgekd", "runtimes/python/edgekd_runner.py", "runtimes/cpp",
           "runtimes/README.md")


def _env() -> dict[str, str]:
    """This environment without anything that would put the checkout (or its native build) in reach."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "EDGEKD_NATIVE_DIR")}
    return {**env, "PYTHONNOUSERSITE": "1"}


def _run(*cmd: str | Path, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=_env(), cwd=cwd)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p


STUB = r"""
#include <cstdio>
int main() {
  std::printf("{\"event\":\"result\",\"runtime\":\"stub\",\"latency_samples_ms\":[1.5],"
              "\"machine\":{\"machine\":\"aarch64\"}}\n");
  return 0;
}
"""


def build_native_bundles(dest: Path, aarch64: Path | None = None) -> dict[str, RunnerBundle]:
    """``dest/build/native/<abi>/bundle`` for x86_64 (the real one, built by build.sh) and aarch64 (``aarch64``
    when given, else a bundle around a cross-compiled stand-in runner); abi -> the bundle."""
    p = subprocess.run(["bash", str(ROOT / "runtimes/cpp/build.sh"), "--arch", "x86_64", "--python", sys.executable],
                       capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, f"build.sh failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    out = dest / "build" / "native"
    shutil.copytree(ROOT / "build/native/x86_64/bundle", out / "x86_64" / "bundle")
    if aarch64 is not None:
        shutil.copytree(aarch64, out / "aarch64" / "bundle")
    else:
        gxx = shutil.which("aarch64-linux-gnu-g++")
        assert gxx, "aarch64-linux-gnu-g++ is needed (apt-get install g++-aarch64-linux-gnu; scripts/system-deps.sh)"
        stub = dest / "stub"
        stub.mkdir()
        (stub / "stub.cpp").write_text(STUB)
        subprocess.run([gxx, "-O1", "-o", str(stub / "edgekd_runner"), str(stub / "stub.cpp")], check=True)
        subprocess.run([sys.executable, str(ROOT / "runtimes/cpp/make_bundle.py"), "--arch", "aarch64", "--runner",
                        str(stub / "edgekd_runner"), "--lib-dir", str(stub), "--runtime", "stub=1", "--out",
                        str(out / "aarch64" / "bundle")], check=True, capture_output=True)
    return {abi: RunnerBundle.load(out / abi / "bundle") for abi in ("x86_64", "aarch64")}


def install_wheel(work: Path, aarch64: Path | None = None) -> tuple[Path, Path, dict[str, RunnerBundle]]:
    """Build sdist + wheel with ``python -m build`` from a clean copy of the sources and the native bundles, and
    install the wheel into a fresh venv: (the venv, the dist folder, abi -> the bundle that went in)."""
    src = work / "src"
    for rel in SOURCES:  # what a release builds from: no build/, egg-info or caches of the checkout
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / rel).is_dir():
            shutil.copytree(ROOT / rel, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / rel, dest)
    bundles = build_native_bundles(src, aarch64)
    env = {**_env(), "EDGEKD_WHEEL_NATIVE": "require"}
    p = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(work / "dist"), str(src)],
                       capture_output=True, text=True, timeout=900, env=env)
    assert p.returncode == 0, f"python -m build failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    (wheel,) = (work / "dist").glob("edgekd-*.whl")
    venv = work / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel)
    purelib = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "zz_edgekd_test_deps.pth").write_text("".join(f"{p}\n" for p in deps))
    return venv, work / "dist", bundles


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, RunnerBundle]]:
    return install_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def venv(built: tuple[Path, Path, dict[str, RunnerBundle]]) -> Path:
    """A fresh venv with edgekd installed from a wheel built here, and the test interpreter's dependencies."""
    return built[0]


def test_the_installed_wheel_is_what_runs(venv: Path) -> None:
    out = _run(venv / "bin" / "python", "-c",
               "import edgekd, edgekd.bench.targets.local as t; print(edgekd.__file__); print(t.runner_path())",
               cwd=venv).stdout.split()
    package, runner = Path(out[0]).resolve(), Path(out[1]).resolve()
    assert venv.resolve() in package.parents, f"edgekd came from {package}, not the fresh venv"
    assert runner.parent == package.parent / "runtimes" and runner.name == "edgekd_runner.py"
    assert runner.read_bytes() == (ROOT / "runtimes" / "python" / "edgekd_runner.py").read_bytes()


def test_edgekd_bench_runs_from_the_wheel(venv: Path, tiny_models: object, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    files = []
    for src, fmt, converter in ((tiny_models.tflite, "tflite", "litert-torch"), (tiny_models.pte, "pte", "executorch")):
        name = f"model_fp32.{fmt}"
        shutil.copy(src, bundle / name)
        spec = (TensorSpec("input", (1, 1, 8, 8), "float32", "NCHW"),)
        files.append(ModelFile(name, fmt, "fp32", converter, (bundle / name).stat().st_size, sha256_of(bundle / name),
                               spec, (TensorSpec("output", (1, 10), "float32"),)))
    Bundle(bundle, "tiny", files[0].inputs, files[0].outputs, files).save()
    run = tmp_path / "run"
    p = _run(venv / "bin" / "edgekd", "bench", bundle, "--runs", "3", "--warmup", "1", "--threads", "1",
             "--eval-data", tiny_models.eval, "--out", run, "--no-progress", cwd=tmp_path)
    assert "tflite" in p.stdout and "pte" in p.stdout
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert [(r["format"], r["runtime"], r["error"]) for r in rows] == [("tflite", "tflite", None),
                                                                        ("pte", "executorch", None)]
    assert all(r["accuracy"] == pytest.approx(tiny_models.eager_accuracy, abs=0.02) for r in rows)
    described = json.loads((run / "summary.json").read_text())["target"]
    assert venv.resolve() in Path(described["runner"]).resolve().parents  # the runner the wheel ships


def _package(venv: Path) -> Path:
    return Path(_run(venv / "bin" / "python", "-c", "import edgekd; print(edgekd.__file__)", cwd=venv).stdout.strip()
                ).parent


def test_the_wheel_and_the_sdist_carry_both_native_bundles(built) -> None:  # noqa: ANN001
    venv, dist, bundles = built
    (wheel,) = dist.glob("edgekd-*.whl")
    (sdist,) = dist.glob("edgekd-*.tar.gz")
    assert wheel.name.endswith("-py3-none-any.whl")  # the bundles are device payloads, not host extensions
    with zipfile.ZipFile(wheel) as z, tarfile.open(sdist) as t:
        in_wheel = {n for n in z.namelist() if "/runtimes/native/" in n}
        in_sdist = {n.split("/", 1)[1] for n in t.getnames() if "/build/native/" in n}
    for abi, b in bundles.items():
        names = {*b.files, "SHA256SUMS", "bundle.json"}
        assert {f"edgekd/runtimes/native/{abi}/bundle/{n}" for n in names} <= in_wheel
        assert {f"build/native/{abi}/bundle/{n}" for n in names} <= in_sdist
        installed = RunnerBundle.load(_package(venv) / "runtimes" / "native" / abi / "bundle")  # sha256s checked
        assert installed.sha256 == b.sha256 and installed.abi == abi
        for name in (b.loader, b.entry):
            assert os.access(installed.path / name, os.X_OK), f"{name} lost its exec bit"


def test_bench_from_the_wheel_pushes_the_bundle_of_the_device_abi(venv: Path, built, tiny_models, adbd, own_adbd,  # noqa: ANN001
                                                                  tmp_path: Path) -> None:
    """`edgekd bench --target adb://...` from the installed wheel, no checkout and no build around: a device
    without Python gets the bundle the wheel carries for its ABI (x86_64 here: it runs; an aarch64 device, the
    aarch64 one: pushed, checked by sha256)."""
    bundles = built[2]
    for daemon, abi in ((adbd, "x86_64"), (own_adbd, "aarch64")):
        if abi == "aarch64":
            (daemon.shim / "uname").write_text("#!/bin/sh\necho aarch64\n")
            (daemon.shim / "uname").chmod(0o755)
        dev = tmp_path / f"dev_{abi}"
        url = daemon.url(python="/no/such/python3", workdir=str(dev))
        p = subprocess.run([str(venv / "bin" / "edgekd"), "bench", str(tiny_models.tflite), "--target", url,
                            "--runs", "2", "--warmup", "0", "--threads", "1", "--out", str(tmp_path / abi),
                            "--no-progress"], capture_output=True, text=True, timeout=600, env=_env(), cwd=tmp_path)
        [row] = [json.loads(line) for line in (tmp_path / abi / "results.jsonl").read_text().splitlines()]
        folder = dev / "native" / f"{abi}-{bundles[abi].sha256[:16]}"
        assert folder.is_dir(), (p.stdout[-1000:], p.stderr[-2000:])
        assert {f.name: sha256_of(f) for f in folder.iterdir()} == bundles[abi].expected_sums()
        assert row["runner"] == "native"
        if abi == "x86_64":  # the real runner, from the wheel's package data
            assert p.returncode == 0 and row["error"] is None and row["runtime"] == "tflite", p.stderr[-2000:]
            assert row["interpreter"].startswith("edgekd_runner (native C++)")
        else:  # runs where qemu-user is registered for aarch64, else a clear "could not start" row
            assert row["error"] is None or "could not start on the device" in row["error"], row["error"]
            assert "Traceback" not in p.stderr


def _fresh(code: str) -> str:
    return _run(sys.executable, "-c", code, cwd=ROOT).stdout.strip()


def test_import_edgekd_is_cheap_and_imports_no_torch() -> None:
    """``import edgekd`` takes well under 0.5 s and loads no heavy backend until a stage is used."""
    code = ("import sys, time; t = time.perf_counter(); import edgekd; dt = time.perf_counter() - t; "
            "edgekd.Bundle, edgekd.EdgekdError; "
            "heavy = [m for m in ('torch', 'numpy', 'executorch', 'tensorflow', 'litert_torch') if m in sys.modules]; "
            "print(dt, ','.join(heavy) or '-')")
    runs = [_fresh(code).split() for _ in range(3)]
    assert {r[1] for r in runs} == {"-"}, f"import edgekd imported {runs[0][1]}"
    assert min(float(r[0]) for r in runs) < 0.5, runs
    assert _fresh("import sys, edgekd; edgekd.distill; print('torch' in sys.modules)") == "True"  # lazy, not absent


def test_the_cli_parser_imports_no_torch() -> None:
    """``edgekd --help`` (and every flag of ``train``/``distill``) comes from plain dataclasses, not the trainer."""
    assert _fresh("import sys; from edgekd.cli import build_parser; build_parser(); print('torch' in sys.modules)") \
        == "False"
