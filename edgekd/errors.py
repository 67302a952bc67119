"""Typed errors. Each names the stage that failed, the thing at fault and the fix.

Every error edgekd raises on bad input derives from :class:`EdgekdError`, so the CLI can print it
as one clear line and exit non-zero, while a traceback stays reserved for bugs.
"""

from __future__ import annotations


class EdgekdError(Exception):
    """Base class. ``stage`` is a short path such as ``"export/tflite"``; ``hint`` says what to do."""

    def __init__(self, message: str, *, stage: str = "edgekd", hint: str | None = None) -> None:
        self.stage = stage
        self.message = message
        self.hint = hint
        text = f"{stage}: {message}"
        if hint:
            text += f"\n  fix: {hint}"
        super().__init__(text)


class RegistryError(EdgekdError, KeyError):
    """An unknown name was looked up in a registry; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return Exception.__str__(self)


class DataError(EdgekdError):
    """A data set is missing or malformed."""


class ConfigError(EdgekdError, ValueError):
    """A bad option, weight, method string or YAML config."""


class ExportError(EdgekdError):
    """A converter failed or rejected an op."""


class ParityError(ExportError):
    """An exported file disagrees with eager PyTorch beyond the documented threshold."""


class ModelFileError(EdgekdError):
    """A model file is missing, truncated, corrupt or of an unknown format."""


class BenchError(EdgekdError):
    """A benchmark run failed on its target (runner error, timeout, dropped device)."""


class TargetError(BenchError):
    """A target could not be reached or is missing what the runner needs."""


class OutputError(EdgekdError):
    """A file or folder could not be written (disk full, read-only file system, no permission)."""


class MissingExtraError(EdgekdError, ImportError):
    """An optional backend is not installed; the hint is the ``pip install 'edgekd[...]'`` to run."""
