"""Request and response models of the commands routes (docs/api.md, "Commands").

Request bodies are strict (no ``"50"`` for 50, no ``true`` for 1, no unknown
key): a command changes what a street's lights or a sensor do, so a request
that is not exactly what the caller meant is a 422, not a guess.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from backend.api.schemas import Limit, Offset, Presence
from backend.commands.build import LIGHTING_DELIVERY_S, MAX_OVERRIDE_S, MAX_PART, MIN_OVERRIDE_S

ID_PATTERN: Final = r"^[a-z0-9._-]{1,64}$"  # the protocol's ids: commands, recordings
MIN_EXPIRY_S: Final = 60
MAX_EXPIRY_S: Final = 86_400
DEFAULT_RECORDING_EXPIRY_S: Final = 3_600


class CommandState(StrEnum):
    """Where a command is (the view ``command_status``, migration 0012)."""

    PENDING = "pending"  # recorded, not yet confirmed by the broker
    SENT = "sent"  # the broker confirmed it (PUBACK); no ack yet
    ACKED = "acked"  # the device acked it: ok
    FAILED = "failed"  # the newest ack says not ok (err_code: device's, or gateway 'timeout')
    EXPIRED = "expired"  # no ack, and expires_at has passed
    PUBLISH_FAILED = "publish_failed"  # the broker did not confirm it: publish_error


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LightingOverride(_Body):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"channel": 2, "level_pct": 100, "duration_s": 7200}]}
    )

    channel: int | None = Field(
        ge=1, le=255, description="circuit 1-255, or null for every circuit (required: say which)"
    )
    level_pct: int = Field(ge=0, le=100, description="dimming level, percent")
    duration_s: int = Field(
        ge=MIN_OVERRIDE_S,
        le=MAX_OVERRIDE_S,
        description="how long the override lasts once the cabinet has it; it always ends",
    )


class RecordingRequest(_Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"action": "get", "rec": "a1b2c3d4e5f60718-3", "first": 1, "last": 1},
                {"action": "release", "rec": "a1b2c3d4e5f60718-3"},
            ]
        }
    )

    action: Literal["get", "release"] = Field(
        description="get: send the recording's parts (again); release: the sensor deletes it"
    )
    rec: str = Field(pattern=ID_PATTERN, description="recording id, as the sensor named it")
    first: int | None = Field(None, ge=0, le=MAX_PART, description="get only: first part")
    last: int | None = Field(None, ge=0, le=MAX_PART, description="get only: last part")
    expires_in_s: int = Field(
        DEFAULT_RECORDING_EXPIRY_S,
        ge=MIN_EXPIRY_S,
        le=MAX_EXPIRY_S,
        description="seconds the request may wait for the sensor (asleep, offline)",
    )

    @model_validator(mode="after")
    def _parts(self) -> Self:
        if self.action == "release" and (self.first is not None or self.last is not None):
            raise ValueError(
                "first/last apply to action 'get' only: a release deletes the whole recording"
            )
        if self.first is not None and self.last is not None and self.first > self.last:
            raise ValueError(f"first ({self.first}) must not be after last ({self.last})")
        return self


class CommandsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: Limit = 50
    offset: Offset = 0


class CommandAck(BaseModel):
    at: datetime = Field(description="the ack's time (device clock; the gateway's for timeout)")
    ok: bool
    err_code: str | None = Field(
        description="device: expired, unknown_command, bad_args, busy, failed, not_found...;"
        " gateway: timeout (the device never answered before expiry)"
    )
    err_reason: str | None
    result: dict[str, Any] | None = Field(description="what the command returned, if anything")
    count: int = Field(description="acks received for this command (a device may repeat one)")


class CommandPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "command_id": "c-5f0c2a9e81d4b3a7",
                    "device_id": "cab-0042",
                    "name": "set_level",
                    "args": {"ch": 2, "dur_s": 7200, "level_pct": 100},
                    "state": "acked",
                    "issued_by": "alice",
                    "issued_at": "2026-01-10T21:40:00Z",
                    "expires_at": "2026-01-10T21:45:00Z",
                    "topic": "lumeau/v1/gw/gw-nord/down/cmd",
                    "via_gateway": "gw-nord",
                    "published_at": "2026-01-10T21:40:00.012Z",
                    "publish_error": None,
                    "ack": {
                        "at": "2026-01-10T21:40:01Z",
                        "ok": True,
                        "err_code": None,
                        "err_reason": None,
                        "result": None,
                        "count": 1,
                    },
                }
            ]
        }
    )

    command_id: str
    device_id: str
    name: str = Field(description="the protocol command: set_level, get_recording, ...")
    args: dict[str, Any] = Field(description="the command's args, as sent")
    state: CommandState
    issued_by: str
    issued_at: datetime
    expires_at: datetime = Field(description="the command's exp: not executed after it")
    topic: str = Field(description="where it was published on the backend broker")
    via_gateway: str | None = Field(description="the gateway relaying it, if any")
    published_at: datetime | None = Field(description="when the broker confirmed it")
    publish_error: str | None = Field(description="why the broker did not confirm it")
    ack: CommandAck | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CommandPublic:
        ack = None
        if row["ack_ok"] is not None:
            ack = CommandAck(
                at=row["ack_at"],
                ok=row["ack_ok"],
                err_code=row["ack_err_code"],
                err_reason=row["ack_err_reason"],
                result=row["ack_result"],
                count=row["acks"],
            )
        return cls(
            command_id=row["command_id"],
            device_id=row["device_id"],
            name=row["name"],
            args=row["args"],
            state=CommandState(row["state"]),
            issued_by=row["issued_by"],
            issued_at=row["issued_at"],
            expires_at=row["expires_at"],
            topic=row["topic"],
            via_gateway=row["via_gateway"],
            published_at=row["published_at"],
            publish_error=row["publish_error"],
            ack=ack,
        )


class CommandIssued(CommandPublic):
    """A command just issued, with what the caller should know about delivery."""

    presence: Presence = Field(description="the device's presence when the command was issued")
    presence_since: datetime | None
    delivery: str = Field(
        description="how the command travels and what happens if the device is away"
    )


class CommandsPublic(BaseModel):
    items: list[CommandPublic]
    total: int = Field(description="commands of this device, all pages")
    limit: int
    offset: int


# Documented in the OpenAPI description of the lighting route.
LIGHTING_DELIVERY_NOTE: Final = (
    f"The command itself expires {LIGHTING_DELIVERY_S} s after issue (or at the end of a"
    " shorter override): an override that could not be delivered by then is dropped"
    " rather than started late."
)
