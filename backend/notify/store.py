"""The notifier's SQL: fan-out, claiming due deliveries, recording outcomes.

All on ``psycopg.AsyncConnection`` with dict rows, autocommit, UTC session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg.rows import DictRow, dict_row

from backend.notify import routing
from backend.notify.backoff import Decision

Conn = psycopg.AsyncConnection[DictRow]

CURSOR_NAME: Final = "fanout"
APPLICATION_NAME: Final = "lumeau-notify"


async def connect(conninfo: str) -> Conn:
    conn = await psycopg.AsyncConnection.connect(
        conninfo,
        autocommit=True,
        row_factory=dict_row,
        connect_timeout=5,
        application_name=APPLICATION_NAME,
    )
    # to_jsonb() writes timestamps in the session's zone: make it UTC.
    await conn.execute("SET TIME ZONE 'UTC'")
    return conn


@dataclass(frozen=True)
class FanOut:
    """What one fan-out pass did."""

    history_rows: int  # rows read (new ones and late ones)
    deliveries: int  # delivery rows made
    stale: int  # rows older than max_age: no deliveries
    gaps_open: int  # ids still waiting for a late commit
    more: bool  # the batch was full: call again


_NEW_HISTORY: Final = """
WITH wanted AS (
    SELECT history_id FROM notifier_gap
    UNION
    (SELECT history_id FROM alert_history WHERE history_id > %(position)s
     ORDER BY history_id LIMIT %(batch)s)
)
SELECT h.history_id, h.at, h.action, h.severity, a.rule, a.site,
       pg_snapshot_xmax(pg_current_snapshot())::text AS snapshot_xmax
FROM wanted JOIN alert_history h USING (history_id) JOIN alert a ON a.alert_id = h.alert_id
ORDER BY h.history_id
"""

_ROUTES: Final = (
    "SELECT channel_id, enabled, min_severity, sites, rules, actions, created_at"
    " FROM notification_channel WHERE enabled"
)

# A gap whose row never appeared is dropped once every transaction that was
# running when it was noted has ended, and it is old enough that no insert
# could still be between taking its id and taking a transaction id.
_EXPIRE_GAPS: Final = """
DELETE FROM notifier_gap g
WHERE g.noted_xmax <= pg_snapshot_xmin(pg_current_snapshot())
  AND g.noted_at <= now() - %(min_age)s
  AND NOT EXISTS (SELECT 1 FROM alert_history h WHERE h.history_id = g.history_id)
"""


def route_of(row: Mapping[str, Any]) -> routing.Route:
    return routing.Route(
        channel_id=row["channel_id"],
        enabled=row["enabled"],
        min_severity=row["min_severity"],
        sites=frozenset(row["sites"]) if row["sites"] is not None else None,
        rules=frozenset(row["rules"]) if row["rules"] is not None else None,
        actions=frozenset(row["actions"]),
        created_at=row["created_at"],
    )


async def fan_out(
    conn: Conn,
    *,
    now: datetime,
    max_age: timedelta,
    batch: int = 500,
    gap_min_age: timedelta = timedelta(minutes=1),
) -> FanOut:
    """Turn new history rows into deliveries and move the cursor, in one transaction.

    The cursor row is locked first, so dispatchers fan out one at a time; the
    unique (channel_id, history_id) makes a repeated row harmless anyway.
    """
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT position FROM notifier_cursor WHERE name = %s FOR UPDATE", (CURSOR_NAME,)
        )
        row = await cur.fetchone()
        if row is None:
            raise RuntimeError("notifier_cursor has no 'fanout' row: run the migrations")
        position: int = row["position"]
        cur = await conn.execute(_NEW_HISTORY, {"position": position, "batch": batch})
        rows = await cur.fetchall()
        new_ids = [r["history_id"] for r in rows if r["history_id"] > position]
        late_ids = [r["history_id"] for r in rows if r["history_id"] <= position]
        fresh = [r for r in rows if r["at"] >= now - max_age]
        routes = [route_of(r) for r in await (await conn.execute(_ROUTES)).fetchall()]
        pairs = routing.deliveries(
            routes,
            (
                routing.Transition(
                    history_id=r["history_id"],
                    at=r["at"],
                    action=r["action"],
                    severity=r["severity"],
                    rule=r["rule"],
                    site=r["site"],
                )
                for r in fresh
            ),
        )
        made = 0
        if pairs:
            cur = await conn.execute(
                "INSERT INTO notification_delivery (channel_id, history_id, next_attempt_at)"
                " SELECT c, h, %s FROM unnest(%s::bigint[], %s::bigint[]) AS p(c, h)"
                " ON CONFLICT (channel_id, history_id) DO NOTHING",
                (now, [c for c, _ in pairs], [h for _, h in pairs]),
            )
            made = cur.rowcount
        if late_ids:
            await conn.execute("DELETE FROM notifier_gap WHERE history_id = ANY(%s)", (late_ids,))
        if new_ids:
            top = max(new_ids)
            # Ids skipped inside what was read: rolled back, or not committed yet.
            missing = sorted(set(range(position + 1, top + 1)) - set(new_ids))
            if missing:
                await conn.execute(
                    "INSERT INTO notifier_gap (history_id, noted_xmax)"
                    " SELECT unnest(%s::bigint[]), %s::xid8 ON CONFLICT DO NOTHING",
                    (missing, rows[0]["snapshot_xmax"]),
                )
            await conn.execute(
                "UPDATE notifier_cursor SET position = %s, updated_at = now() WHERE name = %s",
                (top, CURSOR_NAME),
            )
        await conn.execute(_EXPIRE_GAPS, {"min_age": gap_min_age})
        cur = await conn.execute("SELECT count(*) AS n FROM notifier_gap")
        gaps = await cur.fetchone()
    return FanOut(
        history_rows=len(rows),
        deliveries=made,
        stale=len(rows) - len(fresh),
        gaps_open=gaps["n"] if gaps else 0,
        more=len(new_ids) >= batch,
    )


@dataclass(frozen=True)
class Claimed:
    """A delivery taken for one attempt, with what sending it needs."""

    delivery_id: int
    attempts: int  # including this one
    created_at: datetime
    channel_id: int
    channel_name: str
    kind: str
    enabled: bool
    url: str | None
    recipients: list[str] | None
    secret: str | None
    history_id: int
    at: datetime
    action: str
    actor: str
    severity: str
    note: str | None
    alert: dict[str, Any]


# Oldest due first, at most `per_channel` in flight per channel (counting the
# ones this dispatcher is already sending), so a channel with a backlog
# behind a dead receiver cannot take every slot.
_CLAIM: Final = """
WITH ranked AS (
    SELECT delivery_id, channel_id,
           row_number() OVER (PARTITION BY channel_id
                              ORDER BY next_attempt_at, delivery_id) AS rank
    FROM notification_delivery
    WHERE state = 'pending' AND next_attempt_at <= %(now)s
),
busy AS (
    SELECT id, n FROM unnest(%(busy_ids)s::bigint[], %(busy_counts)s::int[]) AS b(id, n)
),
due AS (
    SELECT d.delivery_id
    FROM notification_delivery d
    JOIN ranked r USING (delivery_id)
    LEFT JOIN busy b ON b.id = r.channel_id
    WHERE d.state = 'pending' AND d.next_attempt_at <= %(now)s
      AND r.rank <= %(per_channel)s - COALESCE(b.n, 0)
    ORDER BY d.next_attempt_at, d.delivery_id
    LIMIT %(limit)s
    FOR UPDATE OF d SKIP LOCKED
),
claimed AS (
    UPDATE notification_delivery d
    SET attempts = d.attempts + 1, next_attempt_at = %(lease_until)s,
        last_attempt_at = %(now)s
    FROM due WHERE d.delivery_id = due.delivery_id
    RETURNING d.delivery_id, d.attempts, d.created_at, d.channel_id, d.history_id
)
SELECT k.delivery_id, k.attempts, k.created_at, k.channel_id, c.name AS channel_name,
       c.kind, c.enabled, c.url, c.recipients, c.secret,
       k.history_id, h.at, h.action, h.actor, h.severity, h.note, to_jsonb(a) AS alert
FROM claimed k
JOIN notification_channel c ON c.channel_id = k.channel_id
JOIN alert_history h ON h.history_id = k.history_id
JOIN alert a ON a.alert_id = h.alert_id
ORDER BY k.delivery_id
"""


async def claim(
    conn: Conn,
    *,
    now: datetime,
    limit: int,
    lease: timedelta,
    per_channel: int,
    in_flight: Mapping[int, int],
) -> list[Claimed]:
    """Take up to ``limit`` due deliveries: one attempt counted, leased until ``now + lease``.

    A dispatcher that dies mid-send leaves the row to be taken again when
    the lease ends (at-least-once; receivers dedupe by ``Lumeau-Delivery``).
    """
    if limit <= 0:
        return []
    busy = [(cid, n) for cid, n in in_flight.items() if n > 0]
    cur = await conn.execute(
        _CLAIM,
        {
            "now": now,
            "limit": limit,
            "lease_until": now + lease,
            "per_channel": per_channel,
            "busy_ids": [cid for cid, _ in busy],
            "busy_counts": [n for _, n in busy],
        },
    )
    return [Claimed(**row) for row in await cur.fetchall()]


async def due_count(conn: Conn, *, now: datetime) -> int:
    cur = await conn.execute(
        "SELECT count(*) AS n FROM notification_delivery"
        " WHERE state = 'pending' AND next_attempt_at <= %s",
        (now,),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def record(
    conn: Conn,
    claimed: Claimed,
    decision: Decision,
    *,
    status_code: int | None,
    now: datetime,
) -> bool:
    """Store an attempt's outcome; False if the lease was lost (another attempt owns the row)."""
    cur = await conn.execute(
        "UPDATE notification_delivery SET state = %(state)s,"
        " next_attempt_at = %(next)s, last_error = %(error)s,"
        " last_status_code = %(code)s,"
        " sent_at = CASE WHEN %(state)s = 'sent' THEN %(now)s::timestamptz END"
        " WHERE delivery_id = %(id)s AND attempts = %(attempts)s AND state = 'pending'",
        {
            "state": decision.state,
            "next": decision.next_attempt_at,
            "error": decision.last_error,
            "code": status_code,
            "now": now,
            "id": claimed.delivery_id,
            "attempts": claimed.attempts,
        },
    )
    return cur.rowcount == 1


async def channel_by_name(conn: Conn, name: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        "SELECT channel_id, name, kind, url, recipients, secret, enabled"
        " FROM notification_channel WHERE name = %s",
        (name,),
    )
    return await cur.fetchone()


def counts_by_channel(items: Sequence[Claimed]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for item in items:
        counts[item.channel_id] = counts.get(item.channel_id, 0) + 1
    return counts
