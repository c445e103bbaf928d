"""Request and response models of API v1 (``XCreate``, ``XPublic``, ``XQuery``).

Every string that reaches SQL has a pattern or a length bound and every
integer a range, so a hostile request is a 422 with a specific message
before the database sees it (PostgreSQL refuses NUL characters and
out-of-range integers with errors that would otherwise become 500s).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from backend.api.permissions import Role

DEVICE_ID_PATTERN: Final = r"^[a-z0-9._-]{1,64}$"  # the CHECK of device.device_id
NAME_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}$"  # metrics, event and error codes
USER_PATTERN: Final = r"^[A-Za-z0-9._@-]{1,64}$"  # the CHECK of api_user.name
TEXT_PATTERN: Final = r"^[^\x00-\x1f\x7f]*$"  # printable: no NUL, no control characters

EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2200, 1, 1, tzinfo=UTC)
MAX_TELEMETRY_POINTS: Final = 10_000
DEFAULT_WINDOW: Final = timedelta(hours=24)
MAX_GAP_WINDOW: Final = timedelta(days=31)
MAX_OFFSET: Final = 1_000_000
MAX_ID: Final = 2**63 - 1

DeviceId = Annotated[str, Field(pattern=DEVICE_ID_PATTERN, examples=["cab-0001"])]
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
Site = Annotated[str, Field(min_length=1, max_length=128, pattern=TEXT_PATTERN)]
Limit = Annotated[int, Field(ge=1, le=500, description="page size")]
Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET, description="rows to skip")]
Time = Annotated[AwareDatetime, Field(description="ISO 8601 with a timezone offset")]


class Bucket(StrEnum):
    """The bucket widths the telemetry route accepts."""

    MINUTE = "1m"
    FIVE_MINUTES = "5m"
    FIFTEEN_MINUTES = "15m"
    HOUR = "1h"
    SIX_HOURS = "6h"
    DAY = "1d"

    @property
    def width(self) -> timedelta:
        return _BUCKET_WIDTHS[self]


_BUCKET_WIDTHS: Final = {
    Bucket.MINUTE: timedelta(minutes=1),
    Bucket.FIVE_MINUTES: timedelta(minutes=5),
    Bucket.FIFTEEN_MINUTES: timedelta(minutes=15),
    Bucket.HOUR: timedelta(hours=1),
    Bucket.SIX_HOURS: timedelta(hours=6),
    Bucket.DAY: timedelta(days=1),
}


class Presence(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"  # no status message yet


class DeviceRole(StrEnum):
    CABINET = "cabinet"
    LEAK_SENSOR = "leak_sensor"
    GATEWAY = "gateway"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


def _in_range(name: str, value: datetime | None) -> None:
    if value is not None and not EARLIEST <= value < LATEST:
        raise ValueError(
            f"'{name}' must be between {EARLIEST.isoformat()} and {LATEST.isoformat()}"
        )


def check_window(start: datetime | None, end: datetime | None) -> None:
    """Raise ``ValueError`` for a window out of bounds or not ordered."""
    _in_range("from", start)
    _in_range("to", end)
    if start is not None and end is not None and not start < end:
        raise ValueError(f"'from' ({start.isoformat()}) must be before 'to' ({end.isoformat()})")


class _Query(BaseModel):
    # An unknown parameter is a typo (``?buckets=``): say so instead of ignoring it.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _Window(_Query):
    start: Time | None = Field(None, alias="from", description="inclusive start")
    end: Time | None = Field(None, alias="to", description="exclusive end")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        check_window(self.start, self.end)
        return self


# --- health, me ---------------------------------------------------------------


class HealthPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"status": "ok", "database": "reachable", "version": "0.1.0"}]
        }
    )

    status: Literal["ok", "degraded"]
    database: Literal["reachable", "unreachable"]
    version: str


class MePublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user": "alice",
                    "role": "operator",
                    "token_id": 12,
                    "token_expires_at": "2026-06-01T00:00:00Z",
                    "permissions": ["me:read", "devices:read", "telemetry:read"],
                }
            ]
        }
    )

    user: str
    role: Role
    token_id: int
    token_expires_at: datetime | None
    permissions: list[str]


# --- devices and telemetry ------------------------------------------------------


class DevicesQuery(_Query):
    role: DeviceRole | None = None
    site: Site | None = None
    status: Presence | None = Field(None, description="presence: online, offline or unknown")
    limit: Limit = 100
    offset: Offset = 0


class DevicePublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "device_id": "cab-0001",
                    "role": "cabinet",
                    "site": "nord",
                    "presence": "online",
                    "presence_since": "2026-01-10T17:02:11Z",
                    "first_seen": "2025-11-24T09:00:00Z",
                    "last_seen": "2026-01-10T21:40:02Z",
                    "last_message_at": "2026-01-10T21:40:01Z",
                    "last_boot_id": "9f3c2a1b",
                    "last_gateway_id": "gw-nord",
                    "fw": "1.4.2",
                }
            ]
        }
    )

    device_id: str
    role: DeviceRole | None
    site: str | None
    presence: Presence
    presence_since: datetime | None = Field(description="time of the last status message")
    first_seen: datetime | None = Field(description="first reception by the backend")
    last_seen: datetime | None = Field(description="latest reception by the backend")
    last_message_at: datetime | None = Field(description="device clock of its newest message")
    last_boot_id: str | None
    last_gateway_id: str | None
    fw: str | None


class DevicesPublic(BaseModel):
    items: list[DevicePublic]
    total: int = Field(description="devices matching the filters, all pages")
    limit: int
    offset: int


class TelemetryQuery(_Window):
    metric: Name = Field(description="metric name, e.g. power_w", examples=["power_w"])
    bucket: Bucket = Field(Bucket.HOUR, description="bucket width")
    channel: int | None = Field(None, ge=0, le=255, description="one channel only")
    start: Time | None = Field(None, alias="from", description="inclusive start; default to - 24 h")
    end: Time | None = Field(None, alias="to", description="exclusive end; default now")

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        end = self.end or datetime.now(UTC)
        start = self.start or end - DEFAULT_WINDOW
        check_window(start, end)
        buckets = -(-(end - start) // self.bucket.width)  # ceiling division
        if buckets > MAX_TELEMETRY_POINTS:
            raise ValueError(
                f"{buckets} buckets of {self.bucket.value} between 'from' and 'to'; at most"
                f" {MAX_TELEMETRY_POINTS} per query: narrow the window or take a wider bucket"
            )
        self.start, self.end = start, end
        return self


class TelemetryPoint(BaseModel):
    time: datetime = Field(description="start of the bucket")
    channel: int
    count: int
    avg: float
    min: float
    max: float


class TelemetryPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "device_id": "cab-0001",
                    "metric": "power_w",
                    "bucket": "1h",
                    "from": "2026-01-10T00:00:00Z",
                    "to": "2026-01-11T00:00:00Z",
                    "points": [
                        {
                            "time": "2026-01-10T17:00:00Z",
                            "channel": 0,
                            "count": 6,
                            "avg": 812.5,
                            "min": 790.0,
                            "max": 840.0,
                        }
                    ],
                }
            ]
        },
    )

    device_id: str
    metric: str
    bucket: Bucket
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    points: list[TelemetryPoint]


# --- events, dead letters, gaps -----------------------------------------------


class EventsQuery(_Window):
    device_id: DeviceId | None = None
    site: Site | None = None
    code: Name | None = None
    severity: Severity | None = None
    active: bool | None = None
    limit: Limit = 100
    offset: Offset = 0


class EventPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "time": "2026-01-10T21:14:03Z",
                    "device_id": "leak-0042",
                    "boot_id": "5b1e0c77",
                    "seq": 1803,
                    "code": "leak_suspected",
                    "severity": "critical",
                    "channel": None,
                    "active": True,
                    "detail": {"score": 0.93},
                }
            ]
        }
    )

    time: datetime
    device_id: str
    boot_id: str
    seq: int
    code: str
    severity: Severity
    channel: int | None
    active: bool
    detail: Any = None


class EventsPublic(BaseModel):
    items: list[EventPublic]
    limit: int
    offset: int


class DeadLettersQuery(_Window):
    device_id: DeviceId | None = None
    code: Name | None = None
    source: str | None = Field(None, max_length=128, pattern=TEXT_PATTERN)
    limit: Limit = 100
    offset: Offset = 0


class DeadLetterPublic(BaseModel):
    id: int
    received_at: datetime
    topic: str
    code: str
    reason: str
    field: str | None
    device_id: str | None
    source: str
    payload_size: int = Field(description="bytes of the whole payload")
    payload_base64: str = Field(description="the payload's first bytes, base64")
    payload_truncated: bool


class DeadLettersPublic(BaseModel):
    items: list[DeadLetterPublic]
    limit: int
    offset: int


class SequenceGapsQuery(_Window):
    device_id: DeviceId | None = None
    start: Time | None = Field(None, alias="from", description="inclusive start; default to - 24 h")
    end: Time | None = Field(None, alias="to", description="exclusive end; default now")
    limit: Limit = 100

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        end = self.end or datetime.now(UTC)
        start = self.start or end - DEFAULT_WINDOW
        check_window(start, end)
        if end - start > MAX_GAP_WINDOW:
            raise ValueError(
                f"window of {end - start} is longer than {MAX_GAP_WINDOW.days} days:"
                " gap detection scans every message in it; narrow 'from'/'to'"
            )
        self.start, self.end = start, end
        return self


class SequenceGapPublic(BaseModel):
    device_id: str
    boot_id: str
    first_missing: int
    last_missing: int
    missing: int
    after_time: datetime = Field(description="device time of the message before the gap")
    before_time: datetime = Field(description="device time of the message after the gap")


class SequenceGapsPublic(BaseModel):
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    items: list[SequenceGapPublic]


# --- tokens ---------------------------------------------------------------------


class TokenCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"user": "alice", "role": "operator", "expires_in_days": 90, "label": "console"}
            ]
        },
    )

    user: str = Field(pattern=USER_PATTERN, description="created with `role` if new")
    role: Role | None = Field(
        None, description="required for a new user; must match an existing user's role"
    )
    expires_in_days: int | None = Field(
        90, ge=1, le=3650, description="days until the token expires; null: never"
    )
    label: str | None = Field(None, max_length=200, pattern=TEXT_PATTERN)


class TokenPublic(BaseModel):
    token_id: int
    user: str
    role: Role
    label: str | None
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    state: Literal["active", "expired", "revoked"]


class TokenCreated(BaseModel):
    """The only answer that ever shows a token: store it now."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token_id": 13,
                    "token": "lmu_Q2hhbmdlIG1lOiB0aGlzIGlzIGFuIGV4YW1wbGUgdG9rZW4",
                    "user": "alice",
                    "role": "operator",
                    "label": "console",
                    "expires_at": "2026-04-10T21:40:00Z",
                }
            ]
        }
    )

    token_id: int
    token: str
    user: str
    role: Role
    label: str | None
    expires_at: datetime | None


class TokensPublic(BaseModel):
    items: list[TokenPublic]


# --- device provisioning --------------------------------------------------------

# A device id (the protocol's rule, edge.protocol) that is also a broker user
# name (backend.devstack.broker.check_username: it cannot start with '.', '_'
# or '-'); the device's broker user is its id, which the broker's ACL
# patterns (%u) use.
PROVISION_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class ProvisionRole(StrEnum):
    """The roles a device can be provisioned with (gateways are not devices here)."""

    CABINET = "cabinet"
    LEAK_SENSOR = "leak_sensor"


class DeviceProvision(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"device_id": "cab-0042", "role": "cabinet", "site": "nord"}]
        },
    )

    device_id: str = Field(
        pattern=PROVISION_ID_PATTERN,
        description="the protocol's device id; also the device's broker user name",
    )
    role: ProvisionRole
    site: Site | None = Field(None, description="kept as is when omitted")

    @field_validator("device_id")
    @classmethod
    def _protocol_id(cls, value: str) -> str:
        # The protocol's own rules (the topic helper raises on a bad id), so the
        # API can never issue credentials for topics devices cannot use.
        from edge import protocol

        try:
            protocol.uplink_topic(value, "telemetry")
        except protocol.ProtocolError as exc:
            raise ValueError(str(exc)) from None
        return value


class ProvisionQuery(_Query):
    rotate: bool = Field(
        False, description="replace existing credentials (the old password stops working)"
    )


class DeviceCredentials(BaseModel):
    """The only answer that ever shows a device's broker password: store it now."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "device_id": "cab-0042",
                    "role": "cabinet",
                    "site": "nord",
                    "username": "cab-0042",
                    "password": "c2hvd24gb25jZSwgbmV2ZXIgc3RvcmVkIGhlcmU",
                    "broker_host": "127.0.0.1",
                    "broker_port": 1883,
                    "tls": False,
                    "publish_topics": ["lumeau/v1/dev/cab-0042/up/#"],
                    "subscribe_topics": ["lumeau/v1/dev/cab-0042/down/#"],
                    "rotated": False,
                    "credentials_set_at": "2026-01-10T21:40:00Z",
                }
            ]
        }
    )

    device_id: str
    role: ProvisionRole
    site: str | None
    username: str = Field(description="the broker user name: the device id")
    password: str = Field(description="shown once; the database keeps only its SHA-256")
    broker_host: str
    broker_port: int
    tls: bool = Field(description="whether the broker is reached over TLS")
    publish_topics: list[str] = Field(description="topic filters the device may publish to")
    subscribe_topics: list[str] = Field(description="topic filters the device may read")
    rotated: bool = Field(description="true if earlier credentials were replaced")
    credentials_set_at: datetime
