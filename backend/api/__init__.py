"""The Lumeau HTTP API, version 1 under ``/api/v1`` (FastAPI, psycopg 3).

Layout (after the full-stack-fastapi-template)::

    app.py          create_app(settings): the application, its lifespan
    db.py           Database: one connection per request, made in the lifespan
    deps.py         Annotated dependencies: Conn, CurrentPrincipal, authorize
    permissions.py  roles, permissions and the route -> permission matrix (data)
    errors.py       problem+json error bodies and the exception handlers
    tokens.py       token generation and hashing (pure)
    broker.py       BrokerAdmin: how provisioned devices get broker passwords
    schemas.py      request/response models (XCreate, XPublic, ...)
    queries/        the SQL, one module per resource
    routes/         thin handlers, one module per resource
    cli.py          lumeau api run | token create

Importing this package imports neither FastAPI nor the database driver, so
``lumeau --help`` stays cheap; ``create_app`` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from backend.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
