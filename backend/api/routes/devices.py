"""``/api/v1/devices``: the device registry, provisioning, per-device telemetry."""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Annotated, Final

from fastapi import APIRouter, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from backend.api import errors
from backend.api.broker import BrokerAdminError
from backend.api.deps import Conn, CurrentPrincipal, ProvisioningDep
from backend.api.queries import devices as queries
from backend.api.queries import provisioning
from backend.api.schemas import (
    DEVICE_ID_PATTERN,
    DeviceCredentials,
    DeviceProvision,
    DevicePublic,
    DevicesPublic,
    DevicesQuery,
    ProvisionQuery,
    ProvisionRole,
    TelemetryPoint,
    TelemetryPublic,
    TelemetryQuery,
)
from edge import protocol

log = logging.getLogger(__name__)

PASSWORD_BYTES: Final = 24  # 192 bits from the OS's CSPRNG: 32 URL-safe characters

router = APIRouter(prefix="/devices", tags=["devices"])

DeviceIdPath = Annotated[
    str, Path(pattern=DEVICE_ID_PATTERN, description="device id", examples=["cab-0001"])
]


@router.get("", response_model=DevicesPublic, summary="List devices (filtered, paginated)")
async def list_devices(conn: Conn, query: Annotated[DevicesQuery, Query()]) -> DevicesPublic:
    rows, total = await queries.list_devices(
        conn,
        role=query.role.value if query.role else None,
        site=query.site,
        status=query.status,
        limit=query.limit,
        offset=query.offset,
    )
    return DevicesPublic(
        items=[DevicePublic.model_validate(row) for row in rows],
        total=total,
        limit=query.limit,
        offset=query.offset,
    )


@router.post(
    "",
    response_model=DeviceCredentials,
    status_code=201,
    summary="Provision a device: broker credentials, shown once",
    description=(
        "Registers the device (or completes a row ingest created) and gives it a"
        " broker user, its device id, with a new random password. The password is"
        " in this answer only: the broker keeps a salted hash, the database a"
        " SHA-256. The broker's ACL lets the device publish under"
        " `lumeau/v1/dev/{id}/up/` and read `lumeau/v1/dev/{id}/down/` only."
        " A device that has credentials is refused (409) unless `rotate=true`,"
        " which makes the old password stop working. Audited."
    ),
    responses={
        409: {
            "model": errors.Problem,
            "description": "Credentials exist (no `rotate`), another role, or a reserved id",
        },
        503: {"model": errors.Problem, "description": "The broker could not be updated"},
    },
)
async def provision_device(
    conn: Conn,
    principal: CurrentPrincipal,
    setup: ProvisioningDep,
    response: Response,
    body: DeviceProvision,
    query: Annotated[ProvisionQuery, Query()],
) -> DeviceCredentials:
    device_id = body.device_id
    if device_id in setup.reserved_users:
        raise errors.conflict(f"{device_id!r} is a broker user of the backend; pick another id")
    password = secrets.token_urlsafe(PASSWORD_BYTES)

    async def set_password() -> None:
        try:
            await run_in_threadpool(setup.admin.set_password, device_id, password)
        except BrokerAdminError as exc:
            log.error("provisioning %s: %s", device_id, exc)
            raise errors.unavailable(
                f"the broker could not be given the credentials of {device_id!r};"
                " nothing was changed (the server log says why)"
            ) from None

    try:
        done = await provisioning.provision_device(
            conn,
            device_id=device_id,
            role=body.role.value,
            site=body.site,
            rotate=query.rotate,
            password_sha256=hashlib.sha256(password.encode("ascii")).digest(),
            set_password=set_password,
            actor=principal.actor,
            actor_token_id=principal.token_id,
        )
    except provisioning.ProvisionProblem as exc:
        raise errors.conflict(exc.detail) from None
    # A secret: no cache may keep this answer.
    response.headers["Cache-Control"] = "no-store"
    up = protocol.uplink_topic(device_id, "telemetry").rpartition("/")[0]
    down = protocol.downlink_topic(device_id, "cmd").rpartition("/")[0]
    return DeviceCredentials(
        device_id=device_id,
        role=ProvisionRole(done.role),
        site=done.site,
        username=device_id,
        password=password,
        broker_host=setup.broker_host,
        broker_port=setup.broker_port,
        tls=setup.tls,
        publish_topics=[f"{up}/#"],
        subscribe_topics=[f"{down}/#"],
        rotated=done.rotated,
        credentials_set_at=done.credentials_set_at,
    )


@router.get(
    "/{device_id}",
    response_model=DevicePublic,
    summary="One device: presence, last seen, firmware",
    responses={404: {"model": errors.Problem, "description": "No such device"}},
)
async def read_device(conn: Conn, device_id: DeviceIdPath) -> DevicePublic:
    row = await queries.get_device(conn, device_id)
    if row is None:
        raise errors.not_found(f"no device {device_id!r}")
    return DevicePublic.model_validate(row)


@router.get(
    "/{device_id}/telemetry",
    response_model=TelemetryPublic,
    response_model_by_alias=True,
    summary="One metric of one device, aggregated per time bucket",
    description=(
        "avg, min, max and count of the readings of `metric` in each bucket of"
        " `[from, to)`, per channel. At most 10,000 buckets per query; buckets"
        " without readings are absent."
    ),
    responses={404: {"model": errors.Problem, "description": "No such device"}},
)
async def read_telemetry(
    conn: Conn, device_id: DeviceIdPath, query: Annotated[TelemetryQuery, Query()]
) -> TelemetryPublic:
    if not await queries.device_exists(conn, device_id):
        raise errors.not_found(f"no device {device_id!r}")
    assert query.start is not None and query.end is not None  # filled by the model
    rows = await queries.telemetry(
        conn,
        device_id=device_id,
        metric=query.metric,
        start=query.start,
        end=query.end,
        bucket=query.bucket.width,
        channel=query.channel,
    )
    return TelemetryPublic(
        device_id=device_id,
        metric=query.metric,
        bucket=query.bucket,
        start=query.start,
        end=query.end,
        points=[TelemetryPoint.model_validate(row) for row in rows],
    )
