"""``lumeau demo``: the main job at this stage of the project.

Plays a street-lighting cabinet and an acoustic leak sensor on a site, along
the data path of the design, with real parts everywhere:

    devices (the real ``mosquitto_pub``, each with its own credentials)
      -> the site's Mosquitto (its own ACL: gateway/site_acl.py)
      -> the field gateway (``lumeau gateway run``, a subprocess): validates,
         queues in SQLite, dead-letters bad input and answers the device,
         batches and forwards
      -> the backend Mosquitto (the gateway's own credentials, TLS-ready)
      -> an ingest worker -> TimescaleDB.

Among the good messages it sends a duplicate, a sequence gap, malformed input
and a message outside the device's own topics, then prints where each was
handled: the gateway's dead letters and error replies, what TimescaleDB
stored (the gateway's batches too), the gaps, the gateway's presence and
counters. The site broker and the gateway are then stopped cleanly.

Last, it starts the API (``lumeau api run`` on a free loopback port, the
stack's settings), issues an operator and a technician token with ``lumeau
api token create`` (kept in memory only) and shows a person's queries and
their answers: devices, the cabinet's telemetry, events, dead letters (refused
to the operator). ``--serve`` leaves the API running until Ctrl-C; otherwise
it is stopped. The backend services keep running afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from edge import protocol
from gateway.site_acl import site_acl

CABINET = "cab-0001"
SENSOR = "leak-0001"
GATEWAY = "gw-demo-1"
_WAIT_SECONDS = 60.0
# Distinct good device messages in the script: cabinet status, telemetry 1, 2,
# event 3, telemetry 5; sensor status and telemetry 1.
_GOOD_MESSAGES = 7
_BAD_CODES = ("bad_json", "out_of_range", "topic_mismatch")
_SLOT_MS = 15 * 60_000  # the script's device clocks span 7 minutes of one such slot
# The API part: two users the demo issues tokens for, and the metric it queries.
_OPERATOR = "demo-operator"
_TECHNICIAN = "demo-technician"
_METRIC = "level_pct"


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
        help="run devices through a site broker and the gateway into TimescaleDB",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--run-dir", type=Path, default=None, help="run folder (default: .run)")
    demo.add_argument(
        "--serve",
        action="store_true",
        help="at the end, keep the API running in the foreground until Ctrl-C",
    )
    demo.set_defaults(func=_run)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _script_start(database_url: str) -> int:
    """Where the devices' clocks start: a past 15-minute slot the cabinet has no reading in.

    Every run publishes the same values; a slot of its own (one 15-minute and
    one hourly bucket of the API) shows this run's readings alone.
    """
    start = _now_ms() // _SLOT_MS * _SLOT_MS - _SLOT_MS
    with psycopg.connect(database_url, autocommit=True) as conn:
        while conn.execute(
            "SELECT 1 FROM reading WHERE device_id = %s AND time >= %s AND time < %s LIMIT 1",
            (CABINET, _utc(start), _utc(start + _SLOT_MS)),
        ).fetchone():
            start -= _SLOT_MS
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
    """The cabinet's own view of its error topic on the site broker (real mosquitto_sub)."""

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

    def codes(self) -> list[str]:
        found = []
        for line in list(self.lines):
            with contextlib.suppress(ValueError, AttributeError):
                found.append(str(json.loads(line).get("code")))
        return found

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._reader.join(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def _table(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], command: str | None = None
) -> None:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    if command is not None:
        print(f"  $ {command}")
    for n, row in enumerate(cells):
        print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))
    if not rows:
        print("  (none)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(condition: Callable[[], bool], seconds: float = _WAIT_SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _lumeau_command() -> list[str]:
    script = Path(sys.executable).parent / "lumeau"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "backend.cli"]


def _process_runs(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline


class _GatewayProcess:
    """``lumeau gateway run`` as a subprocess; config, log, pid and queue in ``folder``.

    The TOML file holds no secret: both passwords travel in the child's
    environment (``LUMEAU_GATEWAY_SITE_PASSWORD``, ``..._BACKEND_PASSWORD``).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config = folder / "gateway.toml"
        self.log = folder / "gateway.log"
        self.pid_file = folder / "gateway.pid"
        self.queue = folder / "data" / "queue.sqlite3"
        self.http_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/metrics"

    def stop_stale(self) -> None:
        """A gateway left running by an interrupted demo: SIGTERM it."""
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pid_file.read_text().strip())
            if _process_runs(pid, str(self.config)):
                os.kill(pid, signal.SIGTERM)
                _wait(lambda: not _process_runs(pid, str(self.config)), 30)

    def start(self, site: Any, site_password: str, stack: Any, backend_password: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.http_port = _free_port()
        q = json.dumps  # a JSON string is a valid TOML basic string
        self.config.write_text(
            "# Written by `lumeau demo`. Passwords: LUMEAU_GATEWAY_SITE_PASSWORD and\n"
            "# LUMEAU_GATEWAY_BACKEND_PASSWORD in the environment, never in this file.\n"
            f"gateway_id = {q(GATEWAY)}\n"
            f"site_host = {q(site.host)}\n"
            f"site_port = {site.port}\n"
            f"site_username = {q(GATEWAY)}\n"
            f"backend_host = {q(stack.mqtt_host)}\n"
            f"backend_port = {stack.mqtt_port}\n"
            f"backend_username = {q(GATEWAY)}\n"
            # The stack's ACL lets a gateway read only its own subtree on the
            # backend broker: device commands reach it as ``relay`` commands.
            f"downlink_device_filter = {q(protocol.gateway_topic(GATEWAY, 'down', 'cmd'))}\n"
            f"data_dir = {q(str(self.queue.parent))}\n"
            f"http_port = {self.http_port}\n"
            'log_format = "json"\n'
            "backoff_min_s = 0.2\n"
            "backoff_max_s = 5.0\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("LUMEAU_GATEWAY_")}
        env["LUMEAU_GATEWAY_SITE_PASSWORD"] = site_password
        env["LUMEAU_GATEWAY_BACKEND_PASSWORD"] = backend_password
        cmd = [*_lumeau_command(), "gateway", "run", "--config", str(self.config)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )
        self.pid_file.write_text(f"{self.proc.pid}\n")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
                return bytes(r.read())
        except OSError:
            return None

    def health(self) -> dict[str, Any]:
        body = self._get("/health")
        if body is None:
            return {}
        report: dict[str, Any] = json.loads(body)
        return report

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as ``{name or name{labels}: value}``."""
        out: dict[str, float] = {}
        for line in (self._get("/metrics") or b"").decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name.removeprefix("lumeau_gateway_")] = float(value)
        return out

    def wait_ready(self) -> bool:
        def ready() -> bool:
            report = self.health()
            return bool(report.get("site_connected") and report.get("backend_connected"))

        return _wait(lambda: ready() or not self.running()) and self.running()

    def stop(self) -> int | None:
        """SIGTERM: it drains in-flight batches, publishes its offline status, exits 0."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        with contextlib.suppress(OSError):
            self.pid_file.unlink()
        return self.proc.returncode

    def dead_letters(self) -> list[tuple[Any, ...]]:
        """The gateway's own dead-letter table (SQLite), oldest first."""
        if not self.queue.exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{self.queue}?mode=ro", uri=True)) as db:
            return db.execute(
                "SELECT dev, code, field, reason, topic FROM dead_letter ORDER BY id"
            ).fetchall()

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _counter(metrics: dict[str, float], name: str) -> int:
    """A counter's value, summed over its labels."""
    return int(sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{")))


_GATEWAY_COUNTERS = (
    ("received_total", "deliveries from the site broker"),
    ("accepted_total", "validated and queued in SQLite"),
    ("duplicates_total", "same (dev, boot, seq) again: acked, not queued twice"),
    ("rejected_total", "dead-lettered at the gateway"),
    ("error_replies_total", "error replies sent to devices (site broker)"),
    ("forwarded_total", "device messages acknowledged by the backend broker"),
    ("batches_total", "batches acknowledged by the backend broker"),
    ("batch_failures_total", "batches the backend broker refused"),
    ("queue_rows", "still queued (gauge)"),
    ("dead_letter_rows", "rows in its dead-letter table (gauge)"),
    ("devices_online", "devices whose last status is online (gauge)"),
)


def _clear_site(folder: Path, gateway: _GatewayProcess) -> None:
    """A fresh site for each run: stop what an interrupted run left, then wipe it."""
    from backend import devstack

    gateway.stop_stale()
    broker = folder / "mosquitto"
    if (broker / "mosquitto.conf").exists():
        devstack.BrokerHandle(broker, 0).stop()
    shutil.rmtree(folder, ignore_errors=True)


def _run(args: argparse.Namespace) -> int:
    from backend import devstack
    from backend.settings import run_dir_from_env
    from backend.storage import migrate

    run_dir: Path = (args.run_dir or run_dir_from_env()).resolve()
    print(f"Lumeau demo: run folder {run_dir}")
    stack = devstack.up(run_dir)
    print(f"  backend MQTT {stack.mqtt_host}:{stack.mqtt_port} (anonymous refused, per-user ACL)")
    print(f"  TimescaleDB  {stack.timescaledb_version} on PostgreSQL, see {run_dir / 'stack.env'}")
    applied = migrate(stack.database_url)
    print(f"  migrations   {', '.join(applied) if applied else 'already up to date'}")
    tool_pub = shutil.which("mosquitto_pub")
    tool_sub = shutil.which("mosquitto_sub")
    if tool_pub is None or tool_sub is None:
        print("mosquitto_pub/mosquitto_sub not found: apt-get install mosquitto-clients")
        return 2
    try:
        played, start_ms = _through_the_site(run_dir, stack, tool_pub, tool_sub)
        if played != 0:
            return played
        return _show_api(run_dir, start_ms, serve=args.serve)
    finally:
        print(
            "\nThe backend services keep running: `.venv/bin/lumeau services status`, `... down`."
        )
        print(f"Database and broker credentials for your own queries: {run_dir / 'stack.env'}")


def _through_the_site(run_dir: Path, stack: Any, tool_pub: str, tool_sub: str) -> tuple[int, int]:
    """Devices -> site broker -> gateway -> backend; (exit code, the script's start in ms)."""
    from backend import devstack

    site_dir = run_dir / "site"
    gateway = _GatewayProcess(site_dir / "gateway")
    _clear_site(site_dir, gateway)
    # Each device and the gateway have their own site credentials; the gateway
    # has its own backend credentials too (the stack's ACL: gw/<id>/# only).
    site_passwords = {name: secrets.token_urlsafe(24) for name in (CABINET, SENSOR, GATEWAY)}
    site = devstack.start_broker(
        site_dir / "mosquitto", users=site_passwords, acl=site_acl([GATEWAY])
    )
    print(f"  site MQTT    {site.host}:{site.port} (devices and {GATEWAY}; ACL {site.acl_file})")
    backend_password = devstack.add_broker_user(stack, GATEWAY)
    worker, thread = _start_worker(stack)

    def stop_ingest() -> None:
        worker.stop()
        thread.join(timeout=30)

    try:
        if not worker.wait_subscribed(30):
            print("the ingest worker could not subscribe to the broker; see the log above")
            return 1, 0
        print("  ingest       one worker on the shared subscription $share/lumeau-ingest/...")
        gateway.start(site, site_passwords[GATEWAY], stack, backend_password)
        if not gateway.wait_ready():
            print(f"the gateway did not come up; its log ({gateway.log}):\n{gateway.log_tail()}")
            return 1, 0
        gw_boot = str(gateway.health().get("boot"))
        print(f"  gateway      {GATEWAY} boot {gw_boot}, pid {gateway.proc and gateway.proc.pid}")
        print(f"               config {gateway.config}")
        print(f"               log    {gateway.log}")
        print(f"               metrics {gateway.metrics_url}")
        start_ms = _script_start(stack.database_url)
        return _play(
            stack,
            site,
            site_passwords,
            gateway,
            gw_boot,
            worker,
            stop_ingest,
            tool_pub,
            tool_sub,
            start_ms,
        ), start_ms
    finally:
        code = gateway.stop()
        stop_ingest()
        site.stop()
        print(f"\nGateway stopped (exit code {code}), site broker stopped; its files: {site_dir}")


def _start_worker(stack: Any) -> tuple[Any, threading.Thread]:
    from backend.ingest.worker import IngestWorker, WorkerConfig

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
    return worker, thread


def _play(
    stack: Any,
    site: Any,
    passwords: dict[str, str],
    gateway: _GatewayProcess,
    gw_boot: str,
    worker: Any,
    stop_ingest: Callable[[], None],
    tool_pub: str,
    tool_sub: str,
    start_ms: int,
) -> int:
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        started = conn.execute("SELECT now()").fetchone()
        since = started[0] if started else None
        cab_boot, sensor_boot = secrets.token_hex(4), secrets.token_hex(4)
        boots = [cab_boot, sensor_boot]
        replies = _ErrorReplies(site.host, site.port, passwords[CABINET], tool_sub)
        sent = []
        for n, pub in enumerate(build_publications(cab_boot, sensor_boot, start_ms)):
            outcome = _publish(pub, site.host, site.port, passwords[pub.device], tool_pub)
            sent.append(
                (pub.device, pub.topic.removeprefix(protocol.TOPIC_ROOT + "/"), pub.note, outcome)
            )
            if n == 0:
                # The first message is a retained status: once the gateway has it
                # (live, or retained when it subscribes) its subscription exists.
                _wait(lambda: _counter(gateway.metrics(), "received_total") >= 1)
        _table(
            f"Published with mosquitto_pub to the SITE broker {site.host}:{site.port} (QoS 1, v5)",
            ("device", "topic", "what", "mosquitto_pub"),
            sent,
        )

        def stored() -> int:
            row = conn.execute(
                "SELECT count(*) FROM uplink_message WHERE boot_id = ANY(%s)", (boots,)
            ).fetchone()
            return int(row[0]) if row else 0

        def gateway_status() -> str | None:
            row = conn.execute(
                "SELECT s.state FROM device_status s JOIN uplink_message u USING"
                " (device_id, boot_id, seq, time) WHERE s.device_id = %s AND s.boot_id = %s"
                " ORDER BY u.received_at DESC, s.seq DESC LIMIT 1",
                (GATEWAY, gw_boot),
            ).fetchone()
            return str(row[0]) if row else None

        complete = _wait(
            lambda: (
                stored() >= _GOOD_MESSAGES
                and _counter(gateway.metrics(), "rejected_total") >= len(_BAD_CODES)
                and len(replies.codes()) >= len(_BAD_CODES)
                and gateway_status() == "online"
            )
        )
        time.sleep(0.5)  # a late duplicate, if any, would now be visible too
        metrics = gateway.metrics()
        devices_while_running = conn.execute(
            "SELECT device_id, role, last_status, fw, last_gateway_id FROM device"
            " WHERE device_id = ANY(%s) ORDER BY device_id",
            ([CABINET, GATEWAY, SENSOR],),
        ).fetchall()

        # A clean stop: in-flight batches drained, offline status published.
        exit_code = gateway.stop()
        _wait(lambda: gateway_status() == "offline", 15)
        stop_ingest()
        replies.close()
        letters = gateway.dead_letters()

        _table(
            f"Gateway counters, read from {gateway.metrics_url} before it stopped",
            ("counter", "value", "meaning"),
            [(name, _counter(metrics, name), meaning) for name, meaning in _GATEWAY_COUNTERS]
            + [
                (key, int(value), "  by code")
                for key, value in sorted(metrics.items())
                if key.startswith("rejected_total{")
            ],
        )
        _table(
            f"Gateway dead letters (its SQLite {gateway.queue.name}: bad input stops at the site)",
            ("device", "code", "field", "reason"),
            [(dev, code, field, reason[:70]) for dev, code, field, reason, _topic in letters],
        )
        _table(
            f"Error replies {CABINET} read on its own down/error topic of the SITE broker",
            ("reply",),
            [[line[:110]] for line in replies.lines],
        )
        rows = conn.execute(
            "SELECT device_id, boot_id, seq, kind, to_char(time AT TIME ZONE 'UTC', 'HH24:MI:SS'),"
            " gateway_id FROM uplink_message WHERE boot_id = ANY(%s) ORDER BY device_id, seq",
            (boots,),
        ).fetchall()
        _table("Stored device messages (uplink_message: one row per device, boot, seq)",
               ("device", "boot", "seq", "kind", "time UTC", "via gateway"), rows)  # fmt: skip
        rows = conn.execute(
            "SELECT device_id, boot_id, seq, kind, to_char(time AT TIME ZONE 'UTC', 'HH24:MI:SS')"
            " FROM uplink_message WHERE device_id = %s AND boot_id = %s ORDER BY seq",
            (GATEWAY, gw_boot),
        ).fetchall()
        batches = sum(1 for r in rows if r[3] == "batch")
        _table(f"The gateway's own messages (uplink_message, {GATEWAY} boot {gw_boot})",
               ("gateway", "boot", "seq", "kind", "time UTC"), rows)  # fmt: skip
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
        _table("Devices and gateway while the gateway ran (device table)",
               ("id", "role", "status", "firmware", "last gateway"),
               devices_while_running)  # fmt: skip
        rows = conn.execute(
            "SELECT s.device_id, s.seq, s.state,"
            " to_char(s.time AT TIME ZONE 'UTC', 'HH24:MI:SS.MS'),"
            " to_char(u.received_at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS')"
            " FROM device_status s JOIN uplink_message u USING (device_id, boot_id, seq, time)"
            " WHERE s.device_id = %s AND s.boot_id = %s ORDER BY u.received_at, s.seq",
            (GATEWAY, gw_boot),
        ).fetchall()
        _table("Gateway presence (device_status of its boot, in order received)",
               ("gateway", "seq", "state", "composed UTC", "received UTC"), rows)  # fmt: skip
        rows = conn.execute(
            "SELECT device_id, boot_id, first_missing, last_missing, missing"
            " FROM sequence_gap WHERE boot_id = ANY(%s)",
            ([*boots, gw_boot],),
        ).fetchall()
        _table("Sequence gaps (reported, never silent)",
               ("device", "boot", "first", "last", "missing"), rows)  # fmt: skip
        backend_letters = conn.execute(
            "SELECT count(*) FROM dead_letter WHERE received_at >= %s", (since,)
        ).fetchone()
        dup = conn.execute(
            "SELECT count(*) FROM uplink_message WHERE boot_id = %s AND seq = 2", (cab_boot,)
        ).fetchone()
        acl = conn.execute(
            "SELECT count(*) FROM uplink_message WHERE device_id = %s AND boot_id = %s",
            (SENSOR, cab_boot),
        ).fetchone()
        via = conn.execute(
            "SELECT count(*) FROM uplink_message WHERE boot_id = ANY(%s) AND gateway_id = %s",
            (boots, GATEWAY),
        ).fetchone()
        good = stored()
    print()
    print(
        f"Good messages: {_GOOD_MESSAGES} distinct sent, {good} stored, "
        f"{via[0] if via else '?'} of them via {GATEWAY}."
    )
    print(
        f"Duplicate: seq 2 published twice, stored {dup[0] if dup else '?'} time(s) "
        f"(gateway duplicates={_counter(metrics, 'duplicates_total')})."
    )
    print(f"ACL: {CABINET}'s messages under {SENSOR}'s topic stored: {acl[0] if acl else '?'}.")
    print(
        f"Bad input: {len(letters)} gateway dead letters "
        f"({', '.join(sorted(code for _, code, _, _, _ in letters))}), "
        f"{len(replies.codes())} error replies; backend dead letters this run: "
        f"{backend_letters[0] if backend_letters else '?'}."
    )
    print(f"Gateway batches stored: {batches} (kind batch); gateway exit code {exit_code}.")
    print(f"Ingest counters: {worker.counters.line()}")
    if not complete:
        print("\nNot everything arrived within the wait; see the tables above.")
        print(f"Gateway log ({gateway.log}):\n{gateway.log_tail()}")
        return 1
    return 0


# --- the API: what a person asks of the stored data -------------------------------


class _ApiProcess:
    """``lumeau api run`` on a free loopback port, with the stack's settings (``--run-dir``).

    Its own session, so that Ctrl-C reaches the demo, which then stops it with
    SIGTERM; its log and pid are in ``<run dir>/api/``.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.folder = run_dir / "api"
        self.log = self.folder / "api.log"
        self.pid_file = self.folder / "api.pid"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _is_ours(self, pid: int) -> bool:
        return _process_runs(pid, "\0api\0run\0") and _process_runs(pid, str(self.run_dir))

    def stop_stale(self) -> None:
        """An API left running by an interrupted demo: SIGTERM it."""
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pid_file.read_text().strip())
            if self._is_ours(pid):
                os.kill(pid, signal.SIGTERM)
                _wait(lambda: not self._is_ours(pid), 30)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        cmd = [*_lumeau_command(), "api", "run", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--run-dir", str(self.run_dir)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )
        self.pid_file.write_text(f"{self.proc.pid}\n")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, client: httpx.Client) -> dict[str, Any] | None:
        """``GET /api/v1/health`` until it answers 200 (the database is reachable)."""
        answer: dict[str, Any] = {}

        def healthy() -> bool:
            try:
                response = client.get("/api/v1/health")
            except httpx.HTTPError:
                return False
            if response.status_code != 200:
                return False
            answer.update(response.json())
            return True

        ok = _wait(lambda: healthy() or not self.running()) and self.running() and bool(answer)
        return answer if ok else None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        with contextlib.suppress(OSError):
            self.pid_file.unlink()
        return self.proc.returncode

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _issue_token(run_dir: Path, user: str, role: str) -> tuple[str | None, str]:
    """``lumeau api token create``, as a person runs it: (the token or None, its message).

    The token is read from the command's stdout and kept in memory only.
    """
    from backend.api.tokens import well_formed

    cmd = [*_lumeau_command(), "api", "token", "create", "--user", user, "--role", role]
    cmd += ["--expires-in-days", "1", "--label", "lumeau demo", "--run-dir", str(run_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    token = done.stdout.strip()
    message = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
    if done.returncode != 0 or not well_formed(token):
        return None, message[0]
    return token, message[0]


def _iso(ms: int) -> str:
    return _utc(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clock(value: Any, fmt: str = "%H:%M:%S") -> str:
    """An API timestamp (ISO 8601) shown in UTC."""
    if not value:
        return ""
    return datetime.fromisoformat(str(value)).astimezone(UTC).strftime(fmt)


def _path(path: str, params: dict[str, str] | None = None) -> str:
    """``path?query``, readable (``:`` left as is) and the same for httpx and curl."""
    return path + ("?" + urllib.parse.urlencode(params, safe=":") if params else "")


def _curl(base_url: str, target: str) -> str:
    return f"curl -s -H \"Authorization: Bearer $TOKEN\" '{base_url}{target}'"


def _problem(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", ""))
    except ValueError:
        return response.text[:200]


def _show_api(run_dir: Path, start_ms: int, *, serve: bool) -> int:
    """Start the API, issue two tokens and make the queries a person would make."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the demo prints what it asks
    api = _ApiProcess(run_dir)
    api.stop_stale()
    api.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{api.port}", timeout=30) as client:
            health = api.wait_ready(client)
            if health is None:
                print(f"\nThe API did not come up; its log ({api.log}):\n{api.log_tail()}")
                return 1
            code = _queries(api, client, run_dir, start_ms, health)
        if code != 0 or not serve:
            return code
        return _serve(api, run_dir)
    finally:
        status = api.stop()
        how = "by SIGTERM" if status == -signal.SIGTERM else f"exit status {status}"
        print(f"\nAPI stopped ({how}); its log: {api.log}")


def _queries(
    api: _ApiProcess,
    client: httpx.Client,
    run_dir: Path,
    start_ms: int,
    health: dict[str, Any],
) -> int:
    base = api.base_url
    print(f"\nThe API: `lumeau api run` (pid {api.proc and api.proc.pid}) at {base}/api/v1")
    print(f"  OpenAPI page {base}/api/v1/docs (the schema: {base}/api/v1/openapi.json)")
    print(f"  log          {api.log}")
    print(f"  health       {json.dumps(health, separators=(',', ':'))}  (no token needed)")
    print(f"  $ curl -s {base}/api/v1/health")
    tokens: dict[str, str] = {}
    for user, role in ((_OPERATOR, "operator"), (_TECHNICIAN, "technician")):
        token, message = _issue_token(run_dir, user, role)
        print(f"  token        `lumeau api token create --user {user} --role {role}`: {message}")
        if token is None:
            return 1
        tokens[role] = token
    print("               (the demo keeps both tokens in memory; the database has their SHA-256)")
    print(f"  In a shell:  TOKEN=$({shlex.join(_lumeau_command())} api token create"
          f" --user $USER --role operator --run-dir {shlex.quote(str(run_dir))})")  # fmt: skip

    def get(role: str, target: str) -> httpx.Response:
        return client.get(target, headers={"Authorization": f"Bearer {tokens[role]}"})

    failures = 0

    target = _path("/api/v1/devices")
    response = get("operator", target)
    devices = response.json().get("items", []) if response.status_code == 200 else []
    failures += response.status_code != 200
    _table(
        f"API GET {target} as {_OPERATOR}: {response.status_code},"
        f" {len(devices)} devices (presence: their last status message)",
        ("device", "role", "presence", "since UTC", "last seen UTC", "last gateway", "fw"),
        [
            (
                d["device_id"],
                d["role"],
                d["presence"],
                _clock(d["presence_since"]),
                _clock(d["last_seen"]),
                d["last_gateway_id"],
                d["fw"],
            )
            for d in devices
        ],
        _curl(base, target),
    )

    window = {"from": _iso(start_ms), "to": _iso(start_ms + _SLOT_MS)}
    target = _path(
        f"/api/v1/devices/{CABINET}/telemetry", {"metric": _METRIC, "bucket": "15m"} | window
    )
    response = get("operator", target)
    points = response.json().get("points", []) if response.status_code == 200 else []
    failures += response.status_code != 200
    _table(
        f"API GET {CABINET} telemetry as {_OPERATOR}: {response.status_code}, {_METRIC} per"
        " 15-minute bucket and circuit, over this run's device times",
        ("bucket UTC", "ch", "count", "avg", "min", "max"),
        [
            (
                _clock(p["time"], "%Y-%m-%d %H:%M"),
                p["channel"],
                p["count"],
                f"{p['avg']:.2f}",
                f"{p['min']:.2f}",
                f"{p['max']:.2f}",
            )
            for p in points
        ],
        _curl(base, target),
    )

    target = _path("/api/v1/events", {"device_id": CABINET} | window)
    response = get("operator", target)
    events = response.json().get("items", []) if response.status_code == 200 else []
    failures += response.status_code != 200
    _table(
        f"API GET /api/v1/events as {_OPERATOR}: {response.status_code}, events: {len(events)}",
        ("time UTC", "device", "boot", "seq", "code", "severity", "active"),
        [
            (
                _clock(e["time"]),
                e["device_id"],
                e["boot_id"],
                e["seq"],
                e["code"],
                e["severity"],
                e["active"],
            )
            for e in events
        ],
        _curl(base, target),
    )

    target = _path("/api/v1/dead-letters", {"limit": "5"})
    refused = get("operator", target)
    failures += refused.status_code != 403
    print(f"\nAPI GET {target} as {_OPERATOR}: {refused.status_code} {refused.reason_phrase}")
    print(f"  {_problem(refused)}")
    response = get("technician", target)
    letters = response.json().get("items", []) if response.status_code == 200 else []
    failures += response.status_code != 200
    _table(
        f"API GET {target} as {_TECHNICIAN}: {response.status_code}, {len(letters)} rows"
        " (the backend's dead_letter table, newest first; this run's bad input stopped"
        " at the gateway)",
        ("id", "received UTC", "source", "device", "code", "reason"),
        [
            (
                x["id"],
                _clock(x["received_at"], "%Y-%m-%d %H:%M:%S"),
                x["source"],
                x["device_id"],
                x["code"],
                str(x["reason"])[:60],
            )
            for x in letters
        ],
        _curl(base, target),
    )
    if failures:
        print(f"\n{failures} API answer(s) not as expected; its log ({api.log}):\n{api.log_tail()}")
        return 1
    return 0


def _serve(api: _ApiProcess, run_dir: Path) -> int:
    """``--serve``: the API stays up in the foreground until Ctrl-C (or SIGTERM)."""
    print(f"\nThe API keeps running at {api.base_url}/api/v1; open {api.base_url}/api/v1/docs")
    print("and press 'Authorize' with a token of your own, made with:")
    print(f"  {shlex.join(_lumeau_command())} api token create --user NAME --role operator"
          f" --run-dir {shlex.quote(str(run_dir))}")  # fmt: skip
    print("Roles: operator, planner, technician, admin (docs/api.md). Ctrl-C stops the API.")
    sys.stdout.flush()

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        while api.running():
            time.sleep(0.5)
    except KeyboardInterrupt:
        print()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"The API exited by itself; its log ({api.log}):\n{api.log_tail()}")
    return 1
