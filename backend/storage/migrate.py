"""Apply the migration files to a database, once each, in order.

Each step runs in its own transaction together with the row that records it
in ``schema_migrations``, so a step is either fully there and recorded or
not there at all. A session-level advisory lock makes concurrent runners
(several ingest replicas starting at once, a deploy job and a developer)
take turns; the second one finds nothing left to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import psycopg

from backend.storage.edition import Edition, timescaledb_edition
from backend.storage.errors import MigrationError
from backend.storage.migration_files import DEFAULT_DIRECTORY, Step, load_steps

log = logging.getLogger(__name__)

# Advisory locks are scoped to one database, so unrelated databases on the same
# server (the test suite makes one per module) never wait for each other.
MIGRATION_LOCK_KEY: Final = 0x4C554D4541550001

_CREATE_RECORD_TABLE: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL UNIQUE,
    variant     text        NOT NULL CHECK (variant IN ('all', 'apache', 'timescale')),
    outcome     text        NOT NULL CHECK (outcome IN ('applied', 'skipped')),
    edition     text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""

Outcome = Literal["applied", "skipped"]


@dataclass(frozen=True)
class Record:
    """One row of ``schema_migrations``."""

    version: int
    name: str
    variant: str
    outcome: Outcome
    edition: str
    checksum: str
    applied_at: datetime


@dataclass(frozen=True)
class MigrationStatus:
    """What ``lumeau db status`` shows."""

    edition: Edition
    records: list[Record]
    pending: list[str]
    problems: list[str]
    warnings: list[str]

    @property
    def up_to_date(self) -> bool:
        return not self.pending and not self.problems

    @property
    def skipped(self) -> list[str]:
        return [record.name for record in self.records if record.outcome == "skipped"]


def migrate(conninfo: str, directory: Path = DEFAULT_DIRECTORY) -> list[str]:
    """Apply the pending steps of ``directory``; return the names applied.

    Steps skipped because the edition lacks what they need are recorded but
    not returned.

    Raises
    ------
    MigrationError
        When an applied file changed on disk or disappeared, or when a new
        step sorts before one already applied; nothing is applied then.
    """
    steps = load_steps(directory)
    applied: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _lock(conn)
        try:
            conn.execute(_CREATE_RECORD_TABLE)
            edition = timescaledb_edition(conn)
            records = _read_records(conn)
            problems, warnings = _check(steps, records, edition)
            if problems:
                raise MigrationError("; ".join(problems))
            for warning in warnings:
                log.warning("%s", warning)
            for step in _pending(steps, records):
                if _apply(conn, step, edition) == "applied":
                    applied.append(step.name)
        finally:
            # A lost connection has released the lock already; do not let a
            # failed unlock hide the error that got us here.
            if not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied


def status(conninfo: str, directory: Path = DEFAULT_DIRECTORY) -> MigrationStatus:
    """Compare the database's record with ``directory`` without changing anything."""
    steps = load_steps(directory)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        edition = timescaledb_edition(conn)
        row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        records = _read_records(conn) if row is not None and row[0] else []
    problems, warnings = _check(steps, records, edition)
    return MigrationStatus(
        edition=edition,
        records=records,
        pending=[step.name for step in _pending(steps, records)],
        problems=problems,
        warnings=warnings,
    )


def _lock(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)).fetchone()
    if row is not None and row[0]:
        return
    log.info("another process is migrating this database; waiting for it")
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))


def _read_records(conn: psycopg.Connection[Any]) -> list[Record]:
    rows = conn.execute(
        "SELECT version, name, variant, outcome, edition, checksum, applied_at"
        " FROM schema_migrations ORDER BY version"
    ).fetchall()
    return [Record(*row) for row in rows]


def _check(
    steps: list[Step], records: list[Record], edition: Edition
) -> tuple[list[str], list[str]]:
    """Problems that forbid migrating, and warnings that do not."""
    by_name = {step.name: step for step in steps}
    problems: list[str] = []
    warnings: list[str] = []
    for record in records:
        step = by_name.get(record.name)
        if step is None:
            problems.append(f"{record.name} is recorded as {record.outcome} but has no file")
            continue
        if record.outcome == "applied":
            file = next((f for f in step.files.values() if f.variant == record.variant), None)
            if file is None:
                problems.append(f"{record.name}: the applied {record.variant} file is gone")
            elif file.checksum != record.checksum:
                problems.append(
                    f"{file.path.name} changed after it was applied "
                    "(write a new migration instead of editing an applied one)"
                )
        if "all" not in step.files and record.edition != edition:
            # Switching editions under a live database is an operator's job
            # (e.g. replace the hourly view by a continuous aggregate).
            warnings.append(
                f"{record.name} was {record.outcome} ({record.variant}) under the "
                f"{record.edition} edition; the database now runs {edition}"
            )
    done = {record.name for record in records}
    latest = max((record.version for record in records), default=0)
    problems.extend(
        f"{step.name} is new but sorts before {latest:04d}, which is already applied"
        for step in steps
        if step.name not in done and step.version < latest
    )
    return problems, warnings


def _pending(steps: list[Step], records: list[Record]) -> list[Step]:
    done = {record.name for record in records}
    return [step for step in steps if step.name not in done]


def _apply(conn: psycopg.Connection[Any], step: Step, edition: Edition) -> Outcome:
    chosen = step.for_edition(edition)
    recorded = step.reference_file(edition)
    outcome: Outcome = "applied" if chosen is not None else "skipped"
    with conn.transaction():
        if chosen is not None:
            log.info("applying %s", chosen.path.name)
            conn.execute(chosen.sql)
        else:
            log.info("skipping %s: needs the full TimescaleDB edition", step.name)
        conn.execute(
            "INSERT INTO schema_migrations (version, name, variant, outcome, edition, checksum)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (step.version, step.name, recorded.variant, outcome, edition, recorded.checksum),
        )
    return outcome
