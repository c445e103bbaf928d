"""Which channels receive which alert transitions: role's channels, sites, severity, rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from backend.notify.routing import DEFAULT_ACTIONS, Route, Transition, deliveries, wants

T0 = datetime(2026, 1, 10, 21, 0, tzinfo=UTC)

ANY = Route(
    channel_id=1,
    enabled=True,
    min_severity="info",
    sites=None,
    rules=None,
    actions=frozenset(DEFAULT_ACTIONS),
    created_at=T0 - timedelta(days=1),
)
OPENED = Transition(
    history_id=10, at=T0, action="opened", severity="warning", rule="door_open", site="nord"
)


def test_a_channel_for_everything_takes_the_default_actions_only() -> None:
    for action in ("opened", "escalated", "reopened", "resolved"):
        assert wants(ANY, replace(OPENED, action=action)), action
    for action in ("reoccurred", "acknowledged", "assigned", "commented", "cleared"):
        assert not wants(ANY, replace(OPENED, action=action)), action


def test_min_severity() -> None:
    critical_only = replace(ANY, min_severity="critical")
    assert not wants(critical_only, OPENED)
    assert wants(critical_only, replace(OPENED, severity="critical"))
    warning_up = replace(ANY, min_severity="warning")
    assert wants(warning_up, OPENED)
    assert not wants(warning_up, replace(OPENED, severity="info"))


def test_site_filter_and_alerts_without_a_site() -> None:
    nord = replace(ANY, sites=frozenset({"nord", "est"}))
    assert wants(nord, OPENED)
    assert not wants(nord, replace(OPENED, site="sud"))
    # An alert about no site reaches only channels for every site.
    assert not wants(nord, replace(OPENED, site=None))
    assert wants(ANY, replace(OPENED, site=None))


def test_rule_filter_disabled_and_channels_newer_than_the_row() -> None:
    leaks = replace(ANY, rules=frozenset({"leak"}))
    assert not wants(leaks, OPENED)
    assert wants(leaks, replace(OPENED, rule="leak"))
    assert not wants(replace(ANY, enabled=False), OPENED)
    assert not wants(replace(ANY, created_at=T0 + timedelta(seconds=1)), OPENED)


def test_per_role_routing_by_each_roles_channel_filters() -> None:
    # The night shift's pager: critical everywhere; the northern technicians:
    # everything from nord including acknowledgements; the planners: resolutions.
    pager = replace(ANY, channel_id=1, min_severity="critical")
    techs = replace(
        ANY,
        channel_id=2,
        sites=frozenset({"nord"}),
        actions=frozenset({*DEFAULT_ACTIONS, "acknowledged"}),
    )
    planners = replace(ANY, channel_id=3, actions=frozenset({"resolved"}))
    rows = [
        OPENED,  # warning at nord
        replace(OPENED, history_id=11, severity="critical", site="sud", rule="leak"),
        replace(OPENED, history_id=12, action="acknowledged"),
        replace(OPENED, history_id=13, action="resolved"),
    ]
    assert deliveries([pager, techs, planners], reversed(rows)) == [
        (2, 10),
        (1, 11),
        (2, 12),
        (2, 13),
        (3, 13),
    ]
