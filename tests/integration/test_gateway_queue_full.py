"""The durable queue fills to its bound during a backend outage.

Policy (docs/gateway.md): events, statuses and acks are never dropped; routine
telemetry is dropped oldest first, each drop counted. The report says exactly
which messages were dropped, and they must be the oldest telemetry.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.gateway_kit import (
    BackendCounter,
    Publisher,
    RunningGateway,
    boot_of,
    counting_report,
    event,
    gateway_settings,
    status,
    telemetry,
    two_brokers,
    wait_for,
)

pytestmark = pytest.mark.services

DEVICES = 10
PER_DEVICE = 150
EVENT_EVERY = 25  # every 25th message of a device is a leak event
BOUND = 400


def test_full_queue_drops_oldest_telemetry_only(tmp_path: Path) -> None:
    with two_brokers(tmp_path) as brokers:
        counter = BackendCounter(brokers.backend)
        devices = Publisher(brokers.site)
        settings = gateway_settings(tmp_path, brokers, queue_max_rows=BOUND)
        with RunningGateway(settings) as running:
            gw = running.gateway
            brokers.backend.stop()
            wait_for(lambda: not gw.backend.connected, 30, "the gateway to notice the outage")
            telemetry_order = []
            for i in range(PER_DEVICE):
                for d in range(DEVICES):
                    dev, boot = f"leak-{d:04d}", boot_of(d)
                    key = (dev, boot, i)
                    if i == 0:
                        devices.publish(dev, "status", status(dev, boot, i, "online"), key)
                    elif i % EVENT_EVERY == 0:
                        devices.publish(dev, "event", event(dev, boot, i), key)
                    else:
                        devices.publish(dev, "telemetry", telemetry(dev, boot, i), key)
                        telemetry_order.append(key)
            devices.wait_acked()
            total = DEVICES * PER_DEVICE
            wait_for(
                lambda: gw.metrics.snapshot()[0].received >= total,
                60,
                "the gateway to take in every message",
            )
            counters = gw.metrics.snapshot()[0]
            rows_full = gw.store.rows
            priority_rows = gw.store.class_rows[0]
            brokers.backend.restart()
            wait_for(lambda: gw.store.rows == 0, 120, "the queue to drain after the outage")
            wait_for(
                lambda: len(counter.unique()) >= total - counters.dropped_queue_full,
                60,
                "the surviving messages at the backend",
            )
        devices.close()
        counter.close()
        with counter.lock:
            received = list(counter.received.order)
        report = counting_report(devices.sent, received)
        priority_sent = {k for k, kind in devices.sent if kind != "telemetry"}
        got = {k for k, _ in received}
        dropped = counters.dropped_queue_full
        report.show(
            "queue full",
            f"bound_rows={BOUND} queue_rows_at_peak={rows_full} priority_in_queue={priority_rows} "
            f"dropped_by_gateway={dropped} priority_sent={len(priority_sent)} "
            f"priority_missing={len(priority_sent - got)}",
        )
        assert rows_full == BOUND, "the queue should sit exactly at its bound"
        assert priority_sent <= got, "no event or status may be dropped"
        assert dropped == total - BOUND
        assert report.missing == dropped, "every missing message is a counted drop"
        assert set(telemetry_order[:dropped]) == {k for k, _ in devices.sent} - got, (
            "the dropped messages must be the oldest telemetry"
        )
        assert report.out_of_order == 0
        assert report.unexpected == 0
