"""Shared parts of the gateway tests (no tests here): real brokers, devices played
by a paho publisher, a backend subscriber that counts, and the counting report.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge import protocol
from gateway.config import GatewaySettings, load_settings
from gateway.intake import priority_of
from gateway.service import Gateway

BASE_TS = 1_795_392_000_000  # 2026-11-23T00:00:00Z
_client_ids = itertools.count()


def wait_for(condition: Callable[[], bool], timeout: float, what: Callable[[], str] | str) -> None:
    """Poll ``condition``; fail with ``what`` (evaluated late) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            message = what() if callable(what) else what
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {message}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Brokers:
    site: Any  # backend.devstack.BrokerHandle
    backend: Any


@contextlib.contextmanager
def two_brokers(folder: Path) -> Iterator[Brokers]:
    from backend import devstack

    try:
        site = devstack.start_broker(folder / "site")
    except devstack.MissingDependency as exc:  # pragma: no cover - machine without mosquitto
        if os.environ.get("CI"):
            raise
        pytest.skip(f"mosquitto unavailable: {exc}")
    backend = devstack.start_broker(folder / "backend")
    try:
        yield Brokers(site, backend)
    finally:
        site.stop()
        backend.stop()


def gateway_settings(folder: Path, brokers: Brokers, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "gateway_id": "gw-test-1",
        "site_host": brokers.site.host,
        "site_port": brokers.site.port,
        "backend_host": brokers.backend.host,
        "backend_port": brokers.backend.port,
        "data_dir": folder / "gw-data",
        "http_port": None,
        "log_format": "text",
        "backoff_min_s": 0.1,
        "backoff_max_s": 1.0,
        "batch_linger_ms": 20,
    }
    values.update(overrides)
    return load_settings(None, **values)


class RunningGateway:
    """A Gateway in a thread of the test process."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.gateway = Gateway(settings)
        self._thread = threading.Thread(target=self.gateway.run, name="gateway", daemon=True)

    def __enter__(self) -> RunningGateway:
        self._thread.start()
        wait_for(
            lambda: self.gateway.site.wait_subscribed(0) and self.gateway.backend.connected,
            30,
            "the gateway to subscribe on the site broker and reach the backend broker",
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.gateway.stop()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the gateway did not stop within 30 s"


def telemetry(dev: str, boot: str, seq: int, value: float = 1.5) -> bytes:
    ts = BASE_TS + seq * 1000
    return protocol.encode(
        {
            "v": 1,
            "kind": "telemetry",
            "dev": dev,
            "boot": boot,
            "seq": seq,
            "ts": ts + 500,
            "readings": [{"ts": ts, "ch": 1, "values": {"power_w": value, "voltage_v": 230.5}}],
        }
    )


def event(dev: str, boot: str, seq: int, code: str = "leak_suspected") -> bytes:
    return protocol.encode(
        {
            "v": 1,
            "kind": "event",
            "dev": dev,
            "boot": boot,
            "seq": seq,
            "ts": BASE_TS + seq * 1000,
            "code": code,
            "sev": "critical",
            "active": True,
        }
    )


def status(dev: str, boot: str, seq: int, state: str) -> bytes:
    return protocol.encode(
        {
            "v": 1,
            "kind": "status",
            "dev": dev,
            "boot": boot,
            "seq": seq,
            "ts": BASE_TS + seq * 1000,
            "state": state,
            "role": "cabinet",
        }
    )


def boot_of(i: int) -> str:
    return f"{(i + 1) * 2654435761 % 2**32:08x}"


Key = tuple[str, str, int]


class Publisher:
    """Plays the devices: one paho connection publishing for all of them, QoS 1."""

    def __init__(self, broker: Any) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-devices-{next(_client_ids)}",
            protocol=mqtt.MQTTv5,
        )
        self.client.max_inflight_messages_set(200)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.sent: list[tuple[Key, str]] = []  # ((dev, boot, seq), kind)
        self._infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, dev: str, kind: str, payload: bytes, key: Key | None = None) -> None:
        topic = f"lumeau/v1/dev/{dev}/up/{kind}"
        self._infos.append(self.client.publish(topic, payload, qos=1, retain=kind == "status"))
        if key is not None:
            self.sent.append((key, kind))

    def raw(self, topic: str, payload: bytes) -> None:
        self._infos.append(self.client.publish(topic, payload, qos=1))

    def wait_acked(self, timeout: float = 60) -> None:
        wait_for(
            lambda: all(i.is_published() for i in self._infos),
            timeout,
            lambda: (
                f"site broker PUBACKs ({sum(not i.is_published() for i in self._infos)} "
                "still pending)"
            ),
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Received:
    order: list[tuple[Key, str]] = field(default_factory=list)  # inner messages, arrival order
    batches: int = 0
    bad_entries: int = 0
    gateway_status: list[dict[str, Any]] = field(default_factory=list)


class BackendCounter:
    """Subscribes to the gateway's uplinks on the backend broker and records them."""

    def __init__(self, broker: Any, client_id: str | None = None) -> None:
        self.received = Received()
        self.lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-backend-{next(_client_ids)}",
            protocol=mqtt.MQTTv5,
        )
        # paho's own reconnect delay doubles up to 120 s: after a long broker
        # outage the counter would come back long after the gateway does.
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=1)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(
            [("lumeau/v1/gw/+/up/#", SubscribeOptions(qos=1))]
        )
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = 65535
        self.client.connect(broker.host, broker.port, clean_start=False, properties=props)
        self.client.loop_start()
        wait_for(lambda: self._subscribed.is_set(), 30, "the backend subscriber")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/status"):
            with self.lock:
                self.received.gateway_status.append(protocol.decode(msg.payload, msg.topic))
            return
        _envelope, good, bad = protocol.decode_batch(msg.payload, msg.topic)
        with self.lock:
            self.received.batches += 1
            self.received.bad_entries += len(bad)
            for m in good:
                self.received.order.append(((m["dev"], m["boot"], m["seq"]), m["kind"]))

    def count(self) -> int:
        with self.lock:
            return len(self.received.order)

    def unique(self) -> set[Key]:
        with self.lock:
            return {k for k, _ in self.received.order}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass(frozen=True)
class CountingReport:
    sent: int
    received_once: int  # unique (dev, boot, seq) received
    missing: int
    wire_duplicates: int  # extra copies on the wire (the backend stores them once)
    out_of_order: int  # per (device, priority class), first arrivals
    unexpected: int  # received but never sent

    def show(self, title: str, extra: str = "") -> str:
        text = (
            f"COUNTING REPORT [{title}] sent={self.sent} received_once={self.received_once} "
            f"missing={self.missing} duplicated={self.wire_duplicates} "
            f"out_of_order={self.out_of_order} unexpected={self.unexpected}"
        )
        if extra:
            text += f" {extra}"
        print("\n" + text)
        return text


def counting_report(sent: list[tuple[Key, str]], received: list[tuple[Key, str]]) -> CountingReport:
    """Compare what devices sent with what reached the backend broker.

    Order is checked on first arrivals, per device and priority class: the
    gateway keeps FIFO order within a class and lets events/status/acks
    overtake a telemetry backlog (docs/gateway.md).
    """
    sent_keys = {k for k, _ in sent}
    seen: set[Key] = set()
    duplicates = 0
    last: dict[tuple[str, int], int] = {}
    out_of_order = 0
    for key, kind in received:
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        lane = (key[0], priority_of(kind))
        if key[2] < last.get(lane, -1):
            out_of_order += 1
        last[lane] = key[2]
    return CountingReport(
        sent=len(sent_keys),
        received_once=len(seen & sent_keys),
        missing=len(sent_keys - seen),
        wire_duplicates=duplicates,
        out_of_order=out_of_order,
        unexpected=len(seen - sent_keys),
    )
