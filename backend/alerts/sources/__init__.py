"""Signal sources: each reads its rows and maps them with a pure function.

Every source returns a ``SourceResult``; a row the mapping refuses is
counted in ``bad_rows`` (and logged), never raised, so one bad row cannot
stop the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from backend.alerts.signals import Signal


class BadRow(ValueError):
    """A row a source cannot turn into a signal (the reason says why)."""


@dataclass
class SourceResult:
    signals: list[Signal] = field(default_factory=list)
    bad_rows: int = 0
    # events whose device clock was far ahead of their reception (taken as received)
    clock_ahead: int = 0
    # alert_engine_cursor positions to store with the evaluation's writes
    cursors: dict[str, datetime] = field(default_factory=dict)
