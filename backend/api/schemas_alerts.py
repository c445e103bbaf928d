"""Request and response models of the alerts routes and the live event stream.

The fields follow the shared alerts contract (``alert`` and ``alert_history``,
migration 0009). As in ``schemas``, every string that reaches SQL is bounded
and checked, so a hostile request is a 422 naming the parameter before the
database sees it: free text (notes, comments) may hold line breaks and tabs,
never NUL, other control characters or lone UTF-16 surrogates (PostgreSQL
and the UTF-8 encoder refuse those with errors that would become 500s).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from backend.api.schemas import (
    EARLIEST,
    LATEST,
    MAX_ID,
    USER_PATTERN,
    DeviceId,
    Offset,
    Severity,
    Site,
    Time,
)

RULE_PATTERN: Final = r"^[a-z][a-z0-9_]{0,47}$"  # the CHECK of alert.rule
MAX_NOTE: Final = 4000  # the CHECK of alert_history.note
DEFAULT_STATES: Final = ("open", "acknowledged")  # live alerts

_FORBIDDEN_CONTROLS: Final = frozenset(chr(c) for c in range(0x20) if chr(c) not in "\t\n\r") | {
    "\x7f"
}


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertAction(StrEnum):
    """The ``alert_history.action`` values."""

    OPENED = "opened"
    REOCCURRED = "reoccurred"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    ASSIGNED = "assigned"
    COMMENTED = "commented"
    CLEARED = "cleared"
    RESOLVED = "resolved"
    REOPENED = "reopened"


def check_free_text(value: str | None) -> str | None:
    """``value`` unchanged, or ``ValueError`` naming what makes it unstorable."""
    if value is None:
        return None
    for index, char in enumerate(value):
        if char in _FORBIDDEN_CONTROLS:
            raise ValueError(
                f"control character U+{ord(char):04X} at position {index}:"
                " only tab, line feed and carriage return are allowed"
            )
        if "\ud800" <= char <= "\udfff":
            raise ValueError(f"lone UTF-16 surrogate U+{ord(char):04X} at position {index}")
    return value


Note = Annotated[
    str | None,
    Field(max_length=MAX_NOTE, description="free text kept in the history (<= 4000)"),
    AfterValidator(check_free_text),
]


# --- queries ---------------------------------------------------------------------


class AlertsQuery(BaseModel):
    # An unknown parameter is a typo (``?states=``): say so instead of ignoring it.
    model_config = ConfigDict(extra="forbid")

    state: list[AlertState] = Field(
        default_factory=lambda: [AlertState(s) for s in DEFAULT_STATES],
        max_length=3,
        description="repeatable; default the live alerts: open and acknowledged",
    )
    severity: list[Severity] | None = Field(None, max_length=3, description="repeatable")
    site: Site | None = None
    device_id: DeviceId | None = None
    rule: str | None = Field(None, pattern=RULE_PATTERN, examples=["leak"])
    assignee: str | None = Field(None, pattern=USER_PATTERN)
    start: Time | None = Field(None, description="started_at at or after (inclusive)")
    end: Time | None = Field(None, description="started_at before (exclusive)")
    limit: int = Field(100, ge=1, le=1000, description="page size")
    offset: Offset = 0

    @model_validator(mode="after")
    def _window(self) -> Self:
        for name, value in (("start", self.start), ("end", self.end)):
            if value is not None and not EARLIEST <= value < LATEST:
                raise ValueError(
                    f"'{name}' must be between {EARLIEST.isoformat()} and {LATEST.isoformat()}"
                )
        if self.start is not None and self.end is not None and not self.start < self.end:
            raise ValueError(
                f"'start' ({self.start.isoformat()}) must be before 'end' ({self.end.isoformat()})"
            )
        return self


class StreamQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site: Site | None = Field(None, description="only alerts of this site")
    min_severity: Severity | None = Field(None, description="only this severity and above")
    after: int | None = Field(
        None,
        ge=0,
        le=MAX_ID,
        description="replay history rows after this history_id first (the Last-Event-ID"
        " header wins when both are sent)",
    )
    follow: bool = Field(
        True, description="false: send the replay, then end the response (catch-up, scripts)"
    )


# --- bodies ----------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertNoteBody(_Body):
    """Acknowledge or resolve, with an optional note."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"note": "crew on the way"}]}
    )

    note: Note = None


class AlertAssignBody(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"assignee": "bob", "note": "nord sector tonight"}]},
    )

    assignee: str | None = Field(
        description="an existing, enabled API user; null unassigns", pattern=USER_PATTERN
    )
    note: Note = None


class AlertCommentBody(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "valve 12 closed, pressure back to normal"}]},
    )

    text: str = Field(min_length=1, max_length=MAX_NOTE, description="1 to 4000 characters")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        check_free_text(value)
        if not value.strip():
            raise ValueError("a comment needs some text, not only white space")
        return value


# --- answers ---------------------------------------------------------------------


_ALERT_EXAMPLE: Final[dict[str, Any]] = {
    "alert_id": 12,
    "rule": "leak",
    "dedup_key": "leak:leak-0042",
    "device_id": "leak-0042",
    "site": "sud",
    "channel": None,
    "severity": "critical",
    "state": "acknowledged",
    "title": "Leak suspected at leak-0042",
    "detail": {"score": 0.93},
    "started_at": "2026-01-10T21:14:03Z",
    "last_seen_at": "2026-01-10T21:44:03Z",
    "cleared_at": None,
    "occurrences": 1,
    "created_at": "2026-01-10T21:14:05Z",
    "updated_at": "2026-01-10T21:20:00Z",
    "acknowledged_at": "2026-01-10T21:20:00Z",
    "acknowledged_by": "alice",
    "assignee": "bob",
    "resolved_at": None,
    "resolved_by": None,
}


class AlertPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_ALERT_EXAMPLE]})

    alert_id: int
    rule: str
    dedup_key: str
    device_id: str | None
    site: str | None
    channel: int | None
    severity: Severity
    state: AlertState
    title: str
    detail: dict[str, Any]
    started_at: datetime = Field(description="when the condition began (data time)")
    last_seen_at: datetime = Field(description="when the condition was last seen true")
    cleared_at: datetime | None = Field(description="set while the condition is gone")
    occurrences: int
    created_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    assignee: str | None
    resolved_at: datetime | None
    resolved_by: str | None = Field(description="a user name, or 'engine'")


class AlertHistoryPublic(BaseModel):
    history_id: int
    at: datetime
    action: AlertAction
    actor: str = Field(description="'engine' or the API user")
    from_state: AlertState | None
    to_state: AlertState
    severity: Severity
    note: str | None
    detail: dict[str, Any]


class AlertWithHistory(AlertPublic):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_ALERT_EXAMPLE,
                    "history": [
                        {
                            "history_id": 40,
                            "at": "2026-01-10T21:14:05Z",
                            "action": "opened",
                            "actor": "engine",
                            "from_state": None,
                            "to_state": "open",
                            "severity": "critical",
                            "note": None,
                            "detail": {},
                        },
                        {
                            "history_id": 41,
                            "at": "2026-01-10T21:20:00Z",
                            "action": "acknowledged",
                            "actor": "alice",
                            "from_state": "open",
                            "to_state": "acknowledged",
                            "severity": "critical",
                            "note": "crew on the way",
                            "detail": {},
                        },
                    ],
                }
            ]
        }
    )

    history: list[AlertHistoryPublic] = Field(description="oldest first (at most the last 1000)")


class AlertsPublic(BaseModel):
    items: list[AlertPublic]
    limit: int
    offset: int
