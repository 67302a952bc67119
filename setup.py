"""Build hook (everything else is in pyproject.toml): ship the device runner inside the wheel.

``runtimes/python/edgekd_runner.py`` stays the one source of the runner (it is copied to boards and
phones as it is, and never imports edgekd); a built wheel carries a copy as
``edgekd/runtimes/edgekd_runner.py``, which :func:`edgekd.bench.targets.local.runner_path` finds
when no source checkout is around.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

RUNNER = Path("runtimes") / "python" / "edgekd_runner.py"


class BuildPyWithRunner(build_py):
    def run(self) -> None:
        super().run()
        dest = Path(self.build_lib) / "edgekd" / "runtimes" / RUNNER.name
        self.mkpath(str(dest.parent))
        self.copy_file(str(Path(__file__).resolve().parent / RUNNER), str(dest))


setup(cmdclass={"build_py": BuildPyWithRunner})
