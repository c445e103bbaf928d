"""Reading and writing alerts, their history, the conditions and the cursors.

The engine calls these inside one transaction per evaluation: live alerts
are locked (``SELECT ... FOR UPDATE``) before they are judged, so a user's
acknowledgement or resolution through the API waits for the engine or is
seen by it, never lost. Each alert change is its row's UPDATE (or INSERT)
plus its history rows; the partial unique index on live dedup keys is the
last guard against two live alerts for one key.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from backend.alerts.conditions import Condition
from backend.alerts.lifecycle import AlertState, Transition

ALERT_COLUMNS = (
    "alert_id",
    "rule",
    "dedup_key",
    "device_id",
    "site",
    "channel",
    "severity",
    "state",
    "title",
    "detail",
    "started_at",
    "last_seen_at",
    "cleared_at",
    "occurrences",
    "acknowledged_at",
    "acknowledged_by",
    "assignee",
    "resolved_at",
    "resolved_by",
)
_SELECT = "SELECT " + ", ".join(
    "channel::int AS channel" if c == "channel" else c for c in ALERT_COLUMNS
)
# what the engine may change on an existing row (never ack/assignee)
_UPDATABLE = (
    "severity",
    "state",
    "title",
    "detail",
    "last_seen_at",
    "cleared_at",
    "occurrences",
    "resolved_at",
    "resolved_by",
)


def _alert(row: dict[str, Any]) -> AlertState:
    detail = row["detail"] if isinstance(row["detail"], dict) else {"value": row["detail"]}
    return AlertState(**{**row, "detail": detail})


def lock_live(conn: psycopg.Connection[Any], keys: Iterable[str]) -> dict[str, AlertState]:
    """Live alerts of ``keys`` and every live alert waiting out its clear hold, locked."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _SELECT + " FROM alert WHERE state <> 'resolved'"
            " AND (dedup_key = ANY(%s) OR cleared_at IS NOT NULL)"
            " ORDER BY alert_id FOR UPDATE",
            (list(keys),),
        ).fetchall()
    return {row["dedup_key"]: _alert(row) for row in rows}


def latest_resolved(conn: psycopg.Connection[Any], keys: Iterable[str]) -> dict[str, AlertState]:
    """The most recently resolved alert of each key (reopen or user decision)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _SELECT + " FROM alert WHERE alert_id IN ("
            "  SELECT DISTINCT ON (dedup_key) alert_id FROM alert"
            "  WHERE state = 'resolved' AND dedup_key = ANY(%s)"
            "  ORDER BY dedup_key, resolved_at DESC, alert_id DESC)",
            (list(keys),),
        ).fetchall()
    return {row["dedup_key"]: _alert(row) for row in rows}


def load_conditions(
    conn: psycopg.Connection[Any], keys: Iterable[str]
) -> dict[str, dict[str, Condition]]:
    out: dict[str, dict[str, Condition]] = defaultdict(dict)
    with conn.cursor() as cur:
        rows = cur.execute(
            "SELECT dedup_key, source, active, changed_at FROM alert_condition"
            " WHERE dedup_key = ANY(%s)",
            (list(keys),),
        ).fetchall()
    for key, source, active, changed_at in rows:
        out[key][source] = Condition(key, source, active, changed_at)
    return out


def save_condition(conn: psycopg.Connection[Any], condition: Condition, now: datetime) -> None:
    conn.execute(
        "INSERT INTO alert_condition (dedup_key, source, active, changed_at, updated_at)"
        " VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (dedup_key, source) DO UPDATE SET active = EXCLUDED.active,"
        " changed_at = EXCLUDED.changed_at, updated_at = EXCLUDED.updated_at",
        (condition.dedup_key, condition.source, condition.active, condition.changed_at, now),
    )


def write(conn: psycopg.Connection[Any], transition: Transition, now: datetime) -> int:
    """Store one alert's change and its history rows; return its alert_id."""
    alert = transition.alert
    if transition.insert:
        columns = [c for c in ALERT_COLUMNS if c != "alert_id"]
        values = [_value(alert, c) for c in columns]
        row = conn.execute(
            f"INSERT INTO alert ({', '.join(columns)}, created_at, updated_at)"
            f" VALUES ({', '.join(['%s'] * len(columns))}, %s, %s) RETURNING alert_id",
            [*values, now, now],
        ).fetchone()
        assert row is not None
        alert_id = int(row[0])
    else:
        if alert.alert_id is None:
            raise ValueError("an update needs the alert's id")
        alert_id = alert.alert_id
        assignments = ", ".join(f"{c} = %s" for c in _UPDATABLE)
        cur = conn.execute(
            f"UPDATE alert SET {assignments}, updated_at = %s WHERE alert_id = %s",
            [*(_value(alert, c) for c in _UPDATABLE), now, alert_id],
        )
        if cur.rowcount != 1:
            raise LookupError(f"alert {alert_id} vanished")
    for entry in transition.history:
        conn.execute(
            "INSERT INTO alert_history"
            " (alert_id, at, action, actor, from_state, to_state, severity, note, detail)"
            " VALUES (%s, %s, %s, 'engine', %s, %s, %s, %s, %s)",
            (
                alert_id,
                now,
                entry.action,
                entry.from_state,
                entry.to_state,
                entry.severity,
                entry.note,
                Jsonb(entry.detail),
            ),
        )
    return alert_id


def _value(alert: AlertState, column: str) -> Any:
    value = getattr(alert, column)
    return Jsonb(value) if column == "detail" else value


def read_cursors(conn: psycopg.Connection[Any]) -> dict[str, datetime]:
    rows = conn.execute("SELECT name, position FROM alert_engine_cursor").fetchall()
    return {name: position for name, position in rows}


def save_cursor(
    conn: psycopg.Connection[Any], name: str, position: datetime, now: datetime
) -> None:
    conn.execute(
        "INSERT INTO alert_engine_cursor (name, position, updated_at) VALUES (%s, %s, %s)"
        " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position,"
        " updated_at = EXCLUDED.updated_at",
        (name, position, now),
    )


def delete_cursor(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute("DELETE FROM alert_engine_cursor WHERE name = %s", (name,))
