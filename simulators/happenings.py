"""What happens to a simulated device, and when: the faults a scenario injects.

Each happening is a time interval of the simulated clock (UTC ms, ``end_ms``
None = until the end of the run) with what it does. The boards ask "what is
true now" and apply it; the same list is the ground truth a test or the demo
compares the alerts with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal[
    "lamps_failed",  # `count` lamps of circuit `channel` dark
    "door_open",  # the cabinet door open
    "relay_stuck",  # circuit `channel` stays lit whatever the controller asks (day burning)
    "extra_load",  # `watts` drawn on circuit `channel` while it is lit (unmetered hook-up)
    "power_cut",  # the device is off: no ticks, its connection drops without DISCONNECT
    "leak",  # a leak near the sensor: stationary noise at `level_db` dBFS, +`growth_db` a day
    "battery_drain",  # the battery loses `volts_per_day`
]


@dataclass(frozen=True)
class Happening:
    kind: Kind
    start_ms: int
    end_ms: int | None = None
    channel: int = 0
    count: int = 0
    watts: float = 0.0
    level_db: float = 0.0
    growth_db: float = 0.0
    volts_per_day: float = 0.0

    def active(self, now_ms: int) -> bool:
        return self.start_ms <= now_ms and (self.end_ms is None or now_ms < self.end_ms)

    def days_in(self, now_ms: int) -> float:
        return max(0.0, (now_ms - self.start_ms) / 86_400_000)


def active(happenings: tuple[Happening, ...], kind: Kind, now_ms: int) -> list[Happening]:
    return [h for h in happenings if h.kind == kind and h.active(now_ms)]
