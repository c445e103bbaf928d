"""Running totals of an ingest worker, for its periodic log line and tests."""

from __future__ import annotations

from dataclasses import dataclass, fields

from backend.ingest.writer import WriteResult


@dataclass
class Counters:
    """Totals since the worker started.

    ``received`` counts MQTT deliveries; ``stored`` and ``duplicates``
    count protocol messages (a gateway batch holds many, and its envelope
    counts as one); ``dead_lettered`` counts rejected inputs.
    """

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    readings: int = 0
    replies: int = 0
    acked: int = 0
    batches: int = 0
    db_errors: int = 0

    def add_write(self, result: WriteResult) -> None:
        self.stored += result.messages
        self.duplicates += result.duplicates
        self.dead_lettered += result.dead_letters
        self.readings += result.readings
        self.batches += 1

    def snapshot(self) -> Counters:
        return Counters(**{f.name: getattr(self, f.name) for f in fields(self)})

    def line(self) -> str:
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))
