"""What has been received and not yet committed, and when to flush it. Pure.

A batch is flushed when it holds enough readings or deliveries to make one
COPY worthwhile, or when its oldest delivery has waited ``max_delay``:
bounded latency at low rates, big transactions at high rates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.ingest.intake import Intake
from backend.ingest.rows import DeadLetter, Inbound, reading_count


@dataclass(frozen=True)
class FlushPolicy:
    """Flush thresholds; whichever is reached first wins."""

    max_readings: int = 5000
    max_deliveries: int = 1000
    max_delay: float = 0.2  # seconds

    def __post_init__(self) -> None:
        if self.max_readings < 1 or self.max_deliveries < 1 or self.max_delay <= 0:
            raise ValueError(f"flush thresholds must be positive: {self}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """An MQTT delivery to acknowledge once its batch is committed.

    ``generation`` counts broker connections: a packet id is only valid on
    the connection it arrived on (the broker reuses ids once acknowledged).
    """

    mid: int
    qos: int
    generation: int


@dataclass(slots=True)
class Pending:
    """Deliveries received since the last flush."""

    messages: list[Inbound] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    readings: int = 0
    opened_at: float | None = None

    def add(self, result: Intake, delivery: Delivery, now: float) -> None:
        if self.opened_at is None:
            self.opened_at = now
        self.messages.extend(result.messages)
        self.dead_letters.extend(result.dead_letters)
        self.deliveries.append(delivery)
        self.readings += reading_count([item.message for item in result.messages])

    @property
    def empty(self) -> bool:
        return not self.deliveries

    def due(self, policy: FlushPolicy, now: float) -> bool:
        if self.opened_at is None:
            return False
        return (
            self.readings >= policy.max_readings
            or len(self.deliveries) >= policy.max_deliveries
            or now - self.opened_at >= policy.max_delay
        )

    def wait_time(self, policy: FlushPolicy, now: float) -> float | None:
        """Seconds until the age threshold; None when empty."""
        if self.opened_at is None:
            return None
        return max(0.0, self.opened_at + policy.max_delay - now)
