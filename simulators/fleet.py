"""Run simulated devices together on one simulated clock.

The clock moves in steps (a minute by default: the cabinet's schedule,
meter and fault debounce all work at that grain); every cabinet runs one pass
of its tasks per step and a leak sensor wakes when its deep sleep is over.
``run_until`` can run far faster than real time (history for a fresh stack)
and ``follow_wall_clock`` then keeps the simulated time on the real one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from .cabinet import SimCabinet
from .clock import SimClock
from .leak_sensor import SimLeakSensor


class Fleet:
    def __init__(
        self,
        clock: SimClock,
        cabinets: Sequence[SimCabinet],
        sensors: Sequence[SimLeakSensor],
        step_ms: int = 60_000,
    ) -> None:
        self.clock = clock
        self.cabinets = list(cabinets)
        self.sensors = list(sensors)
        self.step_ms = step_ms

    def step(self) -> None:
        # To the next multiple of the step: a sensor's listening moves the
        # shared clock by seconds, and the cabinets stay on their grid.
        self.clock.advance_to((self.clock.now_ms // self.step_ms + 1) * self.step_ms)
        for cabinet in self.cabinets:
            cabinet.step()
        for sensor in self.sensors:
            if sensor.due():
                sensor.wake()

    def run_until(
        self, end_ms: int, progress: Callable[[int], None] | None = None, every_ms: int = 86_400_000
    ) -> None:
        """Fast-forward to ``end_ms`` (as fast as the devices and the broker go)."""
        mark = self.clock.now_ms
        while self.clock.now_ms + self.step_ms <= end_ms:
            self.step()
            if progress is not None and self.clock.now_ms - mark >= every_ms:
                mark = self.clock.now_ms
                progress(self.clock.now_ms)

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Let the cabinets send what they queued, without moving the clock; True when empty."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(c.queued() == 0 for c in self.cabinets):
                return True
            for cabinet in self.cabinets:
                cabinet.step(schedule=False)
        return all(c.queued() == 0 for c in self.cabinets)

    def follow_wall_clock(self, stop: threading.Event, poll_s: float = 1.0) -> None:
        """Live: the simulated time keeps up with the real one until ``stop`` is set.

        Between steps the cabinets' links are still served (keep-alive pings,
        commands from the backend, PUBACKs).
        """
        while not stop.is_set():
            now_ms = int(time.time() * 1000)
            while self.clock.now_ms + self.step_ms <= now_ms and not stop.is_set():
                self.step()
            for cabinet in self.cabinets:
                cabinet.step(schedule=False)
            stop.wait(poll_s)

    def stop(self) -> None:
        for cabinet in self.cabinets:
            cabinet.stop()
