"""The README's Python API is what users type first: every ```python block must run as written.

Each block runs in a fresh interpreter (as a user's ``python`` would), in an empty folder, with
``EDGEKD_MAX_EPOCHS=2`` so every training loop it starts stops after two epochs, and its own cache folder.
(Two, not one: after one epoch the API block's student is at ~25 % and its int8 file's agreement with it sat
at the 0.90 parity threshold, 0.88 in one run out of several.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.S | re.M)


def test_readme_has_python_blocks() -> None:
    assert BLOCKS, "README.md has no ```python block; this test would check nothing"


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code: str, tmp_path: Path) -> None:
    env = {**os.environ, "EDGEKD_MAX_EPOCHS": "2", "PYTHONPATH": str(ROOT),
           "EDGEKD_CACHE_DIR": str(tmp_path / "cache")}  # edgekd.fit's latency table: a fresh one, not ~/.cache
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, f"README block failed:\n{code}\n--- stderr ---\n{p.stderr[-3000:]}"


def test_public_api_is_callable_after_importing_every_stage() -> None:
    """``edgekd.export`` once resolved to the subpackage ``edgekd/export/``: importing a stage's package
    must never shadow the function of the same stage."""
    code = ("import edgekd, edgekd.convert, edgekd.distillation, edgekd.quantization, edgekd.bench.harness\n"
            "import edgekd.fit\n"
            "print(' '.join(n for n in ('distill', 'quantize', 'export', 'benchmark', 'fit')"
            " if not callable(getattr(edgekd, n))))")
    p = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "", f"not callable: {p.stdout.strip()}"


def test_max_epochs_env_caps_training(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.distillation.trainer import TrainConfig
    from edgekd.errors import ConfigError

    monkeypatch.setenv("EDGEKD_MAX_EPOCHS", "2")
    with pytest.warns(UserWarning, match="2 epoch"):
        assert TrainConfig(epochs=7).epochs == 2
    assert TrainConfig(epochs=1).epochs == 1
    monkeypatch.setenv("EDGEKD_MAX_EPOCHS", "zero")
    with pytest.raises(ConfigError, match="EDGEKD_MAX_EPOCHS"):
        TrainConfig(epochs=3)
