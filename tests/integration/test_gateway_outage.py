"""The backend broker goes away for a while; devices keep publishing.

After it returns, every message reaches it, each once at the application level
(wire duplicates are counted apart: QoS 1 allows them), in order per device.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.gateway_kit import (
    BackendCounter,
    Publisher,
    RunningGateway,
    boot_of,
    counting_report,
    gateway_settings,
    telemetry,
    two_brokers,
    wait_for,
)

pytestmark = pytest.mark.services

DEVICES = 20
BEFORE = 50  # messages per device before the outage
DURING = 150  # messages per device while the backend broker is down
OUTAGE_S = 12.0


def test_backend_outage_loses_nothing(tmp_path: Path) -> None:
    with two_brokers(tmp_path) as brokers:
        counter = BackendCounter(brokers.backend)
        devices = Publisher(brokers.site)
        settings = gateway_settings(tmp_path, brokers)
        seqs = dict.fromkeys(range(DEVICES), 0)

        def publish_round() -> None:
            for d in range(DEVICES):
                dev, boot, seq = f"cab-{d:04d}", boot_of(d), seqs[d]
                devices.publish(dev, "telemetry", telemetry(dev, boot, seq), (dev, boot, seq))
                seqs[d] = seq + 1

        with RunningGateway(settings) as running:
            gw = running.gateway
            for _ in range(BEFORE):
                publish_round()
            devices.wait_acked()
            wait_for(lambda: counter.count() >= DEVICES * BEFORE, 60, "pre-outage messages")

            brokers.backend.stop()
            start = time.monotonic()
            for i in range(DURING):
                publish_round()
                # Spread over the outage, as live devices would.
                time.sleep(max(0.0, start + OUTAGE_S * (i + 1) / DURING - time.monotonic()))
            devices.wait_acked()
            wait_for(
                lambda: gw.metrics.snapshot()[0].accepted >= DEVICES * (BEFORE + DURING),
                60,
                "the gateway to queue everything published during the outage",
            )
            queued = gw.store.rows
            brokers.backend.restart()
            wait_for(
                lambda: len(counter.unique()) >= DEVICES * (BEFORE + DURING),
                120,
                lambda: f"catch-up ({len(counter.unique())} of {DEVICES * (BEFORE + DURING)})",
            )
            wait_for(lambda: gw.store.rows == 0, 60, "the gateway's queue to empty")
            counters = gw.metrics.snapshot()[0]
        devices.close()
        counter.close()
        with counter.lock:
            received = list(counter.received.order)
        report = counting_report(devices.sent, received)
        report.show(
            "backend outage",
            f"outage_s={OUTAGE_S:.0f} queued_at_return={queued} "
            f"gateway_forwarded={counters.forwarded} reconnects={counters.reconnects_backend}",
        )
        assert report.sent == DEVICES * (BEFORE + DURING)
        assert queued >= DEVICES * DURING, "the outage messages should have waited in the queue"
        assert report.missing == 0
        assert report.received_once == report.sent
        assert report.out_of_order == 0
        assert report.unexpected == 0
