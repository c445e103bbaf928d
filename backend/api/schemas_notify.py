"""Request and response models of the notification routes.

Channels say where alert transitions go (a webhook URL or e-mail addresses)
and which ones (role, sites, minimum severity, rules, actions); deliveries
say what became of each send. Hostile input is a 422 naming the field and
the reason before anything reaches SQL.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from backend.api.permissions import Role
from backend.api.schemas import MAX_ID, MAX_OFFSET, Severity
from backend.notify.routing import DEFAULT_ACTIONS

CHANNEL_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9._-]{0,63}$"
RULE_PATTERN: Final = r"^[a-z][a-z0-9_]{0,47}$"  # the CHECK of alert.rule
MAX_URL_CHARS: Final = 2000
MAX_RECIPIENTS: Final = 20
MAX_SITES: Final = 100
MAX_RULES: Final = 100
# Deliberately plain: one mailbox, no display name, no comments, no list.
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_SITE_FORBIDDEN = re.compile(r"[*?%,\x00-\x1f\x7f]")


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"


class HistoryAction(StrEnum):
    """The actions of alert_history a channel may listen to."""

    OPENED = "opened"
    REOCCURRED = "reoccurred"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    ASSIGNED = "assigned"
    COMMENTED = "commented"
    CLEARED = "cleared"
    RESOLVED = "resolved"
    REOPENED = "reopened"


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


ChannelName = Annotated[
    str,
    Field(
        pattern=CHANNEL_NAME_PATTERN,
        description="1..64 of [a-z0-9._-], starting with a letter or digit",
        examples=["night-shift-pager"],
    ),
]


def check_url(value: str) -> str:
    if len(value) > MAX_URL_CHARS:
        raise ValueError(f"url is longer than {MAX_URL_CHARS} characters")
    if _CONTROL.search(value):
        raise ValueError("url must not contain spaces or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http"):
        raise ValueError(
            f"url must start with https:// (or http://), not {parts.scheme or 'no'} scheme"
        )
    if not parts.hostname:
        raise ValueError("url has no host")
    try:
        parts.port  # noqa: B018 - raises for a port out of range or not a number
    except ValueError:
        raise ValueError("url has an invalid port") from None
    return value


def check_recipients(values: list[str]) -> list[str]:
    if not values:
        raise ValueError("recipients must name at least one address")
    if len(values) > MAX_RECIPIENTS:
        raise ValueError(
            f"too many recipients: {len(values)} (at most {MAX_RECIPIENTS}; use a mailing list)"
        )
    seen: set[str] = set()
    for address in values:
        if len(address) > 254 or not _ADDRESS.match(address):
            raise ValueError(f"{address[:80]!r} is not a plain e-mail address (name@domain)")
        if address.lower() in seen:
            raise ValueError(f"{address!r} is listed twice")
        seen.add(address.lower())
    return values


def check_sites(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    if not values:
        raise ValueError("sites: use null for every site; an empty list would match none")
    if len(values) > MAX_SITES:
        raise ValueError(f"too many sites: {len(values)} (at most {MAX_SITES})")
    for site in values:
        if not 1 <= len(site) <= 128:
            raise ValueError("a site name has 1..128 characters")
        if _SITE_FORBIDDEN.search(site):
            raise ValueError(
                f"site {site[:40]!r}: wildcards, commas and control characters are not"
                " supported; list each site exactly as devices report it"
            )
    if len(set(values)) != len(values):
        raise ValueError("sites lists a site twice")
    return values


def check_rules(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    if not values:
        raise ValueError("rules: use null for every rule; an empty list would match none")
    if len(values) > MAX_RULES:
        raise ValueError(f"too many rules: {len(values)} (at most {MAX_RULES})")
    for rule in values:
        if not re.match(RULE_PATTERN, rule):
            raise ValueError(f"{rule[:60]!r} is not a rule name ([a-z][a-z0-9_]{{0,47}})")
    if len(set(values)) != len(values):
        raise ValueError("rules lists a rule twice")
    return values


def check_actions(values: list[HistoryAction]) -> list[HistoryAction]:
    if not values:
        raise ValueError("actions must name at least one action")
    if len(set(values)) != len(values):
        raise ValueError("actions lists an action twice")
    return values


class _Filters(BaseModel):
    @field_validator("url", check_fields=False)
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("recipients", check_fields=False)
    @classmethod
    def _recipients(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_recipients(value)

    @field_validator("sites", check_fields=False)
    @classmethod
    def _sites(cls, value: list[str] | None) -> list[str] | None:
        return check_sites(value)

    @field_validator("rules", check_fields=False)
    @classmethod
    def _rules(cls, value: list[str] | None) -> list[str] | None:
        return check_rules(value)

    @field_validator("actions", check_fields=False)
    @classmethod
    def _actions(cls, value: list[HistoryAction] | None) -> list[HistoryAction] | None:
        return None if value is None else check_actions(value)


class ChannelCreate(_Filters):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "night-shift-pager",
                    "kind": "webhook",
                    "url": "https://pager.city.example/hooks/lumeau",
                    "audience_role": "operator",
                    "min_severity": "critical",
                },
                {
                    "name": "nord-technicians",
                    "kind": "email",
                    "recipients": ["tech-nord@city.example"],
                    "audience_role": "technician",
                    "sites": ["nord"],
                    "min_severity": "warning",
                },
            ]
        },
    )

    name: ChannelName
    kind: ChannelKind
    url: str | None = Field(None, description="webhook only: https:// (or http://) URL")
    recipients: list[str] | None = Field(
        None, description=f"e-mail only: 1..{MAX_RECIPIENTS} addresses"
    )
    audience_role: Role = Field(description="whose channel it is")
    sites: list[str] | None = Field(None, description="only alerts of these sites; null: all")
    min_severity: Severity = Severity.WARNING
    rules: list[str] | None = Field(None, description="only these rules; null: all")
    actions: list[HistoryAction] = Field(
        default_factory=lambda: [HistoryAction(a) for a in DEFAULT_ACTIONS],
        description="history actions that are sent",
    )
    enabled: bool = True

    @model_validator(mode="after")
    def _target_matches_kind(self) -> Self:
        if self.kind is ChannelKind.WEBHOOK:
            if self.url is None:
                raise ValueError("a webhook channel needs a url")
            if self.recipients is not None:
                raise ValueError("a webhook channel has no recipients")
        else:
            if self.recipients is None:
                raise ValueError("an e-mail channel needs recipients")
            if self.url is not None:
                raise ValueError("an e-mail channel has no url")
        return self


class ChannelUpdate(_Filters):
    """Fields to change; absent fields stay. ``sites``/``rules`` null means every one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"enabled": False}, {"sites": ["nord", "est"]}]},
    )

    name: ChannelName | None = None
    url: str | None = None
    recipients: list[str] | None = None
    audience_role: Role | None = None
    sites: list[str] | None = None
    min_severity: Severity | None = None
    rules: list[str] | None = None
    actions: list[HistoryAction] | None = None
    enabled: bool | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Self:
        for name in ("name", "url", "recipients", "audience_role", "min_severity", "actions"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        if "enabled" in self.model_fields_set and self.enabled is None:
            raise ValueError("enabled cannot be null")
        return self


class ChannelUpdateQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rotate_secret: bool = Field(
        False, description="webhook only: a new signing secret, shown once in the answer"
    )


class ChannelPublic(BaseModel):
    channel_id: int
    name: str
    kind: ChannelKind
    url: str | None
    recipients: list[str] | None
    audience_role: Role
    sites: list[str] | None
    min_severity: Severity
    rules: list[str] | None
    actions: list[HistoryAction]
    enabled: bool
    created_at: datetime
    created_by: str
    updated_at: datetime
    secret_set_at: datetime | None = Field(description="webhook: when its secret was made")


class ChannelWithSecret(ChannelPublic):
    """A channel answer that may carry the webhook secret: store it now, it is not shown again."""

    secret: str | None = Field(
        description="the webhook's signing secret (creation, rotation); null otherwise"
    )


class ChannelsPublic(BaseModel):
    items: list[ChannelPublic]


class DeliveriesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: DeliveryState | None = None
    channel_id: int | None = Field(None, ge=1, le=MAX_ID)
    limit: int = Field(100, ge=1, le=500)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


class DeliveryPublic(BaseModel):
    delivery_id: int
    channel_id: int
    channel_name: str
    channel_kind: ChannelKind
    history_id: int
    alert_id: int
    action: HistoryAction
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str | None
    last_status_code: int | None
    sent_at: datetime | None
    created_at: datetime


class DeliveriesPublic(BaseModel):
    items: list[DeliveryPublic]
    limit: int
    offset: int
