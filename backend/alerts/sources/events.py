"""Device events (table ``event``) -> signals, read by reception time.

Events are read in ``received_at`` order past a cursor kept in
``alert_engine_cursor`` (name ``events``), not by device time: a device's
clock time can be hours old after an outage, reception time only grows.
Only events received at least ``settle_s`` ago are read, so an ingest
transaction that started before the cursor (``received_at`` is its start
time) but committed after it is not skipped. One ingest transaction stamps
all its rows with one ``received_at``: a batch never stops in the middle of
such a group.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from backend.alerts.policy import Policy
from backend.alerts.signals import RULE_NAME, Signal, dedup_key
from backend.alerts.sources import BadRow, SourceResult

log = logging.getLogger(__name__)

CURSOR = "events"
SEVERITIES = ("info", "warning", "critical")

# device event code -> rule (any other code is a rule of its own name)
CODE_RULES: dict[str, str] = {
    "lamp_failure": "circuit_failure",
    "breaker_trip": "circuit_failure",
    "leak_suspected": "leak",
}

_TITLES: dict[str, str] = {
    "door_open": "Door open at {dev}",
    "mains_loss": "Mains power lost at {dev}",
    "circuit_failure": "Circuit {ch} failure at {dev} ({code})",
    "day_burning": "Circuit {ch} burning by day at {dev}",
    "battery_low": "Battery low at {dev}",
    "leak": "Leak suspected by {dev}",
    "tamper": "Tamper alarm at {dev}",
    "overtemperature": "Overtemperature at {dev}",
}


@dataclass(frozen=True)
class EventRow:
    time: datetime
    received_at: datetime
    device_id: str
    seq: int
    code: str
    severity: str
    channel: int | None
    active: bool
    detail: Any
    site: str | None


def event_signal(row: EventRow, policy: Policy) -> Signal | None:
    """The signal an event stands for; None for ignored codes.

    Channel 0 is the whole device (protocol), so its key has no channel.
    """
    if row.code in policy.events.ignore:
        return None
    if not RULE_NAME.match(row.code) or len(row.code) > 32:
        raise BadRow(f"event code {row.code!r} is not a name")
    if row.severity not in SEVERITIES:
        raise BadRow(f"event severity {row.severity!r} unknown")
    if row.channel is not None and not 0 <= row.channel <= 255:
        raise BadRow(f"event channel {row.channel} outside 0-255")
    rule = CODE_RULES.get(row.code, row.code)
    channel = row.channel if row.channel else None
    detail: dict[str, Any] = {"code": row.code, "seq": row.seq}
    if isinstance(row.detail, dict):
        detail["event"] = row.detail
    elif row.detail is not None:  # not an object: kept, but not trusted as one
        detail["event_raw"] = row.detail
    template = _TITLES.get(rule, "{code} at {dev}")
    title = template.format(dev=row.device_id, ch=channel if channel else "-", code=row.code)
    return Signal(
        dedup_key=dedup_key(rule, row.device_id, channel),
        rule=rule,
        source=f"event:{row.code}",
        device_id=row.device_id,
        site=row.site,
        channel=channel,
        severity=row.severity,  # type: ignore[arg-type]  # checked above
        active=row.active,
        observed_at=row.time,
        title=title,
        detail=detail,
    )


def read_events(
    conn: psycopg.Connection[Any], policy: Policy, now: datetime, position: datetime | None
) -> SourceResult:
    """Signals of the events received after ``position`` (the cursor)."""
    after = (
        position
        if position is not None
        else now - timedelta(seconds=policy.events.initial_lookback_s)
    )
    upto = now - timedelta(seconds=policy.events.settle_s)
    result = SourceResult()
    if upto <= after:
        return result
    limit = policy.events.batch
    with conn.cursor(row_factory=dict_row) as cur:
        boundary = cur.execute(
            "SELECT received_at FROM event WHERE received_at > %s AND received_at <= %s"
            " ORDER BY received_at OFFSET %s LIMIT 1",
            (after, upto, limit),
        ).fetchone()
        if boundary is not None:
            first = cur.execute(
                "SELECT min(received_at) AS first FROM event"
                " WHERE received_at > %s AND received_at <= %s",
                (after, upto),
            ).fetchone()
            # stop before the group that would be cut, unless it is the only one
            if first is not None and first["first"] < boundary["received_at"]:
                upto = boundary["received_at"] - timedelta(microseconds=1)
            else:
                upto = boundary["received_at"]
        rows = cur.execute(
            "SELECT e.time, e.received_at, e.device_id, e.seq, e.code, e.severity,"
            " e.channel::int AS channel, e.active, e.detail, d.site"
            " FROM event e LEFT JOIN device d ON d.device_id = e.device_id"
            " WHERE e.received_at > %s AND e.received_at <= %s"
            " ORDER BY e.received_at, e.device_id, e.time, e.seq",
            (after, upto),
        ).fetchall()
    for raw in rows:
        try:
            signal = event_signal(EventRow(**raw), policy)
        except (BadRow, ValueError, TypeError) as exc:
            result.bad_rows += 1
            log.warning("event %s/%s refused: %s", raw.get("device_id"), raw.get("seq"), exc)
            continue
        if signal is None:
            continue
        result.signals.append(signal)
        if signal.active and signal.detail.get("code") in policy.events.one_shot:
            # sent with active=true only: it clears at once, and resolves
            # after the clear hold unless it keeps coming
            result.signals.append(replace(signal, active=False))
    result.cursors[CURSOR] = upto
    return result
