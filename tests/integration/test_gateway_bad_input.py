"""A burst of malformed and hostile messages between good ones.

Every good message is forwarded; every bad one lands in the dead-letter table
with its reason, its sender (when the topic names one) gets a specific
``error`` reply, and the gateway keeps running.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge import protocol
from tests.integration.gateway_kit import (
    BackendCounter,
    Publisher,
    RunningGateway,
    boot_of,
    counting_report,
    event,
    gateway_settings,
    telemetry,
    two_brokers,
    wait_for,
)

pytestmark = pytest.mark.services

DEVICES = [f"cab-{d:04d}" for d in range(5)]
ROUNDS = 40


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"x": 1}
    for _ in range(levels):
        value = {"a": value}
    return value


def _hostile(dev: str, boot: str, i: int) -> list[tuple[str, bytes, str]]:
    """(topic, payload, expected code) for one round of bad input."""
    up = f"lumeau/v1/dev/{dev}/up"
    good_event = json.loads(event(dev, boot, 10_000 + i))
    deep_event = dict(good_event, detail=_deep(40))  # past the parser's depth limit
    nested_event = dict(good_event, detail=_deep(6))  # parses, but detail allows 4 levels
    extra_field = dict(good_event, colour="red")
    other = DEVICES[(DEVICES.index(dev) + 1) % len(DEVICES)]
    return [
        (f"{up}/telemetry", b'{"v":1,"kind":', "bad_json"),
        (f"{up}/telemetry", bytes(range(256)) * 4, "bad_json"),
        (f"{up}/telemetry", b"", "bad_json"),
        (f"{up}/telemetry", b'{"pad":"' + b"x" * 20_000 + b'"}', "too_large"),
        (f"{up}/event", json.dumps(deep_event).encode(), "bad_json"),
        (f"{up}/event", json.dumps(nested_event).encode(), "too_large"),
        (f"{up}/event", b"[" * 4000 + b"]" * 4000, "bad_json"),
        (f"{up}/event", b"[" * 50_000 + b"]" * 50_000, "too_large"),
        (f"{up}/event", json.dumps(extra_field).encode(), "unknown_field"),
        (f"{up}/telemetry", event(dev, boot, 20_000 + i), "topic_mismatch"),
        (f"lumeau/v1/dev/{other}/up/event", event(dev, boot, 30_000 + i), "topic_mismatch"),
        (f"{up}/bogus", telemetry(dev, boot, 40_000 + i), "bad_topic"),
        (
            "lumeau/v1/dev/intruder-1/up/telemetry",
            telemetry("intruder-1", boot, i),
            "unknown_device",
        ),
        (f"{up}/telemetry", b'"just a string"', "not_object"),
    ]


def test_hostile_input_is_dead_lettered_and_never_blocks(tmp_path: Path) -> None:
    with two_brokers(tmp_path) as brokers:
        counter = BackendCounter(brokers.backend)
        devices = Publisher(brokers.site)
        replies: list[tuple[str, dict[str, Any]]] = []
        lock = threading.Lock()
        listener = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

        def on_reply(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            with lock:
                replies.append((msg.topic, protocol.decode(msg.payload, msg.topic)))

        listener.on_message = on_reply
        listener.connect(brokers.site.host, brokers.site.port)
        listener.subscribe("lumeau/v1/dev/+/down/error", qos=1)
        listener.loop_start()
        settings = gateway_settings(tmp_path, brokers, allowed_devices=DEVICES)
        expected: list[tuple[str, str]] = []  # (topic, code)
        with RunningGateway(settings) as running:
            gw = running.gateway
            for i in range(ROUNDS):
                for d, dev in enumerate(DEVICES):
                    boot = boot_of(d)
                    devices.publish(dev, "telemetry", telemetry(dev, boot, i), (dev, boot, i))
                    if d == i % len(DEVICES):
                        for topic, payload, code in _hostile(dev, boot, i):
                            devices.raw(topic, payload)
                            expected.append((topic, code))
            devices.wait_acked()
            total = len(DEVICES) * ROUNDS
            wait_for(lambda: len(counter.unique()) >= total, 60, "every good message")
            wait_for(
                lambda: gw.store.dead_letters >= len(expected),
                60,
                lambda: f"dead letters ({gw.store.dead_letters} of {len(expected)})",
            )
            wait_for(lambda: len(replies) >= len(expected), 30, "error replies")
            assert gw.health()["ok"], "the gateway must still be serving"
            counters, _, by_code = gw.metrics.snapshot()
            letters = gw.store.dead_letters_list()
        listener.disconnect()
        listener.loop_stop()
        devices.close()
        counter.close()
        with counter.lock:
            received = list(counter.received.order)
        report = counting_report(devices.sent, received)
        got = sorted((dl.topic, dl.code) for dl in letters)
        report.show(
            "bad input",
            f"bad_sent={len(expected)} dead_lettered={len(letters)} "
            f"error_replies={len(replies)} rejected_by_code={dict(sorted(by_code.items()))}",
        )
        assert report.missing == 0 and report.received_once == report.sent == total
        assert report.unexpected == 0 and report.out_of_order == 0
        assert got == sorted(expected), "each bad message dead-lettered with its own code"
        assert all(dl.reason for dl in letters), "every dead letter says why"
        assert counters.rejected == len(expected)
        reply_codes = sorted((t.split("/")[3], m["code"]) for t, m in replies)
        expected_replies = sorted((t.split("/")[3], c) for t, c in expected)
        assert reply_codes == expected_replies, "each sender is told the specific error"
