"""Device events (``event`` hypertable), newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import sql

from backend.api.db import AsyncConn


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
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    for column, value in (
        ("e.device_id", device_id),
        ("e.code", code),
        ("e.severity", severity),
        ("e.active", active),
    ):
        if value is not None:
            clauses.append(sql.SQL("{} = %s").format(sql.SQL(column)))
            params.append(value)
    if site is not None:
        clauses.append(sql.SQL("e.device_id IN (SELECT device_id FROM device WHERE site = %s)"))
        params.append(site)
    if start is not None:
        clauses.append(sql.SQL("e.time >= %s"))
        params.append(start)
    if end is not None:
        clauses.append(sql.SQL("e.time < %s"))
        params.append(end)
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    cur = await conn.execute(
        sql.SQL(
            "SELECT e.time, e.device_id, e.boot_id, e.seq, e.code, e.severity,"
            " e.channel::int AS channel, e.active, e.detail"
            " FROM event e{} ORDER BY e.time DESC, e.device_id, e.seq DESC"
            " LIMIT %s OFFSET %s"
        ).format(where),
        [*params, limit, offset],
    )
    return await cur.fetchall()
