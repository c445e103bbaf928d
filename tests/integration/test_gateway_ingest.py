"""The whole uplink path: site broker -> gateway -> backend broker -> ingest -> TimescaleDB.

The backend broker is the test stack's own (the ``stack`` fixture), with the
stack's ACL and a user of the gateway's own (``add_broker_user``); the ingest
worker (``IngestWorker``) writes into a throwaway database. Devices publish
to a loopback site broker; some messages are published twice, as a device
resending after an outage would. Everything must be stored exactly once,
with the gateway's batches recorded in ``uplink_message`` and no gap.
"""

from __future__ import annotations

import threading
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend.storage import migrate
from backend.storage.scratch import create_database, drop_database
from edge import protocol
from tests.integration.gateway_kit import (
    Brokers,
    Publisher,
    RunningGateway,
    boot_of,
    event,
    gateway_settings,
    telemetry,
    wait_for,
)

if TYPE_CHECKING:
    from backend.devstack import Stack

pytestmark = pytest.mark.services

RUN = uuid.uuid4().hex[:6]
DEVICES = 6
PER_DEVICE = 150  # every 10th an event, the rest telemetry (2 values each)
RESENT = 20  # each device publishes its first RESENT messages a second time


def _forget_session(stack: Stack, client_id: str) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(stack.mqtt_username, stack.mqtt_password)
    client.connect(stack.mqtt_host, stack.mqtt_port, clean_start=True)
    client.loop_start()
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def database(stack: object) -> Iterator[str]:
    services = cast("Stack", stack)
    url = create_database(services.admin_database_url, services.database_url, "t_gwingest")
    migrate(url)
    yield url
    drop_database(services.admin_database_url, url)


class _Worker:
    """An ingest worker in a thread, on its own share group and client id."""

    def __init__(self, stack: Stack, database: str) -> None:
        from backend.ingest.worker import IngestWorker, WorkerConfig

        self.client_id = f"ingest-gwtest-{RUN}"
        self.worker = IngestWorker(
            WorkerConfig(
                conninfo=database,
                mqtt_host=stack.mqtt_host,
                mqtt_port=stack.mqtt_port,
                mqtt_username=stack.mqtt_username,
                mqtt_password=stack.mqtt_password,
                client_id=self.client_id,
                share_group=f"gwtest-{RUN}",
                session_expiry=60,
            )
        )
        self.thread = threading.Thread(target=self.worker.run, name="ingest", daemon=True)
        self.thread.start()
        assert self.worker.wait_subscribed(30), "the ingest worker did not subscribe"

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the ingest worker did not stop"


def _one(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def test_site_to_timescaledb_through_the_gateway_stores_each_message_once(
    stack: object, database: str, tmp_path: Path
) -> None:
    from backend import devstack

    services = cast("Stack", stack)
    gw = f"gw-it-{RUN}"
    password = devstack.add_broker_user(services, gw)
    devs = [f"t{RUN}-cab-{d:02d}" for d in range(DEVICES)]
    boots = [boot_of(d + 1000) for d in range(DEVICES)]
    site = devstack.start_broker(tmp_path / "site")
    backend = types.SimpleNamespace(host=services.mqtt_host, port=services.mqtt_port)
    settings = gateway_settings(
        tmp_path,
        Brokers(site, backend),
        gateway_id=gw,
        backend_password=password,
        backend_session_expiry_s=60,
        # The stack's ACL gives a gateway its own subtree only (docs/gateway.md).
        downlink_device_filter=protocol.gateway_topic(gw, "down", "cmd"),
    )
    worker = _Worker(services, database)
    devices = Publisher(site)
    try:
        with RunningGateway(settings) as running:
            sent: set[tuple[str, str, int]] = set()
            for seq in range(PER_DEVICE):
                for dev, boot in zip(devs, boots, strict=True):
                    if seq % 10 == 9:
                        devices.publish(dev, "event", event(dev, boot, seq), (dev, boot, seq))
                    else:
                        payload = telemetry(dev, boot, seq, 1.0 + seq)
                        devices.publish(dev, "telemetry", payload, (dev, boot, seq))
                    sent.add((dev, boot, seq))
            for seq in range(RESENT):  # resends: the same identities again
                for dev, boot in zip(devs, boots, strict=True):
                    kind = "event" if seq % 10 == 9 else "telemetry"
                    payload = (
                        event(dev, boot, seq) if kind == "event" else telemetry(dev, boot, seq)
                    )
                    devices.publish(dev, kind, payload)
            devices.wait_acked()
            total = len(sent)
            with psycopg.connect(database, autocommit=True) as conn:

                def stored() -> int:
                    return int(
                        _one(
                            conn,
                            "SELECT count(*) FROM uplink_message WHERE device_id = ANY(%s)",
                            devs,
                        )
                    )

                wait_for(
                    lambda: stored() >= total and running.gateway.store.rows == 0,
                    120,
                    lambda: f"all messages in TimescaleDB ({stored()} of {total})",
                )
        counters, _, _ = running.gateway.metrics.snapshot()
        # Gateway stopped (its offline status published); let ingest finish.
        with psycopg.connect(database, autocommit=True) as conn:
            wait_for(
                lambda: (
                    _one(
                        conn,
                        "SELECT count(*) FROM device_status WHERE device_id = %s AND state = %s",
                        gw,
                        "offline",
                    )
                    == 1
                ),
                60,
                "the gateway's offline status in device_status",
            )
            worker.stop()
            rows = conn.execute(
                "SELECT device_id, boot_id, seq, gateway_id FROM uplink_message"
                " WHERE device_id = ANY(%s)",
                (devs,),
            ).fetchall()
            keys = [(r[0], r[1], r[2]) for r in rows]
            via = {r[3] for r in rows}
            batch_rows = _one(
                conn,
                "SELECT count(*) FROM uplink_message WHERE device_id = %s AND kind = 'batch'",
                gw,
            )
            gw_boots = conn.execute(
                "SELECT DISTINCT boot_id FROM uplink_message WHERE device_id = %s", (gw,)
            ).fetchall()
            readings = _one(conn, "SELECT count(*) FROM reading WHERE device_id = ANY(%s)", devs)
            events = _one(conn, "SELECT count(*) FROM event WHERE device_id = ANY(%s)", devs)
            gaps = conn.execute(
                "SELECT device_id, boot_id, first_missing, last_missing FROM sequence_gap"
                " WHERE device_id = ANY(%s)",
                ([*devs, gw],),
            ).fetchall()
            dead = _one(conn, "SELECT count(*) FROM dead_letter")
            gw_role = _one(conn, "SELECT role FROM device WHERE device_id = %s", gw)
    finally:
        devices.close()
        site.stop()
        if worker.thread.is_alive():
            worker.stop()
        _forget_session(services, worker.client_id)
        _forget_session(services, settings.backend_id)

    ingest = worker.worker.counters
    published = DEVICES * (PER_DEVICE + RESENT)
    expected_events = DEVICES * (PER_DEVICE // 10)
    expected_readings = 2 * (total - expected_events)
    stored_once = len(set(keys) & sent)
    print(
        f"\nCOUNTING REPORT [site -> gateway -> backend -> ingest -> TimescaleDB] "
        f"published={published} distinct={total} stored_rows={len(keys)} "
        f"stored_once={stored_once} missing={len(sent - set(keys))} "
        f"duplicated_in_db={len(keys) - len(set(keys))} unexpected={len(set(keys) - sent)} "
        f"gaps={len(gaps)} readings={readings}/{expected_readings} events={events} "
        f"gateway: received={counters.received} accepted={counters.accepted} "
        f"duplicates={counters.duplicates} forwarded={counters.forwarded} "
        f"batches={counters.batches} batch_rows_in_db={batch_rows} "
        f"ingest: {ingest.line()}"
    )
    assert counters.received == published
    assert counters.accepted + counters.duplicates == published
    assert stored_once == total == DEVICES * PER_DEVICE
    assert len(keys) == total, "a message was stored twice"
    assert set(keys) == sent
    assert via == {gw}, "every device message is recorded as coming through the gateway"
    assert readings == expected_readings
    assert events == expected_events
    assert gaps == []
    assert dead == 0
    assert gw_role == "gateway"
    assert len(gw_boots) == 1
    # Each acknowledged batch is one uplink_message row of kind batch.
    assert batch_rows == counters.batches >= 1
    assert counters.forwarded == counters.accepted
