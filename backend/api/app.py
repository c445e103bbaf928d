"""``create_app(settings)``: the FastAPI application of API v1.

Nothing happens at import: the database handle is made in the lifespan, from
the settings passed in. The authenticated router carries ``authorize`` as a
dependency, and ``create_app`` refuses to build an application whose routes
and permission matrix disagree.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from backend.api.broker import BrokerAdmin, DevStackBrokerAdmin, Provisioning
from backend.api.db import DEFAULT_MAX_CONNECTIONS, Database
from backend.api.deps import authorize
from backend.api.errors import AUTH_RESPONSES, install_handlers
from backend.api.gate import RequestGate
from backend.api.live import LiveStreams, StreamConfig
from backend.api.permissions import API_PREFIX, PUBLIC, ROUTES, Permission
from backend.api.routes import (
    alerts,
    assets,
    commands,
    devices,
    diagnostics,
    events,
    health,
    me,
    notifications,
    schedules,
    stream,
    tokens,
)
from backend.commands.publisher import CommandPublisher, MqttCommandPublisher
from backend.console.mount import mount_console
from backend.devstack.broker import SERVICE_USER as DEV_SERVICE_USER
from backend.settings import Settings

log = logging.getLogger(__name__)

API_VERSION: Final = "1"

_DESCRIPTION: Final = """\
The Lumeau backend API: devices, their telemetry and events, and the health of
the data path (dead letters, sequence gaps) for street lighting and water-leak
detection.

**Authentication**: every route but `/health` needs
`Authorization: Bearer <token>`; tokens come from `lumeau api token create`
or `POST /api/v1/tokens` (admin). **Roles**: operator, planner, technician,
admin; the permission matrix is in `docs/api.md`.

**Errors** are `application/problem+json` (RFC 9457): `type`, `title`,
`status`, a specific `detail`, and `errors` listing each bad parameter.

**Versioning**: breaking changes get a new prefix (`/api/v2`); v1 only grows.
"""


def create_app(
    settings: Settings,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    broker_admin: BrokerAdmin | None = None,
    command_publisher: CommandPublisher | None = None,
    streams: StreamConfig | None = None,
) -> FastAPI:
    """The application for ``settings`` (its database is opened in the lifespan).

    ``broker_admin`` gives provisioned devices their broker passwords
    (``backend.api.broker``); by default, the development stack of
    ``settings.run_dir`` (loaded when a device is provisioned, not here).
    ``command_publisher`` sends device commands (``backend.commands``); by
    default one MQTT client on the settings' broker, made in the lifespan.
    The lifespan starts and stops it, injected or not.
    ``streams`` bounds the live event streams (``backend.api.live``).
    """
    conninfo = settings.database_url.get_secret_value()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(conninfo, max_connections=max_connections)
        await database.open()
        app.state.database = database
        log.info("API v%s ready (database pool of at most %d)", API_VERSION, max_connections)
        publisher = command_publisher or MqttCommandPublisher.from_settings(settings)
        app.state.command_publisher = publisher
        publisher.start()  # connects in the background: a broker down does not stop the API
        try:
            yield
        finally:
            publisher.stop()
            await database.close()

    app = FastAPI(
        title="Lumeau API",
        version=API_VERSION,
        summary="Connected street lighting and water-leak detection",
        description=_DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    install_handlers(app)

    public = APIRouter(prefix=API_PREFIX)
    public.include_router(health.router)

    protected = APIRouter(
        prefix=API_PREFIX, dependencies=[Depends(authorize)], responses=AUTH_RESPONSES
    )
    for module in (me, devices, events, diagnostics, tokens, alerts):
        protected.include_router(module.router)
    protected.include_router(commands.router)
    protected.include_router(assets.router)
    protected.include_router(notifications.router)
    protected.include_router(schedules.router)
    # The event stream authorizes on a connection released before it starts.
    streaming = APIRouter(
        prefix=API_PREFIX,
        dependencies=[Depends(stream.authorize_briefly)],
        responses=AUTH_RESPONSES,
    )
    streaming.include_router(stream.router)

    app.include_router(public)
    app.include_router(protected)
    app.include_router(streaming)
    # The operator's console: static files at /console/, outside the matrix
    # (a Mount, not an API route; route_permissions checks the API's routes).
    mount_console(app)
    app.state.route_permissions = route_permissions(app, public)
    # Before any route reads a body: the bearer header, then the body's size.
    app.add_middleware(
        RequestGate,
        routes=[(m, path, ROUTES[(m, path)] is not PUBLIC) for m, path, _ in api_routes(app)],
        body_limits={("PUT", f"{API_PREFIX}/assets"): assets.MAX_BODY_BYTES},
    )
    app.state.live = LiveStreams(conninfo, streams or StreamConfig())
    app.state.provisioning = Provisioning(
        admin=broker_admin if broker_admin is not None else DevStackBrokerAdmin(settings),
        broker_host=settings.mqtt_host,
        broker_port=settings.mqtt_port,
        tls=settings.mqtt_tls_ca is not None,
        reserved_users=frozenset({settings.mqtt_username, DEV_SERVICE_USER}),
    )
    return app


def api_routes(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    """(method, full path, route) of every API route (OpenAPI and docs pages excluded)."""
    found: list[tuple[str, str, APIRoute]] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path is not None:
            found.extend((method, context.path, route) for method in sorted(context.methods or ()))
    return found


def route_permissions(app: FastAPI, public: APIRouter) -> dict[tuple[int, str], Permission | None]:
    """(id of route, method) -> permission, from ``permissions.ROUTES``.

    Raises ``RuntimeError`` unless the routes served and the matrix agree:
    every route has an entry, every entry is served, and the public entries
    are exactly the routes of the public (unauthenticated) router.
    """
    public_routes = {id(c.original_route) for c in iter_route_contexts(public.routes)}
    problems = []
    found: dict[tuple[int, str], Permission | None] = {}
    for method, path, route in api_routes(app):
        key = (method, path)
        if key not in ROUTES:
            problems.append(f"{method} {path} has no entry in permissions.ROUTES")
            continue
        is_public = id(route) in public_routes
        if (ROUTES[key] is PUBLIC) != is_public:
            declared = "public" if ROUTES[key] is PUBLIC else "protected"
            served = "public" if is_public else "protected"
            problems.append(f"{method} {path} is {declared} in the matrix but {served} here")
        found[(id(route), method)] = ROUTES[key]
    served_keys = {(method, path) for method, path, _ in api_routes(app)}
    problems.extend(
        f"{method} {path} is in permissions.ROUTES but not served"
        for method, path in ROUTES.keys() - served_keys
    )
    if problems:
        raise RuntimeError("permission matrix and routes disagree: " + "; ".join(sorted(problems)))
    return found
