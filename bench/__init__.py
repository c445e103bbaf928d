"""Lumeau's benchmarks: ``python -m bench`` (or ``lumeau bench``) runs them all.

Each benchmark is one function decorated with :func:`benchmark` in its own
module directly under ``bench/``; the runner finds the modules by itself.
"""

from __future__ import annotations

from bench.harness.context import Context, Services
from bench.harness.registry import REGISTRY, Benchmark, Result, Row, benchmark
from bench.harness.runner import add_arguments, main, run
from bench.harness.stats import percentile, summarize
from bench.harness.table import format_table, format_value, summary_note

__all__ = [
    "REGISTRY",
    "Benchmark",
    "Context",
    "Result",
    "Row",
    "Services",
    "add_arguments",
    "benchmark",
    "format_table",
    "format_value",
    "main",
    "percentile",
    "run",
    "summarize",
    "summary_note",
]
