"""Rollups against device clocks that are wrong, on the real TimescaleDB (Apache edition).

A clock fallen back to its build date sends "late" data older than raw
retention keeps; a clock in 2099 sends readings from the future. Neither may
overwrite what the rollups and the latest values already hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import psycopg
import pytest

from backend.maintenance.config import RetentionConfig, RollupConfig
from backend.maintenance.retention import apply_retention
from backend.maintenance.rollup import refresh
from backend.storage.migrate import migrate
from backend.storage.scratch import scratch_database

if TYPE_CHECKING:
    from backend.devstack import Stack

pytestmark = pytest.mark.services

CONFIG = RollupConfig(batch_hours=24 * 31)
RETENTION = RetentionConfig(reading_days=30, uplink_message_days=30)


@pytest.fixture
def db(stack: object) -> Iterator[str]:
    services = cast("Stack", stack)
    with scratch_database(services.admin_database_url, services.database_url, "t_rolate") as url:
        migrate(url)
        yield url


_seq = iter(range(1, 1_000_000))


def add_reading(
    conn: psycopg.Connection[Any],
    device_id: str,
    at: datetime,
    value: float,
    *,
    received: datetime | None = None,
) -> None:
    """One telemetry message and its reading, as ingest stores them."""
    seq = next(_seq)
    conn.execute(
        "INSERT INTO uplink_message (time, device_id, boot_id, seq, kind, received_at)"
        " VALUES (%s, %s, 'b00tb00t', %s, 'telemetry', coalesce(%s, now()))",
        (at, device_id, seq, received),
    )
    conn.execute(
        "INSERT INTO reading (time, device_id, channel, metric, value, boot_id, seq)"
        " VALUES (%s, %s, 0, 'power_w', %s, 'b00tb00t', %s)",
        (at, device_id, value, seq),
    )


def hourly(conn: psycopg.Connection[Any], device_id: str, bucket: datetime) -> Any:
    return conn.execute(
        "SELECT samples, sum, min, max FROM reading_hourly_rollup"
        " WHERE device_id = %s AND metric = 'power_w' AND channel = 0 AND bucket = %s",
        (device_id, bucket),
    ).fetchone()


def daily(conn: psycopg.Connection[Any], device_id: str, bucket: datetime) -> Any:
    return conn.execute(
        "SELECT samples, sum, min, max FROM reading_daily_rollup"
        " WHERE device_id = %s AND metric = 'power_w' AND channel = 0 AND bucket = %s",
        (device_id, bucket),
    ).fetchone()


def latest(conn: psycopg.Connection[Any], device_id: str) -> Any:
    return conn.execute(
        "SELECT time, value FROM reading_latest WHERE device_id = %s AND metric = 'power_w'",
        (device_id,),
    ).fetchone()


def test_late_data_older_than_raw_retention_leaves_the_rollups_alone(db: str) -> None:
    now = datetime.now(UTC)
    hour = (now - timedelta(days=40)).replace(minute=0, second=0, microsecond=0)
    day = hour.replace(hour=0)
    with psycopg.connect(db, autocommit=True) as conn:
        for minute in range(0, 60, 10):  # six readings of 100 W, received on time
            at = hour + timedelta(minutes=minute)
            add_reading(conn, "cab-1", at, 100.0, received=at + timedelta(seconds=5))
        refresh(conn, CONFIG, retention=RETENTION)
        assert hourly(conn, "cab-1", hour) == (6, 600.0, 100.0, 100.0)
        before_day = daily(conn, "cab-1", day)
        assert before_day == (6, 600.0, 100.0, 100.0)
        apply_retention(conn, RETENTION)
        row = conn.execute(
            "SELECT count(*) FROM reading WHERE time < %s", (hour + timedelta(hours=1),)
        )
        assert row.fetchone() == (0,)  # that hour's raw readings are gone

        # a device whose clock fell back sends a reading "from" that hour, today
        add_reading(conn, "cab-1", hour + timedelta(minutes=30), 5000.0)
        report = refresh(conn, CONFIG, retention=RETENTION)

        assert report.late_too_old == 1 and report.late_pairs == 0
        assert hourly(conn, "cab-1", hour) == (6, 600.0, 100.0, 100.0)
        assert daily(conn, "cab-1", day) == before_day


def test_late_data_within_raw_retention_is_still_rolled_up_again(db: str) -> None:
    now = datetime.now(UTC)
    hour = (now - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    with psycopg.connect(db, autocommit=True) as conn:
        add_reading(conn, "cab-2", hour, 100.0, received=hour + timedelta(seconds=5))
        refresh(conn, CONFIG, retention=RETENTION)
        add_reading(conn, "cab-2", hour + timedelta(minutes=30), 300.0)
        report = refresh(conn, CONFIG, retention=RETENTION)
        assert report.late_too_old == 0 and report.late_pairs == 1
        assert hourly(conn, "cab-2", hour) == (2, 400.0, 100.0, 300.0)


def test_a_reading_from_2099_never_becomes_the_latest_value(db: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(db, autocommit=True) as conn:
        add_reading(conn, "cab-3", now - timedelta(minutes=5), 1.0)
        refresh(conn, CONFIG)
        assert latest(conn, "cab-3") == (now - timedelta(minutes=5), 1.0)

        add_reading(conn, "cab-3", datetime(2099, 1, 1, tzinfo=UTC), 99.0)  # RTC gone wild
        refresh(conn, CONFIG)
        assert latest(conn, "cab-3") == (now - timedelta(minutes=5), 1.0)

        # the clock is right again: new readings are the latest
        add_reading(conn, "cab-3", now - timedelta(minutes=1), 2.0)
        refresh(conn, CONFIG)
        assert latest(conn, "cab-3") == (now - timedelta(minutes=1), 2.0)


def test_a_latest_value_from_2099_left_by_an_older_version_gives_way(db: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO reading_latest (device_id, channel, metric, time, value)"
            " VALUES ('cab-4', 0, 'power_w', '2099-01-01T00:00:00Z', 99.0)"
        )
        add_reading(conn, "cab-4", now - timedelta(minutes=5), 1.0)
        refresh(conn, CONFIG)
        assert latest(conn, "cab-4") == (now - timedelta(minutes=5), 1.0)
