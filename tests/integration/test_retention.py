"""Retention on the real TimescaleDB: whole old chunks go, recent ones and raw
data not rolled up yet stay, dead letters are trimmed in batches."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from backend.maintenance.cli import register
from backend.maintenance.config import RetentionConfig, RollupConfig
from backend.maintenance.retention import apply_retention
from backend.maintenance.rollup import refresh
from backend.storage.migrate import migrate
from backend.storage.scratch import scratch_database

if TYPE_CHECKING:
    from backend.devstack import Stack

pytestmark = pytest.mark.services

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
DAYS = 40  # one row per table at 11:30 on each of the last 40 days
KEEP = RetentionConfig(
    reading_days=10,
    uplink_message_days=10,
    reading_hourly_rollup_days=20,
    event_days=20,
    dead_letter_days=5,
    delete_batch=3,
)


@pytest.fixture
def database(stack: Stack) -> Iterator[str]:
    with scratch_database(stack.admin_database_url, stack.database_url, "t_retention") as url:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            fill(conn)
        yield url


def fill(conn: psycopg.Connection[Any]) -> None:
    for day in range(1, DAYS + 1):
        at = (NOW - timedelta(days=day)).replace(hour=11, minute=30)
        conn.execute(
            "INSERT INTO uplink_message (time, device_id, boot_id, seq, kind, received_at)"
            " VALUES (%s, 'cab-1', 'b00tb00t', %s, 'telemetry', %s)",
            (at, day, at),
        )
        conn.execute(
            "INSERT INTO reading (time, device_id, channel, metric, value, boot_id, seq)"
            " VALUES (%s, 'cab-1', 0, 'power_w', %s, 'b00tb00t', %s)",
            (at, float(day), day),
        )
        conn.execute(
            "INSERT INTO event (time, device_id, boot_id, seq, code, severity, active)"
            " VALUES (%s, 'cab-1', 'b00tb00t', %s, 'door_open', 'warning', true)",
            (at, day),
        )
        conn.execute(
            "INSERT INTO dead_letter (received_at, topic, payload, code, reason, source)"
            " VALUES (%s, 't', '\\x00', 'bad_json', 'r', 'device')",
            (at,),
        )


def times(conn: psycopg.Connection[Any], table: str, column: str = "time") -> list[datetime]:
    return [r[0] for r in conn.execute(f"SELECT {column} FROM {table} ORDER BY 1").fetchall()]


def chunk_ranges(conn: psycopg.Connection[Any], table: str) -> list[tuple[datetime, datetime]]:
    return conn.execute(
        "SELECT range_start, range_end FROM timescaledb_information.chunks"
        " WHERE hypertable_name = %s ORDER BY 1",
        (table,),
    ).fetchall()


HYPERTABLES = {  # table -> (time column, days kept in KEEP)
    "reading": ("time", 10),
    "uplink_message": ("time", 10),
    "event": ("time", 20),
    "reading_hourly_rollup": ("bucket", 20),
}


def test_whole_old_chunks_go_and_recent_ones_stay(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        refresh(conn, RollupConfig(batch_hours=24 * 31))
        before = {
            t: (times(conn, t, c), chunk_ranges(conn, t)) for t, (c, _) in HYPERTABLES.items()
        }
        daily_before = times(conn, "reading_daily_rollup", "bucket")
        report = apply_retention(conn, KEEP, now=NOW)
        after = {t: (times(conn, t, c), chunk_ranges(conn, t)) for t, (c, _) in HYPERTABLES.items()}
        daily = times(conn, "reading_daily_rollup", "bucket")
        letters = times(conn, "dead_letter", "received_at")
    for table, (_, days) in HYPERTABLES.items():
        cutoff = NOW - timedelta(days=days)
        rows_before, chunks_before = before[table]
        rows, chunks = after[table]
        # a chunk goes only when all of it is older than the cutoff ...
        assert chunks == [c for c in chunks_before if c[1] > cutoff], table
        assert report.chunks_dropped[table] == len(chunks_before) - len(chunks), table
        # ... and the chunks that stay keep every row, old ones included
        assert rows == [t for t in rows_before if t >= chunks[0][0]], table
        assert rows[-1] == rows_before[-1] and min(rows) < cutoff + timedelta(days=1), table
    assert report.chunks_dropped["reading"] > 0
    assert len(after["reading"][0]) in (10, 11)  # one-day chunks: the cutoff's day stays
    assert daily == daily_before and len(daily) == DAYS  # daily rollups are kept forever
    assert letters and all(t >= NOW - timedelta(days=5) for t in letters)
    assert report.rows_deleted["dead_letter"] == DAYS - len(letters)


def test_raw_data_not_rolled_up_is_never_dropped(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        before = times(conn, "reading")
        # no refresh yet: nothing is rolled up, no raw chunk may go
        report = apply_retention(conn, KEEP, now=NOW)
        assert times(conn, "reading") == before
        assert "nothing rolled up yet" in " ".join(report.notes)
        # a refresh that stopped 30 days ago: raw data since then must stay
        refresh(conn, RollupConfig(batch_hours=24 * 31), now=NOW - timedelta(days=30))
        row = conn.execute("SELECT rolled_until FROM rollup_state").fetchone()
        assert row is not None
        rolled_until = row[0]
        report = apply_retention(conn, KEEP, now=NOW)
        kept = times(conn, "reading")
        # uplink_message is not guarded: its own retention applies
        messages = times(conn, "uplink_message")
    assert report.cutoffs["reading"] == rolled_until
    assert kept == [t for t in before if t >= rolled_until.replace(hour=0)]
    assert len(kept) > 10
    assert len(messages) < len(kept)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="lumeau")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["maintenance", "run", *argv])
    return int(args.func(args))


def test_the_command_runs_once_with_a_config_file(
    database: str,
    stack: Stack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "maintenance.toml"
    config.write_text("[retention]\nreading_days = 10\nuplink_message_days = 10\n")
    monkeypatch.setenv("LUMEAU_DATABASE_URL", database)
    assert run_cli("--once", "--config", str(config), "--run-dir", str(stack.run_dir)) == 0
    out = capsys.readouterr().out
    assert "reading: " in out and "chunk(s) dropped" in out
    with psycopg.connect(database) as conn:
        rolled = conn.execute("SELECT count(*) FROM reading_hourly_rollup").fetchone()
        oldest = conn.execute("SELECT min(time) FROM reading").fetchone()
    assert rolled is not None and rolled[0] == DAYS
    assert oldest is not None and oldest[0] >= NOW - timedelta(days=11)
    config.write_text("[retention]\nreading_days = 500\n")
    assert run_cli("--once", "--config", str(config)) == 2
    assert "uplink_message_days must be >= reading_days" in capsys.readouterr().err


def fill_site_tables(conn: psycopg.Connection[Any]) -> None:
    """A row every 30 days over two years in each per-device and per-site table."""
    for k in range(25):
        day = (NOW - timedelta(days=30 * k)).replace(hour=0)
        conn.execute(
            "INSERT INTO device_energy_daily (day, device_id, channel, samples, first_time,"
            " first_value, first_boot, last_time, last_value, last_boot, increase_wh, resets,"
            " energy_wh) VALUES (%s, 'cab-1', 0, 1, %s, 1, 'b', %s, 1, 'b', 0, 0, %s)",
            (day, day, day, float(k)),
        )
        conn.execute(
            "INSERT INTO site_daily_rollup (day, site, metric, channel, devices, samples, sum,"
            " min, max, energy_wh) VALUES (%s, 'north', 'energy_wh', 0, 1, 1, 1, 1, 1, %s)",
            (day, float(k)),
        )


SITE_TABLES = {"device_energy_daily": 200, "site_daily_rollup": 400}


def test_site_tables_keep_what_is_configured_and_forever_by_default(database: str) -> None:
    configured = KEEP.model_copy(
        update={"device_energy_daily_days": 200, "site_daily_rollup_days": 400}
    )
    with psycopg.connect(database, autocommit=True) as conn:
        fill_site_tables(conn)
        before = {t: (times(conn, t, "day"), chunk_ranges(conn, t)) for t in SITE_TABLES}
        # the defaults keep them forever
        assert KEEP.device_energy_daily_days is None and KEEP.site_daily_rollup_days is None
        apply_retention(conn, KEEP, now=NOW)
        assert {t: (times(conn, t, "day"), chunk_ranges(conn, t)) for t in SITE_TABLES} == before
        report = apply_retention(conn, configured, now=NOW)
        after = {t: (times(conn, t, "day"), chunk_ranges(conn, t)) for t in SITE_TABLES}
    for table, days in SITE_TABLES.items():
        cutoff = NOW - timedelta(days=days)
        rows_before, chunks_before = before[table]
        rows, chunks = after[table]
        assert report.cutoffs[table] == cutoff
        assert chunks == [c for c in chunks_before if c[1] > cutoff], table
        assert report.chunks_dropped[table] == len(chunks_before) - len(chunks) > 0, table
        assert rows == [t for t in rows_before if t >= chunks[0][0]], table
        assert min(rows) < cutoff + timedelta(days=1) and rows[-1] == rows_before[-1], table
