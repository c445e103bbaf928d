"""Printing: the demo's tables, as a person reads them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def table(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], command: str | None = None
) -> None:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    if command is not None:
        print(f"  $ {command}")
    for n, row in enumerate(cells):
        print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))
    if not rows:
        print("  (none)")
