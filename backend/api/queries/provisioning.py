"""Device provisioning (``device.credentials_set_at``, migration 0008), audited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from backend.api.db import AsyncConn
from backend.api.queries.auth import audit


class ProvisionProblem(Exception):
    """A provisioning request the device's current state refuses; ``kind`` says how."""

    def __init__(self, kind: Literal["has_credentials", "role_mismatch"], detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class Provisioned:
    device_id: str
    role: str
    site: str | None
    created: bool  # the device row is new
    rotated: bool  # earlier credentials were replaced
    credentials_set_at: datetime


async def provision_device(
    conn: AsyncConn,
    *,
    device_id: str,
    role: str,
    site: str | None,
    rotate: bool,
    password_sha256: bytes,
    set_password: Callable[[], Awaitable[None]],
    actor: str,
    actor_token_id: int | None,
) -> Provisioned:
    """Register ``device_id`` and record new credentials, in one transaction.

    ``set_password`` (the broker) is awaited while the device row is locked,
    after the checks and before the row is updated: if the broker fails,
    nothing is recorded; two concurrent requests for one device are served
    one after the other. Only the password's SHA-256 reaches the database.
    """
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO device (device_id, role, site) VALUES (%s, %s, %s)"
            " ON CONFLICT (device_id) DO NOTHING RETURNING device_id",
            (device_id, role, site),
        )
        created = await cur.fetchone() is not None
        cur = await conn.execute(
            "SELECT role, credentials_set_at FROM device WHERE device_id = %s FOR UPDATE",
            (device_id,),
        )
        row = await cur.fetchone()
        assert row is not None
        if row["role"] is not None and row["role"] != role:
            raise ProvisionProblem(
                "role_mismatch",
                f"device {device_id!r} has role {row['role']!r}, not {role!r}",
            )
        previous: datetime | None = row["credentials_set_at"]
        if previous is not None and not rotate:
            raise ProvisionProblem(
                "has_credentials",
                f"device {device_id!r} already has credentials (set at {previous.isoformat()});"
                " add ?rotate=true to replace them",
            )
        await set_password()
        cur = await conn.execute(
            "UPDATE device SET role = %s, site = coalesce(%s, site),"
            " credentials_set_at = now(), password_sha256 = %s"
            " WHERE device_id = %s RETURNING site, credentials_set_at",
            (role, site, password_sha256, device_id),
        )
        updated = await cur.fetchone()
        assert updated is not None
        rotated = previous is not None
        await audit(
            conn,
            actor=actor,
            actor_token_id=actor_token_id,
            action="device.rotate_credentials" if rotated else "device.provision",
            target=f"device:{device_id}",
            detail={
                "role": role,
                "site": updated["site"],
                "device_created": created,
                "previous_credentials_set_at": previous.isoformat() if previous else None,
            },
        )
    return Provisioned(
        device_id=device_id,
        role=role,
        site=updated["site"],
        created=created,
        rotated=rotated,
        credentials_set_at=updated["credentials_set_at"],
    )
