"""The API's database access: one short connection per request.

``psycopg_pool`` is not a dependency of Lumeau (and not installed here), so
the API opens one ``psycopg.AsyncConnection`` per request that needs the
database and closes it when the request ends; a semaphore bounds how many
are open at once, so a burst queues in the API instead of exhausting the
server's ``max_connections``. Opening a connection on loopback costs about a
millisecond or two (SCRAM included), small next to the queries here. For a
busy deployment, put PgBouncer in front or swap this class for a
``psycopg_pool.AsyncConnectionPool`` behind the same ``connection()``.

The ``Database`` is made by the application's lifespan, never at import.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import psycopg
from psycopg.rows import DictRow, dict_row

DEFAULT_MAX_CONNECTIONS: Final = 16
CONNECT_TIMEOUT_S: Final = 5  # libpq's connect_timeout: whole seconds, at least 2

AsyncConn = psycopg.AsyncConnection[DictRow]


class Database:
    """Hands out autocommit connections with dict rows; writes use transactions."""

    def __init__(self, conninfo: str, *, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._conninfo = conninfo
        self._slots = asyncio.Semaphore(max_connections)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConn]:
        async with self._slots:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name="lumeau-api",
            )
            try:
                yield conn
            finally:
                await conn.close()

    async def reachable(self) -> bool:
        """True if a connection opens and answers ``SELECT 1``."""
        try:
            async with self.connection() as conn:
                await conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True
