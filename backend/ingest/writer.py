"""Write one planned batch in one transaction, idempotently.

1. binary COPY of the message identities into a session-local staging table;
2. ``INSERT INTO uplink_message SELECT ... ON CONFLICT DO NOTHING RETURNING``
   the identities that were new;
3. binary COPY of the readings, events, statuses and acks of the new
   messages only, plus the batch's dead letters;
3b. for the new ``recording`` messages: upsert of their recordings, insert of
   their chunks (``ON CONFLICT DO NOTHING`` on (device, rec, part), so a part
   sent again in a new message is stored once), then the part counts of the
   recordings touched and, for those now holding every part, the SHA-256 of
   the parts in order, compared with the one the device sent;
4. upsert of the ``device`` summaries.

A resend, or a redelivery after a crash between commit and MQTT ack, finds
its identity already there and adds nothing. Any failure rolls back the
whole batch, and the caller retries or splits it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass
from typing import Any, Final

import psycopg
from psycopg import sql

from backend.ingest.rows import BatchPlan, ChunkRow, MessageKey, RecordingRow, rows_for

_CREATE_STAGE: Final = """
CREATE TEMP TABLE IF NOT EXISTS ingest_stage (
    time         timestamptz NOT NULL,
    device_id    text        NOT NULL,
    boot_id      text        NOT NULL,
    seq          integer     NOT NULL,
    kind         text        NOT NULL,
    gateway_id   text,
    received_at  timestamptz NOT NULL
) ON COMMIT DELETE ROWS
"""

_UPLINK_COLUMNS: Final = (
    "time",
    "device_id",
    "boot_id",
    "seq",
    "kind",
    "gateway_id",
    "received_at",
)
_UPLINK_TYPES: Final = ("timestamptz", "text", "text", "int4", "text", "text", "timestamptz")

# The ORDER BY makes concurrent workers take index locks in one order.
_INSERT_NEW: Final = """
INSERT INTO uplink_message (time, device_id, boot_id, seq, kind, gateway_id, received_at)
SELECT time, device_id, boot_id, seq, kind, gateway_id, received_at
FROM ingest_stage
ORDER BY device_id, boot_id, seq, time
ON CONFLICT DO NOTHING
RETURNING device_id, boot_id, seq, time
"""


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...]

    def copy_statement(self) -> sql.Composed:
        return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(self.name), sql.SQL(", ").join(map(sql.Identifier, self.columns))
        )


_STAGE: Final = _Table("ingest_stage", _UPLINK_COLUMNS, _UPLINK_TYPES)
_READING: Final = _Table(
    "reading",
    ("time", "device_id", "channel", "metric", "value", "boot_id", "seq"),
    ("timestamptz", "text", "int2", "text", "float8", "text", "int4"),
)
_EVENT: Final = _Table(
    "event",
    ("time", "device_id", "boot_id", "seq", "code", "severity", "channel", "active", "detail"),
    ("timestamptz", "text", "text", "int4", "text", "text", "int2", "bool", "jsonb"),
)
_STATUS: Final = _Table(
    "device_status",
    ("time", "device_id", "boot_id", "seq", "state", "role", "fw"),
    ("timestamptz", "text", "text", "int4", "text", "text", "text"),
)
_ACK: Final = _Table(
    "command_ack",
    ("time", "device_id", "boot_id", "seq", "cmd", "ok", "err_code", "err_reason", "result"),
    ("timestamptz", "text", "text", "int4", "text", "bool", "text", "text", "jsonb"),
)
_DEAD_LETTER: Final = _Table(
    "dead_letter",
    ("received_at", "topic", "payload", "code", "reason", "field", "device_id", "source"),
    ("timestamptz", "text", "bytea", "text", "text", "text", "text", "text"),
)

# Recordings: one statement each, over arrays (unnest), sorted by key so that
# concurrent workers lock recordings in one order. The recording row is
# locked by the upsert until commit, so two workers holding parts of the same
# recording take turns, and the last to commit sees every part.
_UPSERT_RECORDINGS: Final = """
INSERT INTO recording AS r (device_id, rec, t0, t0_us, fs, fmt, parts, clock_src, clock_unc_us,
                            clock_age_s, sha256, conflict, first_received_at, last_received_at)
SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::int8[], %s::int4[],
                     %s::text[], %s::int4[], %s::text[], %s::int8[], %s::int8[], %s::bytea[],
                     %s::bool[], %s::timestamptz[], %s::timestamptz[])
ORDER BY 1, 2
ON CONFLICT (device_id, rec) DO UPDATE SET
    sha256 = COALESCE(r.sha256, EXCLUDED.sha256),
    conflict = r.conflict OR EXCLUDED.conflict
        OR (r.t0_us, r.fs, r.fmt, r.parts, r.clock_src, r.clock_unc_us, r.clock_age_s)
           IS DISTINCT FROM (EXCLUDED.t0_us, EXCLUDED.fs, EXCLUDED.fmt, EXCLUDED.parts,
                             EXCLUDED.clock_src, EXCLUDED.clock_unc_us, EXCLUDED.clock_age_s)
        OR COALESCE(r.sha256 <> EXCLUDED.sha256, false),
    first_received_at = LEAST(r.first_received_at, EXCLUDED.first_received_at),
    last_received_at = GREATEST(r.last_received_at, EXCLUDED.last_received_at)
"""

_INSERT_CHUNKS: Final = """
INSERT INTO recording_chunk (device_id, rec, part, n, data, boot_id, seq, time, received_at)
SELECT * FROM unnest(%s::text[], %s::text[], %s::int4[], %s::int4[], %s::bytea[], %s::text[],
                     %s::int4[], %s::timestamptz[], %s::timestamptz[])
ORDER BY 1, 2, 3
ON CONFLICT (device_id, rec, part) DO NOTHING
"""

# Part counts of the recordings touched; a conflict found now undoes "complete".
_COUNT_PARTS: Final = """
UPDATE recording r
SET parts_received = c.got, complete = r.complete AND NOT r.conflict
FROM (
    SELECT c.device_id, c.rec, count(*)::integer AS got
    FROM recording_chunk c
    JOIN unnest(%s::text[], %s::text[]) AS t(device_id, rec) USING (device_id, rec)
    GROUP BY c.device_id, c.rec
) c
WHERE r.device_id = c.device_id AND r.rec = c.rec
"""

# Once every part is there: the samples and SHA-256 of the parts in order,
# computed once (received_sha256 stays set; parts are never replaced).
_COMPLETE: Final = """
UPDATE recording r
SET samples = d.samples,
    received_sha256 = d.digest,
    sha256_ok = CASE WHEN r.sha256 IS NULL THEN NULL ELSE r.sha256 = d.digest END,
    complete = NOT r.conflict AND (r.sha256 IS NULL OR r.sha256 = d.digest),
    completed_at = CASE WHEN NOT r.conflict AND (r.sha256 IS NULL OR r.sha256 = d.digest)
                        THEN now() END
FROM (
    SELECT c.device_id, c.rec, sum(c.n)::bigint AS samples,
           sha256(string_agg(c.data, ''::bytea ORDER BY c.part)) AS digest
    FROM recording_chunk c
    JOIN recording q USING (device_id, rec)
    JOIN unnest(%s::text[], %s::text[]) AS t(device_id, rec) USING (device_id, rec)
    WHERE q.parts_received = q.parts AND q.received_sha256 IS NULL
    GROUP BY c.device_id, c.rec
) d
WHERE r.device_id = d.device_id AND r.rec = d.rec
RETURNING r.complete
"""

# Reception times only grow; the boot and gateway follow the newest message by
# device time, so a late resend of an old boot changes nothing. The status
# follows the newest by reception (last_status_at is when it was received).
_UPSERT_DEVICE: Final = """
INSERT INTO device AS d (device_id, role, first_seen, last_seen, last_message_at, last_boot_id,
                         last_gateway_id, last_status, last_status_at, fw)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (device_id) DO UPDATE SET
    first_seen = LEAST(d.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(d.last_seen, EXCLUDED.last_seen),
    last_message_at = GREATEST(d.last_message_at, EXCLUDED.last_message_at),
    last_boot_id = CASE WHEN d.last_message_at IS NULL
                          OR EXCLUDED.last_message_at >= d.last_message_at
                        THEN EXCLUDED.last_boot_id ELSE d.last_boot_id END,
    last_gateway_id = CASE WHEN d.last_message_at IS NULL
                             OR EXCLUDED.last_message_at >= d.last_message_at
                           THEN EXCLUDED.last_gateway_id ELSE d.last_gateway_id END,
    role = CASE WHEN EXCLUDED.last_status_at >= d.last_status_at OR d.last_status_at IS NULL
                THEN COALESCE(EXCLUDED.role, d.role) ELSE COALESCE(d.role, EXCLUDED.role) END,
    last_status = CASE WHEN EXCLUDED.last_status_at >= d.last_status_at OR d.last_status_at IS NULL
                       THEN COALESCE(EXCLUDED.last_status, d.last_status)
                       ELSE d.last_status END,
    last_status_at = GREATEST(d.last_status_at, EXCLUDED.last_status_at),
    fw = CASE WHEN EXCLUDED.last_status_at >= d.last_status_at OR d.last_status_at IS NULL
              THEN COALESCE(EXCLUDED.fw, d.fw) ELSE d.fw END
"""


@dataclass(frozen=True)
class WriteResult:
    """What one committed batch added."""

    messages: int
    duplicates: int
    readings: int
    events: int
    statuses: int
    acks: int
    dead_letters: int
    chunks: int = 0  # recording parts stored (a part already there is not counted)
    recordings_completed: int = 0

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


NOTHING_WRITTEN: Final = WriteResult(0, 0, 0, 0, 0, 0, 0, 0, 0)


class BatchWriter:
    """Writes planned batches over one connection (opened with autocommit=True).

    The connection belongs to the caller, who replaces it after an
    ``OperationalError``; the staging table lives as long as the session.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._staged = False

    @property
    def connection(self) -> psycopg.Connection[Any]:
        return self._conn

    def write(self, plan: BatchPlan) -> WriteResult:
        """Store ``plan`` in one transaction; raise and store nothing on error."""
        conn = self._conn
        if not self._staged:
            conn.execute(_CREATE_STAGE)
            self._staged = True
        with conn.transaction(), conn.cursor() as cur:
            new_keys: list[MessageKey] = []
            if plan.uplinks:
                _copy(cur, _STAGE, plan.uplinks)
                cur.execute(_INSERT_NEW)
                new_keys = [(d, b, s, t) for d, b, s, t in cur.fetchall()]
            rows = rows_for(plan, new_keys)
            _copy(cur, _READING, rows.readings)
            _copy(cur, _EVENT, rows.events)
            _copy(cur, _STATUS, rows.statuses)
            _copy(cur, _ACK, rows.acks)
            _copy(cur, _DEAD_LETTER, plan.dead_letters)
            chunks, completed = _write_recordings(cur, rows.recordings, rows.chunks)
            if plan.devices:
                cur.executemany(_UPSERT_DEVICE, plan.devices)
        return WriteResult(
            messages=len(new_keys),
            duplicates=len(plan.uplinks) - len(new_keys) + plan.duplicates_in_batch,
            readings=len(rows.readings),
            events=len(rows.events),
            statuses=len(rows.statuses),
            acks=len(rows.acks),
            dead_letters=len(plan.dead_letters),
            chunks=chunks,
            recordings_completed=completed,
        )


def _copy(cur: psycopg.Cursor[Any], table: _Table, rows: Sequence[tuple[Any, ...]]) -> None:
    if not rows:
        return
    with cur.copy(table.copy_statement()) as copy:
        copy.set_types(list(table.types))
        for row in rows:
            copy.write_row(row)


def _write_recordings(
    cur: psycopg.Cursor[Any], recordings: Sequence[RecordingRow], chunks: Sequence[ChunkRow]
) -> tuple[int, int]:
    """Recordings and chunks of the new messages; (chunks stored, recordings completed)."""
    if not chunks:
        return 0, 0
    cur.execute(
        _UPSERT_RECORDINGS,
        [
            [row.device_id for row in recordings],
            [row.rec for row in recordings],
            [row.t0 for row in recordings],
            [row.t0_us for row in recordings],
            [row.fs for row in recordings],
            [row.fmt for row in recordings],
            [row.parts for row in recordings],
            [row.clock_src for row in recordings],
            [row.clock_unc_us for row in recordings],
            [row.clock_age_s for row in recordings],
            [row.sha256 for row in recordings],
            [row.conflict for row in recordings],
            [row.first_received_at for row in recordings],
            [row.last_received_at for row in recordings],
        ],
    )
    cur.execute(_INSERT_CHUNKS, [list(column) for column in zip(*chunks, strict=True)])
    stored = max(cur.rowcount, 0)
    keys = [[row.device_id for row in recordings], [row.rec for row in recordings]]
    cur.execute(_COUNT_PARTS, keys)
    cur.execute(_COMPLETE, keys)
    completed = sum(1 for (complete,) in cur.fetchall() if complete)
    return stored, completed
