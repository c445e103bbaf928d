"""The maintenance loop: refresh every ``interval_s``, retention every
``retention_interval_s``; a failed cycle is logged and tried again later."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from backend.maintenance.config import MaintenanceConfig
from backend.maintenance.retention import RetentionReport, apply_retention
from backend.maintenance.rollup import RefreshReport, refresh

log = logging.getLogger(__name__)


@dataclass
class CycleResult:
    refresh: RefreshReport | None
    retention: RetentionReport | None


def run_cycle(conninfo: str, config: MaintenanceConfig, *, with_retention: bool) -> CycleResult:
    """One refresh, then (if asked) retention, on one connection.

    Retention runs after the refresh so that its raw-data guard sees the
    newest watermark.
    """
    with psycopg.connect(conninfo, autocommit=True) as conn:
        done = refresh(conn, config.rollup, retention=config.retention)
        log.info(
            "refresh: %d hour(s) rolled, %d late pair(s), %d day(s), %d latest row(s);"
            " rolled until %s",
            done.hours_rolled,
            done.late_pairs,
            done.days_rebuilt,
            done.latest_rows,
            done.rolled_until,
        )
        kept = apply_retention(conn, config.retention) if with_retention else None
    return CycleResult(done, kept)


def run_forever(
    conninfo: str,
    config: MaintenanceConfig,
    stop: threading.Event,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Cycles until ``stop`` is set; no failure ends the loop. Returns the failed cycles.

    A database error is expected (an outage) and logged in one line; anything
    else is a bug or bad data, logged with its traceback, and the next cycle
    still runs: one unreadable row must not stop the rollups for good.
    """
    failures = 0
    next_retention = clock()
    while not stop.is_set():
        started = clock()
        with_retention = started >= next_retention
        try:
            run_cycle(conninfo, config, with_retention=with_retention)
            if with_retention:
                next_retention = started + config.retention_interval_s
        except psycopg.Error as exc:
            failures += 1
            log.error(
                "maintenance cycle failed (%d so far; retrying in %.0f s): %s",
                failures,
                config.interval_s,
                exc,
            )
        except Exception:
            failures += 1
            log.exception(
                "maintenance cycle failed unexpectedly (%d so far; retrying in %.0f s)",
                failures,
                config.interval_s,
            )
        stop.wait(max(0.0, config.interval_s - (clock() - started)))
    return failures
