"""``lumeau demo``: the main job at this stage of the project.

Starts the real services, migrates the database, runs an ingest worker, and
plays a street-lighting cabinet and an acoustic leak sensor through the real
broker with the real ``mosquitto_pub``, each device with its own credentials.
Among the good messages it sends a duplicate, a sequence gap, malformed input
and a message outside the device's own topics, then prints what TimescaleDB
holds, so a person can see each invariant of the data path hold.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from edge import protocol

CABINET = "cab-0001"
SENSOR = "leak-0001"
_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class Publication:
    """One ``mosquitto_pub`` call: who sends what, and why the demo sends it."""

    device: str
    topic: str
    payload: bytes
    note: str
    retain: bool = False


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run devices through the real broker into TimescaleDB and show the result",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--run-dir", type=Path, default=None, help="run folder (default: .run)")
    demo.set_defaults(func=_run)


def _now_ms() -> int:
    return int(time.time() * 1000)


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


def build_publications(cab_boot: str, sensor_boot: str, now_ms: int) -> list[Publication]:
    """The demo's script: good traffic, then each kind of trouble the stack must absorb."""
    minute = 60_000
    t0 = now_ms - 10 * minute
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


def _publish(pub: Publication, host: str, port: int, password: str, tool: str) -> str:
    cmd = [tool, "-h", host, "-p", str(port), "-V", "mqttv5", "-i", f"{pub.device}-demo"]
    cmd += ["-u", pub.device, "-P", password, "-q", "1", "-t", pub.topic, "-s"]
    if pub.retain:
        cmd.append("-r")
    done = subprocess.run(cmd, input=pub.payload, capture_output=True, timeout=30, check=False)
    if done.returncode != 0:
        return (done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}")[:70]
    return "sent"


class _ErrorReplies:
    """The cabinet's own view of its error topic, read with the real mosquitto_sub."""

    def __init__(self, host: str, port: int, password: str, tool: str) -> None:
        topic = protocol.downlink_topic(CABINET, "error")
        cmd = [tool, "-h", host, "-p", str(port), "-V", "mqttv5", "-i", f"{CABINET}-demo-sub"]
        cmd += ["-u", CABINET, "-P", password, "-q", "1", "-t", topic]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        time.sleep(0.5)  # let the subscription reach the broker before anything is sent

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            self.lines.append(raw.decode(errors="replace").strip())

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._reader.join(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))
    if not rows:
        print("  (none)")


def _wait_for_rows(conn: psycopg.Connection[Any], boots: list[str], since: Any, want: int) -> bool:
    deadline = time.monotonic() + _WAIT_SECONDS
    while time.monotonic() < deadline:
        stored = conn.execute(
            "SELECT count(*) FROM uplink_message WHERE boot_id = ANY(%s)", (boots,)
        ).fetchone()
        letters = conn.execute(
            "SELECT count(*) FROM dead_letter WHERE received_at >= %s", (since,)
        ).fetchone()
        if stored and letters and stored[0] >= want and letters[0] >= 3:
            return True
        time.sleep(0.2)
    return False


def _run(args: argparse.Namespace) -> int:
    from backend import devstack
    from backend.ingest.worker import IngestWorker, WorkerConfig
    from backend.settings import run_dir_from_env
    from backend.storage import migrate

    run_dir: Path = (args.run_dir or run_dir_from_env()).resolve()
    print(f"Lumeau demo: run folder {run_dir}")
    stack = devstack.up(run_dir)
    print(f"  Mosquitto    {stack.mqtt_host}:{stack.mqtt_port} (anonymous refused, per-device ACL)")
    print(f"  TimescaleDB  {stack.timescaledb_version} on PostgreSQL, see {run_dir / 'stack.env'}")
    applied = migrate(stack.database_url)
    print(f"  migrations   {', '.join(applied) if applied else 'already up to date'}")
    passwords = {dev: devstack.add_broker_user(stack, dev) for dev in (CABINET, SENSOR)}
    tool_pub = shutil.which("mosquitto_pub")
    tool_sub = shutil.which("mosquitto_sub")
    if tool_pub is None or tool_sub is None:
        print("mosquitto_pub/mosquitto_sub not found: apt-get install mosquitto-clients")
        return 2

    worker = IngestWorker(
        WorkerConfig(
            conninfo=stack.database_url,
            mqtt_host=stack.mqtt_host,
            mqtt_port=stack.mqtt_port,
            mqtt_username=stack.mqtt_username,
            mqtt_password=stack.mqtt_password,
            client_id=f"lumeau-ingest-demo-{os.getpid()}",
        )
    )
    thread = threading.Thread(target=worker.run, name="ingest", daemon=True)
    thread.start()
    if not worker.wait_subscribed(30):
        print("the ingest worker could not subscribe to the broker; see the log above")
        worker.stop()
        return 1
    print("  ingest       one worker on the shared subscription $share/lumeau-ingest/...")

    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        started = conn.execute("SELECT now()").fetchone()
        since = started[0] if started else None
        cab_boot, sensor_boot = secrets.token_hex(4), secrets.token_hex(4)
        replies = _ErrorReplies(stack.mqtt_host, stack.mqtt_port, passwords[CABINET], tool_sub)
        publications = build_publications(cab_boot, sensor_boot, _now_ms())
        sent = []
        for pub in publications:
            outcome = _publish(
                pub, stack.mqtt_host, stack.mqtt_port, passwords[pub.device], tool_pub
            )
            sent.append(
                (pub.device, pub.topic.removeprefix(protocol.TOPIC_ROOT + "/"), pub.note, outcome)
            )
        _table(
            "Published with mosquitto_pub (QoS 1, MQTT v5)",
            ("device", "topic", "what", "mosquitto_pub"),
            sent,
        )

        # 7 distinct good messages; the duplicate and the ACL-refused one must not add rows.
        complete = _wait_for_rows(conn, [cab_boot, sensor_boot], since, want=7)
        time.sleep(0.5)  # a late duplicate, if any, would now be visible too
        worker.stop()
        thread.join(timeout=30)
        replies.close()

        boots = [cab_boot, sensor_boot]
        rows = conn.execute(
            "SELECT device_id, boot_id, seq, kind, to_char(time AT TIME ZONE 'UTC', 'HH24:MI:SS')"
            " FROM uplink_message WHERE boot_id = ANY(%s) ORDER BY device_id, seq",
            (boots,),
        ).fetchall()
        _table("Stored messages (uplink_message: one row per device, boot, seq)",
               ("device", "boot", "seq", "kind", "time UTC"), rows)  # fmt: skip
        rows = conn.execute(
            "SELECT device_id, channel, metric, count(*), round(avg(value)::numeric, 2)"
            " FROM reading WHERE boot_id = ANY(%s) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            (boots,),
        ).fetchall()
        _table("Readings (reading hypertable)", ("device", "ch", "metric", "rows", "mean"), rows)
        rows = conn.execute(
            "SELECT device_id, code, severity, active FROM event WHERE boot_id = ANY(%s)", (boots,)
        ).fetchall()
        _table("Events", ("device", "code", "severity", "active"), rows)
        rows = conn.execute(
            "SELECT device_id, role, last_status, fw FROM device WHERE device_id = ANY(%s)"
            " ORDER BY device_id",
            ([CABINET, SENSOR],),
        ).fetchall()
        _table("Devices", ("device", "role", "status", "firmware"), rows)
        rows = conn.execute(
            "SELECT device_id, boot_id, first_missing, last_missing, missing"
            " FROM sequence_gap WHERE boot_id = ANY(%s)",
            (boots,),
        ).fetchall()
        _table("Sequence gaps (reported, never silent)",
               ("device", "boot", "first", "last", "missing"), rows)  # fmt: skip
        rows = conn.execute(
            "SELECT device_id, code, field, left(reason, 70) FROM dead_letter"
            " WHERE received_at >= %s ORDER BY id",
            (since,),
        ).fetchall()
        _table("Dead letters (rejected with a reason, ingest kept running)",
               ("device", "code", "field", "reason"), rows)  # fmt: skip
        _table(
            f"Error replies {CABINET} read on its own down/error topic",
            ("reply",),
            [[line[:110]] for line in replies.lines],
        )
        dup = conn.execute(
            "SELECT count(*) FROM uplink_message WHERE boot_id = %s AND seq = 2", (cab_boot,)
        ).fetchone()
        acl = conn.execute(
            "SELECT count(*) FROM uplink_message WHERE device_id = %s AND boot_id = %s",
            (SENSOR, cab_boot),
        ).fetchone()
    print()
    print(f"Duplicate: seq 2 published twice, stored {dup[0] if dup else '?'} time(s).")
    print(f"ACL: {CABINET}'s messages under {SENSOR}'s topic stored: {acl[0] if acl else '?'}.")
    print(f"Ingest counters: {worker.counters.line()}")
    print("\nThe services keep running: `.venv/bin/lumeau services status`, `... services down`.")
    print(f"Database and broker credentials for your own queries: {run_dir / 'stack.env'}")
    if not complete:
        print("\nNot everything arrived within the wait; see the tables above.")
        return 1
    return 0
