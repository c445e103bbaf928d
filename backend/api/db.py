"""The API's database access: a pool of autocommit connections with dict rows.

``Database`` wraps a ``psycopg_pool.AsyncConnectionPool``: ``min_connections``
stay open, up to ``max_connections`` are opened under load, and a request
that finds them all busy waits at most ``timeout`` seconds, then gets a 503
problem (``database-busy``) instead of queueing without end. A burst thus
queues in the API rather than exhausting the server's ``max_connections``.

A database restart is survived: each connection is checked (an empty query,
one round trip on loopback) before it is handed out, so the stale connections
of a restarted server are dropped and replaced instead of failing a request;
the pool gives up a reconnection attempt after ``RECONNECT_TIMEOUT_S`` (its
default, 5 minutes of exponential backoff, would leave it waiting up to a
minute between tries after a long outage) and the next request starts a
fresh one. While the database is down, a request waits ``timeout`` seconds
for the pool; then, unless every connection was in use (busy), one direct
connection attempt tells "down" (its ``psycopg.OperationalError`` becomes the
``database-unavailable`` 503 of ``errors``) from "back, reconnecting".

The ``Database`` is made by the application's lifespan, never at import:
``open()`` there, ``close()`` on shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final, NoReturn

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from backend.api.errors import ApiError

DEFAULT_MAX_CONNECTIONS: Final = 16
DEFAULT_MIN_CONNECTIONS: Final = 2
POOL_TIMEOUT_S: Final = 5.0  # longest wait for a free connection
HEALTH_TIMEOUT_S: Final = 2.0  # /health answers sooner than a request would
CONNECT_TIMEOUT_S: Final = 5  # libpq's connect_timeout: whole seconds, at least 2
PROBE_CONNECT_TIMEOUT_S: Final = 2
RECONNECT_TIMEOUT_S: Final = 10.0
BUSY_RETRY_AFTER_S: Final = 1

AsyncConn = psycopg.AsyncConnection[DictRow]


class DatabaseBusy(ApiError):
    """Every pooled connection stayed busy for the whole wait (the database answers)."""

    def __init__(self, max_connections: int, waited_s: float) -> None:
        super().__init__(
            503,
            "database-busy",
            f"all {max_connections} database connections stayed busy for {waited_s:g} s;"
            " try again shortly",
            headers={"Retry-After": str(BUSY_RETRY_AFTER_S)},
        )


class DatabaseReconnecting(ApiError):
    """The database answers again, but the pool has not reconnected yet."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "database-unavailable",
            "the database answers again and the API is reconnecting to it; try again shortly",
            headers={"Retry-After": str(BUSY_RETRY_AFTER_S)},
        )


class Database:
    """Hands out autocommit connections with dict rows; writes use transactions."""

    def __init__(
        self,
        conninfo: str,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        min_connections: int | None = None,
        timeout: float = POOL_TIMEOUT_S,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        low = min_connections
        if low is None:
            low = min(DEFAULT_MIN_CONNECTIONS, max_connections)
        if not 0 <= low <= max_connections:
            raise ValueError("min_connections must be between 0 and max_connections")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._conninfo = conninfo
        self.max_connections = max_connections
        self.timeout = timeout
        self._in_use = 0  # connections handed out by connection(), not yet back
        self._pool = AsyncConnectionPool(
            conninfo,
            connection_class=AsyncConn,
            kwargs=_connect_kwargs(CONNECT_TIMEOUT_S),
            min_size=low,
            max_size=max_connections,
            open=False,
            check=AsyncConnectionPool.check_connection,
            name="lumeau-api",
            timeout=timeout,
            reconnect_timeout=RECONNECT_TIMEOUT_S,
        )

    async def open(self) -> None:
        """Start the pool; does not wait for the database (it may be down)."""
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[AsyncConn]:
        """A pooled connection for the block, within ``timeout`` seconds (default
        ``self.timeout``), else ``DatabaseBusy``, ``DatabaseReconnecting`` or the
        ``psycopg.OperationalError`` of a database that does not answer."""
        waited = self.timeout if timeout is None else timeout
        try:
            conn = await self._pool.getconn(waited)
        except PoolTimeout:
            if self._in_use >= self.max_connections:
                raise DatabaseBusy(self.max_connections, waited) from None
            await self._raise_down_or_reconnecting()
        self._in_use += 1
        try:
            yield conn
        finally:
            self._in_use -= 1
            await self._pool.putconn(conn)

    async def _raise_down_or_reconnecting(self) -> NoReturn:
        """The pool could not open a connection in time: one direct attempt
        tells a database that is down (its error propagates) from one that is
        back while the pool is still in its reconnection backoff."""
        probe = await psycopg.AsyncConnection.connect(
            self._conninfo, **_connect_kwargs(PROBE_CONNECT_TIMEOUT_S)
        )
        await probe.close()
        raise DatabaseReconnecting()

    async def reachable(self) -> bool:
        """True if the database answers ``SELECT 1`` (or answers, but no pooled
        connection is free yet)."""
        try:
            async with self.connection(HEALTH_TIMEOUT_S) as conn:
                await conn.execute("SELECT 1")
        except (DatabaseBusy, DatabaseReconnecting):
            return True
        except psycopg.Error:
            return False
        return True


def _connect_kwargs(connect_timeout: int) -> dict[str, Any]:
    return {
        "autocommit": True,
        "row_factory": dict_row,
        "connect_timeout": connect_timeout,
        "application_name": "lumeau-api",
    }
