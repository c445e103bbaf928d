"""Alerts and their history (migration 0009): lists, one alert, people's actions.

Each action (acknowledge, assign, comment, resolve) is one transaction: the
alert row is locked (``SELECT ... FOR UPDATE``), the transition checked, the
row updated, one ``alert_history`` row appended (its trigger announces it on
``lumeau_alert`` at commit) and one ``api_audit`` row written. Two people
acting on one alert at once are thus served one after the other, and the
second sees the first one's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from psycopg import sql
from psycopg.types.json import Jsonb

from backend.api.db import AsyncConn
from backend.api.queries._where import Where
from backend.api.queries.auth import audit

HISTORY_LIMIT: Final = 1000  # history rows shown with one alert (the latest)

_ALERT_COLUMNS: Final = (
    "a.alert_id, a.rule, a.dedup_key, a.device_id, a.site, a.channel::int AS channel,"
    " a.severity, a.state, a.title, a.detail, a.started_at, a.last_seen_at, a.cleared_at,"
    " a.occurrences, a.created_at, a.updated_at, a.acknowledged_at, a.acknowledged_by,"
    " a.assignee, a.resolved_at, a.resolved_by"
)

Action = Literal["acknowledge", "assign", "comment", "resolve"]

# The history action each request writes, and the states it may start from.
_ACTIONS: Final[dict[Action, tuple[str, frozenset[str]]]] = {
    "acknowledge": ("acknowledged", frozenset({"open"})),
    "assign": ("assigned", frozenset({"open", "acknowledged"})),
    "comment": ("commented", frozenset({"open", "acknowledged", "resolved"})),
    "resolve": ("resolved", frozenset({"open", "acknowledged"})),
}


class AlertProblem(Exception):
    """A request the alert (or the named user) refuses; ``kind`` says how."""

    def __init__(self, kind: Literal["unknown_alert", "conflict", "bad_assignee"], detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


async def list_alerts(
    conn: AsyncConn,
    *,
    states: Sequence[str],
    severities: Sequence[str] | None,
    site: str | None,
    device_id: str | None,
    rule: str | None,
    assignee: str | None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    where = Where()
    where.add("a.state = ANY(%s)", list(states))
    if severities:
        where.add("a.severity = ANY(%s)", list(severities))
    for column, value in (
        ("a.site", site),
        ("a.device_id", device_id),
        ("a.rule", rule),
        ("a.assignee", assignee),
    ):
        where.equals(column, value)
    where.between("a.started_at", start, end)
    cur = await conn.execute(
        sql.SQL("SELECT {} FROM alert a{} ORDER BY a.started_at DESC, a.alert_id DESC").format(
            sql.SQL(_ALERT_COLUMNS), where.sql()
        )
        + sql.SQL(" LIMIT %s OFFSET %s"),
        [*where.params, limit, offset],
    )
    return await cur.fetchall()


async def get_alert(conn: AsyncConn, alert_id: int) -> dict[str, Any] | None:
    """The alert with its ``history`` (oldest first, the latest ``HISTORY_LIMIT``)."""
    cur = await conn.execute(
        sql.SQL("SELECT {} FROM alert a WHERE a.alert_id = %s").format(sql.SQL(_ALERT_COLUMNS)),
        (alert_id,),
    )
    alert = await cur.fetchone()
    if alert is None:
        return None
    cur = await conn.execute(
        "SELECT * FROM (SELECT history_id, at, action, actor, from_state, to_state, severity,"
        " note, detail FROM alert_history WHERE alert_id = %s"
        " ORDER BY history_id DESC LIMIT %s) latest ORDER BY history_id",
        (alert_id, HISTORY_LIMIT),
    )
    alert["history"] = await cur.fetchall()
    return alert


@dataclass(frozen=True)
class Actor:
    """Who acts: the API user (history, audit) and the token used (audit)."""

    user: str
    token_id: int | None


async def act(
    conn: AsyncConn,
    alert_id: int,
    action: Action,
    *,
    actor: Actor,
    note: str | None = None,
    assignee: str | None = None,
) -> dict[str, Any]:
    """Apply a person's ``action`` to the alert in one transaction; return it with history.

    Raises ``AlertProblem``: ``unknown_alert`` (404), ``conflict`` (409: the
    alert's state refuses the action), ``bad_assignee`` (422).
    """
    history_action, allowed_from = _ACTIONS[action]
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT state, severity, assignee, acknowledged_by, acknowledged_at,"
            " resolved_by, resolved_at FROM alert WHERE alert_id = %s FOR UPDATE",
            (alert_id,),
        )
        row = await cur.fetchone()
        if row is None:
            raise AlertProblem("unknown_alert", f"no alert {alert_id}")
        state: str = row["state"]
        if state not in allowed_from:
            raise AlertProblem("conflict", refusal(alert_id, action, row))
        detail: dict[str, Any] = {}
        if action == "acknowledge":
            to_state = "acknowledged"
            await conn.execute(
                "UPDATE alert SET state = 'acknowledged', acknowledged_at = now(),"
                " acknowledged_by = %s, updated_at = now() WHERE alert_id = %s",
                (actor.user, alert_id),
            )
        elif action == "resolve":
            to_state = "resolved"
            await conn.execute(
                "UPDATE alert SET state = 'resolved', resolved_at = now(), resolved_by = %s,"
                " updated_at = now() WHERE alert_id = %s",
                (actor.user, alert_id),
            )
        elif action == "assign":
            to_state = state
            if assignee is not None:
                await _check_assignee(conn, assignee)
            detail = {"assignee": assignee, "previous_assignee": row["assignee"]}
            await conn.execute(
                "UPDATE alert SET assignee = %s, updated_at = now() WHERE alert_id = %s",
                (assignee, alert_id),
            )
        else:
            to_state = state
            await conn.execute(
                "UPDATE alert SET updated_at = now() WHERE alert_id = %s", (alert_id,)
            )
        cur = await conn.execute(
            "INSERT INTO alert_history (alert_id, action, actor, from_state, to_state,"
            " severity, note, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING history_id",
            (
                alert_id,
                history_action,
                actor.user,
                state,
                to_state,
                row["severity"],
                note,
                Jsonb(detail),
            ),
        )
        inserted = await cur.fetchone()
        assert inserted is not None
        await audit(
            conn,
            actor=actor.user,
            actor_token_id=actor.token_id,
            action=f"alert.{action}",
            target=f"alert:{alert_id}",
            detail={
                "history_id": inserted["history_id"],
                "from_state": state,
                "to_state": to_state,
                **detail,
            },
        )
        alert = await get_alert(conn, alert_id)
    assert alert is not None
    return alert


def refusal(alert_id: int, action: Action, row: dict[str, Any]) -> str:
    """Why the alert in ``row`` (its state and who moved it there) refuses ``action``."""
    state = row["state"]
    if state == "resolved":
        by, at = row["resolved_by"], row["resolved_at"]
        verb = {"acknowledge": "acknowledged", "assign": "assigned", "resolve": "resolved again"}
        return (
            f"alert {alert_id} is resolved (by {by} at {_iso(at)}):"
            f" it cannot be {verb.get(action, action)}"
        )
    # Only acknowledge refuses a live alert: one that is already acknowledged.
    by, at = row["acknowledged_by"], row["acknowledged_at"]
    return f"alert {alert_id} is already acknowledged (by {by} at {_iso(at)})"


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "an unknown time"


async def _check_assignee(conn: AsyncConn, name: str) -> None:
    cur = await conn.execute("SELECT disabled_at FROM api_user WHERE name = %s", (name,))
    user = await cur.fetchone()
    if user is None:
        raise AlertProblem("bad_assignee", f"no user {name!r}: an assignee must be an API user")
    if user["disabled_at"] is not None:
        raise AlertProblem("bad_assignee", f"user {name!r} is disabled")


# --- the live stream's replay ----------------------------------------------------------


async def history_after(
    conn: AsyncConn,
    *,
    after: int,
    site: str | None,
    severities: Sequence[str] | None,
    limit: int,
) -> tuple[list[dict[str, Any]], bool]:
    """History rows after ``after`` that pass the filters, oldest first, as the
    fields of the ``lumeau_alert`` notification; at most the latest ``limit``
    of them, and whether older ones were left out."""
    where = Where()
    where.add("h.history_id > %s", after)
    where.equals("a.site", site)
    if severities is not None:
        where.add("h.severity = ANY(%s)", list(severities))
    cur = await conn.execute(
        sql.SQL(
            "SELECT h.history_id, h.alert_id, h.action, h.to_state AS state, h.severity,"
            " a.rule, a.device_id, a.site"
            " FROM alert_history h JOIN alert a USING (alert_id){}"
            " ORDER BY h.history_id DESC LIMIT %s"
        ).format(where.sql()),
        [*where.params, limit + 1],
    )
    rows = await cur.fetchall()
    truncated = len(rows) > limit
    return rows[:limit][::-1], truncated
