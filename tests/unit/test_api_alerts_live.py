"""The pure parts of the alerts API: free-text checks, 409 wording, event stream framing."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from backend.api.live import (
    KEEPALIVE,
    AlertNotice,
    StreamConfig,
    StreamsFull,
    StreamSlots,
    alert_events,
    parse_notice,
    severities_from,
    truncation_event,
    wanted,
)
from backend.api.queries.alerts import refusal
from backend.api.schemas_alerts import check_free_text

NOTICE = {
    "history_id": 41,
    "alert_id": 12,
    "action": "acknowledged",
    "state": "acknowledged",
    "severity": "warning",
    "rule": "door_open",
    "device_id": "cab-1",
    "site": "nord",
}


def _frame(raw: bytes) -> dict[str, str]:
    """The fields of one SSE frame (a browser's parser in miniature)."""
    text = raw.decode()
    assert text.endswith("\n\n") and "\n\n" not in text[:-2]
    fields: dict[str, str] = {}
    for line in text[:-2].split("\n"):
        name, _, value = line.partition(": ")
        fields[name] = value
    return fields


def test_free_text_keeps_line_breaks_and_refuses_controls_and_surrogates() -> None:
    assert check_free_text("line 1\r\nline 2\tend é 🚒") == "line 1\r\nline 2\tend é 🚒"
    assert check_free_text(None) is None
    with pytest.raises(ValueError, match="U\\+0000 at position 2"):
        check_free_text("ab\x00")
    with pytest.raises(ValueError, match="U\\+007F"):
        check_free_text("\x7f")
    with pytest.raises(ValueError, match="surrogate U\\+D83D at position 0"):
        check_free_text("\ud83d")


def test_notification_becomes_one_sse_event_with_the_same_fields() -> None:
    notice = parse_notice(json.dumps(NOTICE, indent=1))  # the trigger's spacing may differ
    frame = _frame(notice.event())
    assert frame["id"] == "41" and frame["event"] == "alert"
    assert json.loads(frame["data"]) == NOTICE
    assert list(json.loads(frame["data"])) == list(NOTICE)  # the trigger's field order


def test_a_site_or_device_with_a_line_break_stays_on_one_data_line() -> None:
    notice = AlertNotice.from_mapping({**NOTICE, "site": "a\nb", "device_id": None})
    frame = _frame(notice.event())
    assert json.loads(frame["data"])["site"] == "a\nb"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({k: v for k, v in NOTICE.items() if k != "rule"}), "missing field 'rule'"),
        (json.dumps({**NOTICE, "history_id": "41"}), "history_id is not an integer"),
        (json.dumps({**NOTICE, "alert_id": True}), "alert_id is not an integer"),
        (json.dumps({**NOTICE, "severity": "fatal"}), "unknown severity 'fatal'"),
    ],
)
def test_malformed_notifications_are_refused(payload: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_notice(payload)


def test_filters_by_site_and_minimum_severity() -> None:
    notice = AlertNotice.from_mapping(NOTICE)  # warning at nord
    assert wanted(notice, site=None, min_severity=None)
    assert wanted(notice, site="nord", min_severity="info")
    assert wanted(notice, site="nord", min_severity="warning")
    assert not wanted(notice, site="nord", min_severity="critical")
    assert not wanted(notice, site="sud", min_severity=None)
    unsited = AlertNotice.from_mapping({**NOTICE, "site": None})
    assert not wanted(unsited, site="nord", min_severity=None)
    assert severities_from(None) is None
    assert severities_from("info") == ["info", "warning", "critical"]
    assert severities_from("warning") == ["warning", "critical"]
    assert severities_from("critical") == ["critical"]


def test_keepalive_and_truncation_frames_carry_no_id() -> None:
    assert KEEPALIVE == b": keepalive\n\n"
    frame = _frame(truncation_event(after=5, first_sent=2000, limit=1000))
    assert "id" not in frame  # the client's Last-Event-ID stays where it was
    assert frame["event"] == "replay_truncated"
    assert json.loads(frame["data"]) == {"after": 5, "first_history_id": 2000, "limit": 1000}


def test_stream_slots_refuse_beyond_the_limit_and_free_on_exit() -> None:
    slots = StreamSlots(2)
    with slots.hold(), slots.hold():
        assert slots.active == 2
        with pytest.raises(StreamsFull, match="all 2 live streams"), slots.hold():
            pass
    assert slots.active == 0
    with pytest.raises(RuntimeError), slots.hold():
        raise RuntimeError("the stream failed")
    assert slots.active == 0


@pytest.mark.parametrize("bad", [{"max_streams": 0}, {"keepalive_s": 0.0}, {"replay_limit": 0}])
def test_stream_config_bounds(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        StreamConfig(**bad)


def test_refusals_say_the_state_who_and_when() -> None:
    at = datetime(2026, 1, 10, 21, 20, tzinfo=UTC)
    resolved = {"state": "resolved", "resolved_by": "engine", "resolved_at": at}
    assert refusal(12, "acknowledge", resolved) == (
        "alert 12 is resolved (by engine at 2026-01-10T21:20:00+00:00): it cannot be acknowledged"
    )
    assert refusal(12, "resolve", resolved).endswith("it cannot be resolved again")
    assert refusal(12, "assign", resolved).endswith("it cannot be assigned")
    acknowledged = {"state": "acknowledged", "acknowledged_by": "alice", "acknowledged_at": at}
    assert refusal(7, "acknowledge", acknowledged) == (
        "alert 7 is already acknowledged (by alice at 2026-01-10T21:20:00+00:00)"
    )


# --- the stream's order of work, on a stand-in connection -----------------------------


class _Notify:
    def __init__(self, payload: str) -> None:
        self.payload = payload


class _FakeListener:
    """Answers the replay query with ``replay`` rows and then hands out ``windows``
    of notifications, one list per ``notifies()`` call (a keepalive window)."""

    def __init__(self, replay: list[dict[str, Any]], windows: list[list[str]]) -> None:
        self.replay = replay
        self.windows = windows
        self.queries: list[tuple[str, list[Any]]] = []

    async def execute(self, query: Any, params: list[Any]) -> _FakeListener:
        self.queries.append((str(query), params))
        return self

    async def fetchall(self) -> list[dict[str, Any]]:
        return self.replay

    async def notifies(self, timeout: float) -> Any:
        assert timeout == 15.0
        if not self.windows:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        for payload in self.windows.pop(0):
            yield _Notify(payload)


def _run(conn: _FakeListener, **kwargs: Any) -> list[dict[str, str]]:
    async def collect() -> list[bytes]:
        stream = alert_events(conn, config=StreamConfig(), **kwargs)  # type: ignore[arg-type]
        return [chunk async for chunk in stream]

    return [_frame(chunk) for chunk in asyncio.run(collect())]


def _row(history_id: int, **changes: Any) -> dict[str, Any]:
    return {**NOTICE, "history_id": history_id, **changes}


def test_replay_first_then_live_rows_without_the_replayed_ones_twice() -> None:
    # Row 41 committed between LISTEN and the replay query: replayed, and
    # announced too. Row 40 commits after 41 (ids are not committed in order).
    conn = _FakeListener(
        replay=[_row(41), _row(39)],  # the query answers newest first
        windows=[
            [json.dumps(_row(41)), json.dumps(_row(40)), "garbage", json.dumps(_row(42))],
            [json.dumps(_row(43, site="sud"))],
        ],
    )
    frames = _run(conn, after=38, site="nord", min_severity=None, follow=True)
    ids = [f.get("id") for f in frames]
    # 39, 41 replayed; 40 and 42 live; 43 is another site; a keepalive per window;
    # the lost connection ends the stream.
    assert ids == ["39", "41", "40", "42", None, None]
    assert [f.get("") for f in frames[-2:]] == ["keepalive", "keepalive"]
    assert all(f.get("event") == "alert" for f in frames[:4])
    assert conn.queries[0][1] == [38, "nord", 1001]  # after, site, limit + 1


def test_follow_false_ends_after_the_replay_and_no_after_means_no_replay() -> None:
    conn = _FakeListener(replay=[_row(7)], windows=[])
    frames = _run(conn, after=5, site=None, min_severity="warning", follow=False)
    assert [f["id"] for f in frames] == ["7"]
    assert conn.queries[0][1] == [5, ["warning", "critical"], 1001]
    conn = _FakeListener(replay=[_row(7)], windows=[])
    assert _run(conn, after=None, site=None, min_severity=None, follow=False) == []
    assert conn.queries == []
