"""Alerts and their history written with SQL, as the rule engine leaves them (no tests
here): for the tests of the alerts API, the live stream and the notifier.

Each insert is one committed transaction, so the 0009 trigger announces every
history row on ``lumeau_alert`` as it would for the engine's.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.integration.api_kit import sql

BASE = datetime(2026, 1, 10, 21, 0, tzinfo=UTC)  # when made alerts start, unless told


def new_site() -> str:
    """A site nobody else uses, so a test sees only its own alerts."""
    return f"site-{uuid.uuid4().hex[:8]}"


def make_alert(
    url: str,
    *,
    site: str | None,
    rule: str = "leak",
    device_id: str = "leak-1",
    severity: str = "critical",
    state: str = "open",
    started_at: datetime | None = BASE,
    channel: int | None = None,
    assignee: str | None = None,
    title: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """An alert as the engine leaves it, with its history ('opened', then how it got
    to ``state``); returns its id.

    ``started_at=None``: started now (the database's clock) and last seen now;
    otherwise last seen 5 minutes after it started. The title defaults to
    "<rule> at <device>", the detail to ``{"n": 1}``.
    """
    acknowledged = state in ("acknowledged", "resolved")
    last_seen_at = None if started_at is None else started_at + timedelta(minutes=5)
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = conn.execute(
            "INSERT INTO alert (rule, dedup_key, device_id, site, channel, severity, state,"
            " title, detail, started_at, last_seen_at, acknowledged_at, acknowledged_by,"
            " assignee, resolved_at, resolved_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, COALESCE(%s, now()),"
            " COALESCE(%s, now()),"
            " CASE WHEN %s THEN now() END, CASE WHEN %s THEN 'night-op' END, %s,"
            " CASE WHEN %s = 'resolved' THEN now() END,"
            " CASE WHEN %s = 'resolved' THEN 'engine' END)"
            " RETURNING alert_id",
            (
                rule,
                f"{rule}:{device_id}:{uuid.uuid4().hex[:8]}",
                device_id,
                site,
                channel,
                severity,
                state,
                f"{rule} at {device_id}" if title is None else title,
                Jsonb({"n": 1} if detail is None else detail),
                started_at,
                last_seen_at,
                acknowledged,
                acknowledged,
                assignee,
                state,
                state,
            ),
        ).fetchone()
        assert row is not None
        alert_id: int = row["alert_id"]
        steps: list[tuple[str, str, str | None, str]] = [("opened", "engine", None, "open")]
        if acknowledged:
            steps.append(("acknowledged", "night-op", "open", "acknowledged"))
        if state == "resolved":
            steps.append(("resolved", "engine", "acknowledged", "resolved"))
        for action, actor, from_state, to_state in steps:
            conn.execute(
                "INSERT INTO alert_history (alert_id, action, actor, from_state, to_state,"
                " severity) VALUES (%s, %s, %s, %s, %s, %s)",
                (alert_id, action, actor, from_state, to_state, severity),
            )
    return alert_id


def add_history(
    url: str,
    alert_id: int,
    action: str,
    *,
    to_state: str | None = None,
    severity: str = "critical",
) -> int:
    """One more history row for ``alert_id``, by the engine, from the alert's state to
    ``to_state`` (default: the same state, as a comment is); its id.

    Only the history is written: the alert row keeps its state.
    """
    rows = sql(
        url,
        "INSERT INTO alert_history (alert_id, action, actor, from_state, to_state, severity)"
        " SELECT alert_id, %s, 'engine', state, COALESCE(%s, state), %s FROM alert"
        " WHERE alert_id = %s RETURNING history_id",
        action,
        to_state,
        severity,
        alert_id,
    )
    history_id: int = rows[0]["history_id"]
    return history_id
