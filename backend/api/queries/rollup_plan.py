"""Which part of a telemetry window the rollups can answer. Pure: no I/O.

A bucket of one hour or more is a whole number of hours aligned like
``time_bucket`` aligns it (TimescaleDB's default origin, Monday 2000-01-03
00:00 UTC: midnight for 6 h and 1 d), so it is either a sum of hourly
rollup rows (or one daily row) or not rollup-able at all. The rollups answer
the buckets that lie wholly inside ``[start, end)`` and wholly before the
rollups' watermark; raw readings answer the partial bucket at each edge of
the window and the tail that is not rolled up yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

ORIGIN: Final = datetime(2000, 1, 3, tzinfo=UTC)
HOUR: Final = timedelta(hours=1)
DAY: Final = timedelta(days=1)

Rollup = Literal["reading_hourly_rollup", "reading_daily_rollup"]
Range = tuple[datetime, datetime]


@dataclass(frozen=True)
class TelemetryPlan:
    rollup: Rollup | None
    rollup_range: Range | None
    raw_ranges: tuple[Range, ...]


def bucket_floor(at: datetime, width: timedelta) -> datetime:
    """``time_bucket(width, at)`` for widths without months."""
    return ORIGIN + ((at - ORIGIN) // width) * width


def bucket_ceil(at: datetime, width: timedelta) -> datetime:
    floor = bucket_floor(at, width)
    return floor if floor == at else floor + width


def rollup_for(width: timedelta) -> Rollup | None:
    """The rollup table whose rows add up to buckets of ``width``, if any."""
    if width >= DAY and width % DAY == timedelta(0):
        return "reading_daily_rollup"
    if width >= HOUR and width % HOUR == timedelta(0):
        return "reading_hourly_rollup"
    return None


def plan(
    start: datetime, end: datetime, width: timedelta, complete_until: datetime | None
) -> TelemetryPlan:
    """Split ``[start, end)`` between a rollup and raw readings.

    ``complete_until``: every reading before it is in the rollups (None:
    nothing is; a far-future time: everything is).
    """
    table = rollup_for(width)
    raw_only = TelemetryPlan(None, None, ((start, end),))
    if table is None or complete_until is None or start >= end:
        return raw_only
    first = bucket_ceil(start, width)
    last = bucket_floor(end, width)
    # width is a whole number of the rollup's rows, on the same grid: a
    # bucket that ends by complete_until is made of complete rows only.
    rolled = bucket_floor(min(complete_until, last), width)
    if first >= rolled:
        return raw_only
    raw: list[Range] = []
    if start < first:
        raw.append((start, first))
    if rolled < end:
        raw.append((rolled, end))
    return TelemetryPlan(table, (first, rolled), tuple(raw))
