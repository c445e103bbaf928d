"""Per-device daily energy and per-site daily rollups (0015_site_rollups).

Dashboards over many devices (a site's or the whole city's daily energy over
a year, the top consumers of a month) would otherwise aggregate one daily row
per device and day at query time: 2.4 M rows for a city-wide year. These
tables hold the answer per day instead, and are kept by the same refresh as
the daily rollup (backend/maintenance/rollup.py), in the same transactions:

1. ``device_energy_daily``: per device, ``energy_wh`` channel and day, the
   sum of the counter's increases between consecutive raw readings (a lower
   value or a new boot is a reset: the value is then the energy since the
   restart, as backend/core/energy.py reads it), plus the day's first and
   last readings;
2. its ``energy_wh``: that sum plus the increase from the previous row's last
   reading to the day's first one, so consumption across midnight or across
   a gap in telemetry is counted once, on the day it shows up. A rebuilt day
   changes the crossing of the device's next row, which is recomputed too;
3. ``site_daily_rollup``: per ``device.site`` (the site the alert engine
   uses; the asset register's cabinet.site_id is the plan and may lag the
   hardware), day, metric and channel, the devices' daily rows summed, and
   for ``energy_wh`` the devices' consumption summed. A site-day is deleted
   and computed again as a whole, so it always equals the computation from
   its devices' rows.

Membership is read when a site-day is rolled up: moving a device to another
site does not rewrite the days already rolled up (the energy it used there
stays with the old site), but a late reading of such a day is rolled into
the device's new site and its old site keeps its old figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

Pair = tuple[str, datetime]  # (device_id, start of a day)

DAY: Final = timedelta(days=1)
COUNTER_METRIC: Final = "energy_wh"

# --- 1. per device and day: the counter's increases within the day ---------------

# ``source`` yields the raw energy readings to use, each with its day; the
# window restarts every day so a day is computed from its own readings.
_ENERGY_DAYS: Final = """
INSERT INTO device_energy_daily (day, device_id, channel, samples, first_time, first_value,
    first_boot, last_time, last_value, last_boot, increase_wh, resets, energy_wh)
SELECT day, device_id, channel, count(*),
       min(time), (array_agg(value ORDER BY time, boot_id, seq))[1],
       (array_agg(boot_id ORDER BY time, boot_id, seq))[1],
       max(time), (array_agg(value ORDER BY time DESC, boot_id DESC, seq DESC))[1],
       (array_agg(boot_id ORDER BY time DESC, boot_id DESC, seq DESC))[1],
       coalesce(sum(CASE WHEN reset THEN value ELSE value - prev_value END), 0),
       count(*) FILTER (WHERE reset), 0
FROM (
    SELECT *, prev_value IS NOT NULL AND (boot_id <> prev_boot OR value < prev_value) AS reset
    FROM (
        SELECT day, device_id, channel, time, value, boot_id, seq,
               lag(value) OVER w AS prev_value, lag(boot_id) OVER w AS prev_boot
        FROM ({source}) AS src
        WINDOW w AS (PARTITION BY device_id, channel, day ORDER BY time, boot_id, seq)
    ) AS ordered
) AS steps
GROUP BY day, device_id, channel
ON CONFLICT (device_id, channel, day) DO UPDATE SET
    samples = EXCLUDED.samples, first_time = EXCLUDED.first_time,
    first_value = EXCLUDED.first_value, first_boot = EXCLUDED.first_boot,
    last_time = EXCLUDED.last_time, last_value = EXCLUDED.last_value,
    last_boot = EXCLUDED.last_boot, increase_wh = EXCLUDED.increase_wh,
    resets = EXCLUDED.resets
"""

_RANGE_SOURCE: Final = (
    "SELECT time_bucket(INTERVAL '1 day', time) AS day, device_id, channel, time, value,"
    " boot_id, seq FROM reading"
    " WHERE metric = 'energy_wh' AND time >= %(lo)s AND time < %(hi)s"
)

# The constant bounds let TimescaleDB exclude chunks; the join probes
# reading_device_time per pair.
_PAIR_SOURCE: Final = (
    "SELECT p.day, r.device_id, r.channel, r.time, r.value, r.boot_id, r.seq"
    " FROM unnest(%(devices)s::text[], %(days)s::timestamptz[]) AS p(device_id, day)"
    " JOIN reading r ON r.device_id = p.device_id"
    " AND r.time >= p.day AND r.time < p.day + INTERVAL '1 day'"
    " WHERE r.metric = 'energy_wh' AND r.time >= %(lo)s AND r.time < %(hi)s"
)

# --- 2. consumption of the day: add the crossing from the previous row ------------

_ENERGY_WH: Final = """
WITH targets AS ({targets}),
computed AS (
    SELECT e.device_id, e.channel, e.day,
           e.increase_wh + CASE
               WHEN p.last_value IS NULL THEN 0
               WHEN e.first_boot <> p.last_boot OR e.first_value < p.last_value THEN e.first_value
               ELSE e.first_value - p.last_value
           END AS wh
    FROM targets t
    JOIN device_energy_daily e
      ON e.device_id = t.device_id AND e.channel = t.channel AND e.day = t.day
    LEFT JOIN LATERAL (
        SELECT last_value, last_boot FROM device_energy_daily b
        WHERE b.device_id = e.device_id AND b.channel = e.channel AND b.day < e.day
        ORDER BY b.day DESC LIMIT 1
    ) AS p ON true
)
UPDATE device_energy_daily d SET energy_wh = c.wh
FROM computed c
WHERE d.device_id = c.device_id AND d.channel = c.channel AND d.day = c.day
  AND d.energy_wh IS DISTINCT FROM c.wh
RETURNING d.device_id, d.day
"""

# Every row from lo on: the days just built and, when older days are built
# again, the rows after them (a refresh moving forward has none).
_RANGE_TARGETS: Final = (
    "SELECT device_id, channel, day FROM device_energy_daily WHERE day >= %(lo)s"
)

# The pairs' rows and, per channel, the next row of the device after each.
_PAIR_TARGETS: Final = (
    "SELECT e.device_id, e.channel, e.day"
    " FROM unnest(%(devices)s::text[], %(days)s::timestamptz[]) AS p(device_id, day)"
    " JOIN device_energy_daily e ON e.device_id = p.device_id AND e.day = p.day"
    " UNION"
    " SELECT n.device_id, n.channel, n.day"
    " FROM unnest(%(devices)s::text[], %(days)s::timestamptz[]) AS p(device_id, day)"
    " JOIN device_energy_daily e ON e.device_id = p.device_id AND e.day = p.day"
    " CROSS JOIN LATERAL (SELECT device_id, channel, day FROM device_energy_daily n"
    " WHERE n.device_id = e.device_id AND n.channel = e.channel AND n.day > e.day"
    " ORDER BY n.day LIMIT 1) AS n"
)

# --- 3. per site and day ----------------------------------------------------------

_SITE_ROWS: Final = """
INSERT INTO site_daily_rollup
    (day, site, metric, channel, devices, samples, sum, min, max, energy_wh)
SELECT r.bucket, d.site, r.metric, r.channel, count(*), sum(r.samples)::bigint,
       sum(r.sum), min(r.min), max(r.max),
       CASE WHEN r.metric = 'energy_wh' THEN sum(e.energy_wh) END
FROM {days}
JOIN reading_daily_rollup r ON r.device_id = d.device_id AND {match}
LEFT JOIN device_energy_daily e
  ON r.metric = 'energy_wh' AND e.device_id = r.device_id AND e.channel = r.channel
 AND e.day = r.bucket
WHERE r.bucket >= %(lo)s AND r.bucket < %(hi)s
GROUP BY r.bucket, d.site, r.metric, r.channel
"""

_SITE_RANGE_DELETE: Final = "DELETE FROM site_daily_rollup WHERE day >= %(lo)s AND day < %(hi)s"
_SITE_RANGE_ROWS: Final = _SITE_ROWS.format(
    days="device d", match="d.site IS NOT NULL AND r.bucket >= %(lo)s AND r.bucket < %(hi)s"
)

# The site-days of (device, day) pairs, by each device's current site.
_SITE_DAYS: Final = (
    "CREATE TEMP TABLE site_day ON COMMIT DROP AS"
    " SELECT DISTINCT d.site, p.day"
    " FROM unnest(%(devices)s::text[], %(days)s::timestamptz[]) AS p(device_id, day)"
    " JOIN device d ON d.device_id = p.device_id WHERE d.site IS NOT NULL"
)
_SITE_PAIRS_DELETE: Final = (
    "DELETE FROM site_daily_rollup s USING site_day sd"
    " WHERE s.site = sd.site AND s.day = sd.day AND s.day >= %(lo)s AND s.day < %(hi)s"
)
_SITE_PAIRS_ROWS: Final = _SITE_ROWS.format(
    days="site_day sd JOIN device d ON d.site = sd.site", match="r.bucket = sd.day"
)


@dataclass
class SiteReport:
    """What one call changed."""

    energy_days: int = 0  # (device, channel, day) rows written from raw readings
    energy_changed: int = 0  # rows whose consumption changed
    site_days: int = 0  # site rollup rows written


def roll_days(conn: psycopg.Connection[Any], lo: datetime, hi: datetime) -> SiteReport:
    """Build the whole days ``[lo, hi)`` of every device and site.

    Runs inside the caller's transaction, after ``reading_daily_rollup``
    holds those days.
    """
    report = SiteReport()
    bounds = {"lo": lo, "hi": hi}
    cur = conn.execute(_ENERGY_DAYS.format(source=_RANGE_SOURCE).encode(), bounds)
    report.energy_days = max(cur.rowcount, 0)
    changed = conn.execute(_ENERGY_WH.format(targets=_RANGE_TARGETS).encode(), bounds).fetchall()
    report.energy_changed = len(changed)
    report.site_days = roll_site_days(conn, lo, hi)
    # Rows after hi whose crossing changed (days built again behind the
    # newest ones): their sites' days too.
    outside = sorted({(device, day) for device, day in changed if day >= hi})
    if outside:
        report.site_days += _roll_site_pairs(conn, outside)
    return report


def roll_site_days(conn: psycopg.Connection[Any], lo: datetime, hi: datetime) -> int:
    """Build every site's days ``[lo, hi)`` from the devices' daily and energy
    rows (already there); the number of site rows written."""
    bounds = {"lo": lo, "hi": hi}
    conn.execute(_SITE_RANGE_DELETE.encode(), bounds)
    cur = conn.execute(_SITE_RANGE_ROWS.encode(), bounds)
    return max(cur.rowcount, 0)


def reroll_pairs(conn: psycopg.Connection[Any], pairs: Sequence[Pair]) -> SiteReport:
    """Build again the (device, day) pairs that received late data, the next
    energy row of each, and the site-days of all of them.

    Runs inside the caller's transaction, after ``reading_daily_rollup``
    holds the pairs' new rows.
    """
    report = SiteReport()
    if not pairs:
        return report
    params = _pair_params(pairs)
    cur = conn.execute(_ENERGY_DAYS.format(source=_PAIR_SOURCE).encode(), params)
    report.energy_days = max(cur.rowcount, 0)
    changed = conn.execute(_ENERGY_WH.format(targets=_PAIR_TARGETS).encode(), params).fetchall()
    report.energy_changed = len(changed)
    site_pairs = sorted(set(pairs) | {(device, day) for device, day in changed})
    report.site_days = _roll_site_pairs(conn, site_pairs)
    return report


def _roll_site_pairs(conn: psycopg.Connection[Any], pairs: Sequence[Pair]) -> int:
    params = _pair_params(pairs)
    conn.execute(_SITE_DAYS.encode(), params)
    conn.execute(_SITE_PAIRS_DELETE.encode(), params)
    cur = conn.execute(_SITE_PAIRS_ROWS.encode(), params)
    conn.execute(b"DROP TABLE site_day")
    return max(cur.rowcount, 0)


def _pair_params(pairs: Sequence[Pair]) -> dict[str, Any]:
    days = [day for _, day in pairs]
    return {
        "devices": [device for device, _ in pairs],
        "days": days,
        "lo": min(days),
        "hi": max(days) + DAY,
    }
