"""The webhook body and the e-mail a channel receives."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from backend.notify import message

AT = datetime(2026, 1, 10, 21, 14, 5, tzinfo=UTC)
ALERT = {
    "alert_id": 42,
    "rule": "door_open",
    "dedup_key": "door_open:cab-0042",
    "device_id": "cab-0042",
    "site": "nord",
    "channel": None,
    "severity": "critical",
    "state": "open",
    "title": "Cabinet door open",
    "detail": {"since_s": 600},
    "started_at": "2026-01-10T21:04:03+00:00",
    "last_seen_at": "2026-01-10T21:14:03+00:00",
    "cleared_at": None,
    "occurrences": 1,
    "created_at": "2026-01-10T21:04:05+00:00",
    "updated_at": "2026-01-10T21:14:05+00:00",
    "acknowledged_at": None,
    "acknowledged_by": None,
    "assignee": None,
    "resolved_at": None,
    "resolved_by": None,
    "internal_column": "not part of AlertPublic",
}
NOTICE = message.Notice(
    history_id=17,
    at=AT,
    action="opened",
    actor="engine",
    severity="critical",
    note=None,
    alert=ALERT,
)


def test_webhook_body_has_event_history_alert_and_time() -> None:
    body = json.loads(message.webhook_body(NOTICE))
    assert body["event"] == "alert.opened"
    assert body["history_id"] == 17
    assert body["at"] == "2026-01-10T21:14:05+00:00"
    assert body["actor"] == "engine"
    assert set(body["alert"]) == set(message.ALERT_FIELDS)
    assert body["alert"]["dedup_key"] == "door_open:cab-0042"
    assert body["alert"]["detail"] == {"since_s": 600}
    assert "internal_column" not in body["alert"]


def test_webhook_body_bytes_are_deterministic() -> None:
    assert message.webhook_body(NOTICE) == message.webhook_body(NOTICE)


def test_subject_names_severity_rule_device_site_and_non_opening_actions() -> None:
    assert message.email_subject(NOTICE) == "[Lumeau][critical] door_open cab-0042 (nord)"
    resolved = message.Notice(**{**NOTICE.__dict__, "action": "resolved"})
    assert (
        message.email_subject(resolved) == "[Lumeau][critical] door_open cab-0042 (nord) resolved"
    )
    siteless = message.Notice(
        **{**NOTICE.__dict__, "alert": {**ALERT, "site": None, "device_id": None}}
    )
    assert message.email_subject(siteless) == "[Lumeau][critical] door_open"


def test_subject_cannot_inject_headers() -> None:
    hostile = message.Notice(
        **{**NOTICE.__dict__, "alert": {**ALERT, "site": "nord\r\nBcc: victim@example.org"}}
    )
    subject = message.email_subject(hostile)
    assert "\r" not in subject and "\n" not in subject
    email = message.email_message(
        sender="lumeau@city.example",
        recipients=["a@city.example"],
        subject=subject,
        text="x",
        delivery_id=1,
    )
    assert email["Bcc"] is None


def test_email_text_lists_the_alert_without_links() -> None:
    text = message.email_text(
        message.Notice(**{**NOTICE.__dict__, "note": "crew sent\nhttps://evil.example"})
    )
    assert "Alert 42 opened (critical)" in text
    assert "Device:      cab-0042" in text
    assert "Site:        nord" in text
    assert "Started:     2026-01-10T21:04:03+00:00" in text
    assert "opened by engine at 2026-01-10T21:14:05+00:00" in text
    assert 'Detail:      {"since_s": 600}' in text
    # the note stays on one line, so it cannot forge other fields
    assert "Note: crew sent https://evil.example" in text
    assert "http" not in text.replace("Note: crew sent https://evil.example", "")


def test_email_message_headers() -> None:
    email = message.email_message(
        sender="lumeau@city.example",
        recipients=["a@city.example", "b@city.example"],
        subject="[Lumeau][critical] door_open cab-0042 (nord)",
        text="body\n",
        delivery_id=5,
    )
    assert email["To"] == "a@city.example, b@city.example"
    assert email["Auto-Submitted"] == "auto-generated"
    assert email["Lumeau-Delivery"] == "5"
    assert email.get_content_type() == "text/plain"
