"""Dashboard queries over a year of rollups for a city: latency percentiles.

What is generated (a throwaway database, dropped at the end). A year of raw
10-minute readings for 10,000 devices would be 0.5-3 billion rows; dashboards
never read that, so this benchmark generates what they do read:

- ``device`` rows: 65 % street-lighting cabinets (2-4 circuits each), 35 %
  leak sensors, 100 devices per site;
- ``reading_hourly_rollup`` for every hour of the year: the cabinet's total
  power (channel 0 ``power_w``, 6 samples an hour) and the leak sensors'
  ``noise_db`` (4 readings a day, so 4 hourly rows a day);
- ``reading_daily_rollup`` for every day and every series a dashboard shows:
  cabinets' channel 0 ``power_w``, ``energy_wh`` (a counter: min and max are
  the meter at the day's start and end) and ``temperature_c``, each circuit's
  ``power_w`` and ``energy_wh``; leak sensors' ``noise_db`` and ``battery_v``;
- ``device_energy_daily`` (0015): each cabinet's and circuit's energy per
  day (the meter's end of day minus the previous day's, no resets), as the
  refresh computes it from raw readings;
- ``site_daily_rollup`` (0015), built from those two by the refresh's own
  statement (``site_rollup.roll_site_days``), a month per transaction, timed;
- raw ``reading`` rows for the last two days only (cabinets' channel 0 power
  and energy every 10 minutes, leak sensors' noise every 6 hours), the
  ``rollup_state`` watermark two hours ago, and ``reading_latest`` filled
  from those raw rows.

Rows are written day by day with binary COPY built by NumPy (one day of every
device per COPY, each device's hours together, as hourly refreshes of a real
deployment leave them), and sizes are measured with ``hypertable_size``.
Each query then runs ``repeats`` times with varied parameters (another
device, site, week or month each time); the table shows p99 with p50, p95
and max in the notes. The queries the aggregates replace (per device and
day rows summed at query time, ``DISTINCT ON`` over raw readings) run as
comparison rows, fewer times. ``--quick``: 500 devices, 60 days.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import psycopg

from backend.maintenance import site_rollup
from bench.harness.context import Context
from bench.harness.registry import Result, benchmark
from bench.harness.stats import percentile

PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
HOUR_US: Final = 3_600_000_000
DAY_US: Final = 24 * HOUR_US
COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER: Final = struct.pack(">h", -1)
DEVICES_PER_SITE: Final = 100
RAW_DAYS: Final = 2
GOAL_MS: Final = 100.0

F8 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class City:
    cabinets: list[str]
    sensors: list[str]
    circuits: npt.NDArray[np.int64]  # per cabinet, 2..4
    rated_w: F8  # per cabinet and circuit (cabinets x 4), 0 beyond its circuits
    sites: dict[str, list[str]]

    @property
    def devices(self) -> list[str]:
        return self.cabinets + self.sensors


def make_city(devices: int, seed: int = 11) -> City:
    rng = np.random.default_rng(seed)
    n_cab = round(devices * 0.65)
    cabinets = [f"cab-{i:05d}" for i in range(n_cab)]
    sensors = [f"lek-{i:05d}" for i in range(devices - n_cab)]
    circuits = rng.integers(2, 5, size=n_cab)
    rated = rng.uniform(400.0, 2500.0, size=(n_cab, 4))
    rated[np.arange(4)[None, :] >= circuits[:, None]] = 0.0
    everyone = cabinets + sensors
    random.Random(seed).shuffle(everyone)
    sites: dict[str, list[str]] = {}
    for i, device in enumerate(everyone):
        sites.setdefault(f"site-{i // DEVICES_PER_SITE:03d}", []).append(device)
    return City(cabinets, sensors, circuits, rated, sites)


# --- binary COPY from NumPy ------------------------------------------------------


_BINARY: Final = {"ts": ">i8", "i2": ">i2", "i4": ">i4", "i8": ">i8", "f8": ">f8"}
_WIDTH: Final = {"ts": 8, "i2": 2, "i4": 4, "i8": 8, "f8": 8}


def copy_rows(columns: Sequence[tuple[str, npt.NDArray[Any]]]) -> bytes:
    """Binary COPY tuples (no header) for equal-length columns.

    Kinds: ``ts`` (int64 microseconds since 2000-01-01), ``i2``, ``i8``,
    ``i4``, ``f8`` and ``text`` (a fixed-width ``S`` array: one width per call).
    """
    n = len(columns[0][1])
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for i, (kind, values) in enumerate(columns):
        if len(values) != n:
            raise ValueError("columns of different lengths")
        code = _BINARY.get(kind)
        if kind == "text":
            code = f"S{values.dtype.itemsize}"
        if code is None:
            raise ValueError(f"unknown column kind {kind}")
        fields += [(f"len{i}", ">i4"), (f"val{i}", code)]
    out = np.empty(n, dtype=np.dtype(fields))
    out["count"] = len(columns)
    for i, (kind, values) in enumerate(columns):
        out[f"len{i}"] = values.dtype.itemsize if kind == "text" else _WIDTH[kind]
        out[f"val{i}"] = values
    return out.tobytes()


def _texts(values: Sequence[str]) -> npt.NDArray[Any]:
    return np.array([v.encode() for v in values])


ROLLUP_COLUMNS: Final = "(bucket, device_id, channel, metric, samples, sum, min, max)"


def rollup_rows(
    bucket_us: I8,
    devices: npt.NDArray[Any],
    channel: int,
    metric: str,
    samples: I8,
    total: F8,
    low: F8,
    high: F8,
) -> bytes:
    n = len(bucket_us)
    return copy_rows(
        [
            ("ts", bucket_us),
            ("text", devices),
            ("i2", np.full(n, channel, dtype=np.int16)),
            ("text", np.full(n, metric.encode())),
            ("i8", samples),
            ("f8", total),
            ("f8", low),
            ("f8", high),
        ]
    )


# --- the city's year, one day at a time ------------------------------------------


def lit_fraction(day_of_year: int) -> F8:
    """Share of each UTC hour the lights are on (night ~8 h in June, ~16 h in Dec)."""
    night = 12.0 + 4.0 * np.cos(2 * np.pi * (day_of_year + 10) / 365.0)
    hours = np.arange(24) + 0.5
    from_midnight = np.minimum(np.abs(hours - 0.5), 24 - np.abs(hours - 0.5))
    lit: F8 = np.clip(night / 2 - from_midnight + 0.5, 0.0, 1.0)
    return lit


def dim_factor() -> F8:
    """Dimmed to 70 % between 23:00 and 05:00."""
    factor = np.ones(24)
    factor[[23, 0, 1, 2, 3, 4]] = 0.7
    return factor


@dataclass
class Meter:
    """Running energy counters per cabinet and circuit (Wh)."""

    wh: F8


ENERGY_COLUMNS: Final = (
    "(day, device_id, channel, samples, first_time, first_value, first_boot,"
    " last_time, last_value, last_boot, increase_wh, resets, energy_wh)"
)


def energy_rows(day_us: int, devices: npt.NDArray[Any], channel: int, start: F8, end: F8) -> bytes:
    """``device_energy_daily`` rows of meters read every 10 minutes without a
    reset: the day's consumption is its last reading minus the previous day's."""
    n = len(devices)
    boot = np.full(n, b"b00tb00t")
    return copy_rows(
        [
            ("ts", np.full(n, day_us, dtype=np.int64)),
            ("text", devices),
            ("i2", np.full(n, channel, dtype=np.int16)),
            ("i8", np.full(n, 144, dtype=np.int64)),
            ("ts", np.full(n, day_us, dtype=np.int64)),
            ("f8", start + (end - start) / 144),
            ("text", boot),
            ("ts", np.full(n, day_us + DAY_US - 600_000_000, dtype=np.int64)),
            ("f8", end),
            ("text", boot),
            ("f8", (end - start) * 143 / 144),
            ("i4", np.zeros(n, dtype=np.int32)),
            ("f8", end - start),
        ]
    )


def day_rows(
    city: City, day_us: int, day_of_year: int, meter: Meter, rng: np.random.Generator
) -> tuple[bytes, bytes, bytes, int, int, int]:
    """COPY bytes of one day's hourly, daily and energy rows, and their counts."""
    n_cab, n_sen = len(city.cabinets), len(city.sensors)
    cab = _texts(city.cabinets)
    sen = _texts(city.sensors)
    hours = np.arange(24, dtype=np.int64) * HOUR_US + day_us
    profile = lit_fraction(day_of_year) * dim_factor()  # 24
    # circuit power per hour: rated x profile x noise  (cabinets x 4 x 24)
    noise = rng.normal(1.0, 0.03, size=(n_cab, 4, 24))
    circuit_w = city.rated_w[:, :, None] * profile[None, None, :] * noise
    total_w = circuit_w.sum(axis=1)  # cabinets x 24
    spread = np.abs(rng.normal(0.0, 0.02, size=(n_cab, 24))) * total_w
    hourly = [
        rollup_rows(
            np.tile(hours, n_cab),
            np.repeat(cab, 24),
            0,
            "power_w",
            np.full(n_cab * 24, 6, dtype=np.int64),
            (total_w * 6).ravel(),
            (total_w - spread).ravel(),
            (total_w + spread).ravel(),
        )
    ]
    noise_hours = np.array([0, 6, 12, 18], dtype=np.int64) * HOUR_US + day_us
    noise_db = rng.normal(30.0, 3.0, size=(n_sen, 4))
    hourly.append(
        rollup_rows(
            np.tile(noise_hours, n_sen),
            np.repeat(sen, 4),
            0,
            "noise_db",
            np.ones(n_sen * 4, dtype=np.int64),
            noise_db.ravel(),
            noise_db.ravel(),
            noise_db.ravel(),
        )
    )
    hourly_count = n_cab * 24 + n_sen * 4

    day = np.full(n_cab, day_us, dtype=np.int64)
    daily: list[bytes] = []
    circuit_wh = circuit_w.sum(axis=2)  # cabinets x 4 (1 h per value)
    start_wh = meter.wh.copy()
    meter.wh += circuit_wh
    daily.append(
        rollup_rows(
            day, cab, 0, "power_w", np.full(n_cab, 144, dtype=np.int64),
            total_w.sum(axis=1) * 6, (total_w - spread).min(axis=1), (total_w + spread).max(axis=1),
        )
    )  # fmt: skip
    daily.append(
        rollup_rows(
            day, cab, 0, "energy_wh", np.full(n_cab, 144, dtype=np.int64),
            (start_wh.sum(axis=1) + meter.wh.sum(axis=1)) / 2 * 144,
            start_wh.sum(axis=1), meter.wh.sum(axis=1),
        )
    )  # fmt: skip
    temp = rng.normal(12.0 + 8.0 * np.sin(2 * np.pi * (day_of_year - 110) / 365.0), 2.0, n_cab)
    daily.append(
        rollup_rows(
            day, cab, 0, "temperature_c", np.full(n_cab, 144, dtype=np.int64),
            temp * 144, temp - 3.0, temp + 3.0,
        )
    )  # fmt: skip
    daily_count = 3 * n_cab
    energy = [energy_rows(day_us, cab, 0, start_wh.sum(axis=1), meter.wh.sum(axis=1))]
    energy_count = n_cab
    for ch in range(4):
        has = city.circuits > ch
        k = int(has.sum())
        if k == 0:
            continue
        w = circuit_w[has, ch, :]
        daily.append(
            rollup_rows(
                day[:k], cab[has], ch + 1, "power_w", np.full(k, 144, dtype=np.int64),
                w.sum(axis=1) * 6, w.min(axis=1), w.max(axis=1),
            )
        )  # fmt: skip
        daily.append(
            rollup_rows(
                day[:k], cab[has], ch + 1, "energy_wh", np.full(k, 144, dtype=np.int64),
                (start_wh[has, ch] + meter.wh[has, ch]) / 2 * 144,
                start_wh[has, ch], meter.wh[has, ch],
            )
        )  # fmt: skip
        daily_count += 2 * k
        energy.append(energy_rows(day_us, cab[has], ch + 1, start_wh[has, ch], meter.wh[has, ch]))
        energy_count += k
    sday = np.full(n_sen, day_us, dtype=np.int64)
    daily.append(
        rollup_rows(
            sday, sen, 0, "noise_db", np.full(n_sen, 4, dtype=np.int64),
            noise_db.sum(axis=1), noise_db.min(axis=1), noise_db.max(axis=1),
        )
    )  # fmt: skip
    battery = np.full(n_sen, 3.6 - 0.3 * day_of_year / 365.0) + rng.normal(0, 0.01, n_sen)
    daily.append(
        rollup_rows(
            sday, sen, 0, "battery_v", np.ones(n_sen, dtype=np.int64), battery, battery, battery
        )
    )
    daily_count += 2 * n_sen
    return (
        b"".join(hourly),
        b"".join(daily),
        b"".join(energy),
        hourly_count,
        daily_count,
        energy_count,
    )


def raw_rows(city: City, start_us: int, end_us: int, rng: np.random.Generator) -> tuple[bytes, int]:
    """Raw readings (time, device_id, channel, metric, value, boot_id, seq)."""
    ticks = np.arange(start_us, end_us, 600_000_000, dtype=np.int64)
    n_cab, n_sen = len(city.cabinets), len(city.sensors)
    parts: list[bytes] = []
    count = 0
    cab = _texts(city.cabinets)
    total_rated = city.rated_w.sum(axis=1)
    for metric, scale in (("power_w", 0.8), ("energy_wh", 1000.0)):
        values = (total_rated[:, None] * scale * rng.uniform(0.9, 1.1, (n_cab, len(ticks)))).ravel()
        n = values.size
        parts.append(
            copy_rows(
                [
                    ("ts", np.tile(ticks, n_cab)),
                    ("text", np.repeat(cab, len(ticks))),
                    ("i2", np.zeros(n, dtype=np.int16)),
                    ("text", np.full(n, metric.encode())),
                    ("f8", values),
                    ("text", np.full(n, b"b00tb00t")),
                    ("i4", np.tile(np.arange(len(ticks), dtype=np.int32), n_cab)),
                ]
            )
        )
        count += n
    six = ticks[::36]
    n = n_sen * len(six)
    parts.append(
        copy_rows(
            [
                ("ts", np.tile(six, n_sen)),
                ("text", np.repeat(_texts(city.sensors), len(six))),
                ("i2", np.zeros(n, dtype=np.int16)),
                ("text", np.full(n, b"noise_db")),
                ("f8", rng.normal(30.0, 3.0, n)),
                ("text", np.full(n, b"b00tb00t")),
                ("i4", np.tile(np.arange(len(six), dtype=np.int32), n_sen)),
            ]
        )
    )
    return b"".join(parts), count + n


def _copy(conn: psycopg.Connection[Any], statement: str, chunks: Iterator[bytes]) -> None:
    with conn.cursor() as cur, cur.copy(statement.encode()) as copy:
        copy.write(COPY_HEADER)
        for chunk in chunks:
            copy.write(chunk)
        copy.write(COPY_TRAILER)


# --- the run -----------------------------------------------------------------------


@dataclass
class Generated:
    hourly_rows: int = 0
    daily_rows: int = 0
    energy_rows: int = 0
    site_rows: int = 0
    raw_rows: int = 0
    seconds: float = 0.0
    site_seconds: float = 0.0  # building site_daily_rollup with the refresh's SQL
    sizes: dict[str, int] | None = None


# Keys and indexes are built after the load (sorted, once) rather than row by row.
PK_TABLES: Final = {
    "reading_hourly_rollup": "(device_id, metric, channel, bucket)",
    "reading_daily_rollup": "(device_id, metric, channel, bucket)",
    "device_energy_daily": "(device_id, channel, day)",
    "site_daily_rollup": "(site, metric, channel, day)",
}
SECONDARY_INDEXES: Final = (
    "reading_daily_rollup_metric ON reading_daily_rollup (metric, channel, bucket)",
    "device_energy_daily_channel_day ON device_energy_daily (channel, day)"
    " INCLUDE (device_id, energy_wh)",
    "site_daily_rollup_metric ON site_daily_rollup (metric, channel, day)"
    " INCLUDE (site, energy_wh, samples, sum)",
)


def _vacuum(conn: psycopg.Connection[Any], tables: str) -> None:
    """VACUUM ANALYZE: sets the visibility map that index-only scans need, as
    autovacuum does on append-mostly tables (insert threshold, PostgreSQL 13+)."""
    conn.commit()
    conn.autocommit = True
    try:
        conn.execute(f"VACUUM (ANALYZE) {tables}".encode())
    finally:
        conn.autocommit = False


def generate(
    conn: psycopg.Connection[Any], city: City, days: int, end: datetime, log: Callable[[str], None]
) -> Generated:
    rng = np.random.default_rng(5)
    out = Generated()
    started = time.perf_counter()
    site_of = {d: site for site, members in city.sites.items() for d in members}
    with conn.cursor() as cur, cur.copy("COPY device (device_id, role, site) FROM STDIN") as copy:
        for device in city.devices:
            copy.write_row((device, "cabinet" if device.startswith("cab") else "leak_sensor",
                            site_of[device]))  # fmt: skip
    conn.commit()
    for table in PK_TABLES:
        conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey".encode())
    for index in SECONDARY_INDEXES:
        conn.execute(f"DROP INDEX {index.split()[0]}".encode())
    conn.commit()
    first = end - timedelta(days=days)
    meter = Meter(np.zeros((len(city.cabinets), 4)))

    def each_day() -> Iterator[tuple[bytes, bytes, bytes]]:
        for i in range(days):
            day = first + timedelta(days=i)
            day_us = int((day - PG_EPOCH) / timedelta(microseconds=1))
            hourly, daily, energy, n_hourly, n_daily, n_energy = day_rows(
                city, day_us, day.timetuple().tm_yday, meter, rng
            )
            out.hourly_rows += n_hourly
            out.daily_rows += n_daily
            out.energy_rows += n_energy
            if i % 30 == 29:
                log(f"  {i + 1}/{days} days generated ({out.hourly_rows:,} hourly rows)")
            yield hourly, daily, energy

    days_data = each_day()
    for hourly, daily, energy in days_data:
        _copy(conn, f"COPY reading_hourly_rollup {ROLLUP_COLUMNS} FROM STDIN (FORMAT BINARY)",
              iter([hourly]))  # fmt: skip
        _copy(conn, f"COPY reading_daily_rollup {ROLLUP_COLUMNS} FROM STDIN (FORMAT BINARY)",
              iter([daily]))  # fmt: skip
        _copy(conn, f"COPY device_energy_daily {ENERGY_COLUMNS} FROM STDIN (FORMAT BINARY)",
              iter([energy]))  # fmt: skip
        conn.commit()
    log(f"  {days} days loaded; building indexes")
    for table, key in PK_TABLES.items():
        conn.execute(f"ALTER TABLE {table} ADD PRIMARY KEY {key}".encode())
    for index in SECONDARY_INDEXES:
        conn.execute(f"CREATE INDEX {index}".encode())
    conn.commit()
    _vacuum(conn, "device, reading_daily_rollup, device_energy_daily")
    # The site rollup is built by the refresh's own statement, a month per
    # transaction, as a refresh catching up would.
    log("  building site_daily_rollup with the refresh's SQL")
    site_started = time.perf_counter()
    for i in range(0, days, 30):
        lo = first + timedelta(days=i)
        out.site_rows += site_rollup.roll_site_days(conn, lo, min(lo + timedelta(days=30), end))
        conn.commit()
    out.site_seconds = time.perf_counter() - site_started
    _vacuum(conn, "site_daily_rollup")
    raw_start = end - timedelta(days=RAW_DAYS)
    now_us = int((datetime.now(UTC) - PG_EPOCH) / timedelta(microseconds=1))
    raw, out.raw_rows = raw_rows(
        city, int((raw_start - PG_EPOCH) / timedelta(microseconds=1)), now_us, rng
    )
    _copy(
        conn,
        "COPY reading (time, device_id, channel, metric, value, boot_id, seq)"
        " FROM STDIN (FORMAT BINARY)",
        iter([raw]),
    )
    conn.execute(
        "INSERT INTO rollup_state (name, rolled_until, scanned_until)"
        " VALUES ('reading', %s, now())",
        (end,),
    )
    conn.execute(
        "INSERT INTO reading_latest (device_id, channel, metric, time, value)"
        " SELECT DISTINCT ON (device_id, channel, metric) device_id, channel, metric, time, value"
        " FROM reading ORDER BY device_id, channel, metric, time DESC"
    )
    conn.commit()
    conn.execute("ANALYZE")
    conn.commit()
    out.seconds = time.perf_counter() - started
    sizes = {}
    for table in (*PK_TABLES, "reading"):
        row = conn.execute("SELECT hypertable_size(%s::regclass)", (table,)).fetchone()
        sizes[table] = int(row[0]) if row is not None and row[0] is not None else 0
    row = conn.execute("SELECT pg_total_relation_size('reading_latest')").fetchone()
    sizes["reading_latest"] = int(row[0]) if row is not None else 0
    out.sizes = sizes
    conn.commit()
    return out


@dataclass(frozen=True)
class Query:
    name: str
    sql: str
    params: Callable[[random.Random], Sequence[Any]]
    # Comparison rows (the query the aggregates replace) run fewer times:
    # the city-wide one takes seconds.
    comparison: bool = False


def dashboard_queries(city: City, days: int, end: datetime) -> list[Query]:
    start = end - timedelta(days=days)
    sites = sorted(city.sites)

    def week(rng: random.Random) -> tuple[datetime, datetime]:
        lo = start + timedelta(hours=rng.randrange(0, (days - 7) * 24))
        return lo, lo + timedelta(days=7)

    def month(rng: random.Random) -> tuple[datetime, datetime]:
        lo = start + timedelta(days=rng.randrange(0, max(1, days - 30)))
        return lo, lo + timedelta(days=30)

    device_hourly = (
        "SELECT bucket, sum / samples AS mean, min, max FROM reading_hourly_rollup"
        " WHERE device_id = %s AND metric = 'power_w' AND channel = 0"
        " AND bucket >= %s AND bucket < %s ORDER BY bucket"
    )
    energy_per_day = (
        "SELECT bucket, sum(max - min) AS wh FROM reading_daily_rollup"
        " WHERE metric = 'energy_wh' AND channel = 0 AND bucket >= %s AND bucket < %s{extra}"
        " GROUP BY bucket ORDER BY bucket"
    )
    top20 = (
        "SELECT device_id, sum(energy_wh) AS wh FROM device_energy_daily"
        " WHERE channel = 0 AND day >= %s AND day < %s"
        " GROUP BY device_id ORDER BY wh DESC LIMIT 20"
    )
    return [
        Query("device_hourly_power_week", device_hourly,
              lambda r: (r.choice(city.cabinets), *week(r))),
        Query("device_hourly_power_year", device_hourly,
              lambda r: (r.choice(city.cabinets), start, end)),
        Query(
            "site_daily_energy_year",
            "SELECT day, energy_wh FROM site_daily_rollup WHERE site = %s"
            " AND metric = 'energy_wh' AND channel = 0 AND day >= %s AND day < %s ORDER BY day",
            lambda r: (r.choice(sites), start, end),
        ),
        Query(
            "site_daily_energy_year_from_device_days",
            energy_per_day.format(
                extra=" AND device_id IN (SELECT device_id FROM device WHERE site = %s)"
            ),
            lambda r: (start, end, r.choice(sites)),
            comparison=True,
        ),
        Query(
            "city_daily_energy_year",
            "SELECT day, sum(energy_wh) AS wh FROM site_daily_rollup"
            " WHERE metric = 'energy_wh' AND channel = 0 AND day >= %s AND day < %s"
            " GROUP BY day ORDER BY day",
            lambda r: (start + timedelta(days=r.randrange(0, 7)), end),
        ),
        Query(
            "city_daily_energy_year_from_device_days",
            energy_per_day.format(extra=""),
            lambda r: (start + timedelta(days=r.randrange(0, 7)), end),
            comparison=True,
        ),
        Query("top20_cabinets_energy_month", top20, month),
        Query(
            "top20_cabinets_energy_month_from_device_days",
            "SELECT device_id, sum(max - min) AS wh FROM reading_daily_rollup"
            " WHERE metric = 'energy_wh' AND channel = 0 AND bucket >= %s AND bucket < %s"
            " GROUP BY device_id ORDER BY wh DESC LIMIT 20",
            month,
            comparison=True,
        ),
        Query(
            "map_latest_per_device",
            "SELECT DISTINCT ON (l.device_id) l.device_id, d.site, l.metric, l.time, l.value"
            " FROM reading_latest l JOIN device d USING (device_id)"
            " WHERE l.channel = 0 AND l.metric IN ('power_w', 'noise_db')"
            " ORDER BY l.device_id, l.time DESC",
            lambda r: (),
        ),
        Query(
            "map_latest_distinct_on_raw",
            "SELECT DISTINCT ON (device_id) device_id, metric, time, value FROM reading"
            " WHERE channel = 0 AND metric IN ('power_w', 'noise_db') AND time >= %s"
            " ORDER BY device_id, time DESC",
            lambda r: (end - timedelta(hours=6),),
            comparison=True,
        ),
    ]  # fmt: skip


def time_query(
    conn: psycopg.Connection[Any], query: Query, repeats: int, rng: random.Random
) -> tuple[list[float], int]:
    samples: list[float] = []
    rows = 0
    for _ in range(repeats):
        params = query.params(rng)
        started = time.perf_counter()
        rows = len(conn.execute(query.sql.encode(), params).fetchall())
        samples.append((time.perf_counter() - started) * 1000.0)
    return samples, rows


def time_api_telemetry(
    url: str, city: City, end: datetime, repeats: int, rng: random.Random
) -> list[float]:
    """The telemetry route's query function (what GET /devices/{id}/telemetry runs),
    1-hour buckets over the last 7 days: rollups up to the watermark, raw after."""
    from psycopg.rows import dict_row

    from backend.api.queries import devices

    async def run() -> list[float]:
        samples: list[float] = []
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, row_factory=dict_row
        ) as conn:
            for _ in range(repeats):
                device = rng.choice(city.cabinets)
                started = time.perf_counter()
                await devices.device_exists(conn, device)
                await devices.telemetry(
                    conn,
                    device_id=device,
                    metric="power_w",
                    start=end - timedelta(days=5),
                    end=datetime.now(UTC),
                    bucket=timedelta(hours=1),
                    channel=None,
                )
                samples.append((time.perf_counter() - started) * 1000.0)
        return samples

    return asyncio.run(run())


def _percentiles(name: str, samples: Sequence[float], rows: int | None) -> Result:
    p99 = percentile(samples, 99)
    note = (
        f"p50 {percentile(samples, 50):.1f}, p95 {percentile(samples, 95):.1f},"
        f" max {max(samples):.1f} ms over {len(samples)} runs"
    )
    if rows is not None:
        note += f"; {rows:,} rows returned (last run)"
    note += "; goal p99 < 100 ms " + ("met" if p99 < GOAL_MS else "NOT met")
    return Result(f"{name} p99", p99, "ms", note)


@benchmark(
    "dashboard.queries",
    "dashboard queries over a year of hourly/daily rollups (10,000 devices): p50/p95/p99",
    order=60,
)
def dashboard(ctx: Context) -> list[Result]:
    from backend.storage.migrate import migrate
    from backend.storage.scratch import create_database, drop_database

    devices = ctx.size(10_000, 500)
    days = ctx.size(365, 60)
    repeats = ctx.size(200, 20)
    comparison_repeats = ctx.size(30, 5)
    services = ctx.services
    city = make_city(devices)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    url = create_database(services.admin_database_url, services.database_url, "bench_dash")
    try:
        migrate(url)
        with psycopg.connect(url) as conn:
            ctx.log(f"  generating {days} days of rollups for {devices:,} devices")
            made = generate(conn, city, days, end, ctx.log)
            rows = made.hourly_rows + made.daily_rows + made.raw_rows
            results = [
                Result(
                    "generation",
                    made.seconds,
                    "s",
                    f"{made.hourly_rows:,} hourly + {made.daily_rows:,} daily rollup rows,"
                    f" {made.energy_rows:,} device energy days, {made.site_rows:,} site days"
                    f" (built in {made.site_seconds:.0f} s by the refresh's SQL),"
                    f" {made.raw_rows:,} raw readings ({RAW_DAYS} days),"
                    f" {rows / made.seconds:,.0f} rows/s incl. ANALYZE",
                )
            ]
            results.append(
                Result(
                    "site rollup build per day",
                    made.site_seconds / days,
                    "s",
                    f"site_daily_rollup of all {len(city.sites)} sites, one day, from"
                    " reading_daily_rollup and device_energy_daily (what each daily refresh adds)",
                )
            )
            for table, size in (made.sizes or {}).items():
                results.append(Result(f"disk {table}", size / 2**20, "MiB", "with indexes"))
            conn.autocommit = True
            rng = random.Random(3)
            for query in dashboard_queries(city, days, end):
                time_query(conn, query, 3, rng)  # warm the cache and the plan
                runs = comparison_repeats if query.comparison else repeats
                samples, count = time_query(conn, query, runs, rng)
                ctx.log(f"  {query.name}: p99 {percentile(samples, 99):.1f} ms")
                results.append(_percentiles(query.name, samples, count))
        samples = time_api_telemetry(url, city, end, repeats, random.Random(4))
        results.append(_percentiles("api_telemetry_1h_5days", samples, None))
        return results
    finally:
        drop_database(services.admin_database_url, url)
