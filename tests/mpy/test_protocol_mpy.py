"""``edge/protocol.py`` gives the same answers under MicroPython and CPython.

Every message kind is encoded and decoded in the real MicroPython interpreter
and in CPython: the bytes must be identical and the decoded dicts equal (ints
stay ints, floats bit for bit). Bad payloads must fail with the same error
code and field, and the same reason except for ``bad_json``, whose reason
quotes each interpreter's own JSON parser.

Bad JSON, bad UTF-8, NaN/Infinity, escaped surrogate pairs and deep nesting,
which MicroPython's own ``json.loads`` and ``bytes.decode`` treated differently
(findings F1-F5), are compared at the end: ``edge.strictjson`` makes both
interpreters give the same answer.
"""

from __future__ import annotations

import base64
import copy
import random
import struct
from typing import Any

import pytest

from edge import protocol as p

from .harness import (
    MicroPythonProcess,
    call_cpython,
    cpython_outcome,
    outcome_difference,
    roundtrip,
)

pytestmark = pytest.mark.micropython

M = "edge.protocol"
T = 1767225600000  # 2026-01-01T00:00:00Z, ms
BOOT = "5f3a9c1e"
DEV = "cab-0042"
LEAK = "leak-0107"
GW = "gw-nord-1"


def up(kind: str, seq: int = 1, dev: str = DEV, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "kind": kind, "dev": dev, "boot": BOOT, "seq": seq, "ts": T + seq, **fields}


def reading(ch: int, values: dict[Any, Any], dt: int = 0) -> dict[str, Any]:
    return {"ts": T + dt, "ch": ch, "values": values}


TELEMETRY = up(
    "telemetry",
    1201,
    readings=[
        reading(0, {"mains_bool": 1, "door_bool": 0, "temperature_c": 4.5}),
        reading(
            1,
            {
                "power_w": 1250.0,
                "energy_wh": 4521300,
                "voltage_v": 231.4,
                "current_a": 5.41,
                "level_pct": 70,
            },
        ),
    ],
)

VALID: dict[str, dict[str, Any]] = {
    "telemetry": TELEMETRY,
    "telemetry_awkward_floats": up(
        "telemetry",
        2,
        readings=[
            reading(
                3,
                {
                    "power_w": 0.1 + 0.2,
                    "voltage_v": 230.4,
                    "current_a": 1 / 3,
                    "reactive_power_var": -12.5,
                    "power_factor_ratio": -1.0,
                    "noise_rms_db": -0.0,
                    "level_pct": 99.999999999999,
                    "energy_wh": 999999999999.0,
                    "uptime_s": 1e10,
                    "frequency_hz": 49.99999999995,
                    "illuminance_lx": 1e-7,
                    "pressure_pa": 123456.789012345,
                    "temperature_c": -59.9999,
                },
            )
        ],
    ),
    "telemetry_unknown_metric_and_counts": up(
        "telemetry",
        3,
        readings=[
            reading(0, {"flow_custom_m3": 12.75, "queue_count": 0, "dropped_count": 12}),
            reading(255, {"rssi_dbm": -97, "snr_db": 7.25}, dt=-60000),
        ],
    ),
    "telemetry_128_readings": up(
        "telemetry",
        4,
        readings=[reading(i % 4, {"power_w": i * 10.5}, dt=-1000 * i) for i in range(128)],
    ),
    "telemetry_leak_sensor": up(
        "telemetry",
        5,
        dev=LEAK,
        readings=[
            reading(
                0,
                {
                    "battery_v": 3.58,
                    "noise_min_db": 27.9,
                    "noise_rms_db": 31.2,
                    "noise_spread_db": 3.3,
                    "noise_peak_hz": 412.0,
                },
            )
        ],
    ),
    "event": up("event", 6, code="door_open", sev="warning", active=True, detail={"input": 2}),
    "event_minimal": up("event", 7, code="reboot", sev="info", active=True),
    "event_full": up(
        "event",
        8,
        code="lamp_failure",
        sev="critical",
        active=False,
        ch=3,
        detail={
            "street": "Rue de l'Église ☃ 😀",
            "quote": 'say "hi"\\ \n\t\x01',
            "lamps": [1, 2, 3],
            "ratio": 0.1,
            "nested": {"a": [None, True, False, {"b": -(2**53)}]},
            "empty": {},
        },
    ),
    "status": up("status", 9, state="online", role="cabinet", fw="1.2.0+build.7"),
    "status_will": up("status", 0, dev=LEAK, state="offline", role="leak_sensor"),
    "status_gateway": {
        "v": 1,
        "kind": "status",
        "gw": GW,
        "boot": "a1b2c3d4e5f60718",
        "seq": 2147483647,
        "ts": T,
        "state": "online",
        "role": "gateway",
        "fw": "gw-0.1",
    },
    "ack": up("ack", 10, cmd="c-7f2e01", ok=True),
    "recording": up(
        "recording",
        20,
        dev=LEAK,
        rec="5f3a9c1e-3",
        part=0,
        parts=2,
        t0_us=T * 1000 + 123456,
        fs=8000,
        fmt="s16le",
        n=4,
        clock={"src": "ntp", "unc_us": 850, "age_s": 412},
        data="AAABAP//AIA=",
    ),
    "recording_last": up(
        "recording",
        21,
        dev=LEAK,
        rec="5f3a9c1e-3",
        part=1,
        parts=2,
        t0_us=T * 1000 + 123456,
        fs=8000,
        fmt="s16le",
        n=2,
        clock={"src": "ntp", "unc_us": 850, "age_s": 412},
        data="/38CAA==",
        sha256="ab4ed2d7d84d210b7e031553b17af6a5814b467bf23243e032655c336e953369",
    ),
    "recording_full_chunk": up(
        "recording",
        22,
        dev="d" * 64,
        rec="r" * 64,
        part=9999,
        parts=10000,
        t0_us=4102444800000000 - 1,
        fs=192000,
        fmt="s16le",
        n=2808,
        clock={"src": "gps", "unc_us": 10**12, "age_s": 2**31 - 1},
        data=base64.b64encode(bytes(range(256)) * 21 + bytes(240)).decode(),
        sha256="0123456789abcdef" * 4,
    ),
    "ack_get_recording": up(
        "ack", 23, cmd="c-7f2e10", ok=True, result={"parts": 1, "recs": ["5f3a9c1e-3"]}
    ),
    "ack_result": up("ack", 11, cmd="c-7f2e02", ok=True, result={"applied": [70, 50], "t": 1.5}),
    "ack_error": up(
        "ack",
        12,
        cmd="c-7f2e03",
        ok=False,
        err={"code": "bad_schedule", "reason": "step 3 is before step 2"},
    ),
    "cmd": {
        "v": 1,
        "kind": "cmd",
        "dev": DEV,
        "id": "c-7f2e01",
        "name": "set_schedule",
        "args": {
            "steps": [{"at": "22:00", "level_pct": 70}, {"at": "01:00", "level_pct": 30.5}],
            "tz": "Europe/Paris",
            "dim": 0.45,
        },
        "ts": T,
        "exp": T + 3600000,
        "src": "planner.api",
    },
    "cmd_gateway": {
        "v": 1,
        "kind": "cmd",
        "gw": GW,
        "id": "g-1",
        "name": "resync",
        "args": {},
        "ts": T,
        "exp": T,
    },
    "error": {
        "v": 1,
        "kind": "error",
        "dev": DEV,
        "code": "out_of_range",
        "reason": "readings[0].values.power_w: 1e6 is outside [0, 100000] watt",
        "field": "readings[0].values.power_w",
        "ref": {"boot": BOOT, "seq": 1201},
        "ts": T,
    },
    "error_minimal": {
        "v": 1,
        "kind": "error",
        "dev": DEV,
        "code": "bad_json",
        "reason": "payload is not valid JSON",
        "ts": T,
    },
}


def batch(entries: list[Any], **fields: Any) -> dict[str, Any]:
    msg = {"v": 1, "kind": "batch", "gw": GW, "boot": "0c9d8e7f", "seq": 88, "ts": T + 5000}
    msg.update(fields)
    msg["msgs"] = entries
    return msg


def entry(msg: dict[str, Any]) -> dict[str, Any]:
    return {"topic": p.topic_of(msg), "payload": msg}


DEVICE_UPLINKS = [name for name, m in VALID.items() if "dev" in m and m["kind"] in p.UPLINK_KINDS]
VALID["batch"] = batch([entry(VALID[name]) for name in DEVICE_UPLINKS])


def test_the_corpus_is_valid_and_covers_every_kind() -> None:
    for msg in VALID.values():
        p.validate(msg)
    kinds = {m["kind"] for m in VALID.values()}
    assert kinds == {"telemetry", "event", "status", "ack", "recording", "cmd", "error", "batch"}


# ---------------------------------------------------------------- valid messages


@pytest.mark.parametrize("name", list(VALID))
def test_encode_gives_identical_bytes(micropython: MicroPythonProcess, name: str) -> None:
    data = micropython.assert_same(M, "encode", VALID[name])
    assert isinstance(data, bytes)
    assert data == p.encode(VALID[name])


@pytest.mark.parametrize("name", list(VALID))
def test_decode_gives_equal_messages(micropython: MicroPythonProcess, name: str) -> None:
    msg = VALID[name]
    data = p.encode(msg)
    decoded = micropython.assert_same(M, "decode", data)
    assert decoded == p.validate(msg)
    micropython.assert_same(M, "decode", data, p.topic_of(msg))
    micropython.assert_same(M, "decode", bytearray(data), p.topic_of(msg).encode())
    micropython.assert_same(M, "decode", data.decode("utf-8"))


@pytest.mark.parametrize("name", list(VALID))
def test_micropython_round_trip_is_canonical(micropython: MicroPythonProcess, name: str) -> None:
    """Bytes encoded by MicroPython decode in CPython, and back, unchanged."""
    msg = VALID[name]
    data = micropython.call(M, "encode", msg)
    again = micropython.call(M, "encode", micropython.call(M, "decode", data))
    assert again == data
    assert p.decode(data) == micropython.call(M, "validate", msg)


def test_validate_normalises_identically(micropython: MicroPythonProcess) -> None:
    # the same message with its keys in reverse order everywhere
    def reverse(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: reverse(v[k]) for k in reversed(list(v))}
        if isinstance(v, list):
            return [reverse(x) for x in v]
        return v

    for name, msg in VALID.items():
        out = micropython.assert_same(M, "validate", reverse(msg))
        assert out == p.validate(msg), name
    # input tuples are accepted where arrays are, and normalised the same way
    micropython.assert_same(M, "canonical_json", {"a": (1, 2.50, "x"), "b": [()]})


def test_decode_batch_identical_with_good_and_bad_entries(
    micropython: MicroPythonProcess,
) -> None:
    bad_reading = copy.deepcopy(TELEMETRY)
    bad_reading["readings"][1]["values"]["power_w"] = 1e6
    entries = [
        entry(VALID["telemetry"]),
        entry(bad_reading),
        {"topic": "lumeau/v1/dev/other/up/telemetry", "payload": VALID["telemetry"]},
        {"topic": "lumeau/v1/dev/cab-0042/down/cmd", "payload": VALID["cmd"]},
        {"topic": "not/a/topic", "payload": {}},
        {"payload": VALID["event"]},
        ["not", "an", "object"],
        {"topic": p.topic_of(VALID["event"]), "payload": "text"},
        entry(VALID["event_full"]),
    ]
    data = p.canonical_json(batch(entries))
    topic = p.gateway_topic(GW, "up", "batch")
    env, good, bad = micropython.assert_same(M, "decode_batch", data, topic)
    assert env["msgs"] == entries
    assert len(good) == 2
    assert [i for i, _ in bad] == [1, 2, 3, 4, 5, 6, 7]
    assert bad[0][1].code == "out_of_range"
    assert bad[0][1].field == "readings[1].values.power_w"
    # the whole batch through the strict validator fails the same way
    micropython.assert_same_error(M, "decode", data)


def test_topics_identical(micropython: MicroPythonProcess) -> None:
    ids = [DEV, "a", "x" * 64, "x" * 65, "Cab", "", "a/b", "a+b", "é", 7, None]
    micropython.assert_same_many(
        M, "uplink_topic", [(i, k) for i in ids for k in (*p.UPLINK_KINDS, "cmd", "x")]
    )
    micropython.assert_same_many(
        M, "downlink_topic", [(i, k) for i in ids for k in (*p.DOWNLINK_KINDS, "telemetry")]
    )
    micropython.assert_same_many(
        M,
        "gateway_topic",
        [(i, d, k) for i in ids for d in ("up", "down", "sideways") for k in ("batch", "cmd")],
    )
    topics: list[Any] = [
        "lumeau/v1/dev/cab-0042/up/telemetry",
        "lumeau/v1/dev/cab-0042/up/recording",
        "lumeau/v1/dev/cab-0042/down/error",
        "lumeau/v1/gw/gw-nord-1/up/batch",
        "lumeau/v1/gw/gw-nord-1/down/cmd",
        b"lumeau/v1/dev/cab-0042/up/status",
        bytearray(b"lumeau/v1/dev/cab-0042/up/ack"),
        b"lumeau/v1/dev/\xff/up/ack",
        b"lumeau/v1/dev/\xc3/up/ack",
        b"lumeau/v1/dev/a\xc0\xafb/up/ack",  # overlong "/": MicroPython's decode() takes it
        b"lumeau/v1/dev/a\xed\xa0\x80/up/ack",  # an encoded surrogate
        "lumeau/v2/dev/cab-0042/up/telemetry",
        "lumeau/v1/dev/cab-0042/up",
        "lumeau/v1/dev/cab-0042/up/telemetry/x",
        "lumeau/v1/dev//up/telemetry",
        "lumeau/v1/dev/Cab/up/telemetry",
        "lumeau/v1/site/cab-0042/up/telemetry",
        "lumeau/v1/gw/gw-1/up/telemetry",
        "lumeau/v1/dev/cab-0042/down/cmd\x00",
        "",
        None,
        42,
    ]
    micropython.assert_same_many(M, "parse_topic", [(t,) for t in topics])
    micropython.assert_same_many(M, "topic_of", [(m,) for m in VALID.values()])


def test_error_reply_and_boot_id_identical(micropython: MicroPythonProcess) -> None:
    micropython.assert_same_many(
        M,
        "new_boot_id",
        [(bytes(range(i, i + 8)),) for i in range(0, 248, 31)] + [(b"\xff" * 16,), (b"ab",)],
    )
    # error_reply takes a ProtocolError, which is built inside each interpreter
    mod = "__import__('edge.protocol').protocol"
    for code, reason, field in (
        ("out_of_range", "seq: -1 is outside [0, 2147483647]", "seq"),
        ("bad_json", "x" * 400, None),
        ("Not A Name", "r", "f" * 300),
    ):
        for ref in (None, {"boot": BOOT, "seq": 3}, {"boot": "XYZ", "seq": 3}, VALID["ack"]):
            expr = (
                f"{mod}.error_reply({mod}.ProtocolError({code!r}, {reason!r}, {field!r}),"
                f" {DEV!r}, {T!r}, {ref!r})"
            )
            err = p.ProtocolError(code, reason, field)
            assert micropython.eval(expr) == roundtrip(p.error_reply(err, DEV, T, ref))


# ---------------------------------------------------------------- floats


def _random_floats(n: int, seed: int) -> list[float]:
    rnd = random.Random(seed)
    out: list[float] = []
    while len(out) < n:
        kind = len(out) % 4
        if kind == 0:
            x = struct.unpack(">d", rnd.getrandbits(64).to_bytes(8, "big"))[0]
        elif kind == 1:
            x = rnd.uniform(-1e5, 1e5)
        elif kind == 2:
            x = round(rnd.uniform(0, 300), rnd.randint(0, 6))
        else:
            x = rnd.choice((1, -1)) * 10 ** rnd.uniform(-30, 30)
        if x == x and abs(x) != float("inf"):
            out.append(x)
    # ties and near-ties at the 12th significant digit, and exact powers
    out += [0.5e-12 * k for k in range(1, 50)] + [10.0**e for e in range(-20, 21)]
    out += [1.0000000000005, 1.0000000000015, 2.675, 1e15, 9999999999995.0, 5e-324]
    return out


def test_float_text_identical(micropython: MicroPythonProcess) -> None:
    floats = [(x,) for x in _random_floats(4000, seed=20260101)]
    micropython.assert_same_many(M, "format_float", floats)
    micropython.assert_same_many(M, "normalize_float", floats)


def test_telemetry_with_random_values_identical(micropython: MicroPythonProcess) -> None:
    rnd = random.Random(7)
    metrics = [(name, lo, hi) for name, (lo, hi) in p.METRICS.items() if hi - lo > 1]
    msgs = []
    for seq in range(300):
        values: dict[str, Any] = {}
        for name, lo, hi in rnd.sample(metrics, 6):
            x = rnd.uniform(lo, min(hi, 1e9))
            values[name] = int(x) if name.endswith("_count") else x
        msgs.append((up("telemetry", seq, readings=[reading(seq % 8, values)]),))
    encoded = micropython.assert_same_many(M, "encode", msgs)
    datas = [(o.value,) for o in encoded]
    micropython.assert_same_many(M, "decode", datas)


# ---------------------------------------------------------------- bad input


DELETE = object()


def mutate(msg: dict[str, Any], path: str, value: Any) -> bytes:
    """canonical JSON of msg with msg[path] set to value (or deleted)."""
    out = copy.deepcopy(msg)
    node: Any = out
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
    for k in keys[:-1]:
        node = node[k]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return p.canonical_json(out)


def too_big() -> bytes:
    values = {f"m{i}_w": 1234.5 for i in range(20)}
    data = p.canonical_json(up("telemetry", readings=[reading(0, values) for i in range(30)]))
    assert len(data) > p.MAX_DEVICE_PAYLOAD
    return data


STATUS_TOPIC = "lumeau/v1/dev/cab-0042/up/status"

# name -> (payload bytes, topic or None, the code CPython gives)
BAD: dict[str, tuple[bytes, str | None, str]] = {
    "array": (b"[1,2]", None, "not_object"),
    "string": (b'"x"', None, "not_object"),
    "null": (b"null", None, "not_object"),
    "too_large": (too_big(), None, "too_large"),
    "no_v": (mutate(VALID["status"], "v", DELETE), None, "missing_field"),
    "no_boot": (mutate(VALID["status"], "boot", DELETE), None, "missing_field"),
    "no_values": (mutate(TELEMETRY, "readings.0.values", DELETE), None, "missing_field"),
    "no_dev": (mutate(VALID["status"], "dev", DELETE), None, "missing_field"),
    "ack_not_ok_without_err": (mutate(VALID["ack"], "ok", False), None, "missing_field"),
    "seq_string": (mutate(VALID["status"], "seq", "1"), None, "bad_type"),
    "seq_float": (mutate(VALID["status"], "seq", 1.0), None, "bad_type"),
    "ts_bool": (mutate(VALID["status"], "ts", True), None, "bad_type"),
    "readings_object": (mutate(TELEMETRY, "readings", {}), None, "bad_type"),
    "values_array": (mutate(TELEMETRY, "readings.0.values", [1]), None, "bad_type"),
    "metric_bool": (mutate(TELEMETRY, "readings.0.values.door_bool", True), None, "bad_type"),
    "metric_string": (mutate(TELEMETRY, "readings.1.values.power_w", "12"), None, "bad_type"),
    "active_int": (mutate(VALID["event"], "active", 1), None, "bad_type"),
    "count_float": (
        mutate(VALID["telemetry_unknown_metric_and_counts"], "readings.0.values.queue_count", 1.5),
        None,
        "bad_type",
    ),
    "boot_upper": (mutate(VALID["status"], "boot", "5F3A9C1E"), None, "bad_value"),
    "boot_short": (mutate(VALID["status"], "boot", "5f3a"), None, "bad_value"),
    "dev_upper": (mutate(VALID["status"], "dev", "Cab-1"), None, "bad_value"),
    "dev_unicode": (mutate(VALID["status"], "dev", "càb"), None, "bad_value"),
    "readings_empty": (mutate(TELEMETRY, "readings", []), None, "bad_value"),
    "sev_unknown": (mutate(VALID["event"], "sev", "urgent"), None, "bad_value"),
    "metric_no_unit": (mutate(TELEMETRY, "readings.0.values", {"power": 1}), None, "bad_value"),
    "bool_metric_2": (mutate(TELEMETRY, "readings.0.values.door_bool", 2), None, "bad_value"),
    "fw_space": (mutate(VALID["status"], "fw", "1.0 beta"), None, "bad_value"),
    "cmd_expired_before_sent": (mutate(VALID["cmd"], "exp", T - 1), None, "bad_value"),
    "lone_surrogate_escape": (
        mutate(VALID["event"], "detail", {"k": "x"}).replace(b'"x"', b'"\\ud800"'),
        None,
        "bad_value",
    ),
    "seq_negative": (mutate(VALID["status"], "seq", -1), None, "out_of_range"),
    "seq_huge": (mutate(VALID["status"], "seq", 2**100), None, "out_of_range"),
    "ts_1970": (mutate(VALID["status"], "ts", 0), None, "out_of_range"),
    "ch_256": (mutate(TELEMETRY, "readings.0.ch", 256), None, "out_of_range"),
    "power_1e6": (mutate(TELEMETRY, "readings.1.values.power_w", 1e6), None, "out_of_range"),
    "temperature_low": (
        mutate(TELEMETRY, "readings.0.values.temperature_c", -60.25),
        None,
        "out_of_range",
    ),
    "magnitude": (
        mutate(TELEMETRY, "readings.0.values", {"x_m": 1e16}),
        None,
        "out_of_range",
    ),
    "free_int_2_54": (mutate(VALID["event"], "detail", {"n": 2**54}), None, "out_of_range"),
    # "recording" was reserved (unknown_kind) until v1 defined it
    "status_relabelled_recording": (
        mutate(VALID["status"], "kind", "recording"),
        None,
        "unknown_field",
    ),
    "recording_from_gateway": (
        mutate(VALID["status_gateway"], "kind", "recording"),
        None,
        "unknown_kind",
    ),
    "rec_no_clock": (mutate(VALID["recording"], "clock", DELETE), None, "missing_field"),
    "rec_part_past_parts": (mutate(VALID["recording"], "part", 2), None, "out_of_range"),
    "rec_parts_too_many": (mutate(VALID["recording"], "parts", 10001), None, "too_large"),
    "rec_t0_in_ms": (mutate(VALID["recording"], "t0_us", T), None, "out_of_range"),
    "rec_t0_float": (mutate(VALID["recording"], "t0_us", 1.5e15), None, "bad_type"),
    "rec_fs_high": (mutate(VALID["recording"], "fs", 10**6), None, "out_of_range"),
    "rec_fmt": (mutate(VALID["recording"], "fmt", "f32le"), None, "bad_value"),
    "rec_n_disagrees": (mutate(VALID["recording"], "n", 5), None, "bad_value"),
    "rec_n_too_many": (mutate(VALID["recording"], "n", 2809), None, "too_large"),
    "rec_data_star": (mutate(VALID["recording"], "data", "AAAB*P//AIA="), None, "bad_value"),
    "rec_data_newline": (mutate(VALID["recording"], "data", "AAABAP//AIA=\n"), None, "bad_value"),
    "rec_data_pad_bits": (mutate(VALID["recording_last"], "data", "/38CAB=="), None, "bad_value"),
    "rec_data_non_ascii": (mutate(VALID["recording"], "data", "AAABAP//AIé="), None, "bad_value"),
    "rec_data_odd": (mutate(VALID["recording"], "data", "AAAB"), None, "bad_value"),
    "rec_data_long": (mutate(VALID["recording"], "data", "A" * 7492), None, "too_large"),
    "rec_clock_src": (mutate(VALID["recording"], "clock.src", "wifi"), None, "bad_value"),
    "rec_clock_extra": (mutate(VALID["recording"], "clock.ppm", 1), None, "unknown_field"),
    "rec_clock_unc": (mutate(VALID["recording"], "clock.unc_us", -1), None, "out_of_range"),
    "rec_sha_not_last": (mutate(VALID["recording"], "sha256", "0" * 64), None, "bad_value"),
    "rec_sha_upper": (mutate(VALID["recording_last"], "sha256", "A" * 64), None, "bad_value"),
    "kind_unknown": (mutate(VALID["status"], "kind", "hello"), None, "unknown_kind"),
    "batch_from_device": (mutate(VALID["status"], "kind", "batch"), None, "unknown_kind"),
    "v2": (mutate(VALID["status"], "v", 2), None, "bad_version"),
    "bad_topic_id": (p.encode(VALID["status"]), "lumeau/v1/dev/Cab/up/status", "bad_topic"),
    "bad_topic_shape": (p.encode(VALID["status"]), "lumeau/v1/dev/cab-0042", "bad_topic"),
    "topic_other_kind": (p.encode(TELEMETRY), STATUS_TOPIC, "topic_mismatch"),
    "topic_other_dev": (
        p.encode(VALID["status_will"]),
        "lumeau/v1/dev/leak-0108/up/status",
        "topic_mismatch",
    ),
    "topic_gateway_scope": (
        p.encode(VALID["status"]),
        "lumeau/v1/gw/cab-0042/up/status",
        "topic_mismatch",
    ),
    "extra_field": (mutate(VALID["status"], "extra", 1), None, "unknown_field"),
    "extra_reading_field": (mutate(TELEMETRY, "readings.0.unit", "W"), None, "unknown_field"),
    "err_when_ok": (mutate(VALID["ack"], "err", {"code": "x", "reason": "y"}), None, "bad_value"),
    "truncated": (p.encode(TELEMETRY)[:-1], None, "bad_json"),
    "empty": (b"", None, "bad_json"),
    "single_quotes": (b"{'v': 1}", None, "bad_json"),
    "trailing_garbage": (p.encode(VALID["status"]) + b" x", None, "bad_json"),
    "invalid_utf8": (b'{"v":1,"kind":"status","dev":"\xff"}', None, "bad_json"),
    "truncated_utf8": (b'{"v":1,"kind":"status","dev":"\xc3"}', None, "bad_json"),
    "bom": (b"\xef\xbb\xbf" + p.encode(VALID["status"]), None, "bad_json"),
    "comment": (b'{"v":1 /* c */}', None, "bad_json"),
    "hex_number": (p.encode(VALID["status"]).replace(b'"seq":9', b'"seq":0x9'), None, "bad_json"),
    "plus_number": (p.encode(VALID["status"]).replace(b'"seq":9', b'"seq":+9'), None, "bad_json"),
}


def test_every_error_code_has_a_bad_payload() -> None:
    assert {code for _, _, code in BAD.values()} == set(p.ERROR_CODES)


@pytest.mark.parametrize("name", list(BAD))
def test_bad_payload_same_error(micropython: MicroPythonProcess, name: str) -> None:
    data, topic, code = BAD[name]
    args: tuple[Any, ...] = (data,) if topic is None else (data, topic)
    # bad_json's reason quotes the interpreter's own JSON parser
    only = ("code", "field") if code == "bad_json" else None
    mpy, cpy = micropython.assert_same_error(M, "decode", *args, only=only)
    assert mpy.type == "ProtocolError"
    assert cpy.code == code  # the corpus still tests what its name says


BAD_VALUES: list[Any] = [
    None,
    [],
    "text",
    {"v": 1},
    {**TELEMETRY, "readings": [reading(0, {"power_w": float("nan")})]},
    {**TELEMETRY, "readings": [reading(0, {"power_w": float("-inf")})]},
    {**TELEMETRY, "readings": [reading(0, {"power_w": b"12"})]},
    {**TELEMETRY, "readings": [reading(0, {1: 2})]},
    {**TELEMETRY, "readings": ({"ts": T, "ch": 0, "values": {"power_w": 1}},)},
    {**VALID["event"], "detail": {"set": {1, 2}}},
    {**VALID["event"], "detail": {"deep": [[[[[1]]]]]}},
    {**VALID["event"], "detail": {str(i): i for i in range(40)}},
    {**VALID["event"], "detail": {"": 1}},
    {**VALID["event"], "detail": {"k" * 65: 1}},
    {**VALID["event"], "detail": {"s": "x" * 257}},
    {**VALID["cmd"], "args": {"a": list(range(600))}},
]


def test_bad_values_same_error_on_encode(micropython: MicroPythonProcess) -> None:
    outcomes = micropython.assert_same_many(M, "encode", [(v,) for v in BAD_VALUES])
    assert not any(o.ok for o in outcomes)
    outcomes = micropython.assert_same_many(M, "validate", [(v,) for v in BAD_VALUES])
    assert not any(o.ok for o in outcomes)
    micropython.assert_same_many(M, "canonical_json", [(v,) for v in BAD_VALUES])


def _mutations(alphabet: bytes, per_message: int, seed: int) -> list[tuple[bytes]]:
    """Random 1-3 byte edits (replace, delete, insert) of every valid payload."""
    rnd = random.Random(seed)
    payloads = []
    for msg in VALID.values():
        data = p.encode(msg)
        for _ in range(per_message):
            b = bytearray(data)
            for _ in range(rnd.randint(1, 3)):
                i = rnd.randrange(len(b))
                op = rnd.randrange(3)
                if op == 0:
                    b[i] = rnd.choice(alphabet)
                elif op == 1:
                    del b[i]
                else:
                    b.insert(i, rnd.choice(alphabet))
            payloads.append((bytes(b),))
    return payloads


def _assert_same_decode_outcomes(micropython: MicroPythonProcess, payloads: list[Any]) -> None:
    outcomes = micropython.outcomes(M, "decode", payloads)
    for o in outcomes:
        assert o.ok or (o.error is not None and o.error.type == "ProtocolError"), o.describe()
    differ = []
    for args, mpy in zip(payloads, outcomes, strict=True):
        cpy = cpython_outcome(M, "decode", *args)
        cpy_bad_json = not cpy.ok and cpy.error is not None and cpy.error.code == "bad_json"
        # bad_json's reason quotes each interpreter's own JSON parser
        only = ("code", "field") if cpy_bad_json else None
        diff = outcome_difference(mpy, cpy, only)
        if diff is not None:
            differ.append(f"{args[0]!r}: {diff}")
    assert not differ, f"{len(differ)} of {len(payloads)} differ:\n" + "\n".join(differ[:10])


def test_decode_never_raises_anything_but_protocol_error(
    micropython: MicroPythonProcess,
) -> None:
    """Random byte mutations of valid payloads: the same outcome on both interpreters,
    bad JSON included (findings F1-F5)."""
    alphabet = b'{}[]":,0123456789abcdefklnorstuvwxyz-_ .'
    _assert_same_decode_outcomes(micropython, _mutations(alphabet, 12, seed=11))


def test_decode_mutations_with_escapes_controls_and_non_ascii(
    micropython: MicroPythonProcess,
) -> None:
    """The same with bytes that exercise escapes, control characters, UTF-8 and
    the literals NaN/Infinity."""
    alphabet = b'{}[]":,0.e-+\\/unrtbfNIa\x00\x01\x1f\x7f\x80\xbf\xc0\xc3\xe2\xed\xf0\xf4\xff '
    _assert_same_decode_outcomes(micropython, _mutations(alphabet, 16, seed=12))


# ------------------------------------------------ formerly divergent input (F1-F5)


def _status_with(extra: bytes) -> bytes:
    data = p.encode(VALID["status"])
    return data[:-1] + b"," + extra + b"}"


def _telemetry_power(text: bytes) -> bytes:
    data = p.encode(TELEMETRY)
    return data.replace(b'"power_w":1250.0', b'"power_w":' + text)


def _event_note(raw: bytes) -> bytes:
    data = p.encode(VALID["event"])
    return data.replace(b'{"input":2}', b'{"note":"' + raw + b'"}')


def _event_detail(raw: bytes) -> bytes:
    data = p.encode(VALID["event"])
    return data.replace(b'{"input":2}', raw)


def _nested(depth: int) -> bytes:
    """An event whose detail holds a note nested depth - 2 arrays deep (the
    payload object and detail are the first two levels)."""
    return _event_note(b"x").replace(b'"x"', b"[" * (depth - 2) + b"]" * (depth - 2))


# The findings of /tmp/mpy_findings.txt, which MicroPython decoded differently
# before edge/strictjson.py; name -> (finding, payload). All are bad_json on
# both interpreters, except F4 (escaped surrogate pairs), valid on both.
DIVERGENT: dict[str, tuple[str, bytes]] = {
    "trailing_comma": ("F1", p.encode(VALID["status"])[:-1] + b",}"),
    "leading_zero": ("F1", p.encode(VALID["status"]).replace(b'"seq":9', b'"seq":09')),
    "number_ending_in_dot": ("F1", _telemetry_power(b"5.")),
    "number_dot_exponent": ("F1", _telemetry_power(b"1.e5")),
    "invalid_escape": ("F1", _status_with(b'"fw":"a\\x"').replace(b'"fw":"1.2.0+build.7",', b"")),
    "raw_control_char": ("F1", _event_note(b"a\x01b")),
    "raw_newline": ("F1", _event_note(b"a\nb")),
    "missing_colon": ("F1", p.encode(VALID["status"]).replace(b'"seq":9', b'"seq" 9')),
    "missing_comma": ("F1", p.encode(VALID["status"]).replace(b'"seq":9,', b'"seq":9 ')),
    "missing_value": ("F1", _event_detail(b'{"input":}')),
    "key_without_value": ("F1", _event_detail(b'{"input"}')),
    "number_key": ("F1", _event_detail(b"{2:2}")),
    "double_comma": ("F1", _event_detail(b'{"a":1,,"b":2}')),
    "leading_comma_array": ("F1", _event_detail(b'{"a":[,1]}')),
    "trailing_comma_array": ("F1", _event_detail(b'{"a":[1,]}')),
    "colon_in_array": ("F1", _event_detail(b'{"a":[1:2]}')),
    "comma_object": ("F1", _event_detail(b"{,}")),
    "colon_first": ("F1", _event_detail(b'{:"a":1}')),
    "bad_unicode_escape": ("F1", _event_note(b"\\uZZZZ")),
    "short_unicode_escape": ("F1", _event_note(b"\\u12")),
    "whitespace_vt": ("F1", _event_detail(b'{"a":\x0b1}')),
    "huge_integer": ("F1", _event_detail(b'{"a":' + b"7" * 4301 + b"}")),
    "nan_literal": ("F2", _telemetry_power(b"NaN")),
    "infinity_literal": ("F2", _telemetry_power(b"-Infinity")),
    "infinity_in_detail": ("F2", _event_detail(b'{"a":Infinity}')),
    "overlong_utf8": ("F3", _event_note(b"a\xc0\xafb")),
    "encoded_surrogate": ("F3", _event_note(b"a\xed\xa0\x80b")),
    "past_u10ffff": ("F3", _event_note(b"a\xf4\x90\x80\x80b")),
    "f5_lead_byte": ("F3", _event_note(b"a\xf5\x80\x80\x80b")),
    "truncated_sequence": ("F3", _event_note(b"a\xe2\x82b")),
    "stray_continuation": ("F3", _event_note(b"a\x80b")),
    "overlong_in_key": ("F3", _event_detail(b'{"k\xe0\x80\xaf":1}')),
    "escaped_surrogate_pair": ("F4", _event_note(b"\\ud83d\\ude00")),
    "escaped_pair_in_key": ("F4", _event_detail(b'{"\\ud83d\\ude00":1}')),
    "escaped_pair_after_lone": ("F4", _event_note(b"\\ud83d\\ud83d\\ude00x")),
    "escaped_pair_uppercase": ("F4", _event_note(b"a\\uD83D\\uDE00b\\u00e9")),
    "deep_array": ("F5", b"[" * 2000 + b"]" * 2000),
    "deep_detail": ("F5", _nested(2000)),
    "just_too_deep": ("F5", _nested(p.MAX_JSON_DEPTH + 1)),
    "deep_with_brackets_in_strings": ("F5", b'["]]]",' * 40 + b"0" + b"]" * 40),
}


@pytest.mark.parametrize("name", list(DIVERGENT))
def test_formerly_divergent_input_agrees(micropython: MicroPythonProcess, name: str) -> None:
    finding, data = DIVERGENT[name]
    mpy = micropython.outcome(M, "decode", data)
    cpy = cpython_outcome(M, "decode", data)
    if finding == "F4":  # the same value, or the same error, reason included
        assert outcome_difference(mpy, cpy) is None, outcome_difference(mpy, cpy)
        if name != "escaped_pair_after_lone":  # a lone high surrogate: bad_value
            assert cpy.ok, cpy.describe()
            assert "\U0001f600" in repr(cpy.value["detail"])
        return
    assert not cpy.ok and cpy.error is not None and cpy.error.code == "bad_json", cpy.describe()
    diff = outcome_difference(mpy, cpy, ("code", "field"))
    assert diff is None, diff


def test_nesting_up_to_the_limit_is_not_bad_json(micropython: MicroPythonProcess) -> None:
    # the JSON depth limit is above anything valid: detail's own limit decides
    for depth in (6, 7, p.MAX_JSON_DEPTH):
        _, cpy = micropython.assert_same_error(M, "decode", _nested(depth))
        assert cpy.code == "too_large" and cpy.field.startswith("detail.note[0]")
    env = {"v": 1, "kind": "batch", "gw": GW, "boot": "0c9d8e7f", "seq": 1, "ts": T}
    deep = "[" * (p.MAX_JSON_DEPTH - 1) + "0" + "]" * (p.MAX_JSON_DEPTH - 1)
    at_limit = p.canonical_json({**env, "msgs": [1]}).replace(b"[1]", deep.encode())
    _, _, bad = micropython.assert_same(M, "decode_batch", at_limit)
    assert bad[0][1].code == "not_object"
    too_deep = b"[" + at_limit + b"]"
    _, cpy = micropython.assert_same_error(M, "decode_batch", too_deep, only=("code", "field"))
    assert cpy.code == "bad_json"


def test_whitespace_and_escapes_decode_identically(micropython: MicroPythonProcess) -> None:
    """Valid JSON in other spellings than the canonical one (receivers accept it)."""
    import json

    payloads = []
    for msg in VALID.values():
        payloads.append((json.dumps(msg, indent=2).encode(),))
        payloads.append((json.dumps(msg, ensure_ascii=True, separators=(" , ", " : ")).encode(),))
    payloads.append((_event_note(b'\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u00e9\\u2603\\uFFFD'),))
    payloads.append((_event_note(b"\\\\ud83d\\\\ude00"),))  # escaped backslashes, no pair
    payloads.append((_event_detail(b'{"a":-0,"b":-0.0,"c":1E2,"d":1e-2,"e":0.5e+1}'),))
    payloads.append((_event_detail(b'{"a":' + b"7" * 4300 + b"}"),))  # out_of_range, not JSON
    _assert_same_decode_outcomes(micropython, payloads)


def test_strictjson_runs_the_same_in_micropython(micropython: MicroPythonProcess) -> None:
    """edge.strictjson gives the same answers (and messages) on both interpreters."""
    texts = [
        b"",
        b" ",
        b"0",
        b"-0.5e+3",
        b"01",
        b"1.",
        b'"a\\u00e9\\ud83d\\ude00"',
        b'"\\ud83d\\u0041"',
        b'{"a":[1,2,{"b":null}],"c":true,"d":false}',
        b'{"a" 1}',
        b"[1,]",
        b"[1 2]",
        b'"\xc3\xa9"',
        b'"\xc0\xaf"',
        b'"\xed\xa0\x80"',
        b'"\xf4\x90\x80\x80"',
        b"[" * 33 + b"]" * 33,
        b"[" * 32 + b"]" * 32,
        b"NaN",
        b"truex",
        b"nul",
    ]
    micropython.assert_same_many("edge.strictjson", "check", [(t, 32) for t in texts])
    rnd = random.Random(5)
    blobs = [bytes(rnd.choice(b"a\x7f\x80\xbf\xc2\xdf\xe0\xed\xef\xf0\xf4\xf5") for _ in range(6))]
    blobs += [bytes(rnd.getrandbits(8) for _ in range(4)) for _ in range(400)]
    micropython.assert_same_many("edge.strictjson", "utf8_ok", [(b,) for b in blobs])
    for b in blobs:
        try:
            b.decode("utf-8")
            valid = True
        except UnicodeDecodeError:
            valid = False
        assert call_cpython("edge.strictjson", "utf8_ok", b) is valid, b


def test_recording_base64_mutations_same_verdict(micropython: MicroPythonProcess) -> None:
    """Chunks whose data is damaged one character at a time: same outcome everywhere."""
    rnd = random.Random(5)
    alphabet = "AZaz09+/=-_ \n*\x00é"
    payloads: list[Any] = []
    for k in range(1, 25):
        raw = bytes(rnd.getrandbits(8) for _ in range(2 * k))
        text = base64.b64encode(raw).decode()
        for _ in range(6):
            i = rnd.randrange(len(text))
            c = rnd.choice(alphabet)
            for data in (text, text[:i] + c + text[i + 1 :], text[:i] + text[i + 1 :]):
                msg = dict(VALID["recording"], n=k, data=data)
                payloads.append((p.canonical_json(msg),))
    _assert_same_decode_outcomes(micropython, payloads)
