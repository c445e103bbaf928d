"""When to try a delivery again, and when to give up (pure).

A failed attempt is retried after the delay of its rank in ``DELAYS_S``
(10 s, 30 s, 2 min, 10 min, 30 min, then every hour), each stretched or
shrunk at random by up to ``jitter`` so that deliveries that failed together
(a receiver that was down) do not all come back in the same second. A
delivery is given up ('dead') after ``max_attempts`` attempts, or when the
next attempt would fall after ``max_age`` from its creation: an alert more
than a day old is history, not news.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Final

DELAYS_S: Final = (10.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
# A Retry-After longer than this is read as this: one receiver's header must not
# park a delivery for days.
MAX_RETRY_AFTER_S: Final = 3600.0
MAX_ERROR_CHARS: Final = 500


class Verdict(StrEnum):
    SENT = "sent"
    RETRY = "retry"  # a network error, a timeout, 408, 429, 5xx, SMTP 4xx
    DEAD = "dead"  # the receiver refused for good: other 4xx, SMTP 5xx


@dataclass(frozen=True)
class SendResult:
    """What one attempt came to."""

    verdict: Verdict
    status_code: int | None = None  # HTTP status or SMTP reply code
    error: str | None = None
    retry_after_s: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 20
    max_age: timedelta = timedelta(hours=24)
    delays_s: tuple[float, ...] = DELAYS_S
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not self.delays_s or min(self.delays_s) <= 0:
            raise ValueError("delays_s must be positive")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")


@dataclass(frozen=True)
class Decision:
    """The delivery's next state after an attempt."""

    state: str  # 'sent', 'pending' (retry at next_attempt_at) or 'dead'
    next_attempt_at: datetime | None
    last_error: str | None


def base_delay_s(attempts: int, policy: RetryPolicy) -> float:
    """The un-jittered wait after the ``attempts``-th failed attempt (1-based)."""
    index = min(max(attempts, 1), len(policy.delays_s)) - 1
    return policy.delays_s[index]


def retry_delay_s(
    attempts: int, policy: RetryPolicy, rng: random.Random, retry_after_s: float | None = None
) -> float:
    """The wait before the next attempt: jittered backoff, at least the receiver's Retry-After."""
    delay = base_delay_s(attempts, policy) * rng.uniform(1 - policy.jitter, 1 + policy.jitter)
    if retry_after_s is not None and retry_after_s > 0:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay


def classify_http(status: int) -> Verdict:
    if 200 <= status < 300:
        return Verdict.SENT
    if status in (408, 429) or status >= 500:
        return Verdict.RETRY
    # 3xx (redirects are not followed: a webhook that moved must be edited) and other 4xx.
    return Verdict.DEAD


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text[:9]))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def clip(error: str | None) -> str | None:
    if error is None:
        return None
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"


def decide(
    result: SendResult,
    *,
    attempts: int,
    created_at: datetime,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
) -> Decision:
    """The next state of a delivery whose ``attempts``-th attempt gave ``result``."""
    if result.verdict is Verdict.SENT:
        return Decision("sent", None, None)
    if result.verdict is Verdict.DEAD:
        return Decision("dead", None, clip(result.error))
    if attempts >= policy.max_attempts:
        return Decision(
            "dead", None, clip(f"gave up after {attempts} attempts; last: {result.error}")
        )
    delay = timedelta(seconds=retry_delay_s(attempts, policy, rng, result.retry_after_s))
    if now + delay > created_at + policy.max_age:
        hours = policy.max_age.total_seconds() / 3600
        return Decision(
            "dead",
            None,
            clip(f"gave up after {hours:g} h ({attempts} attempts); last: {result.error}"),
        )
    return Decision("pending", now + delay, clip(result.error))
