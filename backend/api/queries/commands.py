"""Commands to devices (``command``, view ``command_status``, migration 0012), audited."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from psycopg.types.json import Jsonb

from backend.api.db import AsyncConn
from backend.api.queries.auth import audit
from backend.commands.build import Command, Outbound

_COLUMNS: Final = (
    "command_id, device_id, name, args, issued_by, issued_at, expires_at, topic,"
    " via_gateway, published_at, publish_error, ack_at, ack_ok, ack_err_code,"
    " ack_err_reason, ack_result, acks, state"
)
MAX_ERROR_CHARS: Final = 500


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


async def device_for_command(conn: AsyncConn, device_id: str) -> dict[str, Any] | None:
    """Role, route and presence of ``device_id``, or None if unknown."""
    cur = await conn.execute(
        "SELECT device_id, role, last_gateway_id,"
        " coalesce(last_status, 'unknown') AS presence, last_status_at AS presence_since"
        " FROM device WHERE device_id = %s",
        (device_id,),
    )
    return await cur.fetchone()


async def record_command(
    conn: AsyncConn,
    command: Command,
    out: Outbound,
    *,
    actor: str,
    actor_token_id: int | None,
) -> None:
    """Write the command (state pending) and its audit row, in one transaction.

    Called before publishing, so a command that reaches the broker is always
    on record, with who asked for it.
    """
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO command (command_id, device_id, name, args, issued_by,"
            " issued_token_id, issued_at, expires_at, topic, via_gateway)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                command.command_id,
                command.device_id,
                command.name,
                Jsonb(command.args),
                actor,
                actor_token_id,
                _utc(command.issued_ms),
                _utc(command.expires_ms),
                out.topic,
                out.via_gateway,
            ),
        )
        await audit(
            conn,
            actor=actor,
            actor_token_id=actor_token_id,
            action=f"command.{command.name}",
            target=f"device:{command.device_id}",
            detail={
                "command_id": command.command_id,
                "args": command.args,
                "expires_at": _utc(command.expires_ms).isoformat(),
                "topic": out.topic,
            },
        )


async def mark_published(conn: AsyncConn, command_id: str) -> None:
    await conn.execute(
        "UPDATE command SET published_at = now() WHERE command_id = %s", (command_id,)
    )


async def mark_publish_failed(conn: AsyncConn, command_id: str, error: str) -> None:
    await conn.execute(
        "UPDATE command SET publish_error = %s WHERE command_id = %s",
        (error[:MAX_ERROR_CHARS], command_id),
    )


async def get_command(conn: AsyncConn, command_id: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM command_status WHERE command_id = %s", (command_id,)
    )
    return await cur.fetchone()


async def list_commands(
    conn: AsyncConn, device_id: str, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of ``device_id``'s commands, newest first, and how many it has."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM command_status WHERE device_id = %s"
        " ORDER BY issued_at DESC, command_id DESC LIMIT %s OFFSET %s",
        (device_id, limit, offset),
    )
    rows = await cur.fetchall()
    cur = await conn.execute("SELECT count(*) AS n FROM command WHERE device_id = %s", (device_id,))
    total = await cur.fetchone()
    return rows, int(total["n"]) if total else 0
