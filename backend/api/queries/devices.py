"""Devices and their telemetry (``device``, ``reading``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from psycopg import sql

from backend.api.db import AsyncConn
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
    widths the API allows); empty buckets are absent, not zero.
    """
    channel_filter = sql.SQL(" AND channel = %s") if channel is not None else sql.SQL("")
    params: list[Any] = [bucket, device_id, metric, start, end]
    if channel is not None:
        params.append(channel)
    cur = await conn.execute(
        sql.SQL(
            "SELECT time_bucket(%s::interval, time) AS time, channel::int AS channel,"
            " count(*) AS count, avg(value) AS avg, min(value) AS min, max(value) AS max"
            " FROM reading"
            " WHERE device_id = %s AND metric = %s AND time >= %s AND time < %s{}"
            " GROUP BY 1, 2 ORDER BY 1, 2"
        ).format(channel_filter),
        params,
    )
    return await cur.fetchall()
