"""Dependencies of the handlers, as ``Annotated`` aliases.

``authorize`` is the one place the permission matrix is enforced: it is a
dependency of the whole authenticated router, looks the route up in
``permissions.ROUTES``, checks the bearer token and the token's role, and
returns the ``Principal`` that handlers receive through ``CurrentPrincipal``
(FastAPI resolves it once per request).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from backend.api import errors
from backend.api.broker import Provisioning
from backend.api.db import AsyncConn, Database
from backend.api.permissions import Permission, Role, allowed
from backend.api.queries import auth as auth_queries
from backend.api.tokens import well_formed


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user behind the token and the token's role."""

    user: str
    role: Role
    token_id: int
    token_expires_at: datetime | None

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return self.user


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_conn(
    database: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[AsyncConn]:
    async with database.connection() as conn:
        yield conn


Conn = Annotated[AsyncConn, Depends(get_conn)]

_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="lmu_<43 base64url characters>",
    description="An API token from `lumeau api token create` or `POST /api/v1/tokens`.",
)


def required_permission(request: Request) -> Permission:
    """The permission the matched route needs (``permissions.ROUTES``, via ``create_app``)."""
    route = request.scope.get("route")
    table: dict[tuple[int, str], Permission | None] = request.app.state.route_permissions
    permission = table.get((id(route), request.method))
    if permission is None:
        # Fail closed: a route on the authenticated router without a matrix
        # entry (create_app refuses to start with one; this is the safety net).
        raise errors.forbidden(
            f"{request.method} {request.url.path} has no entry in the permission matrix"
        )
    return permission


MISSING_TOKEN: Final = "missing bearer token: send 'Authorization: Bearer <token>'"
MALFORMED_TOKEN: Final = (
    "malformed bearer token: expected 'lmu_' followed by 43 base64url characters"
)


def bearer_refusal(authorization: str | None) -> str | None:
    """Why an ``Authorization`` header value carries no usable token (None: it does).

    The same reading as ``HTTPBearer`` and ``bearer_token``, for the request
    gate (``backend.api.gate``), which answers before any body is read.
    """
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return MISSING_TOKEN
    return None if well_formed(credentials.strip()) else MALFORMED_TOKEN


def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The bearer token of the request, well formed, or a 401."""
    if credentials is None:
        raise errors.unauthorized(MISSING_TOKEN)
    token = credentials.credentials.strip()
    if not well_formed(token):
        raise errors.unauthorized(MALFORMED_TOKEN)
    return token


def token_refusal(record: auth_queries.TokenRecord | None) -> str | None:
    """Why a looked-up token does not authenticate anyone (None: it does)."""
    if record is None:
        return "unknown token"
    if record.revoked_at is not None:
        return f"token {record.token_id} was revoked at {record.revoked_at.isoformat()}"
    if record.expires_at is not None and record.expires_at <= record.checked_at:
        return f"token {record.token_id} expired at {record.expires_at.isoformat()}"
    if record.user_disabled_at is not None:
        return f"user {record.user!r} is disabled"
    return None


async def authorize(
    request: Request,
    permission: Annotated[Permission, Depends(required_permission)],
    token: Annotated[str, Depends(bearer_token)],
    conn: Conn,
) -> Principal:
    """Authenticate the token, then check its role against the matrix."""
    record = await auth_queries.find_token(conn, token)
    refusal = token_refusal(record)
    if refusal is not None:
        raise errors.unauthorized(refusal)
    assert record is not None  # token_refusal refuses a missing record
    if not allowed(record.role, permission):
        raise errors.forbidden(
            f"role {record.role.value!r} does not have permission {permission.value!r}"
            f" needed by {request.method} {request.url.path}"
        )
    return Principal(
        user=record.user,
        role=record.role,
        token_id=record.token_id,
        token_expires_at=record.expires_at,
    )


def get_provisioning(request: Request) -> Provisioning:
    provisioning: Provisioning = request.app.state.provisioning
    return provisioning


CurrentPrincipal = Annotated[Principal, Depends(authorize)]
ProvisioningDep = Annotated[Provisioning, Depends(get_provisioning)]
DatabaseDep = Annotated[Database, Depends(get_database)]
