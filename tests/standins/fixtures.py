"""Pytest fixtures over the stand-ins; a test module imports the ones it uses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from standins import Daemon, adb_server_env, start_adbd, start_sshd


@pytest.fixture(scope="session")
def adb_server() -> Iterator[int]:
    """A private adb server port for the whole session (killed at the end)."""
    from edgekd.bench.targets.adb import adb_path

    adb_path()  # skips nothing: adbutils always bundles a client
    with adb_server_env() as port:
        yield port


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield d
    d.stop()


@pytest.fixture(scope="session")
def adbd(tmp_path_factory: pytest.TempPathFactory, adb_server: int) -> Iterator[Daemon]:
    d = start_adbd(tmp_path_factory.mktemp("adbd"), adb_server)
    yield d
    d.stop()


@pytest.fixture
def own_sshd(tmp_path: Path) -> Iterator[Daemon]:
    """An sshd for one test, so the test may kill it."""
    d = start_sshd(tmp_path / "own_sshd")
    yield d
    d.stop()


@pytest.fixture
def own_adbd(tmp_path: Path, adb_server: int) -> Iterator[Daemon]:
    """An adbd stand-in for one test, so the test may kill it."""
    d = start_adbd(tmp_path / "own_adbd", adb_server)
    yield d
    d.stop()


@pytest.fixture
def odd_dir(tmp_path: Path) -> Path:
    """A folder whose name has a space, quotes and ';' (shell injection would show here)."""
    d = tmp_path / "dev dir; 'q' \"x\""
    d.mkdir()
    return d
