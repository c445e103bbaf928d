"""Decoded messages -> table rows, without a database."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backend.ingest.rows import (
    DeadLetter,
    Inbound,
    clean_text,
    merge_recordings,
    message_key,
    message_rows,
    plan_batch,
    reading_count,
    rows_for,
    to_time,
    to_time_us,
)
from edge import protocol

TS = 1_764_000_000_000  # 2025-11-24T16:00:00Z
BOOT = "0123abcd"
RECEIVED = datetime(2025, 11, 24, 16, 0, 1, tzinfo=UTC)


def _decoded(message: dict[str, Any]) -> dict[str, Any]:
    """What the worker gets: the codec's validated, normalised form."""
    return protocol.decode(protocol.encode(message))


def telemetry(seq: int, dev: str = "cab-1", boot: str = BOOT, **values: float) -> dict[str, Any]:
    return _decoded(
        {
            "v": 1,
            "kind": "telemetry",
            "dev": dev,
            "boot": boot,
            "seq": seq,
            "ts": TS + seq,
            "readings": [
                {"ts": TS + seq - 500, "ch": 0, "values": values or {"power_w": 12.5}},
                {"ts": TS + seq, "ch": 3, "values": {"voltage_v": 230.1}},
            ],
        }
    )


def item(message: dict[str, Any], gateway: str | None = None, at: datetime = RECEIVED) -> Inbound:
    return Inbound(message, protocol.topic_of(message), None, gateway, at)


def test_to_time_is_exact_to_the_millisecond() -> None:
    assert to_time(TS + 7) == datetime(2025, 11, 24, 16, 0, 0, 7000, tzinfo=UTC)
    assert to_time(0) == datetime(1970, 1, 1, tzinfo=UTC)


def test_message_key_is_device_boot_seq_and_device_time() -> None:
    assert message_key(telemetry(5)) == ("cab-1", BOOT, 5, to_time(TS + 5))


def test_telemetry_gives_one_reading_row_per_value_with_its_own_time() -> None:
    rows = message_rows(telemetry(5, power_w=12.5, current_a=0.05))
    assert sorted(rows.readings) == sorted(
        [
            (to_time(TS + 5 - 500), "cab-1", 0, "current_a", 0.05, BOOT, 5),
            (to_time(TS + 5 - 500), "cab-1", 0, "power_w", 12.5, BOOT, 5),
            (to_time(TS + 5), "cab-1", 3, "voltage_v", 230.1, BOOT, 5),
        ]
    )
    assert not rows.events and not rows.statuses and not rows.acks


def test_integer_values_become_floats() -> None:
    rows = message_rows(telemetry(1, lamp_on_bool=1))
    (value,) = [row[4] for row in rows.readings if row[3] == "lamp_on_bool"]
    assert isinstance(value, float) and value == 1.0


def test_event_row_keeps_severity_channel_and_detail() -> None:
    message = _decoded(
        {
            "v": 1,
            "kind": "event",
            "dev": "leak-7",
            "boot": BOOT,
            "seq": 9,
            "ts": TS,
            "code": "leak_suspected",
            "sev": "critical",
            "active": True,
            "ch": 2,
            "detail": {"score_ratio": 0.93},
        }
    )
    (row,) = message_rows(message).events
    assert row[:8] == (to_time(TS), "leak-7", BOOT, 9, "leak_suspected", "critical", 2, True)
    assert row[8] is not None and row[8].obj == {"score_ratio": 0.93}


def test_event_without_optional_fields() -> None:
    message = _decoded(
        {
            "v": 1,
            "kind": "event",
            "dev": "cab-1",
            "boot": BOOT,
            "seq": 1,
            "ts": TS,
            "code": "door_open",
            "sev": "info",
            "active": False,
        }
    )
    (row,) = message_rows(message).events
    assert row[6] is None and row[8] is None


def test_status_and_ack_rows() -> None:
    status = _decoded(
        {
            "v": 1,
            "kind": "status",
            "dev": "cab-1",
            "boot": BOOT,
            "seq": 0,
            "ts": TS,
            "state": "online",
            "role": "cabinet",
            "fw": "1.2.0",
        }
    )
    assert message_rows(status).statuses == [
        (to_time(TS), "cab-1", BOOT, 0, "online", "cabinet", "1.2.0")
    ]
    ack = _decoded(
        {
            "v": 1,
            "kind": "ack",
            "dev": "cab-1",
            "boot": BOOT,
            "seq": 4,
            "ts": TS,
            "cmd": "cmd-42",
            "ok": False,
            "err": {"code": "busy", "reason": "relay cooling down"},
        }
    )
    (row,) = message_rows(ack).acks
    assert row == (
        to_time(TS),
        "cab-1",
        BOOT,
        4,
        "cmd-42",
        False,
        "busy",
        "relay cooling down",
        None,
    )


def test_plan_keeps_a_message_repeated_within_the_batch_once() -> None:
    plan = plan_batch([item(telemetry(1)), item(telemetry(2)), item(telemetry(1))])
    assert [row[3] for row in plan.uplinks] == [1, 2]
    assert plan.duplicates_in_batch == 1
    assert len(rows_for(plan, [message_key(telemetry(1))]).readings) == 2


def test_plan_sorts_identities_so_workers_lock_in_one_order() -> None:
    items = [item(telemetry(seq, dev=dev)) for dev in ("b-2", "a-1") for seq in (3, 1, 2)]
    keys = [(row[1], row[2], row[3]) for row in plan_batch(items).uplinks]
    assert keys == sorted(keys)


def test_rows_for_only_returns_content_of_accepted_messages() -> None:
    plan = plan_batch([item(telemetry(1)), item(telemetry(2)), item(telemetry(3))])
    rows = rows_for(plan, [message_key(telemetry(2))])
    assert {row[6] for row in rows.readings} == {2}
    assert rows_for(plan, []).readings == []


def test_device_summary_follows_the_newest_message_and_status() -> None:
    later = RECEIVED + timedelta(seconds=5)
    old_boot = telemetry(90, boot="ffff0000")
    old_boot["ts"] = TS - 60_000  # a resend from before the reboot arrives last
    status = _decoded(
        {
            "v": 1,
            "kind": "status",
            "dev": "cab-1",
            "boot": BOOT,
            "seq": 0,
            "ts": TS,
            "state": "online",
            "role": "cabinet",
        }
    )
    plan = plan_batch([item(status), item(telemetry(1), gateway="gw-1"), item(old_boot, at=later)])
    (device,) = plan.devices
    assert device == (
        "cab-1",
        "cabinet",
        RECEIVED,
        later,
        to_time(TS + 1),
        BOOT,
        "gw-1",
        "online",
        RECEIVED,  # when the status was received: presence follows reception
        None,
    )


def test_batch_envelope_is_an_identity_without_content_and_marks_a_gateway() -> None:
    envelope = {"v": 1, "kind": "batch", "gw": "gw-1", "boot": BOOT, "seq": 3, "ts": TS}
    plan = plan_batch([Inbound(envelope, "lumeau/v1/gw/gw-1/up/batch", None, None, RECEIVED)])
    assert plan.uplinks[0][1:5] == ("gw-1", BOOT, 3, "batch")
    assert plan.devices[0][:2] == ("gw-1", "gateway")
    assert rows_for(plan, [message_key(envelope)]).readings == []


def test_reading_count_counts_values() -> None:
    assert reading_count([telemetry(1, power_w=1.0, current_a=0.1), telemetry(2)]) == 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [("plain", "plain"), ("a\x00b", "a\\u0000b"), ("key\udc80", "key\\udc80")],
)
def test_clean_text_makes_text_postgresql_can_hold(text: str, expected: str) -> None:
    assert clean_text(text) == expected


def test_dead_letter_row_is_cleaned() -> None:
    letter = DeadLetter(
        RECEIVED, "t", b"\x00", "unknown_field", "bad\x00", "k\udc80", None, "device"
    )
    assert letter.row() == (
        RECEIVED,
        "t",
        b"\x00",
        "unknown_field",
        "bad\\u0000",
        "k\\udc80",
        None,
        "device",
    )


def _status(seq: int, state: str, ts: int) -> dict[str, Any]:
    return _decoded(
        {"v": 1, "kind": "status", "dev": "cab-1", "boot": BOOT, "seq": seq, "ts": ts,
         "state": state, "role": "cabinet"}
    )  # fmt: skip


def test_presence_is_the_last_status_received_not_the_newest_device_time() -> None:
    # A last-will is composed at connect time (seq n), before the online status
    # (seq n + 1), so when the broker finally sends it, its ts is the older one.
    online, will = _status(1, "online", TS + 10), _status(0, "offline", TS)
    later = RECEIVED + timedelta(seconds=30)
    plan = plan_batch([item(online), item(will, at=later)])
    (row,) = plan.devices
    assert (row[7], row[8]) == ("offline", later)

    # In one batch with equal reception times, reception order decides.
    (row,) = plan_batch([item(online), item(will)]).devices
    assert row[7] == "offline"
    (row,) = plan_batch([item(will), item(online)]).devices
    assert row[7] == "online"


# ------------------------------------------------------------------ recordings


def recording(
    seq: int, part: int, parts: int = 3, data: bytes = b"\x01\x00\xff\xff", **extra: Any
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "v": 1,
        "kind": "recording",
        "dev": "leak-1",
        "boot": BOOT,
        "seq": seq,
        "ts": TS + seq,
        "rec": BOOT + "-4",
        "part": part,
        "parts": parts,
        "t0_us": TS * 1000 + 999_999,
        "fs": 8000,
        "fmt": "s16le",
        "n": len(data) // 2,
        "clock": {"src": "ntp", "unc_us": 700, "age_s": 90},
        "data": base64.b64encode(data).decode(),
    }
    message.update(extra)
    return _decoded(message)


def test_recording_gives_a_recording_row_and_a_chunk_row() -> None:
    digest = hashlib.sha256(b"whole").hexdigest()
    rows = message_rows(recording(7, 2, sha256=digest), RECEIVED)
    (rec,) = rows.recordings
    assert rec.key == ("leak-1", BOOT + "-4")
    # microseconds kept exactly: .999999 s, not rounded to the millisecond
    assert rec.t0 == datetime(2025, 11, 24, 16, 0, 0, 999_999, tzinfo=UTC)
    assert rec.t0 == to_time_us(rec.t0_us)
    assert (rec.fs, rec.fmt, rec.parts) == (8000, "s16le", 3)
    assert (rec.clock_src, rec.clock_unc_us, rec.clock_age_s) == ("ntp", 700, 90)
    assert rec.sha256 == hashlib.sha256(b"whole").digest() and not rec.conflict
    assert rec.first_received_at == rec.last_received_at == RECEIVED
    assert rows.chunks == [
        ("leak-1", BOOT + "-4", 2, 2, b"\x01\x00\xff\xff", BOOT, 7, to_time(TS + 7), RECEIVED)
    ]
    assert rows.readings == rows.events == rows.statuses == rows.acks == []


def test_merge_keeps_one_row_per_recording_and_flags_disagreement() -> None:
    later = RECEIVED + timedelta(seconds=5)
    digest = hashlib.sha256(b"x").digest()
    first = message_rows(recording(1, 0), RECEIVED).recordings[0]
    last = message_rows(recording(3, 2, sha256=digest.hex()), later).recordings[0]
    (merged,) = merge_recordings([first, last])
    assert merged.sha256 == digest and not merged.conflict
    assert (merged.first_received_at, merged.last_received_at) == (RECEIVED, later)
    other_t0 = message_rows(recording(2, 1, t0_us=TS * 1000), RECEIVED).recordings[0]
    assert merge_recordings([first, other_t0])[0].conflict
    other_clock = message_rows(
        recording(2, 1, clock={"src": "rtc", "unc_us": 700, "age_s": 90}), RECEIVED
    ).recordings[0]
    assert merge_recordings([first, other_clock])[0].conflict
    other_sha = message_rows(recording(4, 2, sha256="0" * 64), RECEIVED).recordings[0]
    assert merge_recordings([last, other_sha])[0].conflict
    two = message_rows(recording(1, 0, rec="other"), RECEIVED).recordings[0]
    assert [row.rec for row in merge_recordings([first, two])] == [BOOT + "-4", "other"]


def test_rows_for_merges_recordings_and_sorts_chunks_of_new_messages_only() -> None:
    messages = [recording(12, 2), recording(10, 0), recording(11, 1), recording(13, 0)]
    plan = plan_batch([item(m) for m in [*messages, recording(10, 0)]])
    assert plan.duplicates_in_batch == 1
    rows = rows_for(plan, [message_key(m) for m in messages])
    assert len(rows.recordings) == 1
    assert [(chunk[2], chunk[6]) for chunk in rows.chunks] == [(0, 10), (0, 13), (1, 11), (2, 12)]
    assert rows_for(plan, [message_key(messages[0])]).chunks[0][2] == 2
    assert rows_for(plan, []).recordings == []
