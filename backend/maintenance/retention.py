"""Retention: drop what is older than each table keeps, whole chunks at a time.

Hypertables lose whole chunks with ``drop_chunks(older_than => cutoff)``:
a chunk goes only when all of it is older than the cutoff, so nothing newer
is ever touched and no row-by-row DELETE bloats the tables. The plain table
``dead_letter`` is trimmed with DELETEs of bounded size, one transaction each.

Raw readings are never dropped past the rollup watermark: an hour that is
not rolled up yet exists only in ``reading`` (a refresh stalled for longer
than the retention would otherwise lose it for good), so the cutoff of
``reading`` is the earlier of ``now - reading_days`` and the watermark.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from backend.maintenance.config import RetentionConfig
from backend.storage.edition import Edition, timescaledb_edition

log = logging.getLogger(__name__)

# Full edition: the hourly aggregate's refresh policy re-reads this much raw
# data (0014's start_offset); raw chunks inside it must stay.
CAGG_REFRESH_WINDOW: Final = timedelta(days=3)


@dataclass
class RetentionReport:
    cutoffs: dict[str, datetime | None] = field(default_factory=dict)
    chunks_dropped: dict[str, int] = field(default_factory=dict)
    rows_deleted: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def cutoffs(
    config: RetentionConfig,
    now: datetime,
    rolled_until: datetime | None,
    edition: Edition = "apache",
) -> dict[str, datetime | None]:
    """Hypertable -> drop chunks entirely before this (None: keep everything).

    ``rolled_until`` is the rollup watermark (None: nothing rolled up yet, so
    no raw reading may go).
    """
    out: dict[str, datetime | None] = {}
    for table, days in config.hypertable_days().items():
        out[table] = None if days is None else now - timedelta(days=days)
    raw = out["reading"]
    if raw is not None:
        if edition == "timescale":
            out["reading"] = min(raw, now - CAGG_REFRESH_WINDOW)
        elif rolled_until is None:
            out["reading"] = None
        else:
            out["reading"] = min(raw, rolled_until)
    return out


def apply_retention(
    conn: psycopg.Connection[Any], config: RetentionConfig, *, now: datetime | None = None
) -> RetentionReport:
    """Apply ``config``; ``conn`` must be in autocommit mode."""
    if not conn.autocommit:
        raise ValueError("apply_retention() manages its own transactions: pass autocommit")
    edition = timescaledb_edition(conn)
    if now is None:
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        now = row[0]
    assert now is not None
    report = RetentionReport()
    row = conn.execute("SELECT rolled_until FROM rollup_state WHERE name = 'reading'").fetchone()
    rolled_until: datetime | None = row[0] if row is not None else None
    report.cutoffs = cutoffs(config, now, rolled_until, edition)
    days = config.hypertable_days()
    for table, cutoff in report.cutoffs.items():
        if edition == "timescale":
            _sync_policy(conn, table, days[table])
        if cutoff is None:
            if table == "reading" and days[table] is not None:
                report.notes.append("reading: nothing rolled up yet, no raw chunk dropped")
            continue
        with conn.transaction():
            dropped = conn.execute(
                "SELECT count(*) FROM drop_chunks(%s::regclass, older_than => %s::timestamptz)",
                (table, cutoff),
            ).fetchone()
        report.chunks_dropped[table] = int(dropped[0]) if dropped is not None else 0
    if config.dead_letter_days is not None:
        report.rows_deleted["dead_letter"] = _trim_dead_letters(
            conn, now - timedelta(days=config.dead_letter_days), config.delete_batch
        )
    for table, count in report.chunks_dropped.items():
        if count:
            log.info(
                "retention: %s lost %d chunk(s) before %s", table, count, report.cutoffs[table]
            )
    return report


def _trim_dead_letters(conn: psycopg.Connection[Any], cutoff: datetime, batch: int) -> int:
    total = 0
    while True:
        with conn.transaction():
            cur = conn.execute(
                "DELETE FROM dead_letter WHERE id IN ("
                " SELECT id FROM dead_letter WHERE received_at < %s"
                " ORDER BY received_at LIMIT %s)",
                (cutoff, batch),
            )
        deleted = max(cur.rowcount, 0)
        total += deleted
        if deleted < batch:
            return total


def _sync_policy(conn: psycopg.Connection[Any], table: str, days: int | None) -> None:
    """Full edition: make the table's retention policy say what the file says.

    Not exercised on the development machine (Apache edition has no jobs).
    """
    with conn.transaction():
        row = conn.execute(
            "SELECT (config->>'drop_after')::interval FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_retention' AND hypertable_name = %s",
            (table,),
        ).fetchone()
        current = row[0] if row is not None else None
        wanted = None if days is None else timedelta(days=days)
        if current == wanted:
            return
        conn.execute("SELECT remove_retention_policy(%s::regclass, if_exists => true)", (table,))
        if wanted is not None:
            conn.execute("SELECT add_retention_policy(%s::regclass, %s::interval)", (table, wanted))
