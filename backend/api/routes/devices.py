"""``/api/v1/devices``: the device registry and per-device telemetry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from backend.api import errors
from backend.api.deps import Conn
from backend.api.queries import devices as queries
from backend.api.schemas import (
    DEVICE_ID_PATTERN,
    DevicePublic,
    DevicesPublic,
    DevicesQuery,
    TelemetryPoint,
    TelemetryPublic,
    TelemetryQuery,
)

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
