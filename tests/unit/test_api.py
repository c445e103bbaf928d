"""API v1 without a database: tokens, the matrix, query validation, 401s."""

from __future__ import annotations

import hashlib
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import APIRouter, Depends, FastAPI
from pydantic import ValidationError

from backend.api.app import create_app, route_permissions
from backend.api.deps import authorize
from backend.api.permissions import API_PREFIX, MATRIX, ROUTES, Permission, Role, permissions_of
from backend.api.schemas import MAX_TELEMETRY_POINTS, Bucket, TelemetryQuery
from backend.api.tokens import new_token, token_hash, well_formed
from backend.settings import Settings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

NOWHERE = "postgresql://nobody:not-a-secret-1@127.0.0.1:1/none"


def settings() -> Settings:
    return Settings(
        database_url=NOWHERE,  # type: ignore[arg-type]
        mqtt_username="api-unit",
        mqtt_password="not-used-here",  # type: ignore[arg-type]
    )


def test_tokens_are_random_well_formed_and_hashed_with_sha256() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    token = tokens.pop()
    assert well_formed(token) and len(token) == 47
    assert token_hash(token) == hashlib.sha256(token.encode()).digest()
    assert not well_formed(token[:-1]) and not well_formed("Bearer " + token)


def test_every_role_can_read_devices_and_only_admin_writes_tokens() -> None:
    assert set(MATRIX) == set(Permission)
    assert {permission for _, permission in ROUTES.items() if permission} <= set(MATRIX)
    assert permissions_of(Role.ADMIN) == list(Permission)
    assert Permission.TOKENS_WRITE not in permissions_of(Role.TECHNICIAN)
    assert Permission.DEAD_LETTERS_READ not in permissions_of(Role.PLANNER)


def test_create_app_touches_no_database_and_maps_every_route() -> None:
    app = create_app(settings())
    assert set(app.state.route_permissions.values()) == set(ROUTES.values())


def test_a_route_without_a_matrix_entry_is_refused() -> None:
    app = FastAPI()
    public = APIRouter(prefix=API_PREFIX)
    protected = APIRouter(prefix=API_PREFIX, dependencies=[Depends(authorize)])

    @protected.get("/secret-new-thing")
    async def secret() -> None: ...

    app.include_router(public)
    app.include_router(protected)
    with pytest.raises(RuntimeError, match="GET /api/v1/secret-new-thing has no entry"):
        route_permissions(app, public)


def test_missing_or_malformed_token_is_401_before_any_database_work() -> None:
    with TestClient(create_app(settings())) as client:
        response = client.get("/api/v1/devices")
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert "missing bearer token" in response.json()["detail"]
        response = client.get("/api/v1/devices", headers={"Authorization": "Bearer nope"})
        assert "malformed bearer token" in response.json()["detail"]


def test_health_says_degraded_when_the_database_is_away() -> None:
    with TestClient(create_app(settings())) as client:
        response = client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


def test_telemetry_window_defaults_to_the_last_day() -> None:
    query = TelemetryQuery.model_validate({"metric": "power_w"})
    assert query.start is not None and query.end is not None
    assert query.end - query.start == timedelta(hours=24)
    assert query.bucket is Bucket.HOUR


def test_telemetry_point_budget_is_exact() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ok = {"metric": "power_w", "bucket": "1m", "from": start}
    TelemetryQuery.model_validate({**ok, "to": start + timedelta(minutes=MAX_TELEMETRY_POINTS)})
    with pytest.raises(ValidationError, match="10001 buckets of 1m"):
        TelemetryQuery.model_validate(
            {**ok, "to": start + timedelta(minutes=MAX_TELEMETRY_POINTS, seconds=1)}
        )
