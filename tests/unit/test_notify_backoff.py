"""Retry schedule and outcome classification of notification deliveries."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from backend.notify.backoff import (
    RetryPolicy,
    SendResult,
    Verdict,
    base_delay_s,
    classify_http,
    decide,
    parse_retry_after,
    retry_delay_s,
)

T0 = datetime(2026, 1, 10, 21, 0, tzinfo=UTC)
POLICY = RetryPolicy()


def test_schedule_grows_10s_30s_2min_10min_30min_then_hourly() -> None:
    delays = [base_delay_s(n, POLICY) for n in range(1, 10)]
    assert delays == [10, 30, 120, 600, 1800, 3600, 3600, 3600, 3600]


def test_jitter_stays_within_twenty_percent_and_spreads() -> None:
    rng = random.Random(7)
    samples = [retry_delay_s(3, POLICY, rng) for _ in range(2000)]
    assert min(samples) >= 120 * 0.8 and max(samples) <= 120 * 1.2
    # spread: deliveries that failed together come back apart
    assert max(samples) - min(samples) > 120 * 0.3
    assert len({round(s, 3) for s in samples}) > 1900


def test_retry_after_is_honoured_but_capped_at_an_hour() -> None:
    rng = random.Random(1)
    assert retry_delay_s(1, POLICY, rng, retry_after_s=90) == 90
    assert retry_delay_s(1, POLICY, rng, retry_after_s=86_400) == 3600
    # a Retry-After shorter than the backoff does not shorten it
    assert retry_delay_s(4, POLICY, rng, retry_after_s=1) >= 600 * 0.8


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.SENT),
        (204, Verdict.SENT),
        (301, Verdict.DEAD),
        (400, Verdict.DEAD),
        (401, Verdict.DEAD),
        (404, Verdict.DEAD),
        (408, Verdict.RETRY),
        (410, Verdict.DEAD),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
    ],
)
def test_http_status_classification(status: int, verdict: Verdict) -> None:
    assert classify_http(status) is verdict


def test_parse_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("120", T0) == 120
    assert parse_retry_after("Sat, 10 Jan 2026 21:05:00 GMT", T0) == 300
    assert parse_retry_after("Sat, 10 Jan 2026 20:00:00 GMT", T0) == 0
    assert parse_retry_after("soon", T0) is None
    assert parse_retry_after(None, T0) is None


def test_decide_sent_retry_dead() -> None:
    rng = random.Random(3)
    sent = decide(
        SendResult(Verdict.SENT, 200), attempts=1, created_at=T0, now=T0, policy=POLICY, rng=rng
    )
    assert (sent.state, sent.next_attempt_at) == ("sent", None)
    retry = decide(
        SendResult(Verdict.RETRY, 503, "HTTP 503"),
        attempts=2,
        created_at=T0,
        now=T0,
        policy=POLICY,
        rng=rng,
    )
    assert retry.state == "pending" and retry.last_error == "HTTP 503"
    assert retry.next_attempt_at is not None
    assert timedelta(seconds=24) <= retry.next_attempt_at - T0 <= timedelta(seconds=36)
    dead = decide(
        SendResult(Verdict.DEAD, 410, "HTTP 410: gone"),
        attempts=1,
        created_at=T0,
        now=T0,
        policy=POLICY,
        rng=rng,
    )
    assert (dead.state, dead.last_error) == ("dead", "HTTP 410: gone")


def test_gives_up_after_max_attempts_or_max_age() -> None:
    rng = random.Random(5)
    policy = RetryPolicy(max_attempts=3)
    failure = SendResult(Verdict.RETRY, error="timeout: ReadTimeout")
    assert (
        decide(failure, attempts=2, created_at=T0, now=T0, policy=policy, rng=rng).state
        == "pending"
    )
    last = decide(failure, attempts=3, created_at=T0, now=T0, policy=policy, rng=rng)
    assert last.state == "dead"
    assert last.last_error == "gave up after 3 attempts; last: timeout: ReadTimeout"
    # 23 h 30 min in: the next hourly attempt would fall after 24 h.
    late = T0 + timedelta(hours=23, minutes=30)
    aged = decide(failure, attempts=10, created_at=T0, now=late, policy=POLICY, rng=rng)
    assert aged.state == "dead" and aged.last_error is not None
    assert aged.last_error.startswith("gave up after 24 h (10 attempts)")


def test_whole_schedule_fits_in_the_day() -> None:
    # The default policy: 20 attempts, every wait at its longest, stays under 24 h.
    worst = sum(base_delay_s(n, POLICY) * 1.2 for n in range(1, POLICY.max_attempts))
    assert worst < POLICY.max_age.total_seconds()
    # and a receiver down for 11 h is still reached
    assert sum(base_delay_s(n, POLICY) * 0.8 for n in range(1, POLICY.max_attempts)) > 11 * 3600


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=1.5)
