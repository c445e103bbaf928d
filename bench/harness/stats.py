"""Small, dependency-free statistics for benchmark samples."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between ranks.

    Same definition as NumPy's default (``method="linear"``): the sorted samples
    sit at positions 0 .. n-1 and the percentile is read at ``q/100 * (n-1)``.
    """
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0 or math.isnan(q):
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100.0
    below = math.floor(position)
    above = math.ceil(position)
    if below == above:
        return float(ordered[below])
    fraction = position - below
    return float(ordered[below] + (ordered[above] - ordered[below]) * fraction)


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 50.0)


@dataclass(frozen=True)
class Summary:
    """Median, extremes and count of repeated measurements."""

    median: float
    minimum: float
    maximum: float
    count: int

    @property
    def spread(self) -> float:
        """(max - min) / median: how much the runs disagree (0 for one run)."""
        if self.median == 0:
            return 0.0
        return (self.maximum - self.minimum) / abs(self.median)


def summarize(samples: Sequence[float]) -> Summary:
    if not samples:
        raise ValueError("summary of no samples")
    return Summary(median(samples), float(min(samples)), float(max(samples)), len(samples))


def rate(count: int, seconds: float) -> float:
    """Events per second; ``count`` events observed over ``seconds``."""
    if seconds <= 0:
        raise ValueError(f"a rate needs a positive duration, got {seconds}")
    return count / seconds
