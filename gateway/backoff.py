"""Exponential backoff with full jitter for reconnecting to a broker.

Jitter matters on a city's worth of gateways: after a backend outage they would
otherwise all reconnect in the same second, again and again.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays ``uniform(min, min(max, min * 2**attempt))``; ``reset`` after a success."""

    def __init__(
        self,
        minimum: float,
        maximum: float,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if minimum <= 0 or maximum < minimum:
            raise ValueError("need 0 < minimum <= maximum")
        self._min = minimum
        self._max = maximum
        self._rand = rand
        self._attempt = 0

    def next(self) -> float:
        """The delay before the next attempt, in seconds."""
        ceiling = min(self._max, self._min * 2.0 ** min(self._attempt, 30))
        self._attempt += 1
        # Never below the minimum, so a broken broker is not hammered.
        return self._min + (ceiling - self._min) * self._rand()

    def reset(self) -> None:
        self._attempt = 0

    @property
    def attempt(self) -> int:
        return self._attempt
