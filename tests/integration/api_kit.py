"""Shared parts of the API tests (no tests here): a migrated scratch database, the
application's settings, a token per role, the in-process client and the
problem+json check.

Each test module still builds its own application in its own module-scoped
fixture (its own database, its own broker parts); this module only holds the
pieces they all wrote the same way.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self, cast

import psycopg
from psycopg.rows import dict_row

from backend.api.app import create_app
from backend.api.permissions import Role
from backend.api.queries.auth import IssuedToken, issue_token
from backend.commands.publisher import MqttCommandPublisher
from backend.settings import Settings
from backend.storage import migrate
from backend.storage.scratch import scratch_database

with warnings.catch_warnings():
    # Starlette 1.x prefers the httpx2 package and warns when it finds httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI

    from backend.devstack import Stack

__all__ = [
    "PROBLEM",
    "InProcessApi",
    "RecordingBroker",
    "TestClient",
    "app_with_real_commands",
    "issue",
    "migrated_database",
    "problem",
    "settings_for",
    "sql",
    "stack_settings",
    "tokens_per_role",
]

PROBLEM = "application/problem+json"


# --- the database -----------------------------------------------------------------------


@contextmanager
def migrated_database(stack: object, prefix: str, seed: str | None = None) -> Iterator[str]:
    """A scratch database on the test stack, migrated like production and seeded with
    the SQL script ``seed``; its URL (holds a password), dropped after the block."""
    services = cast("Stack", stack)
    with scratch_database(services.admin_database_url, services.database_url, prefix) as url:
        migrate(url)
        if seed is not None:
            with psycopg.connect(url) as conn:
                conn.execute(seed)
        yield url


def sql(url: str, query: str, *params: Any) -> list[dict[str, Any]]:
    """Run one statement (committed); its rows, or [] when it returns none."""
    with psycopg.connect(url, row_factory=dict_row, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description is not None else []


# --- the application's settings and parts -----------------------------------------------


def settings_for(url: str, mqtt_username: str = "api-test") -> Settings:
    """Settings for an application that never logs in to a broker (a generated,
    unused broker password)."""
    return Settings(
        database_url=url,  # type: ignore[arg-type]
        mqtt_username=mqtt_username,
        mqtt_password=secrets.token_hex(12),  # type: ignore[arg-type]
    )


def stack_settings(services: Stack, url: str) -> Settings:
    """Settings for an application on the test stack's broker, as its service user
    (the default command publisher and broker admin then work for real)."""
    return Settings(
        run_dir=services.run_dir,
        database_url=url,  # type: ignore[arg-type]
        mqtt_host=services.mqtt_host,
        mqtt_port=services.mqtt_port,
        mqtt_username=services.mqtt_username,
        mqtt_password=services.mqtt_password,  # type: ignore[arg-type]
    )


class RecordingBroker:
    """A ``BrokerAdmin`` that only records: these tests never touch a real broker."""

    def __init__(self) -> None:
        self.users: dict[str, str] = {}

    def set_password(self, username: str, password: str) -> None:
        self.users[username] = password


def app_with_real_commands(services: Stack, url: str) -> FastAPI:
    """The application on ``url`` whose broker admin only records, while commands go
    to the test stack's real broker (as its service user)."""
    publisher = MqttCommandPublisher(
        services.mqtt_host, services.mqtt_port, services.mqtt_username, services.mqtt_password
    )
    return create_app(
        settings_for(url), broker_admin=RecordingBroker(), command_publisher=publisher
    )


# --- tokens -------------------------------------------------------------------------------


def issue(
    url: str, user: str, role: Role | None, days: int | None = 1, label: str = "test"
) -> IssuedToken:
    """A token made by the same code as ``lumeau api token create``."""

    async def run() -> IssuedToken:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, row_factory=dict_row
        ) as conn:
            return await issue_token(
                conn,
                user=user,
                role=role,
                expires_in_days=days,
                label=label,
                actor="test-suite",
                actor_token_id=None,
            )

    return asyncio.run(run())


def tokens_per_role(url: str, run: str, days: int | None = 1) -> dict[Role, IssuedToken]:
    """One token per role, for the users ``<role>-<run>``."""
    return {role: issue(url, f"{role.value}-{run}", role, days) for role in Role}


# --- the application in process -----------------------------------------------------------


@dataclass
class InProcessApi:
    """The application behind FastAPI's TestClient, a token per role, and its database.

    Test modules subclass it with their own ``get``/``post`` (their own default
    roles); ``prefix`` is put before every path given to ``request``.
    """

    prefix: ClassVar[str] = ""

    url: str = field(repr=False)  # holds a password
    client: TestClient = field(repr=False)
    tokens: dict[Role, IssuedToken] = field(repr=False)

    @classmethod
    @contextmanager
    def serving(
        cls, url: str, app: FastAPI, run: str, days: int | None = 1, **extra: Any
    ) -> Iterator[Self]:
        """``app`` started (its lifespan run) with a token per role for ``<role>-<run>``;
        ``extra`` are the subclass's own fields."""
        tokens = tokens_per_role(url, run, days)
        with TestClient(app) as client:
            yield cls(url, client, tokens, **extra)

    def headers(self, role: Role | None, **extra: str) -> dict[str, str]:
        """The bearer token of ``role`` (none for ``None``) and ``extra`` headers."""
        auth = {} if role is None else {"Authorization": f"Bearer {self.tokens[role].token}"}
        return {**auth, **extra}

    def request(
        self,
        method: str,
        path: str,
        as_: Role | None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> httpx.Response:
        """``method`` on ``prefix + path`` as ``as_`` (``None``: no token), with
        ``headers`` added; ``kw`` go to the client as they are (params, json, ...)."""
        response: httpx.Response = self.client.request(
            method, self.prefix + path, headers=self.headers(as_, **(headers or {})), **kw
        )
        return response

    def sql(self, query: str, *params: Any) -> list[dict[str, Any]]:
        return sql(self.url, query, *params)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The body of ``response``, checked to be a problem+json with ``status`` and a detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def served_over_http(app: FastAPI) -> Iterator[str]:
    """``app`` on a free loopback port, uvicorn in a thread (a stream needs a real server)."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(400):  # 20 s of 50 ms polls
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()
