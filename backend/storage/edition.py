"""Which TimescaleDB edition the database runs.

The Apache-only build (what Debian ships, and what the development stack
builds) has hypertables and ``time_bucket`` but no compression and no
continuous aggregates; the community build ("timescale" license, the
docker-compose image) has both. The schema asks at run time rather than
trusting configuration, because the same migrations serve both.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import psycopg

from backend.storage.errors import EditionError

Edition = Literal["apache", "timescale"]
EDITIONS: Final[tuple[Edition, ...]] = ("apache", "timescale")


def timescaledb_edition(conn: psycopg.Connection[Any]) -> Edition:
    """Return ``'apache'`` or ``'timescale'`` from ``timescaledb.license``.

    Raises
    ------
    EditionError
        When TimescaleDB is not loaded in this server (the setting is then
        unknown) or reports a license other than the two known ones.
    """
    # missing_ok=true: an unloaded extension gives NULL instead of an error,
    # so the message below can say what to fix.
    row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    license_ = row[0] if row is not None else None
    if not license_:
        raise EditionError(
            "TimescaleDB is not loaded in this server (add timescaledb to shared_preload_libraries)"
        )
    if license_ == "apache":
        return "apache"
    if license_ == "timescale":
        return "timescale"
    raise EditionError(f"unknown TimescaleDB license {license_!r}")
