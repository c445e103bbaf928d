"""Users, tokens and the audit log (migration 0006)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from psycopg.types.json import Jsonb

from backend.api.db import AsyncConn
from backend.api.permissions import Role
from backend.api.tokens import new_token, token_hash


@dataclass(frozen=True)
class TokenRecord:
    """What authentication needs to know about a presented token."""

    token_id: int
    user_id: int
    user: str
    role: Role
    expires_at: datetime | None
    revoked_at: datetime | None
    user_disabled_at: datetime | None
    checked_at: datetime  # the database's now(): one clock for expiry


@dataclass(frozen=True)
class IssuedToken:
    token_id: int
    token: str  # shown once; never stored
    user: str
    role: Role
    label: str | None
    expires_at: datetime | None
    user_created: bool


class UserProblem(Exception):
    """A token request that names a user wrongly; ``kind`` says how."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind  # "unknown_user", "role_mismatch", "user_disabled"
        self.detail = detail


async def find_token(conn: AsyncConn, token: str) -> TokenRecord | None:
    cur = await conn.execute(
        "SELECT t.token_id, t.expires_at, t.revoked_at, u.user_id, u.name, u.role,"
        " u.disabled_at, now() AS checked_at"
        " FROM api_token t JOIN api_user u USING (user_id)"
        " WHERE t.token_sha256 = %s",
        (token_hash(token),),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return TokenRecord(
        token_id=row["token_id"],
        user_id=row["user_id"],
        user=row["name"],
        role=Role(row["role"]),
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        user_disabled_at=row["disabled_at"],
        checked_at=row["checked_at"],
    )


async def audit(
    conn: AsyncConn,
    *,
    actor: str,
    actor_token_id: int | None,
    action: str,
    target: str | None,
    detail: dict[str, Any],
) -> None:
    """Append one row to ``api_audit`` (call inside the write's transaction)."""
    await conn.execute(
        "INSERT INTO api_audit (actor, actor_token_id, action, target, detail)"
        " VALUES (%s, %s, %s, %s, %s)",
        (actor, actor_token_id, action, target, Jsonb(detail)),
    )


async def issue_token(
    conn: AsyncConn,
    *,
    user: str,
    role: Role | None,
    expires_in_days: int | None,
    label: str | None,
    actor: str,
    actor_token_id: int | None,
) -> IssuedToken:
    """Create a token for ``user`` (and the user, given a role), audited."""
    token = new_token()
    async with conn.transaction():
        created = False
        if role is not None:
            cur = await conn.execute(
                "INSERT INTO api_user (name, role) VALUES (%s, %s)"
                " ON CONFLICT (name) DO NOTHING RETURNING user_id",
                (user, role.value),
            )
            created = await cur.fetchone() is not None
        cur = await conn.execute(
            "SELECT user_id, role, disabled_at FROM api_user WHERE name = %s FOR UPDATE",
            (user,),
        )
        row = await cur.fetchone()
        if row is None:
            raise UserProblem(
                "unknown_user", f"user {user!r} does not exist; give a role to create it"
            )
        if role is not None and row["role"] != role.value:
            raise UserProblem(
                "role_mismatch",
                f"user {user!r} has role {row['role']!r}, not {role.value!r};"
                " omit the role or name another user",
            )
        if row["disabled_at"] is not None:
            raise UserProblem("user_disabled", f"user {user!r} is disabled")
        cur = await conn.execute(
            "INSERT INTO api_token (user_id, token_sha256, label, created_by, expires_at)"
            " VALUES (%s, %s, %s, %s,"
            " CASE WHEN %s::int IS NULL THEN NULL ELSE now() + make_interval(days => %s) END)"
            " RETURNING token_id, expires_at",
            (row["user_id"], token_hash(token), label, actor, expires_in_days, expires_in_days),
        )
        inserted = await cur.fetchone()
        assert inserted is not None
        issued = IssuedToken(
            token_id=inserted["token_id"],
            token=token,
            user=user,
            role=Role(row["role"]),
            label=label,
            expires_at=inserted["expires_at"],
            user_created=created,
        )
        if created:
            await audit(
                conn,
                actor=actor,
                actor_token_id=actor_token_id,
                action="user.create",
                target=f"user:{user}",
                detail={"role": issued.role.value},
            )
        await audit(
            conn,
            actor=actor,
            actor_token_id=actor_token_id,
            action="token.create",
            target=f"token:{issued.token_id}",
            detail={
                "user": user,
                "role": issued.role.value,
                "label": label,
                "expires_at": issued.expires_at.isoformat() if issued.expires_at else None,
            },
        )
    return issued


RevokeOutcome = Literal["revoked", "unknown", "already_revoked"]


async def revoke_token(
    conn: AsyncConn, token_id: int, *, actor: str, actor_token_id: int | None
) -> tuple[RevokeOutcome, datetime | None]:
    """Revoke a token, audited; say what happened and when it was revoked."""
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT t.revoked_at, u.name FROM api_token t JOIN api_user u USING (user_id)"
            " WHERE t.token_id = %s FOR UPDATE OF t",
            (token_id,),
        )
        row = await cur.fetchone()
        if row is None:
            return "unknown", None
        if row["revoked_at"] is not None:
            return "already_revoked", row["revoked_at"]
        cur = await conn.execute(
            "UPDATE api_token SET revoked_at = now(), revoked_by = %s WHERE token_id = %s"
            " RETURNING revoked_at",
            (actor, token_id),
        )
        updated = await cur.fetchone()
        assert updated is not None
        await audit(
            conn,
            actor=actor,
            actor_token_id=actor_token_id,
            action="token.revoke",
            target=f"token:{token_id}",
            detail={"user": row["name"]},
        )
        revoked_at: datetime = updated["revoked_at"]
        return "revoked", revoked_at


_LIST_TOKENS: Final = (
    "SELECT t.token_id, u.name AS user, u.role, t.label, t.created_at, t.created_by,"
    " t.expires_at, t.revoked_at, t.revoked_by,"
    " CASE WHEN t.revoked_at IS NOT NULL THEN 'revoked'"
    "      WHEN t.expires_at IS NOT NULL AND t.expires_at <= now() THEN 'expired'"
    "      ELSE 'active' END AS state"
    " FROM api_token t JOIN api_user u USING (user_id)"
    " ORDER BY t.token_id"
)


async def list_tokens(conn: AsyncConn) -> list[dict[str, Any]]:
    cur = await conn.execute(_LIST_TOKENS)
    return await cur.fetchall()
