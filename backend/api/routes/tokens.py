"""``/api/v1/tokens``: issue, list and revoke API tokens (admin). Writes are audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from backend.api import errors
from backend.api.deps import Conn, CurrentPrincipal
from backend.api.queries import auth as queries
from backend.api.schemas import MAX_ID, TokenCreate, TokenCreated, TokenPublic, TokensPublic

router = APIRouter(prefix="/tokens", tags=["tokens"])

TokenIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="token id", examples=[12])]


@router.get("", response_model=TokensPublic, summary="All tokens (never the tokens themselves)")
async def list_tokens(conn: Conn) -> TokensPublic:
    rows = await queries.list_tokens(conn)
    return TokensPublic(items=[TokenPublic.model_validate(row) for row in rows])


@router.post(
    "",
    response_model=TokenCreated,
    status_code=201,
    summary="Issue a token (shown once in the answer, stored only as its hash)",
    responses={409: {"model": errors.Problem, "description": "The user has another role"}},
)
async def create_token(conn: Conn, principal: CurrentPrincipal, body: TokenCreate) -> TokenCreated:
    try:
        issued = await queries.issue_token(
            conn,
            user=body.user,
            role=body.role,
            expires_in_days=body.expires_in_days,
            label=body.label,
            actor=principal.actor,
            actor_token_id=principal.token_id,
        )
    except queries.UserProblem as exc:
        if exc.kind == "role_mismatch":
            raise errors.conflict(exc.detail) from None
        location = "body.role" if exc.kind == "unknown_user" else "body.user"
        raise errors.unprocessable(exc.detail, location) from None
    return TokenCreated(
        token_id=issued.token_id,
        token=issued.token,
        user=issued.user,
        role=issued.role,
        label=issued.label,
        expires_at=issued.expires_at,
    )


@router.delete(
    "/{token_id}",
    status_code=204,
    summary="Revoke a token (effective on its next request)",
    responses={
        404: {"model": errors.Problem, "description": "No such token"},
        409: {"model": errors.Problem, "description": "Already revoked"},
    },
)
async def revoke_token(conn: Conn, principal: CurrentPrincipal, token_id: TokenIdPath) -> Response:
    outcome, revoked_at = await queries.revoke_token(
        conn, token_id, actor=principal.actor, actor_token_id=principal.token_id
    )
    if outcome == "unknown":
        raise errors.not_found(f"no token {token_id}")
    if outcome == "already_revoked":
        when = revoked_at.isoformat() if revoked_at else "an earlier time"
        raise errors.conflict(f"token {token_id} was already revoked at {when}")
    return Response(status_code=204)
