"""A built wheel works on its own, and ``import edgekd`` is cheap.

The wheel is built from a clean copy of the sources and installed (not editable) into a fresh venv
outside the repository. That venv cannot download the ~4.7 GB stack, so a ``.pth`` file lists the
site-packages of the interpreter running the tests: a ``.pth`` line only appends the folder to
``sys.path`` (after the venv's own site-packages) and does not run that folder's ``.pth`` hooks, so
the editable edgekd installed there stays invisible and ``edgekd`` must come from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.bundle import Bundle, ModelFile, TensorSpec, sha256_of

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "edgekd", "runtimes/python/edgekd_runner.py",
           "runtimes/README.md")


def _env() -> dict[str, str]:
    """This environment without anything that would put the checkout on sys.path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "PYTHONNOUSERSITE": "1"}


def _run(*cmd: str | Path, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=_env(), cwd=cwd)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with edgekd installed from a wheel built here, and the test interpreter's dependencies."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    for rel in SOURCES:  # what a release builds from: no build/, egg-info or caches of the checkout
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / rel).is_dir():
            shutil.copytree(ROOT / rel, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / rel, dest)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", work / "dist", src)
    (wheel,) = (work / "dist").glob("edgekd-*.whl")
    env = work / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", env)
    python = env / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel)
    purelib = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "zz_edgekd_test_deps.pth").write_text("".join(f"{p}\n" for p in deps))
    return env


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
