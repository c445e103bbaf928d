"""Ingest: uplinks from the backend broker into TimescaleDB, idempotently.

Modules, from the wire inwards: ``intake`` (one delivery -> decoded messages,
dead letters, error replies), ``batching`` (when to flush), ``rows`` (messages
-> table rows), ``writer`` (one batch, one transaction), ``store`` (retry and
split policy around the writer), ``worker`` (the MQTT client and the loop),
``cli`` (``lumeau ingest run``).
"""

from __future__ import annotations

from backend.ingest.batching import FlushPolicy
from backend.ingest.counters import Counters
from backend.ingest.worker import IngestWorker, WorkerConfig

__all__ = ["Counters", "FlushPolicy", "IngestWorker", "WorkerConfig"]
