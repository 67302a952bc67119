"""The one place edgekd's version is written (``pyproject.toml`` reads it; so do bundles and the CLI)."""

__version__ = "0.1.0"
