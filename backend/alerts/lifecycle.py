"""The life of one alert, as a pure function (the heart of the engine).

::

    (none) --active--> open --user ack--> acknowledged
                        |  \\                 |
                        |   '--- inactive: cleared_at set (history 'cleared')
                        |        active again before the hold: 'reoccurred'
                        |        clear for clear_hold_s: 'resolved' (engine)
                        v
                     resolved --active within reopen_window (engine-resolved): 'reopened' -> open
                              --active later, or after a user's resolution once the
                                condition has cleared and come back: a new alert ('opened')

``advance`` takes the key's current alert (the live one, else the latest
resolved one, else None), the effective signal (or None for a plain tick),
whether the condition was already true before this signal, ``now`` and the
rule's settings; it returns the new alert fields and the history rows to
write, or None when nothing changes. It never touches a user's
acknowledgement or assignee, never lowers a severity, and never raises again
an alert a user resolved while its condition still held.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from backend.alerts.policy import SEVERITY_RANK, ResolvedRule, Severity
from backend.alerts.signals import Signal, short_title

State = Literal["open", "acknowledged", "resolved"]
Action = Literal["opened", "reoccurred", "escalated", "cleared", "resolved", "reopened"]
ENGINE = "engine"
LIVE: frozenset[str] = frozenset({"open", "acknowledged"})


@dataclass(frozen=True)
class AlertState:
    """The columns of an ``alert`` row the engine reads and writes."""

    alert_id: int | None
    rule: str
    dedup_key: str
    device_id: str | None
    site: str | None
    channel: int | None
    severity: Severity
    state: State
    title: str
    detail: dict[str, Any]
    started_at: datetime
    last_seen_at: datetime
    cleared_at: datetime | None = None
    occurrences: int = 1
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    assignee: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None

    @property
    def live(self) -> bool:
        return self.state in LIVE


@dataclass(frozen=True)
class HistoryEntry:
    action: Action
    from_state: State | None
    to_state: State
    severity: Severity
    detail: dict[str, Any] = field(default_factory=dict)
    note: str | None = None


@dataclass(frozen=True)
class Transition:
    """The alert row after the change, and what happened to it, in order.

    ``insert``: the row is new (no alert_id yet).
    """

    alert: AlertState
    history: tuple[HistoryEntry, ...]
    insert: bool = False


def effective_severity(signal: Signal, rule: ResolvedRule) -> Severity:
    return rule.severity if rule.severity is not None else signal.severity


def _higher(a: Severity, b: Severity) -> Severity:
    return a if SEVERITY_RANK[a] >= SEVERITY_RANK[b] else b


def _open(signal: Signal, severity: Severity) -> Transition:
    alert = AlertState(
        alert_id=None,
        rule=signal.rule,
        dedup_key=signal.dedup_key,
        device_id=signal.device_id,
        site=signal.site,
        channel=signal.channel,
        severity=severity,
        state="open",
        title=short_title(signal.title),
        detail=dict(signal.detail),
        started_at=signal.started_at,
        last_seen_at=signal.observed_at,
    )
    entry = HistoryEntry("opened", None, "open", severity, {"source": signal.source})
    return Transition(alert, (entry,), insert=True)


def _resolve_if_held(
    alert: AlertState, now: datetime, rule: ResolvedRule
) -> tuple[AlertState, HistoryEntry] | None:
    if alert.cleared_at is None or now - alert.cleared_at < timedelta(seconds=rule.clear_hold_s):
        return None
    resolved = replace(alert, state="resolved", resolved_at=now, resolved_by=ENGINE)
    entry = HistoryEntry(
        "resolved", alert.state, "resolved", alert.severity, {"cleared_at": _iso(alert.cleared_at)}
    )
    return resolved, entry


def _iso(when: datetime) -> str:
    return when.isoformat()


def advance(
    current: AlertState | None,
    signal: Signal | None,
    *,
    was_active: bool,
    now: datetime,
    rule: ResolvedRule,
) -> Transition | None:
    """One step of the key's alert; None when nothing is to be written."""
    if current is not None and current.live:
        return _advance_live(current, signal, now, rule)
    if signal is None or not signal.active:
        return None
    severity = effective_severity(signal, rule)
    if current is None:
        return _open(signal, severity)
    if current.resolved_by != ENGINE:
        # a person closed it; while the condition has not cleared since, it
        # is the same condition they decided about
        if was_active:
            return None
        return _open(signal, severity)
    assert current.resolved_at is not None
    if now - current.resolved_at <= timedelta(seconds=rule.reopen_window_s):
        reopened = replace(
            current,
            state="open",
            severity=_higher(current.severity, severity),
            title=short_title(signal.title),
            detail=dict(signal.detail),
            last_seen_at=max(current.last_seen_at, signal.observed_at),
            cleared_at=None,
            occurrences=current.occurrences + 1,
            resolved_at=None,
            resolved_by=None,
        )
        entry = HistoryEntry(
            "reopened", "resolved", "open", reopened.severity, {"source": signal.source}
        )
        return Transition(reopened, (entry,))
    return _open(signal, severity)


def _advance_live(
    alert: AlertState, signal: Signal | None, now: datetime, rule: ResolvedRule
) -> Transition | None:
    history: list[HistoryEntry] = []
    new = alert
    if signal is not None and signal.active:
        severity = effective_severity(signal, rule)
        new = replace(
            new,
            title=short_title(signal.title),
            detail=dict(signal.detail),
            last_seen_at=max(new.last_seen_at, signal.observed_at),
        )
        if new.cleared_at is not None:
            new = replace(new, cleared_at=None, occurrences=new.occurrences + 1)
            history.append(
                HistoryEntry(
                    "reoccurred", alert.state, alert.state, new.severity, {"source": signal.source}
                )
            )
        if SEVERITY_RANK[severity] > SEVERITY_RANK[new.severity]:
            history.append(
                HistoryEntry(
                    "escalated",
                    alert.state,
                    alert.state,
                    severity,
                    {"from_severity": new.severity, "source": signal.source},
                )
            )
            new = replace(new, severity=severity)
    elif signal is not None and new.cleared_at is None:  # the condition is gone
        new = replace(new, cleared_at=max(signal.observed_at, new.last_seen_at))
        history.append(
            HistoryEntry(
                "cleared", alert.state, alert.state, new.severity, {"source": signal.source}
            )
        )
    resolved = _resolve_if_held(new, now, rule)
    if resolved is not None:
        new, entry = resolved
        history.append(entry)
    if new == alert:
        return None
    return Transition(new, tuple(history))


def fold(
    current: AlertState | None,
    steps: list[tuple[Signal | None, bool]],
    *,
    now: datetime,
    rule: ResolvedRule,
) -> list[Transition]:
    """Apply several (signal, was_active) steps of one key in order.

    Consecutive changes to the same alert merge into one write; a new alert
    after a resolved one is a second write. The result is what to store.
    """
    writes: list[Transition] = []
    state = current
    for signal, was_active in steps:
        step = advance(state, signal, was_active=was_active, now=now, rule=rule)
        if step is None:
            continue
        if writes and not step.insert:
            last = writes[-1]
            writes[-1] = Transition(step.alert, last.history + step.history, last.insert)
        else:
            writes.append(step)
        state = step.alert
    return writes
