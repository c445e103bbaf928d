"""The API's connection pool against the real TimescaleDB: reuse, saturation, restart.

The application runs in process on its own event loop (``httpx.ASGITransport``
with the app's lifespan), so a test can hold pooled connections in the same
loop the requests use. The restart test stops the stack's PostgreSQL and
starts it again with ``backend.devstack.up``, as an operator would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest
from fastapi import FastAPI
from psycopg.conninfo import conninfo_to_dict

from backend import devstack
from backend.api.app import create_app
from backend.api.db import Database
from backend.api.permissions import Role
from backend.devstack.postgres import Postgres
from tests.integration import api_kit
from tests.integration.api_kit import issue, migrated_database, settings_for

if TYPE_CHECKING:
    from backend.devstack import Stack

pytestmark = pytest.mark.services

DEVICES = ("cab-pool-1", "leak-pool-1")
SEED = f"""
INSERT INTO device (device_id, role, site) VALUES
  ('{DEVICES[0]}', 'cabinet', 'nord'), ('{DEVICES[1]}', 'leak_sensor', 'sud');
"""


@dataclass(frozen=True)
class Target:
    url: str  # holds a password
    token: str

    def __repr__(self) -> str:
        return "Target(<secret>)"


@pytest.fixture(scope="module")
def target(stack: object) -> Iterator[Target]:
    with migrated_database(stack, "t_pool", SEED) as url:
        token = issue(url, f"pool-{uuid.uuid4().hex[:6]}", Role.OPERATOR).token
        yield Target(url, token)


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The application with its lifespan run (the pool opened and closed by it)."""
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api") as client,
    ):
        yield client


async def list_devices(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/v1/devices", headers={"Authorization": f"Bearer {token}"})


def device_ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["device_id"] for item in response.json()["items"]}


def problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """``api_kit.problem``, of the type ``kind``."""
    body = api_kit.problem(response, status)
    assert body["type"].endswith("/" + kind), body
    return body


def test_requests_reuse_pooled_connections(target: Target) -> None:
    async def run() -> tuple[set[int], set[str]]:
        database = Database(target.url, max_connections=4, min_connections=1)
        await database.open()
        try:
            pids: set[int] = set()
            for _ in range(30):
                async with database.connection() as conn:
                    cur = await conn.execute("SELECT pg_backend_pid() AS pid")
                    row = await cur.fetchone()
                    assert row is not None
                    pids.add(int(row["pid"]))
            async with database.connection() as conn:
                # Autocommit with dict rows, as the queries expect.
                assert conn.autocommit
                cur = await conn.execute("SELECT device_id FROM device")
                found = {str(r["device_id"]) for r in await cur.fetchall()}
        finally:
            await database.close()
        return pids, found

    pids, found = asyncio.run(run())
    # One connection per request would have been 30 server processes.
    assert 1 <= len(pids) <= 2, pids
    assert found == set(DEVICES)


def test_pool_bounds_are_checked() -> None:
    url = "postgresql://nobody@127.0.0.1:1/none"
    with pytest.raises(ValueError, match="max_connections"):
        Database(url, max_connections=0)
    with pytest.raises(ValueError, match="min_connections"):
        Database(url, max_connections=2, min_connections=3)
    with pytest.raises(ValueError, match="timeout"):
        Database(url, timeout=0)


def test_every_connection_busy_is_a_503_database_busy_problem(target: Target) -> None:
    app = create_app(settings_for(target.url, "api-pool-test"))

    async def run() -> None:
        async with serving(app) as client:
            # A one-connection pool with a short wait, in place of the lifespan's.
            tiny = Database(target.url, max_connections=1, timeout=0.3)
            await tiny.open()
            app.state.database = tiny
            try:
                holder = tiny.connection()
                await holder.__aenter__()
                try:
                    busy = await list_devices(client, target.token)
                    health = await client.get("/api/v1/health")
                finally:
                    await holder.__aexit__(None, None, None)
                body = problem(busy, 503, "database-busy")
                assert body["detail"] == (
                    "all 1 database connections stayed busy for 0.3 s; try again shortly"
                )
                assert busy.headers["retry-after"] == "1"
                # Busy is not down: the database answers.
                assert health.status_code == 200 and health.json()["database"] == "reachable"
                # The connection is back: the next request gets it.
                assert device_ids(await list_devices(client, target.token)) >= set(DEVICES)
            finally:
                await tiny.close()

    asyncio.run(run())


def test_a_database_restart_gives_503s_then_recovers(stack: object, target: Target) -> None:
    services = cast("Stack", stack)
    port = int(conninfo_to_dict(services.database_url)["port"] or 0)
    postgres = Postgres(services.run_dir, port)
    app = create_app(settings_for(target.url, "api-pool-test"))
    answers: list[int] = []

    async def run() -> None:
        async with serving(app) as client:
            assert device_ids(await list_devices(client, target.token)) >= set(DEVICES)
            await asyncio.to_thread(postgres.stop)
            try:
                down = await list_devices(client, target.token)
                body = problem(down, 503, "database-unavailable")
                assert "database cannot be reached" in body["detail"]
                health = await client.get("/api/v1/health")
                assert health.status_code == 503 and health.json()["database"] == "unreachable"
            finally:
                await asyncio.to_thread(devstack.up, services.run_dir)
            # Bounded by count, not time: the pool replaces its dead connections.
            for _ in range(40):
                response = await list_devices(client, target.token)
                answers.append(response.status_code)
                if response.status_code == 200:
                    assert device_ids(response) >= set(DEVICES)
                    break
                problem(response, 503, "database-unavailable")
                await asyncio.sleep(0.25)
            health = await client.get("/api/v1/health")
            assert health.status_code == 200 and health.json()["database"] == "reachable"

    asyncio.run(run())
    assert answers and answers[-1] == 200, answers
