"""Which channels want which alert transition (pure).

A channel receives a history row when it is enabled and the row passes all
of its filters: the action is one it listens to, the severity is at least its
``min_severity``, the alert's site is one of its ``sites`` (None: any site;
an alert without a site only reaches channels for any site), the rule is one
of its ``rules`` (None: any rule), and the row was recorded after the channel
was made (a new channel is not flooded with the past). The channel's audience
role says whose channel it is; routing per role is giving that role's channel
the filters it needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

SEVERITIES: Final = ("info", "warning", "critical")
SEVERITY_RANK: Final = {name: rank for rank, name in enumerate(SEVERITIES)}

# Every action of alert_history (migration 0009).
ACTIONS: Final = (
    "opened",
    "reoccurred",
    "escalated",
    "acknowledged",
    "assigned",
    "commented",
    "cleared",
    "resolved",
    "reopened",
)
# What people are woken for: a new problem, a worse one, one that came back, the end of one.
DEFAULT_ACTIONS: Final = ("opened", "escalated", "reopened", "resolved")


@dataclass(frozen=True)
class Route:
    """A channel's filters."""

    channel_id: int
    enabled: bool
    min_severity: str
    sites: frozenset[str] | None
    rules: frozenset[str] | None
    actions: frozenset[str]
    created_at: datetime


@dataclass(frozen=True)
class Transition:
    """One alert_history row with what routing needs from its alert."""

    history_id: int
    at: datetime
    action: str
    severity: str
    rule: str
    site: str | None


def wants(route: Route, transition: Transition) -> bool:
    if not route.enabled or transition.action not in route.actions:
        return False
    if SEVERITY_RANK.get(transition.severity, -1) < SEVERITY_RANK[route.min_severity]:
        return False
    if route.sites is not None and transition.site not in route.sites:
        return False
    if route.rules is not None and transition.rule not in route.rules:
        return False
    return transition.at >= route.created_at


def deliveries(routes: Iterable[Route], transitions: Iterable[Transition]) -> list[tuple[int, int]]:
    """(channel_id, history_id) of every delivery to make, in history order."""
    route_list = list(routes)
    return [
        (route.channel_id, transition.history_id)
        for transition in sorted(transitions, key=lambda t: t.history_id)
        for route in route_list
        if wants(route, transition)
    ]
