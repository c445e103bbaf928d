"""Commands to devices, built and checked before anything is sent. Pure.

Each builder returns a ``Command`` whose ``args`` the device's own code
accepts (a lighting override goes through ``edge.schedule.make_override``,
the cabinet's check) and whose message passes the protocol codec
(``edge.protocol``); ``outbound`` then picks the topic and encodes the bytes.

Routing (docs/architecture.md, "Two brokers, two ACLs"): a device behind a
gateway (``device.last_gateway_id``) gets its command as a ``relay`` gateway
command on ``lumeau/v1/gw/<gw>/down/cmd``, the only downlink topic a gateway
may read on the backend broker; the gateway turns it into the device command
with the same ``id``, ``ts`` and ``exp`` (gateway/commands.py). A device that
talks to the backend broker itself gets it on ``lumeau/v1/dev/<id>/down/cmd``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from edge import protocol

COMMAND_ID_PREFIX: Final = "c-"
COMMAND_ID_BYTES: Final = 8  # 64 random bits: 'c-' + 16 hex characters
SOURCE: Final = "api"  # the cmd's src: who issued it
RELAY: Final = "relay"  # the gateway command that carries a device command

SET_LEVEL: Final = "set_level"
GET_RECORDING: Final = "get_recording"
RELEASE_RECORDING: Final = "release_recording"
SET_SCHEDULE: Final = "set_schedule"

# Which kind of device understands each command.
ROLE_OF_COMMAND: Final[Mapping[str, str]] = {
    SET_LEVEL: "cabinet",
    GET_RECORDING: "leak_sensor",
    RELEASE_RECORDING: "leak_sensor",
    SET_SCHEDULE: "cabinet",
}
_WHAT: Final[Mapping[str, str]] = {
    SET_LEVEL: "a lighting override (set_level)",
    GET_RECORDING: "a recording request (get_recording)",
    RELEASE_RECORDING: "a recording release (release_recording)",
    SET_SCHEDULE: "a dimming schedule (set_schedule)",
}

# How long a lighting override may wait for delivery. The device starts the
# override when it receives it and keeps it dur_s from then, so a late
# delivery shifts the whole override: a dimming meant for 22:00-23:00 that
# arrives at 22:40 would keep the street dim until 23:40. Five minutes covers
# the gateway's retries (every 10 s) through a short outage; past that the
# command expires (the gateway reports 'timeout') and the person decides.
LIGHTING_DELIVERY_S: Final = 300

MIN_OVERRIDE_S: Final = 60
MAX_OVERRIDE_S: Final = 86_400
MAX_PART: Final = 9_999  # parts per recording: 1 .. 10 000 (protocol section 7)

# A schedule may arrive late without harm (the cabinet keeps its previous
# program meanwhile): a day by default, so a cabinet away for the night still
# gets it; a week at most, the site broker's session expiry (docs/gateway.md).
SCHEDULE_DELIVERY_S: Final = 86_400
MIN_SCHEDULE_DELIVERY_S: Final = 300
MAX_SCHEDULE_DELIVERY_S: Final = 7 * 86_400


class CommandRefused(ValueError):
    """A command the device cannot take (wrong role, bad arguments).

    ``field`` names the request field at fault, or None for the device itself.
    """

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


@dataclass(frozen=True)
class Command:
    """A device command as issued: ``ts`` and ``exp`` are UTC milliseconds."""

    command_id: str
    device_id: str
    name: str
    args: dict[str, Any]
    issued_ms: int
    expires_ms: int

    def message(self) -> dict[str, Any]:
        """The protocol ``cmd`` message for the device, validated."""
        return protocol.validate(
            {
                "v": protocol.VERSION,
                "kind": "cmd",
                "dev": self.device_id,
                "id": self.command_id,
                "name": self.name,
                "args": self.args,
                "ts": self.issued_ms,
                "exp": self.expires_ms,
                "src": SOURCE,
            }
        )


@dataclass(frozen=True)
class Outbound:
    """What to publish on the backend broker for one command."""

    topic: str
    payload: bytes = field(repr=False)
    via_gateway: str | None
    expiry_s: int  # MQTT 5 message expiry: the broker drops it after the command's exp


def new_command_id(random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    return COMMAND_ID_PREFIX + random_bytes(COMMAND_ID_BYTES).hex()


def check_role(name: str, device_id: str, role: str | None) -> None:
    """Raise ``CommandRefused`` unless a device of ``role`` understands ``name``."""
    wanted = ROLE_OF_COMMAND[name]
    if role == wanted:
        return
    what = _WHAT[name]
    if role is None:
        raise CommandRefused(
            f"device {device_id!r} has not reported its role yet (no status received);"
            f" {what} is for a {wanted} only"
        )
    raise CommandRefused(f"device {device_id!r} is a {role}; {what} is for a {wanted} only")


def lighting_override(
    device_id: str,
    *,
    channel: int | None,
    level_pct: int,
    duration_s: int,
    now_ms: int,
    command_id: str,
) -> Command:
    """``set_level`` for ``duration_s`` seconds on one circuit (None: every circuit).

    The command expires ``LIGHTING_DELIVERY_S`` after issue (or at the end of
    a shorter override): an override that never arrived must not start late.
    """
    if not MIN_OVERRIDE_S <= duration_s <= MAX_OVERRIDE_S:
        raise CommandRefused(
            f"duration_s {duration_s} is outside [{MIN_OVERRIDE_S}, {MAX_OVERRIDE_S}] s",
            "duration_s",
        )
    if channel is not None and not 1 <= channel <= 255:
        raise CommandRefused(f"channel {channel} is outside [1, 255]", "channel")
    # ch 0 is 'every circuit' for the cabinet (docs/schedule.md, Overrides).
    args = {"ch": 0 if channel is None else channel, "level_pct": level_pct, "dur_s": duration_s}
    try:
        # The cabinet's own check of set_level args: what it would refuse, we refuse.
        _cabinet_schedule().make_override(args, now_ms // 1000)
    except ValueError as exc:  # edge.schedule.ScheduleError
        device_field = getattr(exc, "field", None) or ""
        reason = str(getattr(exc, "reason", exc))
        raise CommandRefused(reason, _REQUEST_FIELD.get(device_field, device_field)) from None
    delivery_s = min(duration_s, LIGHTING_DELIVERY_S)
    return _checked(
        Command(command_id, device_id, SET_LEVEL, args, now_ms, now_ms + delivery_s * 1000)
    )


def recording_request(
    device_id: str,
    *,
    action: Literal["get", "release"],
    rec: str,
    first: int | None,
    last: int | None,
    expires_in_s: int,
    now_ms: int,
    command_id: str,
) -> Command:
    """``get_recording`` (parts ``first`` .. ``last``, default all) or ``release_recording``."""
    if not _is_id(rec):
        raise CommandRefused(f"rec {rec!r} is not a recording id (1-64 of [a-z0-9._-])", "rec")
    if expires_in_s < 1:
        raise CommandRefused(f"expires_in_s {expires_in_s} must be positive", "expires_in_s")
    args: dict[str, Any] = {"rec": rec}
    if action == "release":
        if first is not None or last is not None:
            name = "first" if first is not None else "last"
            raise CommandRefused(
                f"{name}: a release deletes the whole recording; parts apply to 'get' only", name
            )
        name = RELEASE_RECORDING
    else:
        for key, value in (("first", first), ("last", last)):
            if value is None:
                continue
            if not 0 <= value <= MAX_PART:
                raise CommandRefused(f"{key} {value} is outside [0, {MAX_PART}]", key)
            args[key] = value
        if first is not None and last is not None and first > last:
            raise CommandRefused(f"first ({first}) is after last ({last})", "first")
        name = GET_RECORDING
    return _checked(
        Command(command_id, device_id, name, args, now_ms, now_ms + expires_in_s * 1000)
    )


def schedule_program(
    device_id: str,
    *,
    program: Mapping[str, Any],
    expires_in_s: int,
    now_ms: int,
    command_id: str,
) -> Command:
    """``set_schedule``: the cabinet compiles ``program`` (args) and runs it from then on.

    Checked with the cabinet's own compiler (``edge.schedule.compile_program``):
    a program it would refuse is refused here, with its reason and the field
    under ``program``.
    """
    if not MIN_SCHEDULE_DELIVERY_S <= expires_in_s <= MAX_SCHEDULE_DELIVERY_S:
        raise CommandRefused(
            f"expires_in_s {expires_in_s} is outside"
            f" [{MIN_SCHEDULE_DELIVERY_S}, {MAX_SCHEDULE_DELIVERY_S}] s",
            "expires_in_s",
        )
    try:
        _cabinet_schedule().compile_program(program)
    except ValueError as exc:  # edge.schedule.ScheduleError
        device_field = getattr(exc, "field", None)
        reason = str(getattr(exc, "reason", exc))
        raise CommandRefused(
            reason, f"program.{device_field}" if device_field else "program"
        ) from None
    return _checked(
        Command(
            command_id,
            device_id,
            SET_SCHEDULE,
            dict(program),
            now_ms,
            now_ms + expires_in_s * 1000,
        )
    )


def outbound(command: Command, gateway_id: str | None, now_ms: int) -> Outbound:
    """Topic and bytes for ``command``: relayed by ``gateway_id``, or direct."""
    message = command.message()
    expiry_s = max(1, -(-(command.expires_ms - now_ms) // 1000))
    if gateway_id is None:
        return Outbound(
            protocol.downlink_topic(command.device_id, "cmd"),
            protocol.encode(message),
            None,
            expiry_s,
        )
    relay = {
        "v": protocol.VERSION,
        "kind": "cmd",
        "gw": gateway_id,
        "id": command.command_id,
        "name": RELAY,
        "args": {"dev": command.device_id, "name": command.name, "args": command.args},
        "ts": command.issued_ms,
        "exp": command.expires_ms,
        "src": SOURCE,
    }
    return Outbound(
        protocol.gateway_topic(gateway_id, "down", "cmd"),
        protocol.encode(relay),
        gateway_id,
        expiry_s,
    )


_REQUEST_FIELD: Final[Mapping[str, str]] = {
    "ch": "channel",
    "level_pct": "level_pct",
    "dur_s": "duration_s",
}


def _cabinet_schedule() -> Any:
    # edge/schedule.py is the cabinet's MicroPython code, typed by comments for
    # MicroPython (bare dict/list), which mypy --strict rejects; loaded untyped,
    # as simulators/firmware_modules.py loads the board code.
    return importlib.import_module("edge.schedule")


def _checked(command: Command) -> Command:
    """``command`` if the codec takes its message; ``CommandRefused`` otherwise."""
    try:
        protocol.encode(command.message())
    except protocol.ProtocolError as exc:
        raise CommandRefused(f"not a valid command: {exc.reason}", exc.field) from None
    return command


def _is_id(value: str) -> bool:
    try:
        protocol.downlink_topic(value, "cmd")
    except protocol.ProtocolError:
        return False
    return True
