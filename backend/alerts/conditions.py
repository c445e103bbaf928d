"""The engine's memory of each condition, per source (table alert_condition).

A dedup key can be fed by several sources (a sensor's own leak_suspected
event and the backend's acoustic screening both feed ``leak:<dev>``). The
condition is true while any source says so; one source clearing changes
nothing while another still holds it. The memory also tells the lifecycle
whether the condition was true *before* this signal (needed to honour a
user's resolution) and rejects signals older than the last change their
source made (an event delivered late must not undo a newer one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from backend.alerts.signals import Signal


@dataclass(frozen=True)
class Condition:
    """One row of alert_condition."""

    dedup_key: str
    source: str
    active: bool
    changed_at: datetime


@dataclass(frozen=True)
class Combined:
    """What a signal means for its key once the other sources are counted.

    ``effective`` is the signal to give the lifecycle, or None when nothing
    changes for the key (stale, no opinion, or another source still holds the
    condition while this one clears). ``memory`` is the row to write, if any.
    """

    effective: Signal | None
    was_active: bool
    memory: Condition | None
    stale: bool = False


def combine(known: Mapping[str, Condition], signal: Signal) -> Combined:
    """Fold ``signal`` into the key's memory ``known`` (by source)."""
    was_active = any(c.active for c in known.values())
    prior = known.get(signal.source)
    if prior is not None and signal.observed_at < prior.changed_at:
        return Combined(None, was_active, None, stale=True)
    if signal.active is None:
        return Combined(None, was_active, None)
    changed = (prior is None and signal.active) or (
        prior is not None and prior.active != signal.active
    )
    memory = (
        Condition(signal.dedup_key, signal.source, signal.active, signal.observed_at)
        if changed
        else None
    )
    if signal.active:
        return Combined(signal, was_active, memory)
    others = any(c.active for source, c in known.items() if source != signal.source)
    return Combined(None if others else replace(signal, active=False), was_active, memory)
