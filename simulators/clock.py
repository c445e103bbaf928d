"""Simulated time shared by every simulated device of a run.

Boards read it as their RTC (UTC milliseconds) and as their monotonic ticks;
the runner moves it forward. A device never sees a clock going backwards.
"""

from __future__ import annotations


class SimClock:
    """UTC milliseconds of the simulated world."""

    def __init__(self, start_ms: int) -> None:
        self._start = start_ms
        self._now = start_ms

    @property
    def now_ms(self) -> int:
        return self._now

    def ticks_ms(self) -> int:
        """Monotonic milliseconds since the simulation began (a board's ``ticks_ms``)."""
        return self._now - self._start

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError(f"the simulated clock cannot go back ({ms} ms)")
        self._now += ms

    def advance_to(self, when_ms: int) -> None:
        if when_ms > self._now:
            self._now = when_ms
