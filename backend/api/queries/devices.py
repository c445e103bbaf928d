"""Devices and their telemetry (``device``, ``reading``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from psycopg import sql

from backend.api.db import AsyncConn
from backend.api.queries import rollup_plan
from backend.api.queries._where import Where
from backend.api.schemas import Presence

_COLUMNS: Final = sql.SQL(
    "device_id, role, site,"
    " coalesce(last_status, 'unknown') AS presence, last_status_at AS presence_since,"
    " first_seen, last_seen, last_message_at, last_boot_id, last_gateway_id, fw"
)


def _device_filters(
    role: str | None, site: str | None, status: Presence | None
) -> tuple[sql.Composable, list[Any]]:
    where = Where()
    where.equals("role", role)
    where.equals("site", site)
    if status is Presence.UNKNOWN:
        where.add("last_status IS NULL")
    elif status is not None:
        where.add("last_status = %s", status.value)
    return where.sql(), where.params


async def list_devices(
    conn: AsyncConn,
    *,
    role: str | None,
    site: str | None,
    status: Presence | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """One page of devices ordered by id, and how many match in all."""
    where, params = _device_filters(role, site, status)
    cur = await conn.execute(
        sql.SQL("SELECT {} FROM device{} ORDER BY device_id LIMIT %s OFFSET %s").format(
            _COLUMNS, where
        ),
        [*params, limit, offset],
    )
    rows = await cur.fetchall()
    cur = await conn.execute(sql.SQL("SELECT count(*) AS n FROM device{}").format(where), params)
    total = await cur.fetchone()
    return rows, int(total["n"]) if total else 0


async def get_device(conn: AsyncConn, device_id: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        sql.SQL("SELECT {} FROM device WHERE device_id = %s").format(_COLUMNS), (device_id,)
    )
    return await cur.fetchone()


async def device_exists(conn: AsyncConn, device_id: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM device WHERE device_id = %s", (device_id,))
    return await cur.fetchone() is not None


async def rollups_complete_until(conn: AsyncConn) -> datetime | None:
    """Up to where the rollups hold every reading (None: nowhere yet).

    The full edition's real-time aggregates are complete up to now: they say
    'infinity', which becomes a far-future time here.
    """
    cur = await conn.execute(
        "SELECT CASE WHEN isfinite(c) THEN c END AS until, c = 'infinity' AS everything"
        " FROM reading_rollup_complete_until() AS c"
    )
    row = await cur.fetchone()
    if row is None:
        return None
    if row["everything"]:
        return _FAR_FUTURE
    until: datetime | None = row["until"]
    return until


_FAR_FUTURE: Final = datetime(9999, 1, 1, tzinfo=UTC)

_ROLLUP_BUCKETS: Final = (
    "SELECT time_bucket(%s::interval, bucket) AS time, channel::int AS channel,"
    " sum(samples)::bigint AS count, sum(sum) / sum(samples)::float8 AS avg,"
    " min(min) AS min, max(max) AS max"
    " FROM {table}"
    " WHERE device_id = %s AND metric = %s AND bucket >= %s AND bucket < %s{channel}"
    " GROUP BY 1, 2"
)
_RAW_BUCKETS: Final = (
    "SELECT time_bucket(%s::interval, time) AS time, channel::int AS channel,"
    " count(*) AS count, avg(value) AS avg, min(value) AS min, max(value) AS max"
    " FROM reading"
    " WHERE device_id = %s AND metric = %s AND time >= %s AND time < %s{channel}"
    " GROUP BY 1, 2"
)


async def telemetry(
    conn: AsyncConn,
    *,
    device_id: str,
    metric: str,
    start: datetime,
    end: datetime,
    bucket: timedelta,
    channel: int | None,
) -> list[dict[str, Any]]:
    """avg/min/max/count per ``time_bucket`` and channel, in time order.

    Buckets are aligned on TimescaleDB's default origin (midnight UTC for the
    widths the API allows); empty buckets are absent, not zero. Buckets of an
    hour or more are read from the rollups where those hold every reading
    (``rollup_plan``), from raw readings elsewhere: same numbers, the mean
    up to floating-point rounding (a sum of sums instead of one sum).
    """
    complete_until = None
    if rollup_plan.rollup_for(bucket) is not None:
        complete_until = await rollups_complete_until(conn)
    split = rollup_plan.plan(start, end, bucket, complete_until)
    channel_filter = sql.SQL(" AND channel = %s") if channel is not None else sql.SQL("")
    parts: list[sql.Composable] = []
    params: list[Any] = []

    def add(template: str, lo: datetime, hi: datetime, table: str = "") -> None:
        parts.append(
            sql.SQL(template).format(
                table=sql.Identifier(table) if table else sql.SQL(""), channel=channel_filter
            )
        )
        params.extend([bucket, device_id, metric, lo, hi])
        if channel is not None:
            params.append(channel)

    if split.rollup is not None and split.rollup_range is not None:
        add(_ROLLUP_BUCKETS, *split.rollup_range, table=split.rollup)
    for lo, hi in split.raw_ranges:
        add(_RAW_BUCKETS, lo, hi)
    cur = await conn.execute(sql.SQL(" UNION ALL ").join(parts) + sql.SQL(" ORDER BY 1, 2"), params)
    return await cur.fetchall()
