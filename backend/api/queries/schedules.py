"""Dimming schedules, their versions and deployments (migration 0016), audited."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg.types.json import Jsonb

from backend.api.db import AsyncConn
from backend.api.queries.auth import audit

_SCHEDULE: Final = (
    "SELECT s.schedule_id, s.name, s.description, s.version, s.created_by, s.created_at,"
    " s.updated_by, s.updated_at, v.program,"
    " (SELECT count(*) FROM cabinet_schedule c WHERE c.schedule_id = s.schedule_id) AS cabinets"
    " FROM dimming_schedule s"
    " JOIN dimming_schedule_version v ON v.schedule_id = s.schedule_id AND v.version = s.version"
    " WHERE s.deleted_at IS NULL"
)
_TARGET_COLUMNS: Final = (
    "deployment_id, device_id, command_id, state, via_gateway, published_at, publish_error,"
    " ack_at, ack_ok, ack_err_code, ack_err_reason"
)
_DEPLOYMENT_COLUMNS: Final = (
    "deployment_id, schedule_id, version, target, site_id, created_by, created_at, expires_at"
)


class NameTaken(Exception):
    """Another live schedule has this name."""


class ScheduleBusy(Exception):
    """Cabinets run the schedule, or may soon: it cannot be deleted."""

    def __init__(self, running: list[str], in_flight: list[str]) -> None:
        super().__init__(f"running on {running}, in flight to {in_flight}")
        self.running = running
        self.in_flight = in_flight


@dataclass(frozen=True)
class Actor:
    name: str
    token_id: int | None


async def list_schedules(
    conn: AsyncConn, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    cur = await conn.execute(
        f"{_SCHEDULE} ORDER BY s.name, s.schedule_id LIMIT %s OFFSET %s", (limit, offset)
    )
    rows = await cur.fetchall()
    cur = await conn.execute("SELECT count(*) AS n FROM dimming_schedule WHERE deleted_at IS NULL")
    total = await cur.fetchone()
    return rows, int(total["n"]) if total else 0


async def get_schedule(conn: AsyncConn, schedule_id: int) -> dict[str, Any] | None:
    cur = await conn.execute(f"{_SCHEDULE} AND s.schedule_id = %s", (schedule_id,))
    return await cur.fetchone()


async def get_program(conn: AsyncConn, schedule_id: int, version: int) -> dict[str, Any] | None:
    """Version ``version`` of a live schedule's program, or None."""
    cur = await conn.execute(
        "SELECT v.program FROM dimming_schedule_version v"
        " JOIN dimming_schedule s USING (schedule_id)"
        " WHERE v.schedule_id = %s AND v.version = %s AND s.deleted_at IS NULL",
        (schedule_id, version),
    )
    row = await cur.fetchone()
    return None if row is None else dict(row["program"])


async def running_on(conn: AsyncConn, schedule_id: int) -> list[dict[str, Any]]:
    """The cabinets whose last acked set_schedule came from this schedule."""
    cur = await conn.execute(
        "SELECT device_id, version, ack_at AS since, deployment_id FROM cabinet_schedule"
        " WHERE schedule_id = %s ORDER BY device_id",
        (schedule_id,),
    )
    return await cur.fetchall()


async def create_schedule(
    conn: AsyncConn,
    *,
    name: str,
    description: str | None,
    program: Mapping[str, Any],
    actor: Actor,
) -> int:
    """The new schedule's id (version 1); ``NameTaken`` if a live one has the name."""
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "INSERT INTO dimming_schedule (name, description, created_by, updated_by)"
                " VALUES (%s, %s, %s, %s) RETURNING schedule_id",
                (name, description, actor.name, actor.name),
            )
            row = await cur.fetchone()
            assert row is not None
            schedule_id = int(row["schedule_id"])
            await _add_version(conn, schedule_id, 1, program, actor)
            await audit(
                conn,
                actor=actor.name,
                actor_token_id=actor.token_id,
                action="schedule.create",
                target=f"schedule:{schedule_id}",
                detail={"name": name, "version": 1, "program": dict(program)},
            )
    except psycopg.errors.UniqueViolation:
        raise NameTaken(name) from None
    return schedule_id


async def _add_version(
    conn: AsyncConn, schedule_id: int, version: int, program: Mapping[str, Any], actor: Actor
) -> None:
    await conn.execute(
        "INSERT INTO dimming_schedule_version (schedule_id, version, program, created_by)"
        " VALUES (%s, %s, %s, %s)",
        (schedule_id, version, Jsonb(dict(program)), actor.name),
    )


async def update_schedule(
    conn: AsyncConn,
    schedule_id: int,
    *,
    name: str,
    description: str | None,
    program: Mapping[str, Any],
    actor: Actor,
) -> bool:
    """Replace name, description and program; a changed program is a new version.

    False when there is no such live schedule; ``NameTaken`` on a name clash.
    """
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT s.version, v.program = %s::jsonb AS same FROM dimming_schedule s"
                " JOIN dimming_schedule_version v USING (schedule_id, version)"
                " WHERE s.schedule_id = %s AND s.deleted_at IS NULL FOR UPDATE OF s",
                (Jsonb(dict(program)), schedule_id),
            )
            row = await cur.fetchone()
            if row is None:
                return False
            version = int(row["version"]) + (0 if row["same"] else 1)
            if not row["same"]:
                await _add_version(conn, schedule_id, version, program, actor)
            await conn.execute(
                "UPDATE dimming_schedule SET name = %s, description = %s, version = %s,"
                " updated_by = %s, updated_at = now() WHERE schedule_id = %s",
                (name, description, version, actor.name, schedule_id),
            )
            detail: dict[str, Any] = {"name": name, "version": version}
            if not row["same"]:
                detail["program"] = dict(program)
            await audit(
                conn,
                actor=actor.name,
                actor_token_id=actor.token_id,
                action="schedule.update",
                target=f"schedule:{schedule_id}",
                detail=detail,
            )
    except psycopg.errors.UniqueViolation:
        raise NameTaken(name) from None
    return True


async def busy_cabinets(conn: AsyncConn, schedule_id: int) -> dict[str, list[str]]:
    """Cabinets that run this schedule ('running'), or may soon ('in_flight': pending, sent)."""
    running = [row["device_id"] for row in await running_on(conn, schedule_id)]
    cur = await conn.execute(
        "SELECT DISTINCT device_id FROM deployment_target_status"
        " WHERE schedule_id = %s AND state IN ('pending', 'sent') ORDER BY device_id",
        (schedule_id,),
    )
    in_flight = [row["device_id"] for row in await cur.fetchall()]
    return {"running": running, "in_flight": in_flight}


async def delete_schedule(conn: AsyncConn, schedule_id: int, actor: Actor) -> bool:
    """Mark the schedule deleted (its versions and deployments stay); False if none.

    ``ScheduleBusy`` while cabinets run it or may soon. The row is locked
    first, so a deployment (which reads it ``FOR SHARE``) is either committed
    before the busy check, and seen by it, or sees the schedule deleted.
    """
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT name, version FROM dimming_schedule"
            " WHERE schedule_id = %s AND deleted_at IS NULL FOR UPDATE",
            (schedule_id,),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        busy = await busy_cabinets(conn, schedule_id)
        if busy["running"] or busy["in_flight"]:
            raise ScheduleBusy(busy["running"], busy["in_flight"])
        await conn.execute(
            "UPDATE dimming_schedule SET deleted_at = now(), deleted_by = %s"
            " WHERE schedule_id = %s",
            (actor.name, schedule_id),
        )
        await audit(
            conn,
            actor=actor.name,
            actor_token_id=actor.token_id,
            action="schedule.delete",
            target=f"schedule:{schedule_id}",
            detail={"name": row["name"], "version": row["version"]},
        )
    return True


# --- deployment targets -------------------------------------------------------------------

_DEVICE_PLACE: Final = (
    "SELECT d.device_id, d.role, d.last_gateway_id,"
    " coalesce(d.last_status, 'unknown') AS presence, d.last_status_at AS presence_since,"
    " c.cabinet_id, c.lat, c.lon, c.site_id, s.timezone"
    " FROM device d"
    " LEFT JOIN cabinet c ON c.device_id = d.device_id"
    " LEFT JOIN site s ON s.site_id = c.site_id"
)


async def devices_with_place(conn: AsyncConn, device_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Known devices among ``device_ids``: role, route, and their cabinet's place if registered."""
    cur = await conn.execute(
        f"{_DEVICE_PLACE} WHERE d.device_id = ANY(%s) ORDER BY d.device_id", (list(device_ids),)
    )
    return await cur.fetchall()


async def get_site(conn: AsyncConn, site_id: str) -> dict[str, Any] | None:
    cur = await conn.execute(
        "SELECT site_id, timezone, centre_lat, centre_lon FROM site WHERE site_id = %s",
        (site_id,),
    )
    return await cur.fetchone()


async def site_cabinets(conn: AsyncConn, site_id: str) -> list[dict[str, Any]]:
    """Every cabinet of the site, with its controller device (if any is known)."""
    cur = await conn.execute(
        "SELECT c.cabinet_id, c.device_id, c.lat, c.lon, c.site_id, s.timezone,"
        " d.device_id IS NOT NULL AS known, d.role, d.last_gateway_id,"
        " coalesce(d.last_status, 'unknown') AS presence, d.last_status_at AS presence_since"
        " FROM cabinet c JOIN site s USING (site_id)"
        " LEFT JOIN device d ON d.device_id = c.device_id"
        " WHERE c.site_id = %s ORDER BY c.cabinet_id",
        (site_id,),
    )
    return await cur.fetchall()


# --- deployments ------------------------------------------------------------------------


async def lock_live_version(conn: AsyncConn, schedule_id: int) -> int | None:
    """The live schedule's current version, its row locked against delete and
    update until the transaction ends (call inside it); None once deleted."""
    cur = await conn.execute(
        "SELECT version FROM dimming_schedule"
        " WHERE schedule_id = %s AND deleted_at IS NULL FOR SHARE",
        (schedule_id,),
    )
    row = await cur.fetchone()
    return None if row is None else int(row["version"])


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


async def record_deployment(
    conn: AsyncConn,
    *,
    schedule_id: int,
    version: int,
    site_id: str | None,
    expires_ms: int,
    device_ids: Sequence[str],
    actor: Actor,
    skipped: Sequence[Mapping[str, Any]],
) -> int:
    """The deployment row and its audit row (its commands are recorded next)."""
    cur = await conn.execute(
        "INSERT INTO schedule_deployment (schedule_id, version, target, site_id, created_by,"
        " created_token_id, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " RETURNING deployment_id",
        (
            schedule_id,
            version,
            "site" if site_id is not None else "cabinets",
            site_id,
            actor.name,
            actor.token_id,
            _utc(expires_ms),
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    deployment_id = int(row["deployment_id"])
    await audit(
        conn,
        actor=actor.name,
        actor_token_id=actor.token_id,
        action="schedule.deploy",
        target=f"schedule:{schedule_id}",
        detail={
            "deployment_id": deployment_id,
            "version": version,
            "site_id": site_id,
            "cabinets": list(device_ids),
            "skipped": [dict(s) for s in skipped],
        },
    )
    return deployment_id


async def add_target(conn: AsyncConn, deployment_id: int, device_id: str, command_id: str) -> None:
    await conn.execute(
        "INSERT INTO deployment_target (deployment_id, device_id, command_id) VALUES (%s, %s, %s)",
        (deployment_id, device_id, command_id),
    )


async def get_deployment(conn: AsyncConn, deployment_id: int) -> dict[str, Any] | None:
    """The deployment with ``targets``: each cabinet's command state and ack."""
    cur = await conn.execute(
        f"SELECT {_DEPLOYMENT_COLUMNS} FROM schedule_deployment WHERE deployment_id = %s",
        (deployment_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    found = await _with_targets(conn, [row])
    return found[0]


async def _with_targets(conn: AsyncConn, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = [row["deployment_id"] for row in rows]
    cur = await conn.execute(
        f"SELECT {_TARGET_COLUMNS} FROM deployment_target_status"
        " WHERE deployment_id = ANY(%s) ORDER BY device_id",
        (ids,),
    )
    targets: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for target in await cur.fetchall():
        targets[target["deployment_id"]].append(target)
    return [{**row, "targets": targets[row["deployment_id"]]} for row in rows]


async def list_deployments(
    conn: AsyncConn, schedule_id: int, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the schedule's deployments, newest first, with their targets."""
    cur = await conn.execute(
        f"SELECT {_DEPLOYMENT_COLUMNS} FROM schedule_deployment WHERE schedule_id = %s"
        " ORDER BY created_at DESC, deployment_id DESC LIMIT %s OFFSET %s",
        (schedule_id, limit, offset),
    )
    rows = await _with_targets(conn, await cur.fetchall())
    cur = await conn.execute(
        "SELECT count(*) AS n FROM schedule_deployment WHERE schedule_id = %s", (schedule_id,)
    )
    total = await cur.fetchone()
    return rows, int(total["n"]) if total else 0
