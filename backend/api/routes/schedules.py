"""Dimming schedules: store, check, preview, deploy to cabinets, follow (docs/schedules.md).

A program is checked with the cabinet's own compiler before it is stored
(422 with the cabinet's reason and field otherwise) and answered with the
warnings of ``backend.schedules.checks``. A deployment sends one
``set_schedule`` command per cabinet through the commands machinery
(``backend.commands``: built and checked, recorded with its audit row,
published at QoS 1); each cabinet's state is its command's. Before anything
is sent, every target is checked: known, a cabinet, reachable with this
program (a gateway's relay), its site's time zone the program's, and the
program lit at its place on every plan that has a lit level.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from backend.api import errors
from backend.api.deps import Conn, CurrentPrincipal
from backend.api.queries import commands as command_queries
from backend.api.queries import schedules as queries
from backend.api.schemas import MAX_ID
from backend.api.schemas_schedules import (
    DeploymentCreate,
    DeploymentIssued,
    DeploymentPublic,
    DeploymentsPublic,
    DeploymentTarget,
    Finding,
    PreviewCircuit,
    PreviewPublic,
    PreviewQuery,
    PreviewStep,
    RunningCabinet,
    SchedulePublic,
    SchedulesPublic,
    SchedulesQuery,
    ScheduleSummary,
    ScheduleWrite,
    Skipped,
    TargetAck,
)
from backend.commands import build
from backend.commands.publisher import CommandPublisher, PublishError
from backend.schedules import checks, edge, nights
from edge import protocol

log = logging.getLogger(__name__)

router = APIRouter(tags=["schedules"])

ScheduleIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="schedule id", examples=[3])]
DeploymentIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="deployment id", examples=[12])]

POSITION_GRID_DEG: Final = 0.1  # cabinets this close share one year of sun times (< 1 min apart)

_NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {
    404: {"model": errors.Problem, "description": "No such schedule"}
}
_WRITE_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    409: {"model": errors.Problem, "description": "Another schedule has this name"},
    422: {
        "model": errors.Problem,
        "description": "The cabinet would refuse the program: its reason, and `errors`"
        " locates the field (`body.program.plans.std[2]`)",
    },
}


def _actor(principal: CurrentPrincipal) -> queries.Actor:
    return queries.Actor(principal.actor, principal.token_id)


def _checked(program: dict[str, Any]) -> checks.CheckedProgram:
    try:
        return checks.check_program(program)
    except checks.ProgramRefused as exc:
        location = f"body.program.{exc.field}" if exc.field else "body.program"
        raise errors.unprocessable(
            f"the cabinet would refuse this program ({exc.code}): {exc.reason}", location
        ) from None


def _findings(found: Sequence[checks.Finding]) -> list[Finding]:
    return [Finding(code=f.code, field=f.field, message=f.message) for f in found]


async def _public(conn: Conn, row: dict[str, Any]) -> SchedulePublic:
    # Warnings are recomputed, not stored: a better check shows on old schedules too.
    try:
        warnings = _findings(checks.check_program(row["program"]).warnings)
    except checks.ProgramRefused as exc:  # stored before the cabinet's compiler changed
        warnings = [Finding(code=exc.code, field=exc.field, message=f"refused now: {exc.reason}")]
    running = await queries.running_on(conn, row["schedule_id"])
    return SchedulePublic(
        **ScheduleSummary.model_validate(row).model_dump(),
        program=row["program"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        warnings=warnings,
        running_on=[RunningCabinet.model_validate(r) for r in running],
    )


async def _schedule(conn: Conn, schedule_id: int) -> dict[str, Any]:
    row = await queries.get_schedule(conn, schedule_id)
    if row is None:
        raise errors.not_found(f"no schedule {schedule_id}")
    return row


@router.get("/schedules", response_model=SchedulesPublic, summary="Dimming schedules, by name")
async def list_schedules(conn: Conn, query: Annotated[SchedulesQuery, Query()]) -> SchedulesPublic:
    rows, total = await queries.list_schedules(conn, limit=query.limit, offset=query.offset)
    return SchedulesPublic(
        items=[ScheduleSummary.model_validate(row) for row in rows],
        total=total,
        limit=query.limit,
        offset=query.offset,
    )


@router.post(
    "/schedules",
    response_model=SchedulePublic,
    status_code=201,
    summary="Store a dimming schedule (checked with the cabinet's compiler)",
    description=(
        "The program is the cabinet's (docs/schedule.md). Refused (422) with the cabinet's"
        " own reason when it would not compile, or could not travel as a `set_schedule`"
        " command. `warnings` list what the cabinet would run but a planner may not mean;"
        " they never refuse. Version 1. Audited."
    ),
    responses=_WRITE_RESPONSES,
)
async def create_schedule(
    conn: Conn, principal: CurrentPrincipal, body: ScheduleWrite
) -> SchedulePublic:
    _checked(body.program)
    try:
        schedule_id = await queries.create_schedule(
            conn,
            name=body.name,
            description=body.description,
            program=body.program,
            actor=_actor(principal),
        )
    except queries.NameTaken:
        raise errors.conflict(f"a schedule named {body.name!r} exists") from None
    return await _public(conn, await _schedule(conn, schedule_id))


@router.get(
    "/schedules/{schedule_id}",
    response_model=SchedulePublic,
    summary="A schedule: its current program, warnings, and the cabinets running it",
    responses=_NOT_FOUND,
)
async def read_schedule(conn: Conn, schedule_id: ScheduleIdPath) -> SchedulePublic:
    return await _public(conn, await _schedule(conn, schedule_id))


@router.put(
    "/schedules/{schedule_id}",
    response_model=SchedulePublic,
    summary="Replace a schedule; a changed program is a new version",
    description=(
        "Checked like a new schedule. Cabinets keep running the version they were sent"
        " until it is deployed again. Audited."
    ),
    responses={**_NOT_FOUND, **_WRITE_RESPONSES},
)
async def update_schedule(
    conn: Conn, principal: CurrentPrincipal, schedule_id: ScheduleIdPath, body: ScheduleWrite
) -> SchedulePublic:
    _checked(body.program)
    try:
        found = await queries.update_schedule(
            conn,
            schedule_id,
            name=body.name,
            description=body.description,
            program=body.program,
            actor=_actor(principal),
        )
    except queries.NameTaken:
        raise errors.conflict(f"another schedule is named {body.name!r}") from None
    if not found:
        raise errors.not_found(f"no schedule {schedule_id}")
    return await _public(conn, await _schedule(conn, schedule_id))


@router.delete(
    "/schedules/{schedule_id}",
    status_code=204,
    summary="Delete a schedule no cabinet runs (its deployments stay readable)",
    responses={
        **_NOT_FOUND,
        409: {
            "model": errors.Problem,
            "description": "Cabinets run it, or a deployment of it may still arrive",
        },
    },
)
async def delete_schedule(
    conn: Conn, principal: CurrentPrincipal, schedule_id: ScheduleIdPath
) -> Response:
    await _schedule(conn, schedule_id)
    try:
        deleted = await queries.delete_schedule(conn, schedule_id, _actor(principal))
    except queries.ScheduleBusy as busy:
        parts = []
        if busy.running:
            parts.append(f"cabinets {', '.join(busy.running)} run it")
        if busy.in_flight:
            parts.append(
                f"its set_schedule to {', '.join(busy.in_flight)} may still arrive"
                " (sent, not yet acked or expired)"
            )
        raise errors.conflict(
            f"schedule {schedule_id} is deployed: {'; '.join(parts)}. Deploy another"
            " schedule to them first"
        ) from None
    if not deleted:
        raise errors.not_found(f"no schedule {schedule_id}")
    return Response(status_code=204)


# --- preview ---------------------------------------------------------------------------


def _at(t: int) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


@router.get(
    "/schedules/{schedule_id}/preview",
    response_model=PreviewPublic,
    summary="What the cabinets will do on a night at a place",
    description=(
        "Resolves the program with the cabinet's own code for the night of `date` (its"
        " evening) at `site` (the site's centre) or `lat`/`lon`: every level change, the"
        " time lit, and the energy fraction against full power from sunset to sunrise."
    ),
    responses={404: {"model": errors.Problem, "description": "No such schedule or version"}},
)
async def preview(
    conn: Conn, schedule_id: ScheduleIdPath, query: Annotated[PreviewQuery, Query()]
) -> PreviewPublic:
    row = await _schedule(conn, schedule_id)
    version = query.version or int(row["version"])
    program_obj = await queries.get_program(conn, schedule_id, version)
    if program_obj is None:
        raise errors.not_found(f"schedule {schedule_id} has no version {version}")
    if query.site is not None:
        site = await queries.get_site(conn, query.site)
        if site is None:
            raise errors.unprocessable(f"no site {query.site!r}", "query.site")
        lat, lon = float(site["centre_lat"]), float(site["centre_lon"])
    else:
        assert query.lat is not None and query.lon is not None  # PreviewQuery's rule
        lat, lon = query.lat, query.lon
    try:
        program = checks.check_program(program_obj).program
    except checks.ProgramRefused as exc:
        raise errors.conflict(
            f"version {version} no longer compiles on the cabinet ({exc.code}): {exc.reason}"
        ) from None
    night = nights.preview_night(program, query.date, lat, lon)
    steps = sorted(
        (change for circuit in night.circuits for change in circuit.changes),
        key=lambda c: (c.at, c.circuit),
    )
    return PreviewPublic(
        schedule_id=schedule_id,
        version=version,
        date=query.date,
        lat=lat,
        lon=lon,
        site_id=query.site,
        sunset=_at(night.sunset),
        sunrise=_at(night.sunrise),
        dusk=_at(night.dusk),
        dawn=_at(night.dawn),
        night_s=night.sunrise - night.sunset,
        steps=[
            PreviewStep(
                at=_at(c.at),
                local=edge.local_hhmm(program.tz, c.at),
                circuit=c.circuit,
                level=c.level,
                source=c.source,
            )
            for c in steps
        ],
        circuits=[
            PreviewCircuit(
                circuit=c.circuit,
                plans=list(c.plans),
                lit_s=c.lit_s,
                dark_s=c.dark_s,
                energy_fraction=c.energy_fraction,
            )
            for c in night.circuits
        ],
        energy_fraction=night.energy_fraction,
        warnings=_findings(night.findings),
    )


# --- deployments -------------------------------------------------------------------------


def get_publisher(request: Request) -> CommandPublisher:
    publisher: CommandPublisher = request.app.state.command_publisher
    return publisher


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _role_problem(device_id: str, role: str | None) -> str | None:
    try:
        build.check_role(build.SET_SCHEDULE, device_id, role)
    except build.CommandRefused as exc:
        return exc.detail
    return None


async def _listed_targets(conn: Conn, device_ids: list[str]) -> list[dict[str, Any]]:
    found = {row["device_id"]: row for row in await queries.devices_with_place(conn, device_ids)}
    unknown = [d for d in device_ids if d not in found]
    if unknown:
        raise errors.unprocessable(
            f"unknown devices: {', '.join(unknown)} (never provisioned nor heard from)",
            "body.cabinets",
        )
    wrong = [p for d in device_ids if (p := _role_problem(d, found[d]["role"])) is not None]
    if wrong:
        raise errors.conflict("; ".join(wrong))
    return [found[d] for d in device_ids]


async def _site_targets(conn: Conn, site_id: str) -> tuple[list[dict[str, Any]], list[Skipped]]:
    if await queries.get_site(conn, site_id) is None:
        raise errors.unprocessable(f"no site {site_id!r}", "body.site")
    targets: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    for row in await queries.site_cabinets(conn, site_id):
        reason = None
        if row["device_id"] is None:
            reason = "no controller installed (cabinet has no device_id)"
        elif not row["known"]:
            reason = f"controller {row['device_id']!r} was never provisioned nor heard from"
        else:
            reason = _role_problem(row["device_id"], row["role"])
        if reason is None:
            targets.append(row)
        else:
            skipped.append(
                Skipped(cabinet_id=row["cabinet_id"], device_id=row["device_id"], reason=reason)
            )
    if not targets:
        why = "; ".join(f"{s.cabinet_id}: {s.reason}" for s in skipped) or "it has no cabinet"
        raise errors.conflict(f"site {site_id!r} has no cabinet to deploy to ({why})")
    return targets, skipped


def _grid(value: float) -> float:
    return round(value / POSITION_GRID_DEG) * POSITION_GRID_DEG


def _place_findings(
    program: Any, targets: Sequence[dict[str, Any]], today: datetime
) -> list[Finding]:
    """Refuse (409) a wrong time zone or a plan never lit at a target; warn about the rest."""
    refusals: list[str] = []
    warnings: list[Finding] = []
    zones: dict[str, list[str]] = {}
    places: dict[tuple[float, float], list[str]] = {}
    unplaced = []
    for t in targets:
        if t["lat"] is None or t["lon"] is None:
            unplaced.append(t["device_id"])
            continue
        places.setdefault((_grid(t["lat"]), _grid(t["lon"])), []).append(t["device_id"])
        if t["timezone"] is not None:
            zones.setdefault(t["timezone"], []).append(t["device_id"])
    for zone, devices in sorted(zones.items()):
        problem = checks.tz_mismatch(program.tz, zone, today.year)
        if problem is not None:
            refusals.append(f"time zone of {', '.join(devices)}: {problem}")
    for (lat, lon), devices in sorted(places.items()):
        where = f"at {lat:.1f}, {lon:.1f} ({', '.join(devices)})"
        for f in nights.sweep_year(program, lat, lon, today.date()):
            if f.code == "never_lit":
                refusals.append(f"{where}: {f.message}")
            else:
                warnings.append(
                    Finding(code=f.code, field=f.field, message=f"{where}: {f.message}")
                )
    if refusals:
        raise errors.conflict("the program cannot run as meant: " + "; ".join(refusals))
    if unplaced:
        warnings.append(
            Finding(
                code="not_placed",
                field=None,
                message=f"{', '.join(unplaced)}: not in the asset register (no position, no"
                " site time zone), so the program was not checked against their nights",
            )
        )
    return warnings


def _outbound(
    program_obj: dict[str, Any], targets: Sequence[dict[str, Any]], expires_in_s: int, now_ms: int
) -> list[tuple[dict[str, Any], build.Command, build.Outbound]]:
    """Every cabinet's command and bytes, or a refusal before anything is recorded."""
    out = []
    unreachable = []
    reason = ""
    for t in targets:
        try:
            command = build.schedule_program(
                t["device_id"],
                program=program_obj,
                expires_in_s=expires_in_s,
                now_ms=now_ms,
                command_id=build.new_command_id(),
            )
        except build.CommandRefused as exc:
            raise errors.conflict(
                f"the stored program cannot be sent to {t['device_id']}: {exc.detail}"
            ) from None
        try:
            out.append((t, command, build.outbound(command, t["last_gateway_id"], now_ms)))
        except protocol.ProtocolError as exc:
            unreachable.append(f"{t['device_id']} (via gateway {t['last_gateway_id']!r})")
            reason = exc.reason
    if unreachable:
        raise errors.conflict(
            f"cabinets behind a gateway cannot receive this program: {', '.join(unreachable)}."
            f" In the gateway's relay command it breaks protocol v1's limits ({reason})."
        )
    return out


def _deployment(row: dict[str, Any]) -> DeploymentPublic:
    targets = [
        DeploymentTarget(
            device_id=t["device_id"],
            command_id=t["command_id"],
            state=t["state"],
            via_gateway=t["via_gateway"],
            published_at=t["published_at"],
            publish_error=t["publish_error"],
            ack=None
            if t["ack_ok"] is None
            else TargetAck(
                at=t["ack_at"],
                ok=t["ack_ok"],
                err_code=t["ack_err_code"],
                err_reason=t["ack_err_reason"],
            ),
        )
        for t in row["targets"]
    ]
    states: dict[str, int] = {}
    for t in targets:
        states[t.state.value] = states.get(t.state.value, 0) + 1
    return DeploymentPublic(
        deployment_id=row["deployment_id"],
        schedule_id=row["schedule_id"],
        version=row["version"],
        target=row["target"],
        site_id=row["site_id"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        states=states,
        cabinets=targets,
    )


@router.post(
    "/schedules/{schedule_id}/deployments",
    response_model=DeploymentIssued,
    status_code=202,
    summary="Send the schedule's current version to cabinets (listed, or a site's)",
    description=(
        "One `set_schedule` command per cabinet, published at QoS 1; each cabinet's"
        " `state` is its command's (sent, acked, failed with the cabinet's reason,"
        " expired, publish_failed). Refused before anything is sent: unknown devices"
        " (422), devices that are not cabinets, a site without a cabinet to send to, a"
        " cabinet behind a gateway the program cannot be relayed to, a site time zone"
        " other than the program's, a lit plan never lit at a cabinet's place (409)."
        " Site cabinets without a usable controller are `skipped`. 503 when the broker"
        " confirmed none. Audited."
    ),
    responses={
        **_NOT_FOUND,
        409: {"model": errors.Problem, "description": "A target cannot take this program"},
        503: {"model": errors.Problem, "description": "The broker confirmed no command"},
    },
)
async def deploy(
    conn: Conn,
    principal: CurrentPrincipal,
    request: Request,
    schedule_id: ScheduleIdPath,
    body: DeploymentCreate,
) -> DeploymentIssued:
    row = await _schedule(conn, schedule_id)
    skipped: list[Skipped] = []
    if body.cabinets is not None:
        targets = await _listed_targets(conn, body.cabinets)
    else:
        assert body.site is not None  # DeploymentCreate's rule
        targets, skipped = await _site_targets(conn, body.site)
    try:
        program = checks.check_program(row["program"]).program
    except checks.ProgramRefused as exc:
        raise errors.conflict(
            f"version {row['version']} no longer compiles on the cabinet ({exc.code}):"
            f" {exc.reason}; store a corrected version first"
        ) from None
    now_ms = _now_ms()
    warnings = await run_in_threadpool(_place_findings, program, targets, _at(now_ms // 1000))
    issued = _outbound(row["program"], targets, body.expires_in_s, now_ms)
    actor = _actor(principal)
    async with conn.transaction():
        # Held until commit: a delete waits, then sees this deployment's targets.
        version = await queries.lock_live_version(conn, schedule_id)
        if version is None:
            raise errors.not_found(f"no schedule {schedule_id} (deleted while deploying)")
        if version != row["version"]:
            raise errors.conflict(
                f"schedule {schedule_id} changed to version {version} while version"
                f" {row['version']} was being deployed: nothing was sent; deploy again"
            )
        deployment_id = await queries.record_deployment(
            conn,
            schedule_id=schedule_id,
            version=row["version"],
            site_id=body.site,
            expires_ms=now_ms + body.expires_in_s * 1000,
            device_ids=[t["device_id"] for t in targets],
            actor=actor,
            skipped=[s.model_dump() for s in skipped],
        )
        for _target, command, out in issued:
            await command_queries.record_command(
                conn, command, out, actor=actor.name, actor_token_id=actor.token_id
            )
            await queries.add_target(conn, deployment_id, command.device_id, command.command_id)
    published = await _publish(conn, get_publisher(request), issued)
    found = await queries.get_deployment(conn, deployment_id)
    assert found is not None  # written above, never deleted
    if published == 0:
        raise errors.unavailable(
            f"the broker confirmed none of deployment {deployment_id}'s commands"
            f" ({found['targets'][0]['publish_error']}). It is recorded (state publish_failed)"
            " and will not be retried; deploy again later"
        )
    return DeploymentIssued(**_deployment(found).model_dump(), skipped=skipped, warnings=warnings)


async def _publish(
    conn: Conn,
    publisher: CommandPublisher,
    issued: Sequence[tuple[dict[str, Any], build.Command, build.Outbound]],
) -> int:
    """Publish one by one; after a failure the rest are not tried (the broker is away)."""
    published = 0
    failure: str | None = None
    for _target, command, out in issued:
        if failure is not None:
            await command_queries.mark_publish_failed(
                conn, command.command_id, f"not attempted: {failure}"
            )
            continue
        try:
            await run_in_threadpool(publisher.publish, out.topic, out.payload, out.expiry_s)
        except PublishError as exc:
            log.error("set_schedule %s to %s not published: %s", command.command_id, out.topic, exc)
            failure = str(exc)
            await command_queries.mark_publish_failed(conn, command.command_id, failure)
            continue
        await command_queries.mark_published(conn, command.command_id)
        published += 1
    return published


@router.get(
    "/schedules/{schedule_id}/deployments",
    response_model=DeploymentsPublic,
    summary="A schedule's deployments, newest first, with each cabinet's state",
    responses=_NOT_FOUND,
)
async def list_deployments(
    conn: Conn, schedule_id: ScheduleIdPath, query: Annotated[SchedulesQuery, Query()]
) -> DeploymentsPublic:
    await _schedule(conn, schedule_id)
    rows, total = await queries.list_deployments(
        conn, schedule_id, limit=query.limit, offset=query.offset
    )
    return DeploymentsPublic(
        items=[_deployment(row) for row in rows],
        total=total,
        limit=query.limit,
        offset=query.offset,
    )


@router.get(
    "/deployments/{deployment_id}",
    response_model=DeploymentPublic,
    summary="One deployment: each cabinet's command state and ack",
    responses={404: {"model": errors.Problem, "description": "No such deployment"}},
)
async def read_deployment(conn: Conn, deployment_id: DeploymentIdPath) -> DeploymentPublic:
    row = await queries.get_deployment(conn, deployment_id)
    if row is None:
        raise errors.not_found(f"no deployment {deployment_id}")
    return _deployment(row)
