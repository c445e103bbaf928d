"""The devices' script: what the cabinet and the leak sensor publish, and when."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from edge import protocol

CABINET = "cab-bench"  # a controller on the technician's bench, not in the town
SENSOR = "leak-bench"
GATEWAY = "gw-demo-1"
# Distinct good device messages in the script: cabinet status, telemetry 1, 2,
# event 3, telemetry 5; sensor status and telemetry 1.
GOOD_MESSAGES = 7
BAD_CODES = ("bad_json", "out_of_range", "topic_mismatch")
SLOT_MS = 15 * 60_000  # the script's device clocks span 7 minutes of one such slot


@dataclass(frozen=True)
class Publication:
    """One ``mosquitto_pub`` call: who sends what, and why the demo sends it."""

    device: str
    topic: str
    payload: bytes
    note: str
    retain: bool = False


def _now_ms() -> int:
    return int(time.time() * 1000)


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def script_start(database_url: str) -> int:
    """Where the devices' clocks start: a past 15-minute slot the cabinet has no reading in.

    Every run publishes the same values; a slot of its own (one 15-minute and
    one hourly bucket of the API) shows this run's readings alone.
    """
    start = _now_ms() // SLOT_MS * SLOT_MS - SLOT_MS
    with psycopg.connect(database_url, autocommit=True) as conn:
        while conn.execute(
            "SELECT 1 FROM reading WHERE device_id = %s AND time >= %s AND time < %s LIMIT 1",
            (CABINET, utc(start), utc(start + SLOT_MS)),
        ).fetchone():
            start -= SLOT_MS
    return start


def _message(kind: str, device: str, boot: str, seq: int, ts: int, **body: Any) -> dict[str, Any]:
    envelope = {"v": protocol.VERSION, "kind": kind, "dev": device, "boot": boot, "seq": seq}
    return envelope | {"ts": ts} | body


def _cabinet_telemetry(boot: str, seq: int, ts: int, level: float) -> dict[str, Any]:
    # Three circuits of 24 LED luminaires of 40 W each, dimmed to `level`.
    readings = []
    for channel in (1, 2, 3):
        power = round(24 * 40.0 * level / 100.0 * (0.97 + 0.01 * channel), 1)
        readings.append(
            {
                "ts": ts,
                "ch": channel,
                "values": {
                    "power_w": power,
                    "current_a": round(power / 230.0, 3),
                    "level_pct": level,
                    "energy_wh": round(1250.0 * channel + seq * power / 6.0, 1),
                },
            }
        )
    readings.append({"ts": ts, "ch": 0, "values": {"voltage_v": 231.4, "mains_bool": 1}})
    return _message("telemetry", CABINET, boot, seq, ts, readings=readings)


def build_publications(cab_boot: str, sensor_boot: str, start_ms: int) -> list[Publication]:
    """The demo's script: good traffic, then each kind of trouble the stack must absorb.

    The devices' clocks run from ``start_ms`` to ``start_ms`` + 7 minutes.
    """
    minute = 60_000
    t0 = start_ms
    cab_up = protocol.uplink_topic(CABINET, "telemetry")
    status = _message(
        "status", CABINET, cab_boot, 0, t0, state="online", role="cabinet", fw="0.1.0"
    )
    tele1 = _cabinet_telemetry(cab_boot, 1, t0 + minute, 100.0)
    tele2 = _cabinet_telemetry(cab_boot, 2, t0 + 2 * minute, 70.0)
    door = _message(
        "event", CABINET, cab_boot, 3, t0 + 3 * minute, code="door_open", sev="warning", active=True
    )
    tele5 = _cabinet_telemetry(cab_boot, 5, t0 + 5 * minute, 50.0)
    out_of_range = _cabinet_telemetry(cab_boot, 6, t0 + 6 * minute, 50.0)
    out_of_range["readings"][0]["values"]["level_pct"] = 180.0
    impostor = _cabinet_telemetry(cab_boot, 7, t0 + 7 * minute, 50.0) | {"dev": SENSOR}
    sensor_status = _message(
        "status", SENSOR, sensor_boot, 0, t0, state="online", role="leak_sensor", fw="0.1.0"
    )
    night = _message(
        "telemetry",
        SENSOR,
        sensor_boot,
        1,
        t0 + minute,
        readings=[
            {
                "ts": t0 + minute,
                "ch": 0,
                "values": {
                    "noise_min_db": 38.2,
                    "noise_spread_db": 2.1,
                    "noise_rms_db": 41.7,
                    "battery_v": 3.58,
                },
            }
        ],
    )

    enc = protocol.encode
    raw = protocol.canonical_json  # no validation: the demo sends what a faulty device would
    cab_status, cab_event = (protocol.uplink_topic(CABINET, k) for k in ("status", "event"))
    sensor_up, sensor_status_topic = (
        protocol.uplink_topic(SENSOR, k) for k in ("telemetry", "status")
    )
    truncated = b'{"v":1,"kind":"telemetry",'
    return [
        Publication(CABINET, cab_status, enc(status), "status online (retained)", retain=True),
        Publication(CABINET, cab_up, enc(tele1), "telemetry seq 1: 3 circuits at 100 %"),
        Publication(CABINET, cab_up, enc(tele2), "telemetry seq 2: dimmed to 70 %"),
        Publication(CABINET, cab_up, enc(tele2), "telemetry seq 2 AGAIN: a resend after an outage"),
        Publication(CABINET, cab_event, enc(door), "event seq 3: cabinet door opened"),
        Publication(CABINET, cab_up, enc(tele5), "telemetry seq 5: seq 4 never arrives (a gap)"),
        Publication(CABINET, cab_up, truncated, "malformed: truncated JSON"),
        Publication(CABINET, cab_up, raw(out_of_range), "bad value: dimming level 180 %"),
        Publication(CABINET, cab_up, raw(impostor), "claims to be the leak sensor"),
        Publication(CABINET, sensor_up, enc(night), "publishes on the sensor's topic (ACL)"),
        Publication(SENSOR, sensor_status_topic, enc(sensor_status), "status online", retain=True),
        Publication(SENSOR, sensor_up, enc(night), "night noise summary and battery"),
    ]
