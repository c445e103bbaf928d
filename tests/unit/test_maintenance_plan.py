"""Pure parts of the rollup refresh, retention and the telemetry split."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.api.queries.rollup_plan import bucket_floor, plan, rollup_for
from backend.maintenance.config import RetentionConfig
from backend.maintenance.retention import CAGG_REFRESH_WINDOW, cutoffs
from backend.maintenance.rollup import closed_until, days_of, hour_batches

T = datetime(2026, 3, 10, 14, 37, 12, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)


def test_an_hour_closes_only_after_the_delay() -> None:
    assert closed_until(T, timedelta(minutes=15)) == T.replace(minute=0, second=0)
    assert closed_until(T.replace(minute=10), timedelta(minutes=15)) == T.replace(
        hour=13, minute=0, second=0
    )


def test_hour_batches_cover_the_range_without_gaps() -> None:
    start = T.replace(minute=0, second=0)
    batches = list(hour_batches(start, start + 14 * H, 6))
    assert batches == [
        (start, start + 6 * H),
        (start + 6 * H, start + 12 * H),
        (start + 12 * H, start + 14 * H),
    ]
    assert list(hour_batches(start, start, 6)) == []
    with pytest.raises(ValueError):
        list(hour_batches(start, start + H, 0))


def test_days_of_pairs_are_distinct_midnights() -> None:
    day = datetime(2026, 3, 10, tzinfo=UTC)
    pairs = [("b", day + 3 * H), ("a", day + 23 * H), ("a", day + H), ("a", day + 25 * H)]
    assert days_of(pairs) == [("a", day), ("a", day + D), ("b", day)]


def test_raw_retention_never_passes_the_rollup_watermark() -> None:
    config = RetentionConfig()
    now = T
    late_watermark = now - timedelta(days=500)
    assert cutoffs(config, now, None)["reading"] is None
    assert cutoffs(config, now, late_watermark)["reading"] == late_watermark
    assert cutoffs(config, now, now)["reading"] == now - timedelta(days=400)
    assert cutoffs(config, now, now)["reading_daily_rollup"] is None
    assert cutoffs(config, now, None)["uplink_message"] == now - timedelta(days=400)
    short = RetentionConfig(reading_days=1, uplink_message_days=1)
    assert cutoffs(short, now, None, "timescale")["reading"] == now - CAGG_REFRESH_WINDOW


def test_rollup_tables_by_bucket_width() -> None:
    assert rollup_for(timedelta(minutes=15)) is None
    assert rollup_for(H) == rollup_for(6 * H) == "reading_hourly_rollup"
    assert rollup_for(D) == "reading_daily_rollup"
    assert rollup_for(timedelta(minutes=90)) is None


def test_the_split_reads_ragged_edges_and_the_tail_raw() -> None:
    start = datetime(2026, 3, 1, 7, 20, tzinfo=UTC)
    end = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
    watermark = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)
    hourly = plan(start, end, H, watermark)
    assert hourly.rollup == "reading_hourly_rollup"
    assert hourly.rollup_range == (start.replace(hour=8, minute=0), watermark)
    assert hourly.raw_ranges == ((start, start.replace(hour=8, minute=0)), (watermark, end))
    daily = plan(start, end, D, watermark)
    assert daily.rollup == "reading_daily_rollup"
    assert daily.rollup_range == (
        datetime(2026, 3, 2, tzinfo=UTC),
        datetime(2026, 3, 4, tzinfo=UTC),
    )
    assert daily.raw_ranges == (
        (start, datetime(2026, 3, 2, tzinfo=UTC)),
        (datetime(2026, 3, 4, tzinfo=UTC), end),
    )
    assert plan(start, end, H, None).rollup is None
    assert plan(start, end, timedelta(minutes=5), watermark).raw_ranges == ((start, end),)


@given(
    start=st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ),
    length=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40)),
    watermark=st.none()
    | st.datetimes(
        min_value=datetime(2024, 12, 1), max_value=datetime(2027, 3, 1), timezones=st.just(UTC)
    ).map(lambda t: t.replace(minute=0, second=0, microsecond=0)),
    width=st.sampled_from([H, 6 * H, D]),
)
def test_the_split_covers_the_window_exactly_with_whole_rolled_buckets(
    start: datetime, length: timedelta, watermark: datetime | None, width: timedelta
) -> None:
    end = start + length
    split = plan(start, end, width, watermark)
    pieces = list(split.raw_ranges)
    if split.rollup_range is not None:
        lo, hi = split.rollup_range
        assert watermark is not None and hi <= watermark
        assert bucket_floor(lo, width) == lo and bucket_floor(hi, width) == hi
        assert start <= lo < hi <= end
        pieces.append(split.rollup_range)
    pieces.sort()
    # consecutive, non-overlapping, from start to end
    assert pieces[0][0] == start or (start == end)
    assert pieces[-1][1] == end
    assert all(a[1] == b[0] for a, b in pairwise(pieces))
    # a raw piece never shares a bucket with the rolled-up piece
    if split.rollup_range is not None:
        lo, hi = split.rollup_range
        for a, b in split.raw_ranges:
            assert b <= lo or a >= hi
