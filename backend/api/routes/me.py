"""``GET /api/v1/me``: who the token belongs to and what it may do."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import CurrentPrincipal
from backend.api.permissions import permissions_of
from backend.api.schemas import MePublic

router = APIRouter(tags=["me"])


@router.get("/me", response_model=MePublic, summary="The caller's user, role and permissions")
async def read_me(principal: CurrentPrincipal) -> MePublic:
    return MePublic(
        user=principal.user,
        role=principal.role,
        token_id=principal.token_id,
        token_expires_at=principal.token_expires_at,
        permissions=[permission.value for permission in permissions_of(principal.role)],
    )
