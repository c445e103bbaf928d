"""What is sent: the webhook's JSON body and the e-mail's subject and text (pure).

The webhook body is ``{"event": "alert.<action>", "history_id", "at", "actor",
"note", "alert": {AlertPublic fields}}``: the transition that caused it and
the alert as it is when sent. The e-mail is plain text without links (a link
in an alert e-mail is what phishing imitates; people open the console
themselves).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Final

# The fields of AlertPublic (docs/alerts contract), in that order.
ALERT_FIELDS: Final = (
    "alert_id",
    "rule",
    "dedup_key",
    "device_id",
    "site",
    "channel",
    "severity",
    "state",
    "title",
    "detail",
    "started_at",
    "last_seen_at",
    "cleared_at",
    "occurrences",
    "created_at",
    "updated_at",
    "acknowledged_at",
    "acknowledged_by",
    "assignee",
    "resolved_at",
    "resolved_by",
)
TEST_EVENT: Final = "notification.test"
MAX_SUBJECT_CHARS: Final = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Notice:
    """One alert transition to tell a channel about."""

    history_id: int
    at: datetime
    action: str
    actor: str
    severity: str  # the transition's severity
    note: str | None
    alert: Mapping[str, Any]  # the alert row as JSON (``to_jsonb``), AlertPublic fields


def event_name(action: str) -> str:
    return f"alert.{action}"


def alert_public(alert: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _jsonable(alert.get(name)) for name in ALERT_FIELDS}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _dumps(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode(
        "utf-8"
    )


def webhook_body(notice: Notice) -> bytes:
    return _dumps(
        {
            "event": event_name(notice.action),
            "history_id": notice.history_id,
            "at": notice.at.isoformat(),
            "actor": notice.actor,
            "note": notice.note,
            "alert": alert_public(notice.alert),
        }
    )


def probe_webhook_body(channel_name: str, at: datetime) -> bytes:
    return _dumps(
        {
            "event": TEST_EVENT,
            "history_id": None,
            "at": at.isoformat(),
            "actor": None,
            "note": f"test message for channel {channel_name}",
            "alert": None,
        }
    )


def one_line(value: object, limit: int = 300) -> str:
    """``value`` as one printable line (no header injection, no forged lines)."""
    text = _CONTROL.sub(" ", str(value)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def email_subject(notice: Notice) -> str:
    alert = notice.alert
    parts = [f"[Lumeau][{notice.severity}]", str(alert.get("rule"))]
    if alert.get("device_id"):
        parts.append(str(alert["device_id"]))
    if alert.get("site"):
        parts.append(f"({alert['site']})")
    if notice.action != "opened":
        parts.append(notice.action)
    return one_line(" ".join(parts), MAX_SUBJECT_CHARS)


def _when(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return one_line(value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return one_line(value)


def email_text(notice: Notice) -> str:
    alert = notice.alert
    rows = [
        ("Rule", alert.get("rule")),
        ("Title", alert.get("title")),
        ("Device", alert.get("device_id")),
        ("Site", alert.get("site")),
        ("Channel", alert.get("channel")),
        ("Severity", alert.get("severity")),
        ("State", alert.get("state")),
        ("Started", _when(alert.get("started_at"))),
        ("Last seen", _when(alert.get("last_seen_at"))),
        ("Occurrences", alert.get("occurrences")),
        ("Assignee", alert.get("assignee")),
    ]
    lines = [
        f"Alert {alert.get('alert_id')} {notice.action} ({notice.severity})",
        "",
        *(
            f"{label + ':':<13}{one_line(value) if value is not None else '-'}"
            for label, value in rows
        ),
        f"{'Detail:':<13}{one_line(json.dumps(alert.get('detail') or {}, sort_keys=True), 1000)}",
        "",
        f"{notice.action} by {one_line(notice.actor, 64)} at {_when(notice.at)}",
    ]
    if notice.note:
        lines.append(f"Note: {one_line(notice.note, 1000)}")
    lines += [
        "",
        f"Alert history entry {notice.history_id}. Act on it in the Lumeau console or API.",
        "",
    ]
    return "\n".join(lines)


def email_message(
    *, sender: str, recipients: Sequence[str], subject: str, text: str, delivery_id: int | None
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    # Mail loops and out-of-office replies: this is an automatic message.
    message["Auto-Submitted"] = "auto-generated"
    if delivery_id is not None:
        message["Lumeau-Delivery"] = str(delivery_id)
    message.set_content(text)
    return message
