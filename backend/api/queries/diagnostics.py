"""What went wrong on the data path: dead letters and sequence gaps."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from psycopg import sql

from backend.api.db import AsyncConn
from backend.api.queries._where import Where

PAYLOAD_PREVIEW_BYTES: Final = 4096


async def list_dead_letters(
    conn: AsyncConn,
    *,
    device_id: str | None,
    code: str | None,
    source: str | None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """Newest first, with the payload cut to its first ``PAYLOAD_PREVIEW_BYTES``."""
    where = Where()
    for column, value in (("device_id", device_id), ("code", code), ("source", source)):
        where.equals(column, value)
    where.between("received_at", start, end)
    cur = await conn.execute(
        sql.SQL(
            "SELECT id, received_at, topic, code, reason, field, device_id, source,"
            " octet_length(payload) AS payload_size,"
            " substring(payload FROM 1 FOR %s) AS payload_head"
            " FROM dead_letter{} ORDER BY received_at DESC, id DESC LIMIT %s OFFSET %s"
        ).format(where.sql()),
        [PAYLOAD_PREVIEW_BYTES, *where.params, limit, offset],
    )
    return await cur.fetchall()


async def sequence_gaps(
    conn: AsyncConn, *, device_id: str | None, start: datetime, end: datetime, limit: int
) -> list[dict[str, Any]]:
    """Gaps seen within ``[start, end)`` (``sequence_gaps()`` of migration 0003)."""
    device_filter = sql.SQL(" WHERE gap_device_id = %s") if device_id is not None else sql.SQL("")
    params: list[Any] = [start, end]
    if device_id is not None:
        params.append(device_id)
    cur = await conn.execute(
        sql.SQL(
            "SELECT gap_device_id AS device_id, gap_boot_id AS boot_id, first_missing,"
            " last_missing, missing, after_time, before_time"
            " FROM sequence_gaps(%s, %s){}"
            " ORDER BY after_time DESC, device_id, boot_id LIMIT %s"
        ).format(device_filter),
        [*params, limit],
    )
    return await cur.fetchall()
