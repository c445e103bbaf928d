"""Incremental refresh of the dashboard rollups (Apache edition) and latest values.

The Apache edition of TimescaleDB has no continuous aggregates, so the backend
keeps ``reading_hourly_rollup`` and ``reading_daily_rollup`` itself:

1. **late data** first: telemetry messages received since the previous scan
   (``uplink_message.received_at``, minus a settle margin) whose readings fall
   in hours already rolled up name the (device, hour) pairs to roll up again;
2. **closed hours** next: every hour between the watermark (``rolled_until``)
   and ``now - close_delay``, a few hours per transaction, each transaction
   moving the watermark with its rows;
3. each **day** is built from its hourly rows when its last hour is rolled
   up, and rebuilt for the devices that got late data (samples-weighted
   sums, so a day's mean is the mean of its raw readings up to
   floating-point rounding); the telemetry route reads a day from the daily
   table only once it is complete. In the same transaction the day's
   per-device energy and per-site rows are built, or rebuilt for the
   (device, day) pairs of late data (backend/maintenance/site_rollup.py);
4. ``reading_latest`` takes the newest reading of every series that sent
   something since the previous scan, ignoring readings stamped more than
   ``latest_lead`` after ``now`` (a device clock ahead would otherwise freeze
   the series' latest value until its date).

Late data older than raw retention keeps (a device clock fallen back to
its build date is still a valid timestamp) is not rolled up again: that hour's
other readings are gone, and the rollup rebuilt from the few late ones
would replace the real hourly row (and its day, energy and site rows).
Such (device, hour) pairs are counted in ``late_too_old`` and logged.

Every write is an upsert recomputed from the source rows, so a refresh that
stops half-way (or runs twice) leaves correct rows; a session advisory lock
keeps two refreshers from working at once. On the full edition continuous
aggregates and their policies do steps 1-3 for hours and days; the site
tables are built here for the closed days since the watermark and again for
the days the daily aggregate's policy may still change; step 4 runs as is.

Why received_at finds late data: ingest stamps each message on reception and
writes its readings in the same transaction, and a reading's ts is its
message's ts in Lumeau's firmware (``reading_lead`` allows some distance).
A message committed more than ``settle`` after its stamp while refreshes
kept running (an ingest worker cut off from a live database) escapes the
scan; a database outage does not, since no refresh runs during it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg

from backend.maintenance import site_rollup
from backend.maintenance.config import RetentionConfig, RollupConfig
from backend.storage.edition import timescaledb_edition

log = logging.getLogger(__name__)

ROLLUP_LOCK_KEY: Final = 0x4C554D4541550014
HOUR: Final = timedelta(hours=1)
DAY: Final = timedelta(days=1)
# First refresh: latest values are looked for this far back only (a full scan
# of a year of readings is not worth it for devices silent that long).
FIRST_LATEST_WINDOW: Final = timedelta(days=7)
# Full edition: the daily aggregate's policy re-aggregates this much of the
# past (0014's start_offset), so the site tables rebuild it at every refresh.
FULL_EDITION_LATE_WINDOW: Final = timedelta(days=4)

Pair = tuple[str, datetime]  # (device_id, start of an hour or a day)


@dataclass
class RefreshReport:
    """What one refresh did."""

    edition: str = "apache"
    skipped: bool = False  # another refresher held the lock
    hours_rolled: int = 0
    late_pairs: int = 0
    # late (device, hour) pairs older than raw retention keeps: left as they are
    late_too_old: int = 0
    days_rebuilt: int = 0
    energy_days: int = 0
    site_days: int = 0
    latest_rows: int = 0
    rolled_until: datetime | None = None
    transactions: int = 0
    notes: list[str] = field(default_factory=list)


# --- pure helpers -------------------------------------------------------------


def floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def floor_day(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def closed_until(now: datetime, close_delay: timedelta) -> datetime:
    """End of the last hour that may be rolled up: it ended ``close_delay`` ago."""
    return floor_hour(now - close_delay)


def hour_batches(
    start: datetime, stop: datetime, batch_hours: int
) -> Iterator[tuple[datetime, datetime]]:
    """``[start, stop)`` in consecutive ranges of at most ``batch_hours`` hours."""
    if batch_hours < 1:
        raise ValueError("batch_hours must be >= 1")
    step = batch_hours * HOUR
    lo = start
    while lo < stop:
        hi = min(lo + step, stop)
        yield lo, hi
        lo = hi


def days_of(pairs: Sequence[Pair]) -> list[Pair]:
    """The distinct (device, day) pairs of (device, hour) pairs, sorted."""
    return sorted({(device, floor_day(hour)) for device, hour in pairs})


def split_too_old(
    pairs: Sequence[Pair], raw_kept_from: datetime | None
) -> tuple[list[Pair], list[Pair]]:
    """(pairs to roll up again, pairs whose day began before raw retention's cutoff).

    Retention drops whole chunks, so an hour before the cutoff may be partly
    gone or hold only the late readings: its rollup cannot be rebuilt. Days,
    not hours: a late pair also rebuilds its day's energy from raw readings.
    """
    ordered = sorted(pairs)
    if raw_kept_from is None:
        return ordered, []
    keep = [p for p in ordered if floor_day(p[1]) >= raw_kept_from]
    old = [p for p in ordered if floor_day(p[1]) < raw_kept_from]
    return keep, old


def chunked(items: Sequence[Pair], size: int) -> Iterator[Sequence[Pair]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --- SQL ------------------------------------------------------------------------

_UPSERT: Final = (
    " ON CONFLICT (device_id, metric, channel, bucket) DO UPDATE SET"
    " samples = EXCLUDED.samples, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max"
)

_ROLL_HOURS: Final = (
    "INSERT INTO reading_hourly_rollup (bucket, device_id, channel, metric, samples, sum, min, max)"
    " SELECT time_bucket(INTERVAL '1 hour', time), device_id, channel, metric,"
    " count(*), sum(value), min(value), max(value)"
    " FROM reading WHERE time >= %(lo)s AND time < %(hi)s"
    " GROUP BY 1, device_id, channel, metric" + _UPSERT
)

_ROLL_DAYS: Final = (
    "INSERT INTO reading_daily_rollup (bucket, device_id, channel, metric, samples, sum, min, max)"
    " SELECT time_bucket(INTERVAL '1 day', bucket), device_id, channel, metric,"
    " sum(samples)::bigint, sum(sum), min(min), max(max)"
    " FROM reading_hourly_rollup WHERE bucket >= %(lo)s AND bucket < %(hi)s"
    " GROUP BY 1, device_id, channel, metric" + _UPSERT
)

# The constant bounds (lo, hi) let TimescaleDB exclude chunks at plan time;
# the join then probes reading_device_time per pair.
_REROLL_HOURS: Final = (
    "INSERT INTO reading_hourly_rollup (bucket, device_id, channel, metric, samples, sum, min, max)"
    " SELECT d.bucket, r.device_id, r.channel, r.metric,"
    " count(*), sum(r.value), min(r.value), max(r.value)"
    " FROM unnest(%(devices)s::text[], %(buckets)s::timestamptz[]) AS d(device_id, bucket)"
    " JOIN reading r ON r.device_id = d.device_id"
    " AND r.time >= d.bucket AND r.time < d.bucket + INTERVAL '1 hour'"
    " WHERE r.time >= %(lo)s AND r.time < %(hi)s"
    " GROUP BY d.bucket, r.device_id, r.channel, r.metric" + _UPSERT
)

_REROLL_DAYS: Final = (
    "INSERT INTO reading_daily_rollup (bucket, device_id, channel, metric, samples, sum, min, max)"
    " SELECT d.bucket, h.device_id, h.channel, h.metric,"
    " sum(h.samples)::bigint, sum(h.sum), min(h.min), max(h.max)"
    " FROM unnest(%(devices)s::text[], %(buckets)s::timestamptz[]) AS d(device_id, bucket)"
    " JOIN reading_hourly_rollup h ON h.device_id = d.device_id"
    " AND h.bucket >= d.bucket AND h.bucket < d.bucket + INTERVAL '1 day'"
    " WHERE h.bucket >= %(lo)s AND h.bucket < %(hi)s"
    " GROUP BY d.bucket, h.device_id, h.channel, h.metric" + _UPSERT
)

_LATE_MESSAGES: Final = (
    "CREATE TEMP TABLE late_message ON COMMIT DROP AS"
    " SELECT device_id, boot_id, seq, time FROM uplink_message"
    " WHERE received_at >= %(scan_from)s AND kind = 'telemetry'"
    " AND time < %(rolled_until)s + %(lead)s"
)

_LATE_PAIRS: Final = (
    "SELECT DISTINCT r.device_id, time_bucket(INTERVAL '1 hour', r.time)"
    " FROM late_message m JOIN reading r"
    " ON r.device_id = m.device_id AND r.boot_id = m.boot_id AND r.seq = m.seq"
    " AND r.time >= m.time - %(lead)s AND r.time <= m.time + %(lead)s"
    " WHERE r.time >= %(lo)s AND r.time < %(rolled_until)s"
)

# A stored latest value beyond the horizon (from before the horizon existed)
# gives way to the newest plausible one.
_UPSERT_LATEST: Final = (
    "INSERT INTO reading_latest (device_id, channel, metric, time, value)"
    " SELECT DISTINCT ON (device_id, channel, metric) device_id, channel, metric, time, value"
    " FROM reading WHERE time >= %(lo)s AND time <= %(horizon)s{devices}"
    " ORDER BY device_id, channel, metric, time DESC"
    " ON CONFLICT (device_id, channel, metric) DO UPDATE"
    " SET time = EXCLUDED.time, value = EXCLUDED.value"
    " WHERE EXCLUDED.time > reading_latest.time OR reading_latest.time > %(horizon)s"
)


# --- the refresh ---------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    rolled_until: datetime
    scanned_until: datetime


def refresh(
    conn: psycopg.Connection[Any],
    config: RollupConfig,
    *,
    now: datetime | None = None,
    retention: RetentionConfig | None = None,
) -> RefreshReport:
    """One incremental refresh; ``conn`` must be in autocommit mode.

    ``now`` (default: the database's clock) decides which hours are closed
    and is recorded as the new scan position. ``retention`` (default: the
    built-in one) says how old late data may be and still be rolled up again.
    """
    if not conn.autocommit:
        raise ValueError("refresh() manages its own transactions: pass an autocommit connection")
    report = RefreshReport(edition=timescaledb_edition(conn))
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ROLLUP_LOCK_KEY,)).fetchone()
    if row is None or not row[0]:
        report.skipped = True
        report.notes.append("another refresh is running")
        return report
    try:
        _refresh_locked(conn, config, retention or RetentionConfig(), report, now)
    finally:
        if not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ROLLUP_LOCK_KEY,))
    return report


def _refresh_locked(
    conn: psycopg.Connection[Any],
    config: RollupConfig,
    retention: RetentionConfig,
    report: RefreshReport,
    now: datetime | None,
) -> None:
    if now is None:
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        now = row[0]
    assert now is not None
    state = _read_state(conn)
    scan_from = state.scanned_until - config.settle if state is not None else None
    if state is None:
        state = _initial_state(conn, now, config)
    if report.edition == "apache":
        if scan_from is not None:
            raw_kept_from = (
                None
                if retention.reading_days is None
                else now - timedelta(days=retention.reading_days)
            )
            _reroll_late(conn, config, report, state.rolled_until, scan_from, raw_kept_from)
        rolled = _roll_closed_hours(conn, config, report, state.rolled_until, now)
        report.rolled_until = rolled
    else:
        _roll_site_days_full_edition(conn, config, report, state.rolled_until, now)
    _update_latest(conn, config, report, scan_from, now)
    with conn.transaction():
        conn.execute(
            "UPDATE rollup_state SET scanned_until = %s, updated_at = now() WHERE name = 'reading'",
            (now,),
        )
    report.transactions += 1


def _read_state(conn: psycopg.Connection[Any]) -> _State | None:
    row = conn.execute(
        "SELECT rolled_until, scanned_until FROM rollup_state WHERE name = 'reading'"
    ).fetchone()
    return _State(row[0], row[1]) if row is not None else None


def _initial_state(conn: psycopg.Connection[Any], now: datetime, config: RollupConfig) -> _State:
    """Start the watermark at the oldest reading's hour (or now when there is none)."""
    row = conn.execute("SELECT min(time) FROM reading").fetchone()
    oldest = row[0] if row is not None else None
    start = floor_hour(oldest) if oldest is not None else closed_until(now, config.close_delay)
    with conn.transaction():
        conn.execute(
            "INSERT INTO rollup_state (name, rolled_until, scanned_until)"
            " VALUES ('reading', %s, %s) ON CONFLICT (name) DO NOTHING",
            (start, now),
        )
    state = _read_state(conn)
    assert state is not None
    return state


def _roll_closed_hours(
    conn: psycopg.Connection[Any],
    config: RollupConfig,
    report: RefreshReport,
    rolled_until: datetime,
    now: datetime,
) -> datetime:
    stop = closed_until(now, config.close_delay)
    for lo, hi in hour_batches(rolled_until, stop, config.batch_hours):
        with conn.transaction():
            conn.execute(_ROLL_HOURS, {"lo": lo, "hi": hi})
            # Days that this batch completes; a day is built once, when its
            # last hour is rolled up, not again at every hour of it.
            day_lo, day_hi = floor_day(lo), floor_day(hi)
            if day_lo < day_hi:
                conn.execute(_ROLL_DAYS, {"lo": day_lo, "hi": day_hi})
                _count_sites(report, site_rollup.roll_days(conn, day_lo, day_hi))
            conn.execute(
                "UPDATE rollup_state SET rolled_until = %s, updated_at = now()"
                " WHERE name = 'reading'",
                (hi,),
            )
        report.transactions += 1
        report.hours_rolled += int((hi - lo) / HOUR)
        report.days_rebuilt += int((day_hi - day_lo) / DAY)
        rolled_until = hi
    return rolled_until


def _roll_site_days_full_edition(
    conn: psycopg.Connection[Any],
    config: RollupConfig,
    report: RefreshReport,
    rolled_until: datetime,
    now: datetime,
) -> None:
    """Full edition: the continuous aggregates hold hours and days; build the
    site tables of the closed days since the watermark, and again those the
    daily aggregate's policy may still change (late data of its window).

    Not exercised on the development machine (Apache edition).
    """
    stop = floor_day(closed_until(now, config.close_delay))
    start = min(floor_day(rolled_until), stop - FULL_EDITION_LATE_WINDOW)
    for lo, hi in hour_batches(start, stop, max(24, config.batch_hours // 24 * 24)):
        with conn.transaction():
            _count_sites(report, site_rollup.roll_days(conn, lo, hi))
            conn.execute(
                "UPDATE rollup_state SET rolled_until = greatest(rolled_until, %s),"
                " updated_at = now() WHERE name = 'reading'",
                (hi,),
            )
        report.transactions += 1
        report.rolled_until = hi


def _reroll_late(
    conn: psycopg.Connection[Any],
    config: RollupConfig,
    report: RefreshReport,
    rolled_until: datetime,
    scan_from: datetime,
    raw_kept_from: datetime | None,
) -> None:
    lead = config.reading_lead
    with conn.transaction():
        conn.execute(
            _LATE_MESSAGES, {"scan_from": scan_from, "rolled_until": rolled_until, "lead": lead}
        )
        row = conn.execute("SELECT min(time) FROM late_message").fetchone()
        oldest = row[0] if row is not None else None
        if oldest is None:
            return
        pairs: list[Pair] = [
            (device, bucket)
            for device, bucket in conn.execute(
                _LATE_PAIRS, {"lead": lead, "lo": oldest - lead, "rolled_until": rolled_until}
            ).fetchall()
        ]
    report.transactions += 1
    pairs, too_old = split_too_old(pairs, raw_kept_from)
    if too_old:
        report.late_too_old = len(too_old)
        log.warning(
            "%d late (device, hour) pair(s) older than raw retention keeps (%s) not rolled"
            " up again (a device clock fallen back?), e.g. %s at %s",
            len(too_old),
            raw_kept_from,
            too_old[0][0],
            too_old[0][1].isoformat(),
        )
    report.late_pairs = len(pairs)
    for batch in chunked(pairs, config.batch_pairs):
        with conn.transaction():
            conn.execute(_REROLL_HOURS, _pair_params(batch, HOUR))
        report.transactions += 1
    days = days_of(pairs)
    for batch in chunked(days, config.batch_pairs):
        with conn.transaction():
            conn.execute(_REROLL_DAYS, _pair_params(batch, DAY))
            _count_sites(report, site_rollup.reroll_pairs(conn, batch))
        report.transactions += 1
    report.days_rebuilt += len(days)
    if pairs:
        log.info("rolled up again %d (device, hour) pairs that received late data", len(pairs))


def _count_sites(report: RefreshReport, done: site_rollup.SiteReport) -> None:
    report.energy_days += done.energy_days
    report.site_days += done.site_days


def _pair_params(batch: Sequence[Pair], width: timedelta) -> dict[str, Any]:
    starts = [start for _, start in batch]
    return {
        "devices": [device for device, _ in batch],
        "buckets": starts,
        "lo": min(starts),
        "hi": max(starts) + width,
    }


def _update_latest(
    conn: psycopg.Connection[Any],
    config: RollupConfig,
    report: RefreshReport,
    scan_from: datetime | None,
    now: datetime,
) -> None:
    """Newest value per series, from the readings of messages received since the scan."""
    with conn.transaction():
        if scan_from is None:
            statement = _UPSERT_LATEST.format(devices="")
            params: dict[str, Any] = {"lo": now - FIRST_LATEST_WINDOW}
        else:
            row = conn.execute(
                "SELECT min(time), array_agg(DISTINCT device_id) FROM uplink_message"
                " WHERE received_at >= %s AND kind = 'telemetry'",
                (scan_from,),
            ).fetchone()
            if row is None or row[0] is None:
                return
            statement = _UPSERT_LATEST.format(devices=" AND device_id = ANY(%(devices)s)")
            params = {"lo": row[0] - config.reading_lead, "devices": row[1]}
        params["horizon"] = now + config.latest_lead
        cur = conn.execute(statement, params)
        report.latest_rows = max(cur.rowcount, 0)
    report.transactions += 1
