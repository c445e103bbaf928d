"""Plain-text tables: aligned columns, numbers right-aligned with separators."""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench.harness.registry import Row
from bench.harness.stats import Summary

HEADERS = ("benchmark", "metric", "value", "unit", "notes")


def format_value(value: float | None) -> str:
    """A figure for people: thousands separated, precision that fits its size.

    ``48213.7`` -> ``48,214``; ``12.345`` -> ``12.3``; ``0.01234`` -> ``0.0123``.
    ``None`` (a benchmark that failed) -> ``-``.
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude == 0:
        return "0"
    return f"{value:.3g}"


def summary_note(summary: Summary, extra: str = "") -> str:
    """``median of 3 (min 47,900, max 51,020)``, plus ``extra`` if given."""
    if summary.count == 1:
        note = "1 run"
    else:
        note = (
            f"median of {summary.count} "
            f"(min {format_value(summary.minimum)}, max {format_value(summary.maximum)})"
        )
    return f"{note}; {extra}" if extra else note


def format_table(rows: Sequence[Row], headers: Sequence[str] = HEADERS) -> str:
    """The rows as an aligned text table with a header and a rule under it.

    Text columns are left-aligned, the value column right-aligned, and the last
    column is not padded (no trailing spaces).
    """
    cells = [
        [row.benchmark, row.metric, format_value(row.value), row.unit, row.notes] for row in rows
    ]
    table = [list(headers), *cells]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    right = {2}

    def render(line: Sequence[str]) -> str:
        parts = []
        for i, cell in enumerate(line):
            if i == len(line) - 1:
                parts.append(cell)
            elif i in right:
                parts.append(cell.rjust(widths[i]))
            else:
                parts.append(cell.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(table[0]), rule, *(render(line) for line in cells)]) + "\n"


def format_markdown(rows: Sequence[Row], headers: Sequence[str] = HEADERS) -> str:
    """The same rows as a Markdown table (for ``docs/benchmarks.md``)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join("---:" if i == 2 else "---" for i in range(len(headers))) + " |",
    ]
    for row in rows:
        values = [row.benchmark, row.metric, format_value(row.value), row.unit, row.notes]
        lines.append("| " + " | ".join(cell(v) for v in values) + " |")
    return "\n".join(lines) + "\n"
