"""Rollups on the real TimescaleDB (Apache edition): equal to raw aggregation,
late data rolled up again, refresh idempotent, telemetry API unchanged.

The full edition's continuous-aggregate variant (0014_rollups.timescale.sql)
cannot run here: this machine has the Apache build.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from backend.api.queries import devices as api_queries
from backend.api.queries import rollup_plan
from backend.maintenance.config import RollupConfig
from backend.maintenance.rollup import refresh
from backend.storage.migrate import migrate
from backend.storage.scratch import scratch_database

if TYPE_CHECKING:
    from backend.devstack import Stack

pytestmark = pytest.mark.services

CONFIG = RollupConfig(batch_hours=24)
# Data lives in the past, relative to the real clock, so its hours are closed.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
BASE = NOW - timedelta(days=4)
DEVICES = ("cab-1", "cab-2", "leak-1")
METRICS = ("power_w", "energy_wh")
TABLES = "reading, uplink_message, reading_hourly_rollup, reading_daily_rollup, reading_latest"


@pytest.fixture(scope="module")
def database(stack: Stack) -> Iterator[str]:
    with scratch_database(stack.admin_database_url, stack.database_url, "t_rollups") as url:
        migrate(url)
        yield url


def reset(conn: psycopg.Connection[Any]) -> None:
    conn.execute(f"TRUNCATE {TABLES}, rollup_state")


# One message per reading, as simple as the ingest path allows: its
# identity (device, boot, seq, time) and its reading share time and seq.
Reading = tuple[int, int, int, int, float]  # device, channel, metric, minute, value

readings_strategy = st.lists(
    st.tuples(
        st.integers(0, len(DEVICES) - 1),
        st.integers(0, 2),
        st.integers(0, len(METRICS) - 1),
        st.integers(0, 3 * 24 * 60 - 1),  # minute within three days
        # meter-like values with cents: sums stay exact enough to compare
        st.integers(-100_000, 10_000_000).map(lambda c: c / 100),
    ),
    min_size=1,
    max_size=60,
)


def insert(
    conn: psycopg.Connection[Any],
    rows: list[Reading],
    first_seq: int,
    received_at: datetime | None = None,
) -> None:
    """Readings and their messages; ``received_at`` None: now (the column's default)."""
    with conn.cursor() as cur:
        for i, (device, channel, metric, minute, value) in enumerate(rows):
            at = BASE + timedelta(minutes=minute, seconds=i % 60)
            seq = first_seq + i
            cur.execute(
                "INSERT INTO uplink_message (time, device_id, boot_id, seq, kind, received_at)"
                " VALUES (%s, %s, 'b00tb00t', %s, 'telemetry', coalesce(%s, now()))",
                (at, DEVICES[device], seq, received_at),
            )
            cur.execute(
                "INSERT INTO reading (time, device_id, channel, metric, value, boot_id, seq)"
                " VALUES (%s, %s, %s, %s, %s, 'b00tb00t', %s)",
                (at, DEVICES[device], channel, METRICS[metric], value, seq),
            )


def raw_vs_rollup(conn: psycopg.Connection[Any], width: str, table: str) -> None:
    """Every group of raw readings has the same count/min/max and sum in the rollup,
    for the buckets that end by the watermark."""
    complete = (
        f" time_bucket(INTERVAL '{width}', {{}}) + INTERVAL '{width}'"
        " <= reading_rollup_complete_until()"
    )
    raw = {
        tuple(row[:4]): row[4:]
        for row in conn.execute(
            f"SELECT time_bucket(INTERVAL '{width}', time), device_id, channel, metric,"
            " count(*), sum(value), min(value), max(value) FROM reading"
            " WHERE" + complete.format("time") + " GROUP BY 1, 2, 3, 4"
        ).fetchall()
    }
    rolled = {
        tuple(row[:4]): row[4:]
        for row in conn.execute(
            f"SELECT bucket, device_id, channel, metric, samples, sum, min, max FROM {table}"
            " WHERE" + complete.format("bucket")
        ).fetchall()
    }
    assert rolled.keys() == raw.keys()
    for key, (count, total, low, high) in raw.items():
        samples, rsum, rmin, rmax = rolled[key]
        assert (samples, rmin, rmax) == (count, low, high), key
        assert math.isclose(rsum, total, rel_tol=1e-12, abs_tol=1e-9), key


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(on_time=readings_strategy, late=readings_strategy)
def test_rollups_equal_raw_aggregation_including_late_arrivals(
    database: str, on_time: list[Reading], late: list[Reading]
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        reset(conn)
        insert(conn, on_time, first_seq=0)
        first = refresh(conn, CONFIG)
        assert first.rolled_until is not None and first.rolled_until >= BASE + timedelta(days=3)
        raw_vs_rollup(conn, "1 hour", "reading_hourly_rollup")
        raw_vs_rollup(conn, "1 day", "reading_daily_rollup")
        # late arrivals: received after the refresh, timed in rolled-up hours
        insert(conn, late, first_seq=10_000)
        second = refresh(conn, CONFIG)
        assert second.late_pairs >= 1
        raw_vs_rollup(conn, "1 hour", "reading_hourly_rollup")
        raw_vs_rollup(conn, "1 day", "reading_daily_rollup")


def snapshot(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT 'h', * FROM reading_hourly_rollup UNION ALL SELECT 'd', * FROM reading_daily_rollup"
        " ORDER BY 1, 2, 3, 4, 5"
    ).fetchall()


def test_refresh_is_idempotent_and_a_late_reading_changes_only_its_hour_and_day(
    database: str,
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        reset(conn)
        # received long before the refresh's settle margin: not scanned again
        earlier = NOW - timedelta(hours=2)
        insert(conn, [(0, 0, 0, m * 10, float(m)) for m in range(3 * 24 * 6)], 0, earlier)
        refresh(conn, CONFIG)
        before = snapshot(conn)
        refresh(conn, CONFIG)
        assert snapshot(conn) == before
        # a reading for 10:30 on day 1 arrives late
        insert(conn, [(0, 0, 0, 24 * 60 + 10 * 60 + 30, 1e6)], first_seq=50_000)
        report = refresh(conn, CONFIG)
        after = snapshot(conn)
    changed = sorted(set(after) - set(before))
    hour = BASE + timedelta(days=1, hours=10)
    assert report.late_pairs == 1
    assert {(row[0], row[1]) for row in changed} == {("d", rollup_day(hour)), ("h", hour)}
    assert all(row[-1] == 1e6 for row in changed)  # the new max
    assert len(after) == len(before)


def rollup_day(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def test_reading_hourly_view_reads_the_same_through_the_rollup(database: str) -> None:
    query = (
        "SELECT bucket, device_id, channel, metric, samples, round(mean::numeric, 9), min, max"
        " FROM reading_hourly ORDER BY 1, 2, 3, 4"
    )
    with psycopg.connect(database, autocommit=True) as conn:
        reset(conn)
        insert(conn, [(m % 3, m % 2, m % 2, m * 4, m * 1.25) for m in range(900)], first_seq=0)
        before = conn.execute(query).fetchall()
        refresh(conn, CONFIG)
        # and a tail that is not rolled up: the view reads it raw
        insert(conn, [(0, 0, 0, 4 * 24 * 60 - 30, 5.5)], first_seq=9_000)
        conn.execute(
            "INSERT INTO reading (time, device_id, channel, metric, value, boot_id, seq)"
            " VALUES (now(), 'cab-1', 0, 'power_w', 7.5, 'b00tb00t', 9999)"
        )
        after = conn.execute(query).fetchall()
        rolled = conn.execute("SELECT count(*) FROM reading_hourly_rollup").fetchone()
    assert rolled is not None and rolled[0] > 0
    assert after[: len(before)] == before
    assert len(after) > len(before)


def telemetry(url: str, bucket: timedelta, start: datetime, end: datetime) -> list[Any]:
    async def run() -> list[Any]:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, row_factory=dict_row
        ) as conn:
            rows = await api_queries.telemetry(
                conn,
                device_id="cab-1",
                metric="power_w",
                start=start,
                end=end,
                bucket=bucket,
                channel=None,
            )
        return [
            (r["time"], r["channel"], r["count"], round(r["avg"], 9), r["min"], r["max"])
            for r in rows
        ]

    return asyncio.run(run())


@pytest.mark.parametrize("width", [timedelta(hours=1), timedelta(hours=6), timedelta(days=1)])
def test_telemetry_returns_the_same_numbers_through_rollups(
    database: str, width: timedelta
) -> None:
    # windows with ragged edges, across the watermark, and aligned ones; each
    # holds whole buckets of every width before the watermark, whatever the
    # hour the test runs at (the second one spans a whole UTC day)
    day = rollup_day(BASE)
    windows = [
        (BASE - timedelta(hours=5), NOW + timedelta(hours=1)),
        (day + timedelta(hours=7, minutes=13), day + timedelta(days=2, hours=3, minutes=1)),
        (day, day + timedelta(days=3)),
    ]
    with psycopg.connect(database, autocommit=True) as conn:
        reset(conn)
        insert(
            conn,
            [(m % 2, m % 3, m % 2, (m * 13) % (3 * 24 * 60), m / 8) for m in range(1500)],
            first_seq=0,
        )
        conn.execute(
            "INSERT INTO reading (time, device_id, channel, metric, value, boot_id, seq)"
            " VALUES (now() - interval '5 minutes', 'cab-1', 0, 'power_w', 42.25, 'b00tb00t', 1)"
        )
    before = [telemetry(database, width, *window) for window in windows]
    with psycopg.connect(database, autocommit=True) as conn:
        refresh(conn, CONFIG)
        row = conn.execute("SELECT rolled_until FROM rollup_state").fetchone()
    assert row is not None
    for window, expected in zip(windows, before, strict=True):
        split = rollup_plan.plan(*window, width, row[0])
        assert split.rollup is not None  # the rollups are really read
        assert telemetry(database, width, *window) == expected
        assert expected


# --- per-device energy and per-site rollups (0015_site_rollups) ------------------

SITE_TABLES = "device_energy_daily, site_daily_rollup"
SITES = {"cab-1": "north", "cab-2": "north", "cab-3": "south", "cab-4": None}
CABINETS = tuple(SITES)
DAY0 = rollup_day(NOW) - timedelta(days=3)  # three whole days before today


def reset_sites(conn: psycopg.Connection[Any]) -> None:
    reset(conn)
    conn.execute(f"TRUNCATE {SITE_TABLES}")
    conn.execute("DELETE FROM device")
    for device, site in SITES.items():
        conn.execute(
            "INSERT INTO device (device_id, role, site) VALUES (%s, 'cabinet', %s)", (device, site)
        )


# (device, channel, metric, time, value, boot, seq)
Raw = tuple[str, int, str, datetime, float, str, int]


def insert_raw(
    conn: psycopg.Connection[Any], rows: list[Raw], received_at: datetime | None = None
) -> None:
    """Readings and their messages; ``received_at`` None: now (the column's default)."""
    with conn.cursor() as cur:
        for device, channel, metric, at, value, boot, seq in rows:
            cur.execute(
                "INSERT INTO uplink_message (time, device_id, boot_id, seq, kind, received_at)"
                " VALUES (%s, %s, %s, %s, 'telemetry', coalesce(%s, now()))",
                (at, device, boot, seq, received_at),
            )
            cur.execute(
                "INSERT INTO reading (time, device_id, channel, metric, value, boot_id, seq)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (at, device, channel, metric, value, boot, seq),
            )


def energy_by_day(rows: list[Raw]) -> dict[tuple[str, int, datetime], float]:
    """The meter's consumption per (device, channel, day), computed directly:
    every increase between consecutive readings counts on the day of the later
    one; a new boot or a lower value is a reset, after which the value itself
    is the energy since the restart."""
    series: dict[tuple[str, int], list[Raw]] = {}
    for row in rows:
        if row[2] == "energy_wh":
            series.setdefault((row[0], row[1]), []).append(row)
    out: dict[tuple[str, int, datetime], float] = {}
    for (device, channel), readings in series.items():
        readings.sort(key=lambda r: (r[3], r[5], r[6]))
        prev: Raw | None = None
        for row in readings:
            key = (device, channel, rollup_day(row[3]))
            step = 0.0
            if prev is not None:
                reset = row[5] != prev[5] or row[4] < prev[4]
                step = row[4] if reset else row[4] - prev[4]
            out[key] = out.get(key, 0.0) + step
            prev = row
    return out


def complete_days_until(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT reading_rollup_complete_until()").fetchone()
    assert row is not None
    return rollup_day(row[0])


def assert_site_tables_equal_raw(conn: psycopg.Connection[Any], rows: list[Raw]) -> None:
    until = complete_days_until(conn)
    expected_energy = {k: v for k, v in energy_by_day(rows).items() if k[2] < until}
    stored_energy = {
        (device, channel, day): wh
        for device, channel, day, wh in conn.execute(
            "SELECT device_id, channel, day, energy_wh FROM device_energy_daily WHERE day < %s",
            (until,),
        ).fetchall()
    }
    assert stored_energy.keys() == expected_energy.keys()
    for key, wh in expected_energy.items():
        assert math.isclose(stored_energy[key], wh, rel_tol=1e-9, abs_tol=1e-6), key
    # The site rows against the raw readings of the sites' devices.
    raw = {
        tuple(row[:4]): row[4:]
        for row in conn.execute(
            "SELECT time_bucket(INTERVAL '1 day', r.time), d.site, r.metric, r.channel,"
            " count(DISTINCT r.device_id), count(*), sum(r.value), min(r.value), max(r.value)"
            " FROM reading r JOIN device d USING (device_id)"
            " WHERE d.site IS NOT NULL AND r.time < %s GROUP BY 1, 2, 3, 4",
            (until,),
        ).fetchall()
    }
    stored = {
        tuple(row[:4]): row[4:]
        for row in conn.execute(
            "SELECT day, site, metric, channel, devices, samples, sum, min, max, energy_wh"
            " FROM site_daily_rollup WHERE day < %s",
            (until,),
        ).fetchall()
    }
    assert stored.keys() == raw.keys()
    for group, (devices, samples, total, low, high) in raw.items():
        day, site, metric, channel = group
        s_devices, s_samples, s_sum, s_min, s_max, s_energy = stored[group]
        assert (s_devices, s_samples, s_min, s_max) == (devices, samples, low, high), group
        assert math.isclose(s_sum, total, rel_tol=1e-12, abs_tol=1e-9), group
        if metric != "energy_wh":
            assert s_energy is None, group
            continue
        wh = site_energy(expected_energy, site, channel, day)
        assert math.isclose(s_energy, wh, rel_tol=1e-9, abs_tol=1e-6), group


def site_energy(
    energy: dict[tuple[str, int, datetime], float], site: str, channel: int, day: datetime
) -> float:
    return sum(
        (wh for (device, ch, d), wh in energy.items()
         if SITES[device] == site and ch == channel and d == day),
        0.0,
    )  # fmt: skip


# One energy meter reading: (minute since DAY0, increase since the previous
# reading in cents, reset: 0 none, 1 new boot, 2 lower value on the same
# boot), plus whether it arrives late (after the first refresh).
meter_strategy = st.lists(
    st.tuples(
        st.integers(0, 3 * 24 * 60 - 1),
        st.integers(0, 50_000),
        st.sampled_from([0, 0, 0, 0, 0, 0, 1, 2]),
        st.booleans(),
    ),
    min_size=1,
    max_size=25,
)
series_strategy = st.dictionaries(
    st.tuples(st.sampled_from(CABINETS), st.integers(0, 2)), meter_strategy, min_size=1
)


def meter_rows(
    series: dict[tuple[str, int], list[tuple[int, int, int, bool]]],
) -> list[tuple[Raw, bool]]:
    """Counter readings in time order: increases add up, a reset starts again
    from the increase (a new boot, or the same boot reading lower)."""
    out: list[tuple[Raw, bool]] = []
    seq = 0
    for (device, channel), readings in sorted(series.items()):
        value, boot = 0.0, 0
        for minute, cents, reset, late in sorted(readings):
            if reset == 1:
                boot, value = boot + 1, cents / 100
            elif reset == 2:
                value = min(cents / 100, value / 2)
            else:
                value += cents / 100
            seq += 1
            at = DAY0 + timedelta(minutes=minute, seconds=seq % 60)
            out.append(((device, channel, "energy_wh", at, value, f"boot{boot:04d}", seq), late))
            # a power reading beside each, for the site's sum/min/max
            power = ((device, channel, "power_w", at, float(cents % 997), "p0wer000", seq), late)
            out.append(power)
    return out


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(series=series_strategy)
def test_site_rollups_equal_the_raw_computation_with_late_data_and_resets(
    database: str, series: dict[tuple[str, int], list[tuple[int, int, int, bool]]]
) -> None:
    rows = meter_rows(series)
    on_time = [row for row, late in rows if not late]
    late = [row for row, late in rows if late]
    with psycopg.connect(database, autocommit=True) as conn:
        reset_sites(conn)
        # received before the refresh's settle margin: only `late` is scanned again
        insert_raw(conn, on_time, NOW - timedelta(hours=2))
        refresh(conn, CONFIG)
        assert complete_days_until(conn) >= DAY0 + timedelta(days=3)
        assert_site_tables_equal_raw(conn, on_time)
        insert_raw(conn, late)
        refresh(conn, CONFIG)
        assert_site_tables_equal_raw(conn, on_time + late)


def hourly_meter(device: str, days: int, wh_per_hour: float, reset_at: int | None) -> list[Raw]:
    """Channel 1 counter read at half past every hour from DAY0; ``reset_at``:
    the hour the cabinet reboots (its counter starts again from 0)."""
    rows: list[Raw] = []
    value, boot = 0.0, "b00tb00t"
    for hour in range(days * 24):
        if hour == reset_at:
            value, boot = 0.0, "rebooted"
        value += wh_per_hour
        at = DAY0 + timedelta(hours=hour, minutes=30)
        rows.append((device, 1, "energy_wh", at, value, boot, hour))
    return rows


def site_snapshot(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "device": conn.execute(
            "SELECT device_id, channel, day, energy_wh, samples, resets FROM device_energy_daily"
            " ORDER BY 1, 2, 3"
        ).fetchall(),
        "site": conn.execute(
            "SELECT site, metric, channel, day, devices, samples, sum, min, max, energy_wh"
            " FROM site_daily_rollup ORDER BY 1, 2, 3, 4"
        ).fetchall(),
    }


def test_site_energy_counts_resets_and_midnight_and_refresh_is_idempotent(
    database: str,
) -> None:
    day1, day2 = DAY0 + timedelta(days=1), DAY0 + timedelta(days=2)
    with psycopg.connect(database, autocommit=True) as conn:
        reset_sites(conn)
        # received long before the refresh's settle margin: not scanned again
        earlier = NOW - timedelta(hours=2)
        insert_raw(conn, hourly_meter("cab-1", 3, 10.0, None), earlier)
        insert_raw(conn, hourly_meter("cab-2", 3, 5.0, 24 + 5), earlier)  # reboots day 1, 05:00
        insert_raw(conn, hourly_meter("cab-3", 3, 20.0, None), earlier)
        refresh(conn, CONFIG)
        before = site_snapshot(conn)
        refresh(conn, CONFIG)
        assert site_snapshot(conn) == before
        energy = {
            (site, day): wh
            for site, metric, _, day, *_, wh in before["site"]
            if metric == "energy_wh"
        }
        resets = {(d, day): n for d, _, day, _, _, n in before["device"]}
        # Day 0 has no reading before its first: 23 increases. Later days also
        # count the increase across midnight: 24. The reboot loses nothing.
        assert energy[("north", DAY0)] == 23 * 10.0 + 23 * 5.0
        assert energy[("north", day1)] == energy[("north", day2)] == 24 * 15.0
        assert energy[("south", day1)] == 24 * 20.0
        assert resets[("cab-2", day1)] == 1
        # the counter's range within the day would say otherwise
        row = conn.execute(
            "SELECT max - min FROM reading_daily_rollup WHERE device_id = 'cab-2'"
            " AND metric = 'energy_wh' AND bucket = %s",
            (day1,),
        ).fetchone()
        assert row is not None and row[0] != 24 * 5.0
        # A reading for day 1, 23:45 arrives late on cab-1: 2.5 Wh more on day
        # 1, 2.5 Wh less on day 2 (the increase across midnight is smaller).
        value = 10.0 * 48 + 2.5
        insert_raw(
            conn,
            [("cab-1", 1, "energy_wh", day1 + timedelta(hours=23, minutes=45), value,
              "b00tb00t", 9_000)],
        )  # fmt: skip
        report = refresh(conn, CONFIG)
        after = site_snapshot(conn)
    assert report.late_pairs == 1
    changed_devices = sorted(set(after["device"]) - set(before["device"]))
    assert [(d, day, wh) for d, _, day, wh, _, _ in changed_devices] == [
        ("cab-1", day1, 242.5),
        ("cab-1", day2, 237.5),
    ]
    changed_sites = sorted(set(after["site"]) - set(before["site"]))
    assert {(site, day) for site, _, _, day, *_ in changed_sites} == {
        ("north", day1),
        ("north", day2),
    }
    by_key = {(r[0], r[1], r[3]): r[-1] for r in after["site"]}
    assert by_key[("north", "energy_wh", day1)] == 24 * 15.0 + 2.5
    assert by_key[("north", "energy_wh", day2)] == 24 * 15.0 - 2.5
    assert len(after["site"]) == len(before["site"])
