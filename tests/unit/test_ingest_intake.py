"""One delivery -> messages, dead letters and error replies; and flush timing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from backend.ingest.batching import Delivery, FlushPolicy, Pending
from backend.ingest.intake import Intake, intake
from edge import protocol

TS = 1_764_000_000_000
NOW = TS + 1_000
BOOT = "0123abcd"
AT = datetime(2025, 11, 24, 16, 0, 1, tzinfo=UTC)


def telemetry(dev: str, seq: int, n: int = 1) -> dict[str, Any]:
    return {
        "v": 1,
        "kind": "telemetry",
        "dev": dev,
        "boot": BOOT,
        "seq": seq,
        "ts": TS,
        "readings": [{"ts": TS, "ch": i, "values": {"power_w": 10.0}} for i in range(n)],
    }


def dev_topic(dev: str, kind: str = "telemetry") -> str:
    return protocol.uplink_topic(dev, kind)


def test_a_good_device_message_is_kept_with_its_raw_payload() -> None:
    payload = protocol.encode(telemetry("cab-1", 1))
    out = intake(dev_topic("cab-1"), payload, AT, NOW)
    (message,) = out.messages
    assert message.message["seq"] == 1 and message.payload == payload
    assert message.gateway_id is None and message.received_at == AT
    assert not out.dead_letters and not out.replies


def test_bad_json_is_dead_lettered_and_the_device_told() -> None:
    out = intake(dev_topic("cab-1"), b'{"v":1,', AT, NOW)
    assert not out.messages
    (letter,) = out.dead_letters
    assert (letter.code, letter.device_id, letter.source) == ("bad_json", "cab-1", "device")
    assert letter.payload == b'{"v":1,'
    (reply,) = out.replies
    assert reply.topic == "lumeau/v1/dev/cab-1/down/error"
    body = protocol.decode(reply.payload)
    assert body["code"] == "bad_json" and body["ts"] == NOW and "ref" not in body


def test_a_reply_cites_boot_and_seq_when_the_payload_has_them() -> None:
    bad = telemetry("cab-1", 7)
    bad["readings"][0]["values"]["power_w"] = -5.0
    out = intake(dev_topic("cab-1"), json.dumps(bad).encode(), AT, NOW)
    (letter,) = out.dead_letters
    assert letter.code == "out_of_range"
    assert letter.field == "readings[0].values.power_w"
    body = protocol.decode(out.replies[0].payload)
    assert body["ref"] == {"boot": BOOT, "seq": 7}
    assert body["field"] == "readings[0].values.power_w"


def test_payload_for_another_device_is_a_topic_mismatch() -> None:
    out = intake(dev_topic("cab-2"), protocol.encode(telemetry("cab-1", 1)), AT, NOW)
    assert out.dead_letters[0].code == "topic_mismatch"
    assert out.replies[0].topic == "lumeau/v1/dev/cab-2/down/error"


@pytest.mark.parametrize(
    "topic", ["elsewhere/x", "lumeau/v1/dev/cab-1/down/cmd", "lumeau/v1/dev/BAD ID/up/event"]
)
def test_an_unusable_topic_is_dead_lettered_without_reply(topic: str) -> None:
    out = intake(topic, b"{}", AT, NOW)
    (letter,) = out.dead_letters
    assert letter.code == "bad_topic" and letter.device_id is None and letter.source == "mqtt"
    assert not out.replies and not out.messages


def batch(entries: list[Any], seq: int = 1) -> bytes:
    return json.dumps(
        {"v": 1, "kind": "batch", "gw": "gw-1", "boot": BOOT, "seq": seq, "ts": TS, "msgs": entries}
    ).encode()


def test_a_batch_keeps_its_good_entries_and_rejects_the_bad_one_alone() -> None:
    bad = telemetry("leak-2", 4)
    del bad["readings"]
    entries = [
        {"topic": dev_topic("cab-1"), "payload": telemetry("cab-1", 1)},
        {"topic": dev_topic("leak-2"), "payload": bad},
        {"topic": dev_topic("cab-1"), "payload": telemetry("cab-1", 2)},
    ]
    out = intake("lumeau/v1/gw/gw-1/up/batch", batch(entries), AT, NOW)
    kinds = [(m.message["kind"], m.message.get("seq"), m.gateway_id) for m in out.messages]
    assert kinds == [("batch", 1, None), ("telemetry", 1, "gw-1"), ("telemetry", 2, "gw-1")]
    (letter,) = out.dead_letters
    assert (letter.code, letter.field, letter.device_id) == ("missing_field", "readings", "leak-2")
    assert letter.topic == dev_topic("leak-2") and letter.source == "gateway:gw-1"
    assert json.loads(letter.payload) == entries[1]
    (reply,) = out.replies
    assert reply.topic == "lumeau/v1/dev/leak-2/down/error"
    assert protocol.decode(reply.payload)["ref"] == {"boot": BOOT, "seq": 4}


def test_a_batch_entry_with_a_bad_topic_has_no_device_to_tell() -> None:
    entries = [{"topic": "nowhere", "payload": telemetry("cab-1", 1)}]
    out = intake("lumeau/v1/gw/gw-1/up/batch", batch(entries), AT, NOW)
    (letter,) = out.dead_letters
    assert letter.code == "bad_topic" and letter.device_id == "gw-1"
    assert not out.replies


def test_a_broken_batch_envelope_is_one_dead_letter() -> None:
    out = intake("lumeau/v1/gw/gw-1/up/batch", b'{"v":1,"kind":"batch"}', AT, NOW)
    (letter,) = out.dead_letters
    assert letter.code == "missing_field" and letter.device_id == "gw-1"
    assert not out.messages and not out.replies


def test_a_gateway_status_is_a_message_of_the_gateway() -> None:
    status = {
        "v": 1,
        "kind": "status",
        "gw": "gw-1",
        "boot": BOOT,
        "seq": 0,
        "ts": TS,
        "state": "online",
        "role": "gateway",
    }
    out = intake("lumeau/v1/gw/gw-1/up/status", protocol.encode(status), AT, NOW)
    assert out.messages[0].message["gw"] == "gw-1"


def test_flush_policy_by_readings_deliveries_and_age() -> None:
    policy = FlushPolicy(max_readings=10, max_deliveries=3, max_delay=0.2)
    pending = Pending()
    assert not pending.due(policy, 0.0) and pending.wait_time(policy, 0.0) is None
    one = intake(dev_topic("cab-1"), protocol.encode(telemetry("cab-1", 1, n=4)), AT, NOW)
    pending.add(one, Delivery(1, 1, 1), now=100.0)
    assert pending.readings == 4 and not pending.due(policy, 100.1)
    assert pending.wait_time(policy, 100.05) == pytest.approx(0.15)
    assert pending.due(policy, 100.2)
    pending.add(one, Delivery(2, 1, 1), now=100.1)
    pending.add(Intake(), Delivery(3, 1, 1), now=100.1)
    assert pending.due(policy, 100.1)  # three deliveries
    heavy = Pending()
    big = intake(dev_topic("cab-1"), protocol.encode(telemetry("cab-1", 2, n=10)), AT, NOW)
    heavy.add(big, Delivery(4, 1, 1), now=0.0)
    assert heavy.due(policy, 0.0)  # ten readings


def test_flush_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        FlushPolicy(max_delay=0)
