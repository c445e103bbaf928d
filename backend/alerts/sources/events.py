"""Device events (table ``event``) -> signals, read by reception time.

Events are read in ``received_at`` order past a cursor kept in
``alert_engine_cursor`` (name ``events``), not by device time: a device's
clock time can be hours old after an outage, reception time only grows.

``received_at`` is the ingest transaction's *start* (``DEFAULT now()``), and
its rows become visible only at its commit, which may be much later (a lock
wait, an I/O stall, a big batch). So the upper bound of a read is computed
by the database, from its own clock (the engine host's clock may be ahead):
``settle_s`` before its ``now()``, and never at or after the start of an
ingest transaction still running (``pg_stat_activity``, application name
``lumeau-ingest``). One ingest transaction stamps all its rows with one
``received_at``: a batch never stops in the middle of such a group.

A key whose write fails (the engine rolls it back alone) keeps its events:
the engine stores a retry cursor ``events:retry:<dedup_key>`` and the next
evaluations read that key's events again from there, until it succeeds or
``retry_max_s`` has passed.

A device clock ahead of reception (an RTC set to 2099 is a valid timestamp)
would make its event the newest change of its condition for ever: an event
stamped more than ``max_clock_lead_s`` after its reception is taken as
observed at its reception (its device time is kept in the detail).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final, cast

import psycopg
from psycopg.rows import dict_row

from backend.alerts.policy import Policy
from backend.alerts.signals import RULE_NAME, Signal, dedup_key
from backend.alerts.sources import BadRow, SourceResult

log = logging.getLogger(__name__)

CURSOR = "events"
RETRY_PREFIX = "events:retry:"
# backend/ingest/store.py connects with this name; the engine waits for its
# running transactions (their rows are stamped with their start time)
INGEST_APPLICATION_NAME = "lumeau-ingest"
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
    observed = observed_time(row, policy)
    if observed != row.time:
        detail["device_time"] = row.time.isoformat()
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
        observed_at=observed,
        title=title,
        detail=detail,
        received_at=row.received_at,
    )


def observed_time(row: EventRow, policy: Policy) -> datetime:
    """The event's device time, or its reception time if the clock is far ahead.

    Taken as is, a time in the future would make every later real event of the
    condition "stale" (older than the last change) until that date.
    """
    if row.time - row.received_at > timedelta(seconds=policy.events.max_clock_lead_s):
        return row.received_at
    return row.time


def clock_ahead(row: EventRow, policy: Policy) -> bool:
    return observed_time(row, policy) != row.time


_BOUND: Final = (
    "SELECT least(%(now)s::timestamptz, now()) - %(settle)s::interval AS settled,"
    " (SELECT min(xact_start) FROM pg_stat_activity"
    "   WHERE application_name = %(app)s AND datname = current_database()"
    "     AND pid <> pg_backend_pid()) AS running_since,"
    # another role's sessions show no xact_start without pg_read_all_stats
    " (SELECT count(*) FROM pg_stat_activity"
    "   WHERE application_name = %(app)s AND datname = current_database()"
    "     AND state IS NULL) AS hidden"
)

_SELECT: Final = (
    "SELECT e.time, e.received_at, e.device_id, e.seq, e.code, e.severity,"
    " e.channel::int AS channel, e.active, e.detail, d.site"
    " FROM event e LEFT JOIN device d ON d.device_id = e.device_id"
)


_TICK: Final = timedelta(microseconds=1)
_warned_hidden: list[bool] = []
# an ingest transaction open this long is stuck, not busy: say so
_STUCK: Final = timedelta(minutes=5)


def settled_until(conn: psycopg.Connection[Any], policy: Policy, now: datetime) -> datetime:
    """The newest ``received_at`` whose events are all committed, by the database's clock.

    ``now`` (the engine's clock) can only lower it: a test's or a late
    engine's past stays in the past.
    """
    row = conn.execute(
        _BOUND,
        {
            "now": now,
            "settle": timedelta(seconds=policy.events.settle_s),
            "app": INGEST_APPLICATION_NAME,
        },
    ).fetchone()
    assert row is not None
    settled, running_since, hidden = row
    if hidden and not _warned_hidden:
        _warned_hidden.append(True)  # once per process: it is a setup problem
        log.warning(
            "%d ingest session(s) hide their transaction start from the alert engine's"
            " database role: grant it pg_read_all_stats (or use the ingest's role),"
            " or events committed late may be skipped",
            hidden,
        )
    if running_since is not None and running_since <= settled:
        # its rows carry received_at = running_since, but are not visible yet
        if settled - running_since > _STUCK:
            log.warning(
                "alert events wait for an ingest transaction running since %s",
                running_since.isoformat(),
            )
        return cast(datetime, running_since) - _TICK
    return cast(datetime, settled)


def read_events(
    conn: psycopg.Connection[Any],
    policy: Policy,
    now: datetime,
    position: datetime | None,
    retries: Mapping[str, datetime] | None = None,
) -> SourceResult:
    """Signals of the events received after ``position`` (the cursor).

    ``retries`` (dedup key -> received_at position) names keys whose write
    failed: their events after that position and up to the cursor are read
    again, first.
    """
    after = (
        position
        if position is not None
        else now - timedelta(seconds=policy.events.initial_lookback_s)
    )
    upto = settled_until(conn, policy, now)
    result = SourceResult()
    if retries:
        _read_retries(conn, policy, retries, after, result)
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
                upto = boundary["received_at"] - _TICK
            else:
                upto = boundary["received_at"]
        rows = cur.execute(
            _SELECT + " WHERE e.received_at > %s AND e.received_at <= %s"
            " ORDER BY e.received_at, e.device_id, e.time, e.seq",
            (after, upto),
        ).fetchall()
    for raw in rows:
        result.signals.extend(_signals(raw, policy, result))
    result.cursors[CURSOR] = upto
    return result


def _read_retries(
    conn: psycopg.Connection[Any],
    policy: Policy,
    retries: Mapping[str, datetime],
    upto: datetime,
    result: SourceResult,
) -> None:
    """The events of keys whose write failed, from their retry position to ``upto``."""
    # a key is rule:device[:channel]; device ids hold no ':' (0001's CHECK)
    devices = sorted({key.split(":")[1] for key in retries if key.count(":") >= 1})
    since = min(retries.values())
    if not devices or since >= upto:
        return
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _SELECT + " WHERE e.device_id = ANY(%s) AND e.received_at > %s"
            " AND e.received_at <= %s ORDER BY e.received_at, e.device_id, e.time, e.seq",
            (devices, since, upto),
        ).fetchall()
    ignored = SourceResult()  # bad rows were counted when first read
    for raw in rows:
        for signal in _signals(raw, policy, ignored):
            position = retries.get(signal.dedup_key)
            if position is not None and raw["received_at"] > position:
                result.signals.append(signal)


def _signals(raw: dict[str, Any], policy: Policy, result: SourceResult) -> list[Signal]:
    """The signals of one event row; a row the rule cannot read is counted in ``result``."""
    try:
        row = EventRow(**raw)
        signal = event_signal(row, policy)
    except (BadRow, ValueError, TypeError) as exc:
        result.bad_rows += 1
        log.warning("event %s/%s refused: %s", raw.get("device_id"), raw.get("seq"), exc)
        return []
    if signal is None:
        return []
    if clock_ahead(row, policy):
        result.clock_ahead += 1
        log.warning(
            "event %s/%s: device time %s is ahead of its reception %s; taken as received",
            row.device_id,
            row.seq,
            row.time.isoformat(),
            row.received_at.isoformat(),
        )
    if signal.active and signal.detail.get("code") in policy.events.one_shot:
        # sent with active=true only: it clears at once, and resolves
        # after the clear hold unless it keeps coming
        return [signal, replace(signal, active=False)]
    return [signal]
