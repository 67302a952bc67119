"""Build hook (everything else is in pyproject.toml): ship the device runners inside the wheel.

``runtimes/python/edgekd_runner.py`` stays the one source of the Python runner (it is copied to boards
and phones as it is, and never imports edgekd); a built wheel carries a copy as
``edgekd/runtimes/edgekd_runner.py``, which :func:`edgekd.bench.targets.local.runner_path` finds when no
source checkout is around.

The native runner bundles that ``make native`` / ``make native-aarch64`` leave in
``build/native/<abi>/bundle/`` (the C++ runner, its runtime libraries and its own glibc) go in as
``edgekd/runtimes/native/<abi>/bundle/``, where :func:`edgekd.bench.runner_bundle.find_bundle` finds them
after the checkout's own build folder: ``pip install edgekd-*.whl`` then profiles a phone over adb with no
checkout, cross compiler or build. A bundle that is not built is left out with a warning (the wheel
still works with the Python runner); ``EDGEKD_WHEEL_NATIVE=require`` makes a missing or unchecked
bundle an error instead (a release build). Each bundle is checked against its ``bundle.json`` first.

``python -m build`` makes the sdist first and the wheel from it; setuptools leaves ``build/`` out of every
sdist, so the sdist command puts the checked bundles back into its tree (``build/native/<abi>/bundle``),
and the wheel built from that sdist carries them too.
"""

import importlib.util
import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
RUNNER = Path("runtimes") / "python" / "edgekd_runner.py"
NATIVE_ABIS = ("x86_64", "aarch64")
MAKE = {"x86_64": "make native", "aarch64": "make native-aarch64"}


def _bundle_problem(folder: Path, abi: str) -> str | None:
    """make_bundle.py's own check (every file against bundle.json), loaded from its file: stdlib only."""
    spec = importlib.util.spec_from_file_location("edgekd_make_bundle", HERE / "runtimes" / "cpp" / "make_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.problem(folder, abi)


def _bundles(warn) -> dict[str, Path]:  # noqa: ANN001
    """abi -> the checked bundle folder under build/native, for each bundle that is built."""
    require = os.environ.get("EDGEKD_WHEEL_NATIVE", "").lower() == "require"
    found = {}
    for abi in NATIVE_ABIS:
        src = HERE / "build" / "native" / abi / "bundle"
        problem = _bundle_problem(src, abi)
        if problem is None:
            found[abi] = src
            continue
        text = f"edgekd: no native runner bundle for {abi} ({problem}); build it first: {MAKE[abi]}"
        if require:
            raise SystemExit(text)
        warn(text + " -- building without it")
    return found


class BuildPyWithRunners(build_py):
    def run(self) -> None:
        super().run()
        runtimes = Path(self.build_lib) / "edgekd" / "runtimes"
        self.mkpath(str(runtimes))
        self.copy_file(str(HERE / RUNNER), str(runtimes / RUNNER.name))
        for abi, src in _bundles(self.warn).items():
            _copy_bundle(self, src, runtimes / "native" / abi / "bundle")


class SdistWithBundles(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        for abi, src in _bundles(self.warn).items():
            _copy_bundle(self, src, Path(base_dir) / "build" / "native" / abi / "bundle")


def _copy_bundle(cmd, src: Path, dest: Path) -> None:  # noqa: ANN001
    cmd.mkpath(str(dest))
    for f in sorted(src.iterdir()):
        cmd.copy_file(str(f), str(dest / f.name))  # keeps the mode: the loader and runner stay executable


setup(cmdclass={"build_py": BuildPyWithRunners, "sdist": SdistWithBundles})
