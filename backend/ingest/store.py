"""The database side of the worker: one connection, one batch at a time.

Two kinds of failure are told apart. ``psycopg.OperationalError`` (server
down, connection lost, deadlock) says nothing about the data: the batch is
rolled back, the connection dropped, and the error goes to the caller, who
retries the same batch later. Any other database error means some row was
refused (a value PostgreSQL cannot hold, such as ``\\u0000`` inside a JSON
detail): the batch is then written one message at a time and the refused
messages become dead letters, so one bad message never blocks the others.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import psycopg

from backend.ingest.rows import DeadLetter, Inbound, clean_text, plan_batch, sender
from backend.ingest.writer import NOTHING_WRITTEN, BatchWriter, WriteResult
from edge import protocol

log = logging.getLogger(__name__)

STORAGE_REJECTED = "storage_rejected"


class Store:
    """Commits batches to the database at ``conninfo``."""

    def __init__(self, conninfo: str, *, connect_timeout: int = 5) -> None:
        self._conninfo = conninfo
        self._connect_timeout = connect_timeout
        self._writer: BatchWriter | None = None

    def commit(
        self, messages: Sequence[Inbound], dead_letters: Sequence[DeadLetter]
    ) -> WriteResult:
        """Store a batch; raise ``psycopg.OperationalError`` if it must be retried."""
        try:
            writer = self._connect()
            try:
                return writer.write(plan_batch(messages, dead_letters))
            except psycopg.OperationalError:
                raise
            except (psycopg.Error, ValueError) as exc:
                log.warning(
                    "batch refused by the database (%s); storing message by message",
                    first_line(exc),
                )
                return self._commit_one_by_one(writer, messages, dead_letters)
        except psycopg.OperationalError:
            self.close()
            raise

    def close(self) -> None:
        if self._writer is not None:
            conn = self._writer.connection
            self._writer = None
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _connect(self) -> BatchWriter:
        if self._writer is None or self._writer.connection.closed:
            conn = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=self._connect_timeout,
                application_name="lumeau-ingest",
            )
            self._writer = BatchWriter(conn)
        return self._writer

    def _commit_one_by_one(
        self,
        writer: BatchWriter,
        messages: Sequence[Inbound],
        dead_letters: Sequence[DeadLetter],
    ) -> WriteResult:
        total = NOTHING_WRITTEN
        letters = list(dead_letters)
        for item in messages:
            try:
                result = writer.write(plan_batch([item]))
            except psycopg.OperationalError:
                raise
            except (psycopg.Error, ValueError) as exc:
                letters.append(rejected(item, exc))
                continue
            total += result
        try:
            total += writer.write(plan_batch([], letters))
        except psycopg.OperationalError:
            raise
        except (psycopg.Error, ValueError) as exc:
            # Nothing more can be done with these: keep them in the log rather
            # than block the stream by retrying a write that cannot succeed.
            log.error("dead letters refused by the database (%s): %r", first_line(exc), letters)
        return total


def first_line(exc: BaseException) -> str:
    """An exception as one log-friendly line (server errors span several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def rejected(item: Inbound, exc: Exception) -> DeadLetter:
    """The dead letter of a valid message the database would not store."""
    payload = item.payload
    if payload is None:
        payload = protocol.canonical_json(dict(item.message))
    diag: Any = getattr(exc, "diag", None)
    reason = (diag.message_primary if diag is not None else None) or str(exc)
    return DeadLetter(
        received_at=item.received_at,
        topic=item.topic,
        payload=payload,
        code=STORAGE_REJECTED,
        reason=clean_text(reason),
        field=None,
        device_id=sender(item.message),
        source="device" if item.gateway_id is None else f"gateway:{item.gateway_id}",
    )
