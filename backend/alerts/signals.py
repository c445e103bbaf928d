"""A signal: one source's observation that a condition is (or is not) true.

Sources (``backend/alerts/sources/``) turn rows into signals; the lifecycle
turns signals into alert transitions. ``active`` is True (the condition
holds), False (it does not) or None: the source has no new opinion (a value
inside a hysteresis band, not enough data), which changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backend.alerts.policy import Severity

RULE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
TITLE_MAX = 300


def dedup_key(rule: str, device_id: str, channel: int | None = None) -> str:
    """``rule:device`` or ``rule:device:channel`` (channel 0 is the whole device)."""
    if channel is None or channel == 0:
        return f"{rule}:{device_id}"
    return f"{rule}:{device_id}:{channel}"


@dataclass(frozen=True)
class Signal:
    """One observation of the condition behind ``dedup_key``.

    ``observed_at`` is the data time of the observation (an event's device
    time, or the evaluation time for states the engine samples); ``since``,
    when the source knows it, is when the condition began (a cabinet offline
    since its last-will), used as the alert's ``started_at``. ``source`` names
    the source, so two sources of one key are told apart.
    """

    dedup_key: str
    rule: str
    source: str
    device_id: str | None
    site: str | None
    channel: int | None
    severity: Severity
    active: bool | None
    observed_at: datetime
    title: str
    detail: dict[str, Any] = field(default_factory=dict)
    since: datetime | None = None
    # an event's reception (its source's cursor), so a failed write can be retried
    received_at: datetime | None = None

    def __post_init__(self) -> None:
        if not RULE_NAME.match(self.rule):
            raise ValueError(f"bad rule name {self.rule!r}")
        if len(self.dedup_key) > 200:
            raise ValueError("dedup_key longer than 200 characters")

    @property
    def started_at(self) -> datetime:
        return self.since if self.since is not None else self.observed_at


def short_title(text: str) -> str:
    return text if len(text) <= TITLE_MAX else text[: TITLE_MAX - 1] + "…"
