"""Protocol v1 codec: golden encodings, round trips, every error code, topics, limits."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import random
import re
import string
from pathlib import Path
from typing import Any

import pytest

from edge import canonjson
from edge import protocol as p
from edge.protocol import ProtocolError

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

T = 1767225600000  # 2026-01-01T00:00:00Z

# The examples of docs/protocol.md, as dicts, and their canonical bytes written
# out by hand from the encoding rules (sorted keys, no spaces, floats keep ".0").
GOLDEN: dict[str, tuple[dict[str, Any], bytes]] = {
    "telemetry": (
        {
            "v": 1,
            "kind": "telemetry",
            "dev": "cab-0042",
            "boot": "5f3a9c1e",
            "seq": 1201,
            "ts": T + 1500,
            "readings": [
                {
                    "ts": T,
                    "ch": 0,
                    "values": {"mains_bool": 1, "door_bool": 0, "temperature_c": 4.5},
                },
                {
                    "ts": T,
                    "ch": 1,
                    "values": {
                        "power_w": 1250.0,
                        "energy_wh": 4521300,
                        "voltage_v": 231.4,
                        "current_a": 5.41,
                        "level_pct": 70,
                    },
                },
            ],
        },
        b'{"boot":"5f3a9c1e","dev":"cab-0042","kind":"telemetry","readings":['
        b'{"ch":0,"ts":1767225600000,"values":{"door_bool":0,"mains_bool":1,"temperature_c":4.5}},'
        b'{"ch":1,"ts":1767225600000,"values":{"current_a":5.41,"energy_wh":4521300,'
        b'"level_pct":70,"power_w":1250.0,"voltage_v":231.4}}],'
        b'"seq":1201,"ts":1767225601500,"v":1}',
    ),
    "event": (
        {
            "v": 1,
            "kind": "event",
            "dev": "cab-0042",
            "boot": "5f3a9c1e",
            "seq": 1202,
            "ts": T + 2000,
            "code": "door_open",
            "sev": "warning",
            "active": True,
            "detail": {"input": 2},
        },
        b'{"active":true,"boot":"5f3a9c1e","code":"door_open","detail":{"input":2},'
        b'"dev":"cab-0042","kind":"event","seq":1202,"sev":"warning","ts":1767225602000,"v":1}',
    ),
    "status": (
        {
            "v": 1,
            "kind": "status",
            "dev": "leak-0107",
            "boot": "a1b2c3d4e5f60718",
            "seq": 1,
            "ts": T,
            "state": "online",
            "role": "leak_sensor",
            "fw": "1.2.0",
        },
        b'{"boot":"a1b2c3d4e5f60718","dev":"leak-0107","fw":"1.2.0","kind":"status",'
        b'"role":"leak_sensor","seq":1,"state":"online","ts":1767225600000,"v":1}',
    ),
    "will": (
        {
            "v": 1,
            "kind": "status",
            "dev": "leak-0107",
            "boot": "a1b2c3d4e5f60718",
            "seq": 0,
            "ts": T,
            "state": "offline",
            "role": "leak_sensor",
            "fw": "1.2.0",
        },
        b'{"boot":"a1b2c3d4e5f60718","dev":"leak-0107","fw":"1.2.0","kind":"status",'
        b'"role":"leak_sensor","seq":0,"state":"offline","ts":1767225600000,"v":1}',
    ),
    "ack": (
        {
            "v": 1,
            "kind": "ack",
            "dev": "cab-0042",
            "boot": "5f3a9c1e",
            "seq": 1203,
            "ts": T + 3000,
            "cmd": "c-7f2e01",
            "ok": True,
        },
        b'{"boot":"5f3a9c1e","cmd":"c-7f2e01","dev":"cab-0042","kind":"ack","ok":true,'
        b'"seq":1203,"ts":1767225603000,"v":1}',
    ),
    "ack_err": (
        {
            "v": 1,
            "kind": "ack",
            "dev": "cab-0042",
            "boot": "5f3a9c1e",
            "seq": 1204,
            "ts": T + 3100,
            "cmd": "c-7f2e02",
            "ok": False,
            "err": {"code": "expired", "reason": "exp 1767225660000 is in the past"},
        },
        b'{"boot":"5f3a9c1e","cmd":"c-7f2e02","dev":"cab-0042",'
        b'"err":{"code":"expired","reason":"exp 1767225660000 is in the past"},'
        b'"kind":"ack","ok":false,"seq":1204,"ts":1767225603100,"v":1}',
    ),
    "cmd": (
        {
            "v": 1,
            "kind": "cmd",
            "dev": "cab-0042",
            "id": "c-7f2e01",
            "name": "set_level",
            "args": {"ch": 1, "level_pct": 50},
            "ts": T + 2500,
            "exp": T + 302500,
            "src": "api",
        },
        b'{"args":{"ch":1,"level_pct":50},"dev":"cab-0042","exp":1767225902500,'
        b'"id":"c-7f2e01","kind":"cmd","name":"set_level","src":"api","ts":1767225602500,"v":1}',
    ),
    "error": (
        {
            "v": 1,
            "kind": "error",
            "dev": "cab-0042",
            "ts": T + 4000,
            "code": "out_of_range",
            "reason": "readings[0].values.voltage_v: 1250.0 is outside [0, 1000] volt",
            "field": "readings[0].values.voltage_v",
            "ref": {"boot": "5f3a9c1e", "seq": 1205},
        },
        b'{"code":"out_of_range","dev":"cab-0042","field":"readings[0].values.voltage_v",'
        b'"kind":"error","reason":"readings[0].values.voltage_v: 1250.0 is outside [0, 1000] volt",'
        b'"ref":{"boot":"5f3a9c1e","seq":1205},"ts":1767225604000,"v":1}',
    ),
    "gw_status": (
        {
            "v": 1,
            "kind": "status",
            "gw": "gw-nord-1",
            "boot": "0c9d8e7f",
            "seq": 0,
            "ts": T,
            "state": "online",
            "role": "gateway",
            "fw": "0.1.0",
        },
        b'{"boot":"0c9d8e7f","fw":"0.1.0","gw":"gw-nord-1","kind":"status","role":"gateway",'
        b'"seq":0,"state":"online","ts":1767225600000,"v":1}',
    ),
    "gw_cmd": (
        {
            "v": 1,
            "kind": "cmd",
            "gw": "gw-nord-1",
            "id": "c-7f2e09",
            "name": "resend",
            "args": {"from_ts": T - 3600000},
            "ts": T,
            "exp": T + 600000,
        },
        b'{"args":{"from_ts":1767222000000},"exp":1767226200000,"gw":"gw-nord-1",'
        b'"id":"c-7f2e09","kind":"cmd","name":"resend","ts":1767225600000,"v":1}',
    ),
    "batch": (
        {
            "v": 1,
            "kind": "batch",
            "gw": "gw-nord-1",
            "boot": "0c9d8e7f",
            "seq": 88,
            "ts": T + 5000,
            "msgs": [
                {
                    "topic": "lumeau/v1/dev/leak-0107/up/telemetry",
                    "payload": {
                        "v": 1,
                        "kind": "telemetry",
                        "dev": "leak-0107",
                        "boot": "a1b2c3d4e5f60718",
                        "seq": 2,
                        "ts": T + 4000,
                        "readings": [
                            {
                                "ts": T + 3000,
                                "ch": 0,
                                "values": {
                                    "noise_rms_db": 31.2,
                                    "noise_min_db": 27.9,
                                    "noise_spread_db": 3.3,
                                    "battery_v": 3.58,
                                },
                            }
                        ],
                    },
                }
            ],
        },
        b'{"boot":"0c9d8e7f","gw":"gw-nord-1","kind":"batch","msgs":[{"payload":'
        b'{"boot":"a1b2c3d4e5f60718","dev":"leak-0107","kind":"telemetry","readings":['
        b'{"ch":0,"ts":1767225603000,"values":{"battery_v":3.58,"noise_min_db":27.9,'
        b'"noise_rms_db":31.2,"noise_spread_db":3.3}}],"seq":2,"ts":1767225604000,"v":1},'
        b'"topic":"lumeau/v1/dev/leak-0107/up/telemetry"}],"seq":88,"ts":1767225605000,"v":1}',
    ),
    "recording": (
        {
            "v": 1,
            "kind": "recording",
            "dev": "leak-0107",
            "boot": "a1b2c3d4e5f60718",
            "seq": 20,
            "ts": T + 60000,
            "rec": "a1b2c3d4e5f60718-3",
            "part": 0,
            "parts": 2,
            "t0_us": T * 1000 + 123456,
            "fs": 8000,
            "fmt": "s16le",
            "n": 4,
            "clock": {"src": "ntp", "unc_us": 850, "age_s": 412},
            "data": "AAABAP//AIA=",  # samples 0, 1, -1, -32768 (little-endian)
        },
        b'{"boot":"a1b2c3d4e5f60718","clock":{"age_s":412,"src":"ntp","unc_us":850},'
        b'"data":"AAABAP//AIA=","dev":"leak-0107","fmt":"s16le","fs":8000,"kind":"recording",'
        b'"n":4,"part":0,"parts":2,"rec":"a1b2c3d4e5f60718-3","seq":20,'
        b'"t0_us":1767225600123456,"ts":1767225660000,"v":1}',
    ),
    "recording_last": (
        {
            "v": 1,
            "kind": "recording",
            "dev": "leak-0107",
            "boot": "a1b2c3d4e5f60718",
            "seq": 21,
            "ts": T + 60000,
            "rec": "a1b2c3d4e5f60718-3",
            "part": 1,
            "parts": 2,
            "t0_us": T * 1000 + 123456,
            "fs": 8000,
            "fmt": "s16le",
            "n": 2,
            "clock": {"src": "ntp", "unc_us": 850, "age_s": 412},
            "data": "/38CAA==",  # samples 32767, 2
            # SHA-256 of the 12 bytes of both parts
            "sha256": "ab4ed2d7d84d210b7e031553b17af6a5814b467bf23243e032655c336e953369",
        },
        b'{"boot":"a1b2c3d4e5f60718","clock":{"age_s":412,"src":"ntp","unc_us":850},'
        b'"data":"/38CAA==","dev":"leak-0107","fmt":"s16le","fs":8000,"kind":"recording",'
        b'"n":2,"part":1,"parts":2,"rec":"a1b2c3d4e5f60718-3","seq":21,'
        b'"sha256":"ab4ed2d7d84d210b7e031553b17af6a5814b467bf23243e032655c336e953369",'
        b'"t0_us":1767225600123456,"ts":1767225660000,"v":1}',
    ),
    "cmd_get_recording": (
        {
            "v": 1,
            "kind": "cmd",
            "dev": "leak-0107",
            "id": "c-7f2e10",
            "name": "get_recording",
            "args": {"rec": "a1b2c3d4e5f60718-3", "first": 1, "last": 1},
            "ts": T + 120000,
            "exp": T + 3720000,
            "src": "api",
        },
        b'{"args":{"first":1,"last":1,"rec":"a1b2c3d4e5f60718-3"},"dev":"leak-0107",'
        b'"exp":1767229320000,"id":"c-7f2e10","kind":"cmd","name":"get_recording","src":"api",'
        b'"ts":1767225720000,"v":1}',
    ),
    "ack_get_recording": (
        {
            "v": 1,
            "kind": "ack",
            "dev": "leak-0107",
            "boot": "a1b2c3d4e5f60718",
            "seq": 22,
            "ts": T + 121000,
            "cmd": "c-7f2e10",
            "ok": True,
            "result": {"parts": 1, "recs": ["a1b2c3d4e5f60718-3"]},
        },
        b'{"boot":"a1b2c3d4e5f60718","cmd":"c-7f2e10","dev":"leak-0107","kind":"ack","ok":true,'
        b'"result":{"parts":1,"recs":["a1b2c3d4e5f60718-3"]},"seq":22,"ts":1767225721000,"v":1}',
    ),
}

TOPICS = {
    "telemetry": "lumeau/v1/dev/cab-0042/up/telemetry",
    "event": "lumeau/v1/dev/cab-0042/up/event",
    "status": "lumeau/v1/dev/leak-0107/up/status",
    "will": "lumeau/v1/dev/leak-0107/up/status",
    "ack": "lumeau/v1/dev/cab-0042/up/ack",
    "ack_err": "lumeau/v1/dev/cab-0042/up/ack",
    "cmd": "lumeau/v1/dev/cab-0042/down/cmd",
    "error": "lumeau/v1/dev/cab-0042/down/error",
    "gw_status": "lumeau/v1/gw/gw-nord-1/up/status",
    "gw_cmd": "lumeau/v1/gw/gw-nord-1/down/cmd",
    "batch": "lumeau/v1/gw/gw-nord-1/up/batch",
    "recording": "lumeau/v1/dev/leak-0107/up/recording",
    "recording_last": "lumeau/v1/dev/leak-0107/up/recording",
    "cmd_get_recording": "lumeau/v1/dev/leak-0107/down/cmd",
    "ack_get_recording": "lumeau/v1/dev/leak-0107/up/ack",
}


def golden(name: str) -> dict[str, Any]:
    return copy.deepcopy(GOLDEN[name][0])


# ------------------------------------------------------------------ golden + round trip


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_encoding(name: str) -> None:
    msg, expected = GOLDEN[name]
    assert p.encode(msg) == expected


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_round_trip_with_topic(name: str) -> None:
    msg, data = GOLDEN[name]
    assert p.decode(data, TOPICS[name]) == msg
    assert p.decode(p.encode(msg)) == msg
    assert p.topic_of(msg) == TOPICS[name]


def test_doc_examples_are_the_golden_bytes() -> None:
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)\n```", text, flags=re.S)
    in_doc = {b.strip().encode("utf-8") for b in blocks}
    for name, (_msg, data) in GOLDEN.items():
        assert data in in_doc, name + " example is missing from docs/protocol.md"
    for block in in_doc:  # every JSON example in the doc is canonical and valid
        assert p.encode(p.decode(block)) == block


def test_encode_is_stable_whatever_the_dict_order() -> None:
    msg = golden("telemetry")
    shuffled = dict(reversed(list(msg.items())))
    shuffled["readings"] = [dict(reversed(list(r.items()))) for r in msg["readings"]]
    assert p.encode(shuffled) == p.encode(msg)


def test_validate_returns_a_copy_and_does_not_mutate() -> None:
    msg = golden("telemetry")
    msg["readings"][0]["values"]["temperature_c"] = 0.1 + 0.2
    before = copy.deepcopy(msg)
    out = p.validate(msg)
    assert msg == before
    assert out["readings"][0]["values"]["temperature_c"] == 0.3
    assert out is not msg


def test_decode_accepts_bytearray_memoryview_and_str() -> None:
    msg, data = GOLDEN["ack"]
    assert p.decode(bytearray(data)) == msg
    assert p.decode(memoryview(data)) == msg
    assert p.decode(data.decode()) == msg


def test_optional_fields_round_trip() -> None:
    ev = golden("event")
    ev["ch"] = 3
    ev["detail"] = {"list": [1, 2.5, "x", None, True], "nested": {"a": {"b": 1}}}
    ack = golden("ack")
    ack["result"] = {"level_pct": 40, "schedule": [{"at": "sunset", "level_pct": 100}]}
    err = golden("error")
    del err["field"], err["ref"]
    st = golden("status")
    del st["fw"]
    cmd = golden("cmd")
    del cmd["src"]
    for m in (ev, ack, err, st, cmd):
        assert p.decode(p.encode(m)) == m


def test_unknown_metric_with_unit_suffix_is_accepted() -> None:
    msg = golden("telemetry")
    msg["readings"][0]["values"]["flux_capacitor_wh"] = 1.21e9
    msg["readings"][0]["values"]["relay_cycles_count"] = 12
    assert p.decode(p.encode(msg)) == msg


# ------------------------------------------------------------------ error codes


def enc(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def with_(name: str, path: str, value: Any) -> bytes:
    """Golden message `name` with the field at dotted `path` set (or deleted)."""
    msg: Any = golden(name)
    keys = re.findall(r"[^.\[\]]+", path)
    node = msg
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return enc(msg)


DELETE = object()

ERROR_CASES: list[tuple[str, bytes, str, str | None]] = [
    ("bad_json", b'{"v":1,', "bad_json", None),
    ("bad_utf8", b'{"v":1,"x":"\xff"}', "bad_json", None),
    # NaN and Infinity are not JSON (json.dumps writes them): bad_json everywhere
    (
        "nan_literal",
        with_("telemetry", "readings.0.values.power_w", float("nan")),
        "bad_json",
        None,
    ),
    (
        "inf_literal",
        with_("telemetry", "readings.0.values.power_w", float("inf")),
        "bad_json",
        None,
    ),
    ("not_object", b"[1,2]", "not_object", None),
    ("not_object_str", b'"hi"', "not_object", None),
    ("too_large", b'{"v":1,"pad":"' + b"x" * p.MAX_DEVICE_PAYLOAD + b'"}', "too_large", None),
    ("missing_v", with_("ack", "v", DELETE), "missing_field", "v"),
    ("missing_kind", with_("ack", "kind", DELETE), "missing_field", "kind"),
    ("missing_dev", with_("ack", "dev", DELETE), "missing_field", "dev"),
    ("missing_seq", with_("ack", "seq", DELETE), "missing_field", "seq"),
    (
        "missing_reading_ch",
        with_("telemetry", "readings.1.ch", DELETE),
        "missing_field",
        "readings[1].ch",
    ),
    ("ack_false_without_err", with_("ack", "ok", False), "missing_field", "err"),
    ("bad_type_seq", with_("ack", "seq", "12"), "bad_type", "seq"),
    ("bad_type_seq_bool", with_("ack", "seq", True), "bad_type", "seq"),
    ("bad_type_ts_float", with_("ack", "ts", 1767225600000.0), "bad_type", "ts"),
    ("bad_type_v", with_("ack", "v", "1"), "bad_type", "v"),
    ("bad_type_readings", with_("telemetry", "readings", {}), "bad_type", "readings"),
    (
        "bad_type_value",
        with_("telemetry", "readings.1.values.power_w", "1250"),
        "bad_type",
        "readings[1].values.power_w",
    ),
    (
        "bad_type_value_bool",
        with_("telemetry", "readings.1.values.power_w", True),
        "bad_type",
        "readings[1].values.power_w",
    ),
    (
        "bad_type_bool_metric_float",
        with_("telemetry", "readings.0.values.door_bool", 1.0),
        "bad_type",
        "readings[0].values.door_bool",
    ),
    (
        "bad_type_count_float",
        with_("telemetry", "readings.0.values.queue_count", 2.5),
        "bad_type",
        "readings[0].values.queue_count",
    ),
    ("bad_type_active", with_("event", "active", 1), "bad_type", "active"),
    ("bad_type_detail", with_("event", "detail", [1]), "bad_type", "detail"),
    ("bad_type_args", with_("cmd", "args", None), "bad_type", "args"),
    ("bad_value_boot", with_("ack", "boot", "5F3A9C1E"), "bad_value", "boot"),
    ("bad_value_boot_short", with_("ack", "boot", "5f3a9c"), "bad_value", "boot"),
    ("bad_value_dev", with_("ack", "dev", "Cab/42"), "bad_value", "dev"),
    ("bad_value_dev_long", with_("ack", "dev", "a" * 65), "bad_value", "dev"),
    ("bad_value_sev", with_("event", "sev", "fatal"), "bad_value", "sev"),
    ("bad_value_code", with_("event", "code", "Door-Open"), "bad_value", "code"),
    ("bad_value_state", with_("status", "state", "asleep"), "bad_value", "state"),
    ("bad_value_role", with_("status", "role", "gateway"), "bad_value", "role"),
    ("bad_value_gw_role", with_("gw_status", "role", "cabinet"), "bad_value", "role"),
    ("bad_value_fw", with_("status", "fw", "1.2 beta"), "bad_value", "fw"),
    (
        "bad_value_metric_suffix",
        with_("telemetry", "readings.0.values.power_kw", 1.0),
        "bad_value",
        "readings[0].values.power_kw",
    ),
    (
        "bad_value_metric_name",
        with_("telemetry", "readings.0.values.Power_w", 1.0),
        "bad_value",
        "readings[0].values.Power_w",
    ),
    (
        "bad_value_bool_metric",
        with_("telemetry", "readings.0.values.door_bool", 2),
        "bad_value",
        "readings[0].values.door_bool",
    ),
    ("bad_value_empty_readings", with_("telemetry", "readings", []), "bad_value", "readings"),
    (
        "bad_value_empty_values",
        with_("telemetry", "readings.0.values", {}),
        "bad_value",
        "readings[0].values",
    ),
    ("bad_value_exp_before_ts", with_("cmd", "exp", T), "bad_value", "exp"),
    ("bad_value_err_when_ok", with_("ack", "err", {"code": "x", "reason": ""}), "bad_value", "err"),
    (
        "bad_value_surrogate",
        b'{"v":1,"kind":"error","dev":"d","ts":1767225600000,"code":"x","reason":"\\ud800"}',
        "bad_value",
        "reason",
    ),
    (
        "out_of_range_metric",
        with_("telemetry", "readings.1.values.voltage_v", 1250.0),
        "out_of_range",
        "readings[1].values.voltage_v",
    ),
    (
        "out_of_range_level",
        with_("telemetry", "readings.1.values.level_pct", 101),
        "out_of_range",
        "readings[1].values.level_pct",
    ),
    (
        "out_of_range_generic",
        with_("telemetry", "readings.0.values.x_w", 1e16),
        "out_of_range",
        "readings[0].values.x_w",
    ),
    (
        "out_of_range_count",
        with_("telemetry", "readings.0.values.x_count", -1),
        "out_of_range",
        "readings[0].values.x_count",
    ),
    ("out_of_range_seq", with_("ack", "seq", 2**31), "out_of_range", "seq"),
    ("out_of_range_seq_neg", with_("ack", "seq", -1), "out_of_range", "seq"),
    ("out_of_range_ts_unsynced", with_("ack", "ts", 946684800000), "out_of_range", "ts"),
    ("out_of_range_ch", with_("telemetry", "readings.0.ch", 256), "out_of_range", "readings[0].ch"),
    ("out_of_range_free_int", with_("cmd", "args.ch", 2**60), "out_of_range", "args.ch"),
    ("unknown_kind", with_("ack", "kind", "selfie"), "unknown_kind", "kind"),
    # "recording" was reserved (unknown_kind) until v1 defined it: an ack relabelled
    # as a recording now fails on the ack's own fields
    ("ack_relabelled_recording", with_("ack", "kind", "recording"), "unknown_field", "cmd"),
    ("recording_from_gateway", with_("gw_status", "kind", "recording"), "unknown_kind", "kind"),
    ("kind_not_for_gateway", with_("gw_status", "kind", "telemetry"), "unknown_kind", "kind"),
    ("kind_not_for_device", with_("ack", "kind", "batch"), "unknown_kind", "kind"),
    ("bad_version", with_("ack", "v", 2), "bad_version", "v"),
    ("unknown_field", with_("event", "sevv", "info"), "unknown_field", "sevv"),
    (
        "unknown_field_reading",
        with_("telemetry", "readings.0.unit", "W"),
        "unknown_field",
        "readings[0].unit",
    ),
    ("unknown_field_err", with_("ack_err", "err.detail", 1), "unknown_field", "err.detail"),
    ("both_dev_and_gw", with_("ack", "gw", "gw-1"), "unknown_field", "gw"),
    # ---- recording
    ("rec_missing", with_("recording", "rec", DELETE), "missing_field", "rec"),
    ("rec_missing_data", with_("recording", "data", DELETE), "missing_field", "data"),
    (
        "rec_missing_clock_unc",
        with_("recording", "clock.unc_us", DELETE),
        "missing_field",
        "clock.unc_us",
    ),
    ("rec_bad_type_rec", with_("recording", "rec", 3), "bad_type", "rec"),
    ("rec_bad_value_rec", with_("recording", "rec", "Rec 3"), "bad_value", "rec"),
    ("rec_part_equals_parts", with_("recording", "part", 2), "out_of_range", "part"),
    ("rec_part_negative", with_("recording", "part", -1), "out_of_range", "part"),
    ("rec_part_string", with_("recording", "part", "0"), "bad_type", "part"),
    ("rec_parts_zero", with_("recording", "parts", 0), "out_of_range", "parts"),
    ("rec_parts_too_many", with_("recording", "parts", p.MAX_REC_PARTS + 1), "too_large", "parts"),
    ("rec_t0_float", with_("recording", "t0_us", 1767225600123456.0), "bad_type", "t0_us"),
    # milliseconds where microseconds are due: 1970 in microseconds
    ("rec_t0_in_ms", with_("recording", "t0_us", T + 123), "out_of_range", "t0_us"),
    ("rec_t0_2100", with_("recording", "t0_us", p.T0_US_MAX), "out_of_range", "t0_us"),
    ("rec_fs_low", with_("recording", "fs", 99), "out_of_range", "fs"),
    ("rec_fs_high", with_("recording", "fs", 192001), "out_of_range", "fs"),
    ("rec_fs_float", with_("recording", "fs", 8000.0), "bad_type", "fs"),
    ("rec_fmt", with_("recording", "fmt", "s24le"), "bad_value", "fmt"),
    ("rec_n_zero", with_("recording", "n", 0), "out_of_range", "n"),
    ("rec_n_too_many", with_("recording", "n", p.MAX_REC_SAMPLES + 1), "too_large", "n"),
    ("rec_n_disagrees_with_data", with_("recording", "n", 3), "bad_value", "n"),
    ("rec_data_not_base64", with_("recording", "data", "AAAB*P//AIA="), "bad_value", "data"),
    ("rec_data_newline", with_("recording", "data", "AAABAP//AIA=\n"), "bad_value", "data"),
    ("rec_data_urlsafe", with_("recording", "data", "AAABAP__AIA="), "bad_value", "data"),
    ("rec_data_no_padding", with_("recording", "data", "AAABAP//AIA"), "bad_value", "data"),
    ("rec_data_pad_bits", with_("recording", "data", "/38CAB=="), "bad_value", "data"),
    ("rec_data_pad_inside", with_("recording", "data", "AA==AAAA"), "bad_value", "data"),
    ("rec_data_non_ascii", with_("recording", "data", "AAABAP//AIé="), "bad_value", "data"),
    ("rec_data_odd_bytes", with_("recording", "data", "AAAB"), "bad_value", "data"),
    ("rec_data_empty", with_("recording", "data", ""), "bad_value", "data"),
    ("rec_data_bytes_list", with_("recording", "data", [0, 1]), "bad_type", "data"),
    (
        "rec_data_too_long",
        with_("recording", "data", "A" * (p.MAX_REC_DATA + 4)),
        "too_large",
        "data",
    ),
    ("rec_clock_not_object", with_("recording", "clock", "ntp"), "bad_type", "clock"),
    ("rec_clock_src", with_("recording", "clock.src", "wifi"), "bad_value", "clock.src"),
    (
        "rec_clock_unc_negative",
        with_("recording", "clock.unc_us", -1),
        "out_of_range",
        "clock.unc_us",
    ),
    ("rec_clock_age_float", with_("recording", "clock.age_s", 1.5), "bad_type", "clock.age_s"),
    (
        "rec_clock_extra",
        with_("recording", "clock.drift_ppm", 2),
        "unknown_field",
        "clock.drift_ppm",
    ),
    ("rec_sha256_not_last", with_("recording", "sha256", "0" * 64), "bad_value", "sha256"),
    ("rec_sha256_upper", with_("recording_last", "sha256", "AB" * 32), "bad_value", "sha256"),
    ("rec_sha256_short", with_("recording_last", "sha256", "ab" * 31), "bad_value", "sha256"),
    ("rec_unknown_field", with_("recording", "offset", 0), "unknown_field", "offset"),
    (
        "too_many_readings",
        with_(
            "telemetry",
            "readings",
            [{"ts": T, "ch": 0, "values": {"a_w": 1}}] * (p.MAX_READINGS + 1),
        ),
        "too_large",
        "readings",
    ),
    (
        "too_long_reason",
        with_("error", "reason", "x" * (p.MAX_TEXT_LEN + 1)),
        "too_large",
        "reason",
    ),
    (
        "too_big_detail",
        with_("event", "detail", {"k" + str(i): i for i in range(40)}),
        "too_large",
        "detail.k38",
    ),
    (
        "too_deep_args",
        with_("cmd", "args", {"a": {"b": {"c": {"d": {"e": 1}}}}}),
        "too_large",
        "args.a.b.c.d",
    ),
]


@pytest.mark.parametrize(
    ("case", "data", "code", "field"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES]
)
def test_error_code_and_field(case: str, data: bytes, code: str, field: str | None) -> None:
    with pytest.raises(ProtocolError) as info:
        p.decode(data)
    err = info.value
    assert (err.code, err.field) == (code, field), err.reason
    assert err.code in p.ERROR_CODES
    if field is not None:
        assert err.reason.startswith(field + ": ")


def test_every_error_code_has_a_case() -> None:
    codes = {c[2] for c in ERROR_CASES} | {"bad_topic", "topic_mismatch"}
    assert codes == set(p.ERROR_CODES)


def test_reasons_name_the_value_and_the_limit() -> None:
    with pytest.raises(ProtocolError) as info:
        p.decode(with_("telemetry", "readings.1.values.voltage_v", 1250.0))
    assert info.value.reason == ("readings[1].values.voltage_v: 1250.0 is outside [0, 1000] volt")
    with pytest.raises(ProtocolError) as info:
        p.decode(with_("ack", "seq", 2**31))
    assert "2147483648" in info.value.reason and "2147483647" in info.value.reason


def test_protocol_error_is_a_value_error() -> None:
    err = ProtocolError("bad_value", "x: nope", "x")
    assert isinstance(err, ValueError)
    assert str(err) == "bad_value: x: nope"
    assert (err.code, err.reason, err.field) == ("bad_value", "x: nope", "x")


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(ProtocolError) as info:
        p.decode(12)
    assert info.value.code == "bad_type"
    with pytest.raises(ProtocolError) as info:
        p.decode("\ud800")
    assert info.value.code == "bad_json"


def test_error_reply_about_a_key_with_a_lone_surrogate_is_valid() -> None:
    with pytest.raises(ProtocolError) as info:
        p.decode(b'{"v":1,"kind":"event","dev":"d","\\udc00x":1}')
    assert info.value.code == "unknown_field"
    reply = p.error_reply(info.value, "d", T)
    assert "\ufffd" in reply["reason"] and "\ufffd" in reply["field"]
    assert p.decode(p.encode(reply)) == reply


def test_deep_json_is_bad_json_not_recursion_error() -> None:
    data = b"[" * 5000 + b"]" * 5000
    with pytest.raises(ProtocolError) as info:
        p.decode(data, "lumeau/v1/gw/g/up/batch")
    assert info.value.code in ("bad_json", "not_object")


# ------------------------------------------------------------------ topics


def test_topic_builders() -> None:
    assert p.uplink_topic("cab-0042", "telemetry") == "lumeau/v1/dev/cab-0042/up/telemetry"
    assert p.uplink_topic("leak.7_a", "recording") == "lumeau/v1/dev/leak.7_a/up/recording"
    assert p.downlink_topic("cab-0042", "cmd") == "lumeau/v1/dev/cab-0042/down/cmd"
    assert p.downlink_topic("cab-0042", "error") == "lumeau/v1/dev/cab-0042/down/error"
    assert p.gateway_topic("gw-1", "up", "batch") == "lumeau/v1/gw/gw-1/up/batch"
    assert p.gateway_topic("gw-1", "up", "status") == "lumeau/v1/gw/gw-1/up/status"
    assert p.gateway_topic("gw-1", "down", "cmd") == "lumeau/v1/gw/gw-1/down/cmd"


@pytest.mark.parametrize(
    "call",
    [
        lambda: p.uplink_topic("cab-0042", "cmd"),
        lambda: p.uplink_topic("+", "telemetry"),
        lambda: p.uplink_topic("a/b", "telemetry"),
        lambda: p.uplink_topic("", "telemetry"),
        lambda: p.downlink_topic("cab", "telemetry"),
        lambda: p.gateway_topic("gw-1", "up", "cmd"),
        lambda: p.gateway_topic("gw-1", "down", "batch"),
        lambda: p.gateway_topic("gw-1", "sideways", "cmd"),
        lambda: p.gateway_topic("GW", "up", "batch"),
    ],
)
def test_topic_builders_reject(call: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        call()
    assert info.value.code == "bad_topic"


def test_parse_topic() -> None:
    assert p.parse_topic("lumeau/v1/dev/cab-0042/up/telemetry") == (
        "dev",
        "cab-0042",
        "up",
        "telemetry",
    )
    assert p.parse_topic(b"lumeau/v1/gw/gw-1/down/cmd") == ("gw", "gw-1", "down", "cmd")
    assert p.parse_topic("lumeau/v1/dev/x/up/recording")[3] == "recording"


@pytest.mark.parametrize(
    "topic",
    [
        "lumeau/v2/dev/x/up/telemetry",
        "lumeau/v1/dev/x/up",
        "lumeau/v1/dev/x/up/telemetry/extra",
        "lumeau/v1/dev/X/up/telemetry",
        "lumeau/v1/dev//up/telemetry",
        "lumeau/v1/dev/x/down/telemetry",
        "lumeau/v1/dev/x/up/cmd",
        "lumeau/v1/dev/x/up/batch",
        "lumeau/v1/gw/x/up/telemetry",
        "lumeau/v1/gw/x/down/error",
        "lumeau/v1/site/x/up/status",
        "lumeau/v1/dev/x/left/cmd",
        "",
        b"\xff",
        None,
    ],
)
def test_parse_topic_rejects(topic: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        p.parse_topic(topic)
    assert info.value.code == "bad_topic"
    assert info.value.field is None


def test_decode_bad_topic() -> None:
    with pytest.raises(ProtocolError) as info:
        p.decode(GOLDEN["ack"][1], "lumeau/v1/dev/cab-0042/up/nope")
    assert info.value.code == "bad_topic"


@pytest.mark.parametrize(
    ("name", "topic", "field"),
    [
        ("ack", "lumeau/v1/dev/cab-0043/up/ack", "dev"),
        ("ack", "lumeau/v1/dev/cab-0042/up/event", "kind"),
        ("cmd", "lumeau/v1/gw/cab-0042/down/cmd", "dev"),
        ("gw_cmd", "lumeau/v1/dev/gw-nord-1/down/cmd", "gw"),
        ("gw_status", "lumeau/v1/gw/gw-nord-2/up/status", "gw"),
    ],
)
def test_topic_mismatch(name: str, topic: str, field: str) -> None:
    with pytest.raises(ProtocolError) as info:
        p.decode(GOLDEN[name][1], topic)
    assert (info.value.code, info.value.field) == ("topic_mismatch", field)


# ------------------------------------------------------------------ limits


def big_telemetry(n_readings: int, n_values: int) -> dict[str, Any]:
    msg = golden("telemetry")
    values = {"m" + str(i) + "_w": 1000.125 + i for i in range(n_values)}
    msg["readings"] = [{"ts": T + i, "ch": 1, "values": values} for i in range(n_readings)]
    return msg


def test_device_payload_limit_on_encode_and_decode() -> None:
    msg = big_telemetry(p.MAX_READINGS, 8)
    with pytest.raises(ProtocolError) as info:
        p.encode(msg)
    assert info.value.code == "too_large"
    assert str(p.MAX_DEVICE_PAYLOAD) in info.value.reason
    data = json.dumps(msg).encode()
    assert len(data) > p.MAX_DEVICE_PAYLOAD
    with pytest.raises(ProtocolError) as info:
        p.decode(data)
    assert info.value.code == "too_large"
    with pytest.raises(ProtocolError) as info:
        p.decode(data, TOPICS["telemetry"])
    assert info.value.code == "too_large"


def test_message_just_under_the_limit_passes() -> None:
    msg = golden("error")
    msg["reason"] = "x" * p.MAX_TEXT_LEN
    data = p.encode(msg)
    assert len(data) <= p.MAX_DEVICE_PAYLOAD
    assert p.decode(data) == msg


def test_too_many_values() -> None:
    with pytest.raises(ProtocolError) as info:
        p.encode(big_telemetry(1, p.MAX_VALUES + 1))
    assert (info.value.code, info.value.field) == ("too_large", "readings[0].values")


def test_batch_payload_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    inner = GOLDEN["batch"][0]["msgs"][0]
    batch = golden("batch")
    batch["msgs"] = [copy.deepcopy(inner) for _ in range(p.MAX_BATCH_MSGS)]
    data = p.encode(batch)  # 1000 small device messages fit in one batch
    assert p.MAX_DEVICE_PAYLOAD < len(data) <= p.MAX_BATCH_PAYLOAD
    assert p.decode(data, TOPICS["batch"])["msgs"][999] == inner
    batch["msgs"].append(copy.deepcopy(inner))
    with pytest.raises(ProtocolError) as info:
        p.encode(batch)
    assert (info.value.code, info.value.field) == ("too_large", "msgs")
    with pytest.raises(ProtocolError) as info:
        p.decode(b" " * (p.MAX_BATCH_PAYLOAD + 1))
    assert info.value.code == "too_large"
    monkeypatch.setattr(p, "MAX_BATCH_PAYLOAD", len(data) - 1)
    with pytest.raises(ProtocolError) as info:
        p.encode(p.decode(data))
    assert (info.value.code, info.value.field) == ("too_large", None)


# ------------------------------------------------------------------ batches


def batch_with(entries: list[Any]) -> bytes:
    batch = golden("batch")
    batch["msgs"] = entries
    return enc(batch)


def test_decode_batch_separates_good_and_bad() -> None:
    good_entry = GOLDEN["batch"][0]["msgs"][0]
    bad_reading = copy.deepcopy(good_entry)
    bad_reading["payload"]["readings"][0]["values"]["battery_v"] = 99.0
    spoof = {"topic": "lumeau/v1/dev/leak-0999/up/telemetry", "payload": good_entry["payload"]}
    entries = [
        good_entry,
        bad_reading,
        "not an entry",
        {"topic": "lumeau/v1/dev/x/down/cmd", "payload": GOLDEN["cmd"][0]},
        spoof,
        {"topic": TOPICS["ack"], "payload": GOLDEN["ack"][0], "extra": 1},
        {"topic": TOPICS["ack"], "payload": "{}"},
        {"topic": "nope", "payload": {}},
        {"topic": TOPICS["ack"], "payload": GOLDEN["ack"][0]},
    ]
    env, good, bad = p.decode_batch(batch_with(entries), TOPICS["batch"])
    assert env["gw"] == "gw-nord-1" and env["seq"] == 88 and env["msgs"] == entries
    assert good == [good_entry["payload"], GOLDEN["ack"][0]]
    got = [(i, e.code, e.field) for i, e in bad]
    assert got == [
        (1, "out_of_range", "readings[0].values.battery_v"),
        (2, "not_object", None),
        (3, "bad_topic", "topic"),
        (4, "topic_mismatch", "dev"),
        (5, "unknown_field", "extra"),
        (6, "not_object", "payload"),
        (7, "bad_topic", "topic"),
    ]
    for _i, e in bad:
        assert isinstance(e, ProtocolError)


@pytest.mark.parametrize(
    ("data", "topic", "code", "field"),
    [
        (b"{", None, "bad_json", None),
        (b"[]", None, "not_object", None),
        (enc({**GOLDEN["batch"][0], "v": 2}), None, "bad_version", "v"),
        (enc({**GOLDEN["batch"][0], "seq": -1}), None, "out_of_range", "seq"),
        (enc({**GOLDEN["batch"][0], "msgs": {}}), None, "bad_type", "msgs"),
        (enc({**GOLDEN["batch"][0], "msgs": []}), None, "bad_value", "msgs"),
        (GOLDEN["ack"][1], None, "bad_value", "kind"),
        (GOLDEN["batch"][1], "lumeau/v1/gw/other/up/batch", "topic_mismatch", "gw"),
        (GOLDEN["batch"][1], "lumeau/v1/gw/gw-nord-1/up/status", "topic_mismatch", "kind"),
    ],
)
def test_decode_batch_envelope_errors(
    data: bytes, topic: str | None, code: str, field: str | None
) -> None:
    with pytest.raises(ProtocolError) as info:
        p.decode_batch(data, topic)
    assert (info.value.code, info.value.field) == (code, field)


def test_strict_batch_validation_prefixes_inner_fields() -> None:
    batch = golden("batch")
    batch["msgs"][0]["payload"]["readings"][0]["ts"] = 5
    with pytest.raises(ProtocolError) as info:
        p.validate(batch)
    assert info.value.field == "msgs[0].payload.readings[0].ts"
    assert info.value.reason.startswith("msgs[0].payload.readings[0].ts: 5 ms is outside")
    batch = golden("batch")
    batch["msgs"][0]["topic"] = "lumeau/v1/dev/other/up/telemetry"
    with pytest.raises(ProtocolError) as info:
        p.validate(batch)
    assert (info.value.code, info.value.field) == ("topic_mismatch", "msgs[0].payload.dev")


# ------------------------------------------------------------------ error replies


def test_error_reply_from_a_decode_failure() -> None:
    bad = with_("telemetry", "readings.0.values.voltage_v", 1250.0)
    with pytest.raises(ProtocolError) as info:
        p.decode(bad)
    offending = json.loads(bad)
    reply = p.error_reply(info.value, "cab-0042", T + 4000, offending)
    want = golden("error")
    want["ref"]["seq"] = 1201
    assert reply == want
    assert p.decode(p.encode(reply), TOPICS["error"]) == reply


def test_error_reply_without_usable_ref_and_long_reason() -> None:
    err = ProtocolError("bad_json", "y" * 500)
    reply = p.error_reply(err, "cab-0042", T, {"boot": "NOT-HEX!", "seq": 1})
    assert "ref" not in reply and "field" not in reply
    assert len(reply["reason"]) == p.MAX_TEXT_LEN and reply["reason"].endswith("...")
    reply = p.error_reply(err, "cab-0042", T, {"boot": "abcdef12", "seq": 3, "extra": 1})
    assert reply["ref"] == {"boot": "abcdef12", "seq": 3}


# ------------------------------------------------------------------ numbers and strings


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0.0"),
        (-0.0, "0.0"),
        (1.0, "1.0"),
        (-2.5, "-2.5"),
        (230.1, "230.1"),
        (0.1 + 0.2, "0.3"),
        (1250.0, "1250.0"),
        (100000.0, "100000.0"),
        (0.0001, "0.0001"),
        (0.00012, "0.00012"),
        (1.5e-7, "1.5e-7"),
        (1e-5, "1e-5"),
        (1e16, "1e16"),
        (9999999999999998.0, "1e16"),
        (1234567890123456.0, "1234567890120000.0"),
        (2.5e20, "2.5e20"),
        (123456789.123456789, "123456789.123"),
        (0.5, "0.5"),
        (1 / 3, "0.333333333333"),
        (2 / 3, "0.666666666667"),
        (5e-324, "4.94065645841e-324"),
        (1.7976931348623157e308, "1.79769313486e308"),
    ],
)
def test_float_text(value: float, text: str) -> None:
    assert p.format_float(value) == text
    assert isinstance(json.loads(text), float)
    assert p.format_float(float(text)) == text


def test_exact_digits_agree_with_cpython_formatting_on_hard_cases() -> None:
    hard = [
        0.5,
        2.5e-5,
        1.0000000000005,  # just above a tie
        1.0000000000015,
        999999999999.5,
        999999999999.4,
        9.999999999995,
        123456789012.5,
        2.0**-1074,
        2.0**1023,
        1e22,
        1e23,
        4.35,
    ]
    for x in hard:
        s = format(x, ".11e")
        assert canonjson.exact_parts(x) == (s[0] + s[2:13], int(s[14:])), x


def test_non_finite_float_cannot_be_encoded() -> None:
    with pytest.raises(ProtocolError):
        p.canonical_json(float("nan"))
    with pytest.raises(ProtocolError):
        p.canonical_json([float("-inf")])


def test_string_escapes_and_utf8() -> None:
    s = 'quote" back\\ nl\n tab\t cr\r bs\b ff\f nul\x00 esc\x1b del\x7f é 水 😀'
    data = p.canonical_json(s)
    assert data == json.dumps(s, ensure_ascii=False, separators=(",", ":")).encode()
    assert b"\\u001b" in data and b"\\u0000" in data
    assert "é 水 😀".encode() in data
    assert json.loads(data) == s


def test_canonical_json_rejects_non_json() -> None:
    with pytest.raises(ProtocolError):
        p.canonical_json({1: 2})
    with pytest.raises(ProtocolError):
        p.canonical_json({"a": object()})


def test_ints_stay_ints_and_floats_stay_floats() -> None:
    msg = golden("telemetry")
    out = p.decode(p.encode(msg))
    vals = out["readings"][1]["values"]
    assert type(vals["power_w"]) is float and type(vals["level_pct"]) is int
    assert type(vals["energy_wh"]) is int


def test_new_boot_id() -> None:
    assert p.new_boot_id(bytes(range(8))) == "0001020304050607"
    assert p.new_boot_id(b"\xff" * 20) == "f" * 16
    assert p.new_boot_id(b"\xab\xcd\xef\x01") == "abcdef01"
    with pytest.raises(ValueError):
        p.new_boot_id(b"\x00")


# ------------------------------------------------------------------ recording


def test_recording_is_a_defined_uplink_kind_now() -> None:
    assert "recording" in p.UPLINK_KINDS
    assert p.RESERVED_KINDS == ()
    msg = golden("recording")
    assert p.decode(p.encode(msg), "lumeau/v1/dev/leak-0107/up/recording") == msg
    with pytest.raises(ProtocolError) as info:  # still a device uplink only
        p.decode(p.encode(msg), "lumeau/v1/dev/leak-0107/up/telemetry")
    assert (info.value.code, info.value.field) == ("topic_mismatch", "kind")


def test_recording_size_constants_agree() -> None:
    width = p.REC_FORMATS["s16le"]
    assert width * p.MAX_REC_SAMPLES == p.MAX_REC_BYTES
    assert p.MAX_REC_BYTES % 3 == 0  # a full chunk's base64 has no padding
    assert p.MAX_REC_DATA == p.MAX_REC_BYTES // 3 * 4
    assert p.T0_US_MIN == p.TS_MIN * 1000 and p.T0_US_MAX == p.TS_MAX * 1000


def worst_case_recording() -> dict[str, Any]:
    """Every field at its longest: the largest recording message there can be."""
    return {
        "v": 1,
        "kind": "recording",
        "dev": "d" * p.MAX_ID_LEN,
        "boot": "f" * p.BOOT_MAX_LEN,
        "seq": p.SEQ_MAX,
        "ts": p.TS_MAX - 1,
        "rec": "r" * p.MAX_ID_LEN,
        "part": p.MAX_REC_PARTS - 1,
        "parts": p.MAX_REC_PARTS,
        "t0_us": p.T0_US_MAX - 1,
        "fs": p.REC_FS_MAX,
        "fmt": "s16le",
        "n": p.MAX_REC_SAMPLES,
        "clock": {"src": "gps", "unc_us": p.MAX_CLOCK_UNC_US, "age_s": p.MAX_CLOCK_AGE_S},
        "data": base64.b64encode(b"\xff" * p.MAX_REC_BYTES).decode(),
        "sha256": "f" * 64,
    }


def test_the_largest_recording_chunk_fits_the_device_limit() -> None:
    data = p.encode(worst_case_recording())
    assert len(data) == 7958  # the figure of docs/protocol.md
    assert len(data) + 1 <= p.MAX_DEVICE_PAYLOAD  # + the firmware spool's kind letter
    assert len(data) - p.MAX_REC_DATA == 470  # everything but the samples


def test_recording_chunks_reassemble_to_the_original_bytes() -> None:
    rnd = random.Random(3)
    raw = bytes(rnd.getrandbits(8) for _ in range(2 * 7000))
    per = p.MAX_REC_SAMPLES * 2
    pieces = [raw[i : i + per] for i in range(0, len(raw), per)]
    digest = hashlib.sha256(raw).hexdigest()
    got = b""
    for part, piece in enumerate(pieces):
        msg = golden("recording")
        msg.update(
            part=part, parts=len(pieces), n=len(piece) // 2, seq=100 + part,
            data=base64.b64encode(piece).decode(),
        )  # fmt: skip
        if part == len(pieces) - 1:
            msg["sha256"] = digest
        wire = p.encode(msg)
        assert len(wire) <= p.MAX_DEVICE_PAYLOAD
        back = p.decode(wire, p.topic_of(msg))
        got += base64.b64decode(back["data"], validate=True)
    assert [len(x) // 2 for x in pieces] == [2808, 2808, 1384]
    assert got == raw and hashlib.sha256(got).hexdigest() == digest


def _canonical(text: str) -> bool:
    """Python's own verdict: decodes strictly and re-encodes to the same text."""
    try:
        return base64.b64encode(base64.b64decode(text, validate=True)).decode() == text
    except (ValueError, UnicodeError):
        return False


def test_base64_check_agrees_with_pythons_strict_decoder() -> None:
    rnd = random.Random(11)
    alphabet = string.ascii_letters + string.digits + "+/=-_ \n*é"
    texts = [base64.b64encode(rnd.randbytes(k)).decode() for k in range(1, 40)]
    for text in list(texts):
        for _ in range(8):  # one character changed, dropped or added
            i = rnd.randrange(len(text))
            c = rnd.choice(alphabet)
            texts += [text[:i] + c + text[i + 1 :], text[:i] + text[i + 1 :], text[:i] + c + text]
    texts += ["", "====", "A===", "AA==", "AB==", "AAA=", "AAB=", "QQ==", "QR==", "AA==AA=="]
    for text in texts:
        msg = golden("recording")
        msg["data"] = text
        size = len(base64.b64decode(text)) if _canonical(text) else -1
        if size > 0 and size % 2 == 0:
            msg["n"] = size // 2
            assert p.validate(msg)["data"] == text
            continue
        with pytest.raises(ProtocolError) as info:
            p.validate(msg)
        assert info.value.field in ("data", "n"), (text, info.value)
        assert info.value.code == "bad_value", (text, info.value)
        if size > 0:  # canonical but an odd number of bytes
            assert "whole number of 2-byte" in info.value.reason


def test_recording_reasons_say_what_is_wrong() -> None:
    def reason(name: str, path: str, value: Any) -> str:
        with pytest.raises(ProtocolError) as info:
            p.decode(with_(name, path, value))
        return info.value.reason

    assert reason("recording", "data", "AAAB*P//AIA=") == (
        "data: character \"*\" at offset 4 (canonical base64: RFC 4648 alphabet, '=' padding,"
        " no line breaks)"
    )
    assert reason("recording", "n", 3) == "n: 3 does not match data: 8 bytes = 4 s16le samples"
    assert reason("recording", "part", 2) == "part: 2 is not below parts 2"
    assert "1767225600123 us is outside [2020-01-01, 2100-01-01)" in reason(
        "recording", "t0_us", T + 123
    )
    assert reason("recording", "sha256", "0" * 64) == (
        "sha256: only the last part (1) carries the recording's sha256"
    )
    assert reason("recording", "n", 2809) == "n: 2809 samples exceed the limit of 2808 per part"


def test_recording_in_a_gateway_batch() -> None:
    inner = golden("recording_last")
    bad = golden("recording")
    bad["n"] = 5
    batch = golden("batch")
    batch["msgs"] = [
        {"topic": TOPICS["recording_last"], "payload": inner},
        {"topic": TOPICS["recording"], "payload": bad},
    ]
    _env, good, errors = p.decode_batch(p.canonical_json(batch))
    assert good == [inner]
    assert [(i, e.code, e.field) for i, e in errors] == [(1, "bad_value", "n")]
