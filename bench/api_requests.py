"""API requests/s and latency: the connection pool against one connection per request.

``GET /api/v1/devices`` (token lookup, then the device listing, 50 devices)
served by ``lumeau``'s own application under uvicorn (one process, a
subprocess of this one), asked by an ``httpx.AsyncClient`` on loopback, one
request at a time and 16 at once. Two servers, started one after the other
in the same run on the same throwaway database:

- ``pool``: the application as shipped (``backend.api.db.Database``, a
  ``psycopg_pool.AsyncConnectionPool``);
- ``per request``: the same application with ``Database`` swapped for
  :class:`PerRequestDatabase`, the API's previous access layer (one
  ``psycopg.AsyncConnection`` opened and closed per request, at most 16 at
  once), kept here as the baseline.

Latency is per request, from the client's send to the end of the body, so it
includes the client's share of the CPU (client and server share 2 cores).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from unittest import mock

import psycopg
from psycopg.rows import DictRow, dict_row

from bench._mqtt import stop_process, wait_until
from bench.harness.context import Context
from bench.harness.registry import Result, benchmark
from bench.harness.stats import percentile, summarize
from bench.harness.table import format_value

REPO_ROOT = Path(__file__).resolve().parent.parent
MODES: Final = ("pool", "per request")
CONCURRENCY: Final = (1, 16)
DEVICES: Final = 50
WARMUP: Final = 50
# The bench's own variable: keeps the password out of the server's argv.
_URL_VARIABLE: Final = "LUMEAU_BENCH_API_DATABASE_URL"


class PerRequestDatabase:
    """The API's access layer before the pool: one connection per request."""

    def __init__(self, conninfo: str, *, max_connections: int = 16) -> None:
        self._conninfo = conninfo
        self._slots = asyncio.Semaphore(max_connections)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @asynccontextmanager
    async def connection(
        self, timeout: float | None = None
    ) -> AsyncIterator[psycopg.AsyncConnection[DictRow]]:
        async with self._slots:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=5,
                application_name="lumeau-api",
            )
            try:
                yield conn
            finally:
                await conn.close()

    async def reachable(self) -> bool:
        try:
            async with self.connection() as conn:
                await conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True


def serve(mode: str, port: int) -> None:
    """Run the API under uvicorn on ``port`` until terminated (the server process)."""
    import secrets

    import uvicorn

    from backend.api import app as app_module
    from backend.settings import Settings

    settings = Settings(
        database_url=os.environ[_URL_VARIABLE],  # type: ignore[arg-type]
        mqtt_username="bench-api",
        mqtt_password=secrets.token_hex(12),  # type: ignore[arg-type]
    )
    config = uvicorn.Config(
        app_module.create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )
    baseline = mode == "per request"
    # The lifespan looks ``Database`` up in ``backend.api.app`` when it runs.
    swap = mock.patch.object(app_module, "Database", PerRequestDatabase) if baseline else None
    with swap or contextlib.nullcontext():
        uvicorn.Server(config).run()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_server(mode: str, database_url: str, log_path: Path) -> Iterator[str]:
    """The API served by a uvicorn subprocess; yields its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMEAU_")}
    env[_URL_VARIABLE] = database_url
    env["PYTHONPATH"] = str(REPO_ROOT)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.api_requests", mode, str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"API server exited: {log_path.read_text(errors='replace')}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        wait_until(up, 60, "the API server to listen", every=0.1)
        yield base
    finally:
        stop_process(process)


@dataclass(frozen=True)
class Load:
    rate: float  # requests/s
    p50_ms: float
    p99_ms: float


async def _load(base: str, token: str, requests: int, concurrency: int) -> Load:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:

        async def one() -> float:
            started = time.perf_counter()
            response = await client.get("/api/v1/devices", params={"limit": DEVICES})
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"GET /api/v1/devices: {response.status_code} {response.text}")
            return elapsed

        for _ in range(WARMUP):
            await one()
        latencies: list[float] = []
        remaining = requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                latencies.append(await one())

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Load(
        rate=requests / seconds,
        p50_ms=1000 * percentile(latencies, 50),
        p99_ms=1000 * percentile(latencies, 99),
    )


def _seed(url: str) -> str:
    """50 devices and an operator token; returns the token."""
    from backend.api.permissions import Role
    from backend.api.queries.auth import issue_token

    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO device (device_id, role, site)"
            " SELECT 'cab-' || lpad(n::text, 4, '0'), 'cabinet', 'nord'"
            " FROM generate_series(1, %s) AS n",
            (DEVICES,),
        )

    async def issue() -> str:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, row_factory=dict_row
        ) as conn:
            issued = await issue_token(
                conn,
                user=f"bench-{uuid.uuid4().hex[:6]}",
                role=Role.OPERATOR,
                expires_in_days=1,
                label="bench",
                actor="bench",
                actor_token_id=None,
            )
        return issued.token

    return asyncio.run(issue())


@benchmark(
    "api.requests",
    "GET /api/v1/devices under uvicorn: requests/s and p50/p99 latency, connection pool"
    " against one connection per request, 1 and 16 requests in flight",
    order=50,
)
def api_requests(ctx: Context) -> list[Result]:
    from backend.storage.migrate import migrate
    from backend.storage.scratch import scratch_database

    services = ctx.services
    requests = ctx.size(2_000, 100)
    loads: dict[tuple[str, int], list[Load]] = {
        (mode, c): [] for mode in MODES for c in CONCURRENCY
    }
    with scratch_database(services.admin_database_url, services.database_url, "bench_api") as url:
        migrate(url)
        token = _seed(url)
        for repeat in range(ctx.repeats):
            # Alternate the two servers so drift in the machine's load hits both.
            for mode in MODES if repeat % 2 == 0 else tuple(reversed(MODES)):
                log_path = ctx.scratch_dir / f"api-{mode.replace(' ', '-')}.log"
                with running_server(mode, url, log_path) as base:
                    for concurrency in CONCURRENCY:
                        load = asyncio.run(_load(base, token, requests, concurrency))
                        loads[(mode, concurrency)].append(load)
                        ctx.log(
                            f"  {mode}, {concurrency} in flight, run {repeat + 1}: "
                            f"{format_value(load.rate)} req/s, p50 {load.p50_ms:.2f} ms, "
                            f"p99 {load.p99_ms:.2f} ms"
                        )
    return _results(loads, requests)


def _results(loads: dict[tuple[str, int], list[Load]], requests: int) -> list[Result]:
    out = []
    for concurrency in CONCURRENCY:
        base_rate = summarize([x.rate for x in loads[("per request", concurrency)]]).median
        for mode in MODES:
            measured = loads[(mode, concurrency)]
            rate = summarize([x.rate for x in measured]).median
            p50 = summarize([x.p50_ms for x in measured]).median
            p99 = summarize([x.p99_ms for x in measured]).median
            versus = "" if mode == "per request" else f", x{rate / base_rate:.2f} per request"
            out.append(
                Result(
                    f"{mode}, {concurrency} in flight",
                    rate,
                    "req/s",
                    f"median of {len(measured)}: p50 {p50:.2f} ms, p99 {p99:.2f} ms{versus};"
                    f" {requests:,} requests/run, GET /api/v1/devices?limit={DEVICES}",
                )
            )
    return out


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
