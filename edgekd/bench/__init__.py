"""Benchmarking: run the device runner on a target, collect typed results, render tables.

``benchmark(bundle_or_file, target="local")`` is the entry point; results are appended to a
JSONL file as each file finishes, so an interrupted run loses nothing and can resume.
"""

from __future__ import annotations

from edgekd.bench.harness import benchmark
from edgekd.bench.report import format_table, write_summary
from edgekd.bench.results import BenchResult
from edgekd.bench.stats import Stats

__all__ = ["BenchResult", "Stats", "benchmark", "format_table", "write_summary"]
