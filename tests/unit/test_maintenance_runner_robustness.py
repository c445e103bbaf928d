"""The maintenance loop survives any failure of a cycle and still stops when told."""

from __future__ import annotations

import logging
import threading

import psycopg
import pytest

from backend.maintenance import runner
from backend.maintenance.config import MaintenanceConfig


def test_a_cycle_that_raises_anything_is_logged_counted_and_the_loop_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stop = threading.Event()
    calls: list[bool] = []
    failures = [KeyError("bad row"), psycopg.OperationalError("server closed"), None]

    def cycle(conninfo: str, config: MaintenanceConfig, *, with_retention: bool) -> None:
        calls.append(with_retention)
        failure = failures[len(calls) - 1]
        if len(calls) == len(failures):
            stop.set()  # what SIGTERM's handler does
        if failure is not None:
            raise failure

    monkeypatch.setattr(runner, "run_cycle", cycle)
    caplog.set_level(logging.ERROR, logger="backend.maintenance.runner")
    config = MaintenanceConfig(interval_s=1.0)
    ticks = iter(range(0, 1000, 1))  # one second per clock read: no waiting

    failed = runner.run_forever("postgresql://unused", config, stop, clock=lambda: next(ticks))

    assert len(calls) == 3 and failed == 2
    unexpected = [r for r in caplog.records if "unexpectedly" in r.getMessage()]
    assert len(unexpected) == 1 and unexpected[0].exc_info is not None  # with its traceback
    assert any("server closed" in r.getMessage() for r in caplog.records)
    # retention is retried after a failed cycle, not skipped for an interval
    assert calls == [True, True, True]


def test_the_loop_ends_at_once_when_stopped_before_it_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stop = threading.Event()
    stop.set()
    monkeypatch.setattr(runner, "run_cycle", lambda *a, **k: pytest.fail("no cycle expected"))
    assert runner.run_forever("postgresql://unused", MaintenanceConfig(), stop) == 0
