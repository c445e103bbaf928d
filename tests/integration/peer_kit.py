"""MQTT peers for the command tests (no tests here): devices and gateways logged in
to the test stack's broker with their OWN credentials, so Mosquitto's ACL decides
what each may read and write.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from backend.devstack import add_broker_user
from edge import protocol
from tests.integration import ingest_kit

if TYPE_CHECKING:
    from backend.devstack import Stack

DEADLINE = 60.0  # seconds; polls, not performance checks


def wait_until(what: str, check: Callable[[], bool], explain: Callable[[], str] = str) -> None:
    """``ingest_kit.wait_until`` with the command tests' bound and a finer poll."""
    ingest_kit.wait_until(what, check, explain, deadline_s=DEADLINE, poll_s=0.05)


def ms(value: str) -> int:
    """An ISO 8601 time as the protocol's milliseconds since the epoch."""
    return int(datetime.fromisoformat(value).timestamp() * 1000)


@dataclass
class Peer:
    """A device or gateway on the backend broker: reads its down topic, publishes up."""

    name: str
    paho: mqtt.Client = field(repr=False)
    received: list[mqtt.MQTTMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    seq: int = 0
    boot: str = field(default_factory=lambda: secrets.token_hex(4))

    def messages(self) -> list[mqtt.MQTTMessage]:
        with self.lock:
            return list(self.received)

    def wait_for_command(self, command_id: str) -> mqtt.MQTTMessage:
        found: list[mqtt.MQTTMessage] = []

        def arrived() -> bool:
            found[:] = [m for m in self.messages() if f'"id":"{command_id}"'.encode() in m.payload]
            return bool(found)

        wait_until(f"{self.name} receives {command_id}", arrived, lambda: str(self.messages()))
        return found[0]

    def publish(self, topic: str, message: dict[str, Any]) -> None:
        info = self.paho.publish(topic, protocol.encode(message), qos=1)
        info.wait_for_publish(DEADLINE)
        assert info.is_published()

    def ack(self, command_id: str, **fields: Any) -> None:
        self.seq += 1
        self.publish(
            protocol.uplink_topic(self.name, "ack"),
            {
                "v": 1,
                "kind": "ack",
                "dev": self.name,
                "boot": self.boot,
                "seq": self.seq,
                "ts": int(time.time() * 1000),
                "cmd": command_id,
                **fields,
            },
        )


def connect_peer(services: Stack, name: str, subscribe: str) -> Iterator[Peer]:
    """``name`` as a new broker user, subscribed to ``subscribe``; for a fixture's
    ``yield from`` (disconnected when the fixture ends)."""
    password = add_broker_user(services, name)
    paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-test", protocol=mqtt.MQTTv5)
    peer = Peer(name, paho)
    ready = threading.Event()

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            c.subscribe(subscribe, qos=1)

    def on_subscribe(_c: Any, _u: Any, _mid: Any, reasons: Any, _p: Any) -> None:
        if not any(r.is_failure for r in reasons):
            ready.set()

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with peer.lock:
            peer.received.append(message)

    paho.on_connect = on_connect
    paho.on_subscribe = on_subscribe
    paho.on_message = on_message
    paho.username_pw_set(name, password)
    paho.connect(services.mqtt_host, services.mqtt_port)
    paho.loop_start()
    try:
        assert ready.wait(DEADLINE), f"{name} could not subscribe to {subscribe}"
        yield peer
    finally:
        paho.disconnect()
        paho.loop_stop()
