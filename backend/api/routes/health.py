"""``GET /api/v1/health``: no token needed; says whether the database answers."""

from __future__ import annotations

from importlib import metadata

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from backend.api.deps import DatabaseDep
from backend.api.schemas import HealthPublic

router = APIRouter(tags=["health"])


def _version() -> str:
    try:
        return metadata.version("lumeau")
    except metadata.PackageNotFoundError:
        return "unknown"


@router.get(
    "/health",
    response_model=HealthPublic,
    summary="Liveness and database reachability (no authentication)",
    responses={503: {"model": HealthPublic, "description": "The database does not answer"}},
)
async def health(database: DatabaseDep) -> JSONResponse:
    reachable = await database.reachable()
    body = HealthPublic(
        status="ok" if reachable else "degraded",
        database="reachable" if reachable else "unreachable",
        version=_version(),
    )
    return JSONResponse(body.model_dump(), status_code=200 if reachable else 503)
