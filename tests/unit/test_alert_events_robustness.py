"""Pure cores of the robustness fixes: device clocks ahead, late data too old
for raw retention, and what a failed webhook leaves in ``last_error``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backend.alerts.conditions import Condition, combine
from backend.alerts.policy import Policy
from backend.alerts.sources.events import EventRow, event_signal, observed_time
from backend.maintenance.rollup import split_too_old
from backend.notify.senders import answer_excerpt, location_origin

RECEIVED = datetime(2026, 3, 10, 22, 0, tzinfo=UTC)
POLICY = Policy()


def row(time: datetime, active: bool = True) -> EventRow:
    return EventRow(
        time=time,
        received_at=RECEIVED,
        device_id="cab-1",
        seq=1,
        code="door_open",
        severity="warning",
        channel=None,
        active=active,
        detail=None,
        site="nord",
    )


def test_a_device_time_far_ahead_of_reception_is_replaced_by_the_reception() -> None:
    assert observed_time(row(datetime(2099, 1, 1, tzinfo=UTC)), POLICY) == RECEIVED
    # up to the allowed lead, the device's own time is kept (clocks differ a little)
    near = RECEIVED + timedelta(seconds=POLICY.events.max_clock_lead_s)
    assert observed_time(row(near), POLICY) == near
    late = RECEIVED - timedelta(days=3)  # late delivery after an outage: kept
    assert observed_time(row(late), POLICY) == late


def test_a_2099_event_does_not_make_the_next_real_one_stale() -> None:
    ahead = event_signal(row(datetime(2099, 1, 1, tzinfo=UTC)), POLICY)
    assert ahead is not None and ahead.observed_at == RECEIVED
    assert ahead.detail["device_time"].startswith("2099-01-01")
    memory = {ahead.source: Condition(ahead.dedup_key, ahead.source, True, ahead.observed_at)}
    closed = event_signal(row(RECEIVED + timedelta(minutes=1), active=False), POLICY)
    assert closed is not None
    combined = combine(memory, closed)
    assert not combined.stale and combined.effective is not None
    assert combined.effective.active is False


def test_late_pairs_before_the_raw_cutoff_day_are_set_aside() -> None:
    cutoff = datetime(2026, 1, 10, 6, 0, tzinfo=UTC)
    pairs = [
        ("b", datetime(2026, 1, 11, 3, 0, tzinfo=UTC)),
        ("a", datetime(2020, 5, 1, 12, 0, tzinfo=UTC)),  # a clock at its build date
        ("a", datetime(2026, 1, 10, 7, 0, tzinfo=UTC)),  # the cutoff's day: partly gone
    ]
    keep, old = split_too_old(pairs, cutoff)
    assert keep == [("b", datetime(2026, 1, 11, 3, 0, tzinfo=UTC))]
    assert old == [
        ("a", datetime(2020, 5, 1, 12, 0, tzinfo=UTC)),
        ("a", datetime(2026, 1, 10, 7, 0, tzinfo=UTC)),
    ]
    assert split_too_old(pairs, None) == (sorted(pairs), [])


def test_a_redirect_location_is_reduced_to_scheme_and_host() -> None:
    secret = "https://user:pw@hooks.example:8443/T/B/XXXX?token=abc#frag"
    assert location_origin(secret) == "https://hooks.example"
    assert location_origin("/relative/T0KEN") == "a relative location"
    assert location_origin(None) == "?"
    assert location_origin("http://[::1") == "an unreadable location"


def test_an_error_answer_becomes_one_short_printable_line() -> None:
    text = answer_excerpt(b"line one\r\nline\ttwo\x00\x1b[2J" + "é".encode() * 500)
    assert text.startswith("line one line two")
    assert all(c.isprintable() for c in text)
    assert len(text) == 200 and text.endswith("…")
    assert answer_excerpt(b"") == ""
    assert answer_excerpt(b"\xff\xfe bad utf-8") == "�� bad utf-8"
