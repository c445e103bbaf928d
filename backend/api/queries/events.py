"""Device events (``event`` hypertable), newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import sql

from backend.api.db import AsyncConn
from backend.api.queries._where import Where


async def list_events(
    conn: AsyncConn,
    *,
    device_id: str | None,
    site: str | None,
    code: str | None,
    severity: str | None,
    active: bool | None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    where = Where()
    for column, value in (
        ("e.device_id", device_id),
        ("e.code", code),
        ("e.severity", severity),
        ("e.active", active),
    ):
        where.equals(column, value)
    if site is not None:
        where.add("e.device_id IN (SELECT device_id FROM device WHERE site = %s)", site)
    where.between("e.time", start, end)
    cur = await conn.execute(
        sql.SQL(
            "SELECT e.time, e.device_id, e.boot_id, e.seq, e.code, e.severity,"
            " e.channel::int AS channel, e.active, e.detail"
            " FROM event e{} ORDER BY e.time DESC, e.device_id, e.seq DESC"
            " LIMIT %s OFFSET %s"
        ).format(where.sql()),
        [*where.params, limit, offset],
    )
    return await cur.fetchall()
