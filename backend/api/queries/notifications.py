"""Notification channels and deliveries (migration 0011); writes audited in api_audit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

import psycopg
from psycopg import sql

from backend.api.db import AsyncConn
from backend.api.queries._where import Where
from backend.api.queries.auth import audit

_CHANNEL_COLUMNS: Final = (
    "channel_id, name, kind, url, recipients, audience_role, sites, min_severity, rules,"
    " actions, enabled, created_at, created_by, updated_at, secret_set_at"
)
# What PATCH may change, in this order.
UPDATABLE: Final = (
    "name",
    "url",
    "recipients",
    "audience_role",
    "sites",
    "min_severity",
    "rules",
    "actions",
    "enabled",
)


class ChannelProblem(Exception):
    """A write the channel's state refuses; ``kind`` says how (conflict or unprocessable)."""

    def __init__(self, kind: Literal["conflict", "invalid"], detail: str, field: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.field = field


def _audit_detail(values: Mapping[str, Any]) -> dict[str, Any]:
    # Never the secret; the URL may embed a receiver's token, so only its origin.
    detail = {k: v for k, v in values.items() if k not in ("secret", "url")}
    if values.get("url"):
        from urllib.parse import urlsplit

        parts = urlsplit(values["url"])
        detail["url_origin"] = f"{parts.scheme}://{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )
    return detail


async def list_channels(conn: AsyncConn) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"SELECT {_CHANNEL_COLUMNS} FROM notification_channel ORDER BY channel_id"
    )
    return await cur.fetchall()


async def get_channel(conn: AsyncConn, channel_id: int) -> dict[str, Any] | None:
    cur = await conn.execute(
        f"SELECT {_CHANNEL_COLUMNS} FROM notification_channel WHERE channel_id = %s",
        (channel_id,),
    )
    return await cur.fetchone()


async def create_channel(
    conn: AsyncConn,
    values: Mapping[str, Any],
    *,
    secret: str | None,
    actor: str,
    actor_token_id: int | None,
) -> dict[str, Any]:
    """Insert a channel, audited; ``ChannelProblem`` if the name is taken."""
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO notification_channel (name, kind, url, recipients, secret,"
            " secret_set_at, audience_role, sites, min_severity, rules, actions, enabled,"
            " created_by) VALUES (%(name)s, %(kind)s, %(url)s, %(recipients)s, %(secret)s,"
            " CASE WHEN %(secret)s::text IS NULL THEN NULL ELSE now() END, %(audience_role)s,"
            " %(sites)s, %(min_severity)s, %(rules)s, %(actions)s, %(enabled)s, %(actor)s)"
            f" ON CONFLICT (name) DO NOTHING RETURNING {_CHANNEL_COLUMNS}",
            {**values, "secret": secret, "actor": actor},
        )
        row = await cur.fetchone()
        if row is None:
            raise ChannelProblem(
                "conflict", f"a notification channel named {values['name']!r} exists", "body.name"
            )
        await audit(
            conn,
            actor=actor,
            actor_token_id=actor_token_id,
            action="notification_channel.create",
            target=f"notification_channel:{row['channel_id']}",
            detail=_audit_detail(values),
        )
    return row


async def update_channel(
    conn: AsyncConn,
    channel_id: int,
    changes: Mapping[str, Any],
    *,
    new_secret: str | None,
    actor: str,
    actor_token_id: int | None,
) -> dict[str, Any] | None:
    """Apply ``changes`` (and a new secret), audited; None if there is no such channel."""
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT kind FROM notification_channel WHERE channel_id = %s FOR UPDATE",
            (channel_id,),
        )
        current = await cur.fetchone()
        if current is None:
            return None
        kind = current["kind"]
        if kind == "webhook" and "recipients" in changes:
            raise ChannelProblem(
                "invalid", "a webhook channel has no recipients", "body.recipients"
            )
        if kind == "email" and "url" in changes:
            raise ChannelProblem("invalid", "an e-mail channel has no url", "body.url")
        if kind == "email" and new_secret is not None:
            raise ChannelProblem(
                "invalid", "an e-mail channel has no secret to rotate", "query.rotate_secret"
            )
        assignments: list[sql.Composable] = [
            sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name))
            for name in UPDATABLE
            if name in changes
        ]
        params: dict[str, Any] = {name: changes[name] for name in UPDATABLE if name in changes}
        if new_secret is not None:
            assignments.append(sql.SQL("secret = %(secret)s, secret_set_at = now()"))
            params["secret"] = new_secret
        assignments.append(sql.SQL("updated_at = now()"))
        params["channel_id"] = channel_id
        try:
            async with conn.transaction():
                cur = await conn.execute(
                    sql.SQL(
                        "UPDATE notification_channel SET {} WHERE channel_id = %(channel_id)s"
                        " RETURNING " + _CHANNEL_COLUMNS
                    ).format(sql.SQL(", ").join(assignments)),
                    params,
                )
        except psycopg.errors.UniqueViolation:
            raise ChannelProblem(
                "conflict",
                f"a notification channel named {changes.get('name')!r} exists",
                "body.name",
            ) from None
        row = await cur.fetchone()
        assert row is not None
        detail = _audit_detail(changes)
        if new_secret is not None:
            detail["secret_rotated"] = True
        await audit(
            conn,
            actor=actor,
            actor_token_id=actor_token_id,
            action="notification_channel.update",
            target=f"notification_channel:{channel_id}",
            detail=detail,
        )
    return row


async def delete_channel(
    conn: AsyncConn, channel_id: int, *, actor: str, actor_token_id: int | None
) -> bool:
    """Delete a channel and its deliveries, audited; False if there is no such channel."""
    async with conn.transaction():
        cur = await conn.execute(
            "DELETE FROM notification_channel WHERE channel_id = %s RETURNING name, kind,"
            " (SELECT count(*) FROM notification_delivery d WHERE d.channel_id = %s) AS deliveries",
            (channel_id, channel_id),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        await audit(
            conn,
            actor=actor,
            actor_token_id=actor_token_id,
            action="notification_channel.delete",
            target=f"notification_channel:{channel_id}",
            detail={"name": row["name"], "kind": row["kind"], "deliveries": row["deliveries"]},
        )
    return True


async def list_deliveries(
    conn: AsyncConn, *, state: str | None, channel_id: int | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    where = Where()
    where.equals("d.state", state)
    where.equals("d.channel_id", channel_id)
    cur = await conn.execute(
        sql.SQL(
            "SELECT d.delivery_id, d.channel_id, c.name AS channel_name, c.kind AS channel_kind,"
            " d.history_id, h.alert_id, h.action, d.state, d.attempts, d.next_attempt_at,"
            " d.last_attempt_at, d.last_error, d.last_status_code, d.sent_at, d.created_at"
            " FROM notification_delivery d"
            " JOIN notification_channel c ON c.channel_id = d.channel_id"
            " JOIN alert_history h ON h.history_id = d.history_id{}"
            " ORDER BY d.delivery_id DESC LIMIT %s OFFSET %s"
        ).format(where.sql()),
        [*where.params, limit, offset],
    )
    return await cur.fetchall()
