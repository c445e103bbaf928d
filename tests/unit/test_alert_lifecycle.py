"""The alert lifecycle as a pure function (backend/alerts/lifecycle.py).

Examples first, then properties over random sequences of signals, clock
steps and user actions, replayed through the same combine -> fold path the
engine uses, with a list standing in for the alert table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from backend.alerts.conditions import Condition, combine
from backend.alerts.lifecycle import AlertState, HistoryEntry, Transition, advance, fold
from backend.alerts.policy import Policy, ResolvedRule, Severity
from backend.alerts.signals import Signal

T0 = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
HOLD = 600.0
REOPEN = 3600.0
RULE = ResolvedRule(enabled=True, severity=None, clear_hold_s=HOLD, reopen_window_s=REOPEN)


def sig(
    active: bool | None,
    at: datetime,
    severity: Severity = "warning",
    source: str = "event:door_open",
) -> Signal:
    return Signal(
        dedup_key="door_open:cab-1",
        rule="door_open",
        source=source,
        device_id="cab-1",
        site="nord",
        channel=None,
        severity=severity,
        active=active,
        observed_at=at,
        title="Door open at cab-1",
        detail={"code": "door_open"},
    )


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def step(current: AlertState | None, signal: Signal | None, now: datetime) -> Transition | None:
    return advance(current, signal, was_active=False, now=now, rule=RULE)


def actions(t: Transition | None) -> list[str]:
    return [] if t is None else [h.action for h in t.history]


def test_open_clear_hold_resolve() -> None:
    opened = step(None, sig(True, minutes(0)), minutes(0))
    assert opened is not None and opened.insert and actions(opened) == ["opened"]
    alert = replace(opened.alert, alert_id=1)
    assert alert.state == "open" and alert.started_at == minutes(0)
    cleared = step(alert, sig(False, minutes(2)), minutes(2))
    assert actions(cleared) == ["cleared"]
    assert cleared is not None and cleared.alert.cleared_at == minutes(2)
    alert = cleared.alert
    assert step(alert, None, minutes(11)) is None  # 9 min clear: still held
    resolved = step(alert, None, minutes(12))
    assert actions(resolved) == ["resolved"]
    assert resolved is not None and resolved.alert.state == "resolved"
    assert resolved.alert.resolved_by == "engine" and resolved.alert.resolved_at == minutes(12)


def test_condition_back_within_the_hold_is_a_reoccurrence_not_a_new_alert() -> None:
    alert = replace(step(None, sig(True, minutes(0)), minutes(0)).alert, alert_id=1)  # type: ignore[union-attr]
    alert = step(alert, sig(False, minutes(1)), minutes(1)).alert  # type: ignore[union-attr]
    back = step(alert, sig(True, minutes(5)), minutes(5))
    assert actions(back) == ["reoccurred"]
    assert back is not None and back.alert.cleared_at is None and back.alert.occurrences == 2
    assert not back.insert


def test_reopen_within_the_window_after_an_engine_resolution_then_new_alert_later() -> None:
    resolved = AlertState(
        alert_id=7,
        rule="door_open",
        dedup_key="door_open:cab-1",
        device_id="cab-1",
        site="nord",
        channel=None,
        severity="warning",
        state="resolved",
        title="t",
        detail={},
        started_at=minutes(0),
        last_seen_at=minutes(1),
        cleared_at=minutes(1),
        resolved_at=minutes(11),
        resolved_by="engine",
        assignee="alice",
    )
    again = step(resolved, sig(True, minutes(30)), minutes(30))
    assert actions(again) == ["reopened"]
    assert again is not None and again.alert.alert_id == 7 and again.alert.state == "open"
    assert again.alert.resolved_at is None and again.alert.assignee == "alice"
    later = step(resolved, sig(True, minutes(11 + 61)), minutes(11 + 61))
    assert actions(later) == ["opened"] and later is not None and later.insert


def test_severity_only_goes_up_and_escalation_is_recorded() -> None:
    alert = replace(step(None, sig(True, minutes(0)), minutes(0)).alert, alert_id=1)  # type: ignore[union-attr]
    up = step(alert, sig(True, minutes(1), "critical"), minutes(1))
    assert actions(up) == ["escalated"]
    assert up is not None and up.alert.severity == "critical"
    assert (
        up.history[0].severity == "critical" and up.history[0].detail["from_severity"] == "warning"
    )
    down = step(up.alert, sig(True, minutes(2), "info"), minutes(2))
    assert down is not None and down.alert.severity == "critical" and actions(down) == []


def test_policy_severity_overrides_the_source() -> None:
    rule = RULE.model_copy(update={"severity": "critical"})
    opened = advance(None, sig(True, minutes(0), "info"), was_active=False, now=T0, rule=rule)
    assert opened is not None and opened.alert.severity == "critical"


def test_acknowledged_alert_stays_acknowledged_through_clear_and_reoccurrence() -> None:
    alert = replace(
        step(None, sig(True, minutes(0)), minutes(0)).alert,  # type: ignore[union-attr]
        alert_id=1,
        state="acknowledged",
        acknowledged_at=minutes(1),
        acknowledged_by="bob",
        assignee="carol",
    )
    cleared = step(alert, sig(False, minutes(2)), minutes(2))
    assert cleared is not None and cleared.history[0].from_state == "acknowledged"
    back = step(cleared.alert, sig(True, minutes(3), "critical"), minutes(3))
    assert actions(back) == ["reoccurred", "escalated"]
    assert back is not None
    assert back.alert.state == "acknowledged" and back.alert.acknowledged_by == "bob"
    assert back.alert.assignee == "carol"
    gone = step(back.alert, sig(False, minutes(4)), minutes(20))
    assert actions(gone) == ["cleared", "resolved"]
    assert gone is not None and gone.history[-1].from_state == "acknowledged"


def test_user_resolution_while_the_condition_holds_is_respected() -> None:
    user_resolved = replace(
        step(None, sig(True, minutes(0)), minutes(0)).alert,  # type: ignore[union-attr]
        alert_id=1,
        state="resolved",
        resolved_at=minutes(5),
        resolved_by="dave",
    )
    held = advance(user_resolved, sig(True, minutes(6)), was_active=True, now=minutes(6), rule=RULE)
    assert held is None
    # cleared, then back: a new alert (not a reopen of the user's decision)
    again = advance(
        user_resolved, sig(True, minutes(20)), was_active=False, now=minutes(20), rule=RULE
    )
    assert actions(again) == ["opened"] and again is not None and again.insert


def test_inactive_or_no_opinion_without_an_alert_writes_nothing() -> None:
    assert step(None, sig(False, minutes(0)), minutes(0)) is None
    assert step(None, sig(None, minutes(0)), minutes(0)) is None
    assert step(None, None, minutes(0)) is None


def test_fold_merges_changes_of_one_alert_into_one_write() -> None:
    steps: list[tuple[Signal | None, bool]] = [
        (sig(True, minutes(0)), False),
        (sig(False, minutes(1)), True),
        (sig(True, minutes(2)), False),
    ]
    writes = fold(None, steps, now=minutes(2), rule=RULE)
    assert len(writes) == 1 and writes[0].insert
    assert [h.action for h in writes[0].history] == ["opened", "cleared", "reoccurred"]
    assert writes[0].alert.occurrences == 2


def test_combine_keeps_a_key_true_while_any_source_holds_it() -> None:
    leak_event = sig(True, minutes(0), source="event:leak_suspected")
    known = {"event:leak_suspected": Condition("door_open:cab-1", "event:leak_suspected", True, T0)}
    other_clears = combine(known, sig(False, minutes(1), source="acoustic"))
    assert other_clears.effective is None and other_clears.was_active
    same_clears = combine(known, replace(leak_event, active=False, observed_at=minutes(2)))
    assert same_clears.effective is not None and same_clears.effective.active is False
    assert same_clears.memory is not None and same_clears.memory.active is False
    late = combine(known, replace(leak_event, active=False, observed_at=T0 - timedelta(hours=1)))
    assert late.stale and late.effective is None


# ---------------------------------------------------------------- properties


@dataclass
class World:
    """The alert table of one key, the condition memory and the clock."""

    now: datetime = T0
    alerts: list[AlertState] = field(default_factory=list)
    history: dict[int, list[HistoryEntry]] = field(default_factory=dict)
    memory: dict[str, Condition] = field(default_factory=dict)
    next_id: int = 1

    def current(self) -> AlertState | None:
        live = [a for a in self.alerts if a.live]
        assert len(live) <= 1, "two live alerts for one key"
        if live:
            return live[0]
        resolved = [a for a in self.alerts if a.state == "resolved"]
        return max(resolved, key=lambda a: (a.resolved_at, a.alert_id)) if resolved else None

    def store(self, writes: list[Transition]) -> None:
        for w in writes:
            if w.insert:
                assert self.current() is None or not self.current().live  # type: ignore[union-attr]
                alert = replace(w.alert, alert_id=self.next_id)
                self.next_id += 1
                self.alerts.append(alert)
                self.history[alert.alert_id] = list(w.history)  # type: ignore[index]
            else:
                index = next(i for i, a in enumerate(self.alerts) if a.alert_id == w.alert.alert_id)
                self.alerts[index] = w.alert
                self.history[w.alert.alert_id].extend(w.history)  # type: ignore[index]
            self.current()

    def signal(self, active: bool | None, severity: Severity) -> None:
        combined = combine(self.memory, sig(active, self.now, severity))
        if combined.memory is not None:
            self.memory[combined.memory.source] = combined.memory
        self.store(
            fold(
                self.current(), [(combined.effective, combined.was_active)], now=self.now, rule=RULE
            )
        )

    def tick(self) -> None:
        was = any(c.active for c in self.memory.values())
        self.store(fold(self.current(), [(None, was)], now=self.now, rule=RULE))

    def user(self, action: str) -> None:
        cur = self.current()
        if cur is None or not cur.live:
            return
        index = self.alerts.index(cur)
        if action == "ack" and cur.state == "open":
            self.alerts[index] = replace(
                cur, state="acknowledged", acknowledged_at=self.now, acknowledged_by="op"
            )
            self.history[cur.alert_id].append(  # type: ignore[index]
                HistoryEntry("acknowledged", "open", "acknowledged", cur.severity)  # type: ignore[arg-type]
            )
        elif action == "resolve":
            self.alerts[index] = replace(
                cur, state="resolved", resolved_at=self.now, resolved_by="op"
            )
            self.history[cur.alert_id].append(  # type: ignore[index]
                HistoryEntry("resolved", cur.state, "resolved", cur.severity)
            )


OPS = st.one_of(
    st.tuples(
        st.just("signal"),
        st.sampled_from([True, False, None]),
        st.sampled_from(["info", "warning", "critical"]),
        st.integers(0, 5400),
    ),
    st.tuples(st.just("tick"), st.none(), st.none(), st.integers(0, 5400)),
    st.tuples(st.sampled_from(["ack", "resolve"]), st.none(), st.none(), st.integers(0, 600)),
)


def run(ops: list[tuple[str, bool | None, str | None, int]]) -> World:
    world = World()
    for op, active, severity, seconds in ops:
        world.now += timedelta(seconds=seconds)
        if op == "signal":
            world.signal(active, severity)  # type: ignore[arg-type]
        elif op == "tick":
            world.tick()
        else:
            world.user(op)
    return world


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=40))
def test_history_is_consistent_with_states(
    ops: list[tuple[str, bool | None, str | None, int]],
) -> None:
    world = run(ops)
    world.current()  # at most one live alert at the end too
    for alert in world.alerts:
        rows = world.history[alert.alert_id]  # type: ignore[index]
        assert rows[0].action == "opened" and rows[0].from_state is None
        state = rows[0].to_state
        for row in rows[1:]:
            assert row.from_state == state, (row, rows)
            state = row.to_state
        assert state == alert.state
        assert (alert.state == "resolved") == (alert.resolved_at is not None)
        assert alert.occurrences == 1 + sum(r.action in ("reoccurred", "reopened") for r in rows)
        ranks = [{"info": 0, "warning": 1, "critical": 2}[r.severity] for r in rows]
        assert ranks == sorted(ranks) or any(r.action == "reopened" for r in rows)
        if alert.acknowledged_by is not None:
            assert alert.state in ("acknowledged", "resolved") or any(
                r.action == "reopened" for r in rows
            )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 86400), st.integers(0, int(HOLD) - 1), st.booleans()),
        min_size=1,
        max_size=30,
    )
)
def test_flapping_faster_than_the_hold_is_one_alert(flaps: list[tuple[int, int, bool]]) -> None:
    world = World()
    world.signal(True, "warning")
    for on_for, off_for, tick_between in flaps:
        world.now += timedelta(seconds=on_for)
        world.signal(False, "warning")
        world.now += timedelta(seconds=off_for)
        if tick_between:
            world.tick()
        world.signal(True, "warning")
    assert len(world.alerts) == 1
    alert = world.alerts[0]
    assert alert.live and alert.cleared_at is None
    assert alert.occurrences == 1 + len(flaps)
    # no notification-worthy noise: only the first row opened the alert
    assert [h.action for h in world.history[1]].count("opened") == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([True, None]), st.integers(0, 86400)), max_size=20))
def test_user_resolution_holds_until_the_condition_clears(
    later: list[tuple[bool | None, int]],
) -> None:
    world = World()
    world.signal(True, "warning")
    world.user("resolve")
    for active, seconds in later:
        world.now += timedelta(seconds=seconds)
        world.signal(active, "critical")
    assert len(world.alerts) == 1 and world.alerts[0].resolved_by == "op"
    world.now += timedelta(seconds=1)
    world.signal(False, "warning")
    world.signal(True, "warning")
    assert len(world.alerts) == 2 and world.alerts[1].live


def test_default_policy_rules_resolve() -> None:
    policy = Policy()
    assert policy.rule("mains_loss").severity == "critical"
    assert policy.rule("door_open").clear_hold_s == policy.defaults.clear_hold_s
