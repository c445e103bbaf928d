"""Commands to devices: lighting overrides, recording requests, and their outcome.

A command is checked (device known, of the right role, args as the device
checks them), recorded with its audit row, published on the backend broker
at QoS 1, and only then answered (202: accepted, the device has not acted
yet). Its state follows from the broker's PUBACK and the device's ack
(``command_status``). A broker that does not confirm it is a 503, and the
command row keeps the reason (``publish_error``).
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from backend.api import errors
from backend.api.deps import Conn, CurrentPrincipal
from backend.api.queries import commands as queries
from backend.api.schemas import DEVICE_ID_PATTERN, Presence
from backend.api.schemas_commands import (
    ID_PATTERN,
    LIGHTING_DELIVERY_NOTE,
    CommandIssued,
    CommandPublic,
    CommandsPublic,
    CommandsQuery,
    LightingOverride,
    RecordingRequest,
)
from backend.commands import build
from backend.commands.publisher import CommandPublisher, PublishError

log = logging.getLogger(__name__)

router = APIRouter(tags=["commands"])

DeviceIdPath = Annotated[
    str, Path(pattern=DEVICE_ID_PATTERN, description="device id", examples=["cab-0001"])
]
CommandIdPath = Annotated[
    str, Path(pattern=ID_PATTERN, description="command id", examples=["c-5f0c2a9e81d4b3a7"])
]

_ISSUE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": errors.Problem, "description": "No such device"},
    409: {"model": errors.Problem, "description": "The device cannot take this command (role)"},
    503: {
        "model": errors.Problem,
        "description": "The broker did not confirm the command; it is recorded with"
        " `publish_error` and is not retried",
    },
}


def get_publisher(request: Request) -> CommandPublisher:
    publisher: CommandPublisher = request.app.state.command_publisher
    return publisher


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _device(conn: Conn, device_id: str, name: str) -> dict[str, Any]:
    device = await queries.device_for_command(conn, device_id)
    if device is None:
        raise errors.not_found(f"no device {device_id!r}")
    try:
        build.check_role(name, device_id, device["role"])
    except build.CommandRefused as exc:
        raise errors.conflict(exc.detail) from None
    return device


def _delivery(device: dict[str, Any], out: build.Outbound) -> str:
    """What happens to the command next, in words, given the device's presence."""
    expires = "until the command expires (expires_at)"
    if out.via_gateway is not None:
        route = f"relayed by gateway {out.via_gateway!r}"
        away = f"gateway {out.via_gateway!r} keeps re-sending it {expires}, then reports 'timeout'"
    else:
        route = "published on the device's own topic (no gateway)"
        away = f"the broker keeps it in the device's persistent session {expires}"
    presence = device["presence"]
    if presence == Presence.ONLINE:
        return f"{route}; the device is online"
    state = "offline" if presence == Presence.OFFLINE else "of unknown presence (no status yet)"
    return f"{route}; the device is {state}: {away}"


async def _issue(
    conn: Conn,
    principal: CurrentPrincipal,
    request: Request,
    device: dict[str, Any],
    command: build.Command,
) -> CommandIssued:
    out = build.outbound(command, device["last_gateway_id"], _now_ms())
    await queries.record_command(
        conn, command, out, actor=principal.actor, actor_token_id=principal.token_id
    )
    publisher = get_publisher(request)
    try:
        await run_in_threadpool(publisher.publish, out.topic, out.payload, out.expiry_s)
    except PublishError as exc:
        log.error("command %s to %s not published: %s", command.command_id, out.topic, exc)
        await queries.mark_publish_failed(conn, command.command_id, str(exc))
        raise errors.unavailable(
            f"the broker did not confirm command {command.command_id!r}: {exc}. It is recorded"
            " (state publish_failed) and will not be retried; send it again later"
        ) from None
    await queries.mark_published(conn, command.command_id)
    row = await queries.get_command(conn, command.command_id)
    assert row is not None  # written above, never deleted
    public = CommandPublic.from_row(row)
    return CommandIssued(
        **public.model_dump(),
        presence=Presence(device["presence"]),
        presence_since=device["presence_since"],
        delivery=_delivery(device, out),
    )


@router.post(
    "/devices/{device_id}/commands/lighting-override",
    response_model=CommandIssued,
    status_code=202,
    summary="Override a cabinet's lighting level for a while",
    description=(
        "Sends `set_level` to a cabinet: `level_pct` on circuit `channel` (null: every"
        " circuit) for `duration_s` seconds from when the cabinet receives it; then its"
        " schedule is back. 202: published (the broker confirmed it); follow `state`"
        " with `GET /commands/{command_id}`. An offline device is not refused: `presence`"
        " and `delivery` say what happens. " + LIGHTING_DELIVERY_NOTE + " Audited."
    ),
    responses=_ISSUE_RESPONSES,
)
async def lighting_override(
    conn: Conn,
    principal: CurrentPrincipal,
    request: Request,
    device_id: DeviceIdPath,
    body: LightingOverride,
) -> CommandIssued:
    device = await _device(conn, device_id, build.SET_LEVEL)
    try:
        command = build.lighting_override(
            device_id,
            channel=body.channel,
            level_pct=body.level_pct,
            duration_s=body.duration_s,
            now_ms=_now_ms(),
            command_id=build.new_command_id(),
        )
    except build.CommandRefused as exc:
        raise errors.unprocessable(exc.detail, f"body.{exc.field}" if exc.field else None) from None
    return await _issue(conn, principal, request, device, command)


@router.post(
    "/devices/{device_id}/commands/recording",
    response_model=CommandIssued,
    status_code=202,
    summary="Ask a leak sensor to send (again) or release a raw recording",
    description=(
        "`get`: `get_recording` (parts `first`..`last` when given, else all) - the"
        " sensor queues the chunks again, ingest stores them once. `release`:"
        " `release_recording` - the backend holds the recording; the sensor deletes it."
        " The sensor's ack `result` says what it did. Audited."
    ),
    responses=_ISSUE_RESPONSES,
)
async def recording(
    conn: Conn,
    principal: CurrentPrincipal,
    request: Request,
    device_id: DeviceIdPath,
    body: RecordingRequest,
) -> CommandIssued:
    name = build.GET_RECORDING if body.action == "get" else build.RELEASE_RECORDING
    device = await _device(conn, device_id, name)
    try:
        command = build.recording_request(
            device_id,
            action=body.action,
            rec=body.rec,
            first=body.first,
            last=body.last,
            expires_in_s=body.expires_in_s,
            now_ms=_now_ms(),
            command_id=build.new_command_id(),
        )
    except build.CommandRefused as exc:
        raise errors.unprocessable(exc.detail, f"body.{exc.field}" if exc.field else None) from None
    return await _issue(conn, principal, request, device, command)


@router.get(
    "/devices/{device_id}/commands",
    response_model=CommandsPublic,
    summary="A device's commands, newest first, with their state and ack",
    responses={404: {"model": errors.Problem, "description": "No such device"}},
)
async def list_commands(
    conn: Conn, device_id: DeviceIdPath, query: Annotated[CommandsQuery, Query()]
) -> CommandsPublic:
    if await queries.device_for_command(conn, device_id) is None:
        raise errors.not_found(f"no device {device_id!r}")
    rows, total = await queries.list_commands(
        conn, device_id, limit=query.limit, offset=query.offset
    )
    return CommandsPublic(
        items=[CommandPublic.from_row(row) for row in rows],
        total=total,
        limit=query.limit,
        offset=query.offset,
    )


@router.get(
    "/commands/{command_id}",
    response_model=CommandPublic,
    summary="One command: state, publication, the device's ack",
    responses={404: {"model": errors.Problem, "description": "No such command"}},
)
async def read_command(conn: Conn, command_id: CommandIdPath) -> CommandPublic:
    row = await queries.get_command(conn, command_id)
    if row is None:
        raise errors.not_found(f"no command {command_id!r}")
    return CommandPublic.from_row(row)
