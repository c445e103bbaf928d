"""The ingest worker end to end: real Mosquitto, real TimescaleDB, real process.

The worker runs as ``python -m backend.cli ingest run`` in a subprocess, with
its own database, client id and shared-subscription group, so these tests
share the broker with other modules without sharing messages.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import paho.mqtt.client as mqtt
import psycopg
import pytest

from backend.storage import migrate
from backend.storage.scratch import create_database, drop_database, new_name, with_database
from edge import protocol
from tests.integration.ingest_kit import (
    DEADLINE,
    WorkerProcess,
    forget_session,
    service_client,
    wait_until,
)

if TYPE_CHECKING:
    from backend.devstack import Stack

pytestmark = pytest.mark.services

TS = 1_764_000_000_000
RUN = uuid.uuid4().hex[:6]  # keeps device ids apart from other runs' rows


def dev(name: str) -> str:
    return f"t{RUN}-{name}"


def new_boot() -> str:
    return secrets.token_hex(4)


def telemetry(device: str, boot: str, seq: int, power: float = 12.5) -> dict[str, Any]:
    return {
        "v": 1,
        "kind": "telemetry",
        "dev": device,
        "boot": boot,
        "seq": seq,
        "ts": TS + seq * 1000,
        "readings": [
            {"ts": TS + seq * 1000, "ch": 0, "values": {"power_w": power, "voltage_v": 231.0}}
        ],
    }


class Publisher:
    """A paho client of the service user (which may publish on any topic)."""

    def __init__(self, services: Stack) -> None:
        self._services = services
        self._client = service_client(services, f"test-pub-{RUN}")
        self._client.connect(services.mqtt_host, services.mqtt_port)
        self._client.loop_start()

    def publish(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        data = protocol.encode(payload) if isinstance(payload, dict) else payload
        info = self._client.publish(topic, data, qos=1)
        info.wait_for_publish(timeout=DEADLINE)
        assert info.is_published(), f"broker did not acknowledge the publish on {topic}"

    def publish_cli(self, topic: str, payload: bytes) -> None:
        """The same, with the real mosquitto_pub client."""
        tool = shutil.which("mosquitto_pub")
        assert tool is not None, "mosquitto_pub not installed (apt-get install mosquitto-clients)"
        s = self._services
        subprocess.run(
            [tool, "-h", s.mqtt_host, "-p", str(s.mqtt_port), "-u", s.mqtt_username,
             "-P", s.mqtt_password, "-q", "1", "-t", topic, "-m", payload.decode()],
            check=True,
            timeout=DEADLINE,
        )  # fmt: skip

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class Replies:
    """Collects what the backend publishes on devices' ``down/error`` topics."""

    def __init__(self, services: Stack) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = service_client(services, f"test-replies-{RUN}")
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.connect(services.mqtt_host, services.mqtt_port)
        self._client.subscribe("lumeau/v1/dev/+/down/error", qos=1)
        self._client.loop_start()
        assert self._subscribed.wait(DEADLINE), "reply listener could not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append((message.topic, json.loads(message.payload)))

    def for_device(self, device: str) -> list[dict[str, Any]]:
        topic = protocol.downlink_topic(device, "error")
        with self._lock:
            return [body for t, body in self.received if t == topic]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def services(stack: object) -> Stack:
    return cast("Stack", stack)


@pytest.fixture(scope="module")
def database(services: Stack) -> Iterator[str]:
    url = create_database(services.admin_database_url, services.database_url, "t_ingest")
    migrate(url)
    yield url
    drop_database(services.admin_database_url, url)


@pytest.fixture(scope="module")
def client_ids(services: Stack) -> Iterator[list[str]]:
    """Every worker client id used here; their sessions are dropped at the end."""
    ids: list[str] = []
    yield ids
    for client_id in ids:
        forget_session(services, client_id)


@pytest.fixture(scope="module")
def worker(
    services: Stack,
    database: str,
    client_ids: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    client_id = f"ingest-test-{RUN}-main"
    client_ids.append(client_id)
    log_path = tmp_path_factory.mktemp("ingest") / "worker.log"
    process = WorkerProcess(services, database, log_path, client_id)
    process.wait_for_log("subscribed to")
    yield process
    assert process.terminate() == 0, process.tail()


@pytest.fixture(scope="module")
def publisher(services: Stack) -> Iterator[Publisher]:
    pub = Publisher(services)
    yield pub
    pub.close()


@pytest.fixture(scope="module")
def replies(services: Stack) -> Iterator[Replies]:
    listener = Replies(services)
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def db(database: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database, autocommit=True) as conn:
        yield conn


def stored_seqs(db: psycopg.Connection[Any], device: str, boot: str) -> list[int]:
    rows = db.execute(
        "SELECT seq FROM uplink_message WHERE device_id = %s AND boot_id = %s ORDER BY seq",
        (device, boot),
    ).fetchall()
    return [row[0] for row in rows]


def wait_for_seqs(
    db: psycopg.Connection[Any], worker: WorkerProcess, device: str, boot: str, want: list[int]
) -> None:
    wait_until(
        f"{device} seqs {want} in uplink_message",
        lambda: set(want) <= set(stored_seqs(db, device, boot)),
        lambda: f"stored: {stored_seqs(db, device, boot)}\n{worker.tail()}",
    )


# ------------------------------------------------------------------ tests


def test_a_message_published_three_times_is_stored_once(
    worker: WorkerProcess, publisher: Publisher, db: psycopg.Connection[Any]
) -> None:
    device, boot = dev("dup"), new_boot()
    topic = protocol.uplink_topic(device, "telemetry")
    payload = protocol.encode(telemetry(device, boot, 1))
    publisher.publish(topic, payload)
    wait_for_seqs(db, worker, device, boot, [1])
    publisher.publish(topic, payload)  # a resend, e.g. after a lost PUBACK
    publisher.publish_cli(topic, payload)  # and once more with the C client
    # Deliveries of one publisher arrive in order: once the marker is stored,
    # both copies have been through the worker.
    publisher.publish_cli(topic, protocol.encode(telemetry(device, boot, 2)))
    wait_for_seqs(db, worker, device, boot, [1, 2])
    assert stored_seqs(db, device, boot) == [1, 2]
    readings = db.execute(
        "SELECT seq, count(*) FROM reading WHERE device_id = %s GROUP BY seq ORDER BY seq",
        (device,),
    ).fetchall()
    assert readings == [(1, 2), (2, 2)]


def test_a_malformed_message_is_dead_lettered_and_the_stream_goes_on(
    worker: WorkerProcess,
    publisher: Publisher,
    replies: Replies,
    db: psycopg.Connection[Any],
) -> None:
    device, boot = dev("bad"), new_boot()
    topic = protocol.uplink_topic(device, "telemetry")
    bad = telemetry(device, boot, 2)
    bad["readings"][0]["values"]["power_w"] = -3.0  # below the metric's physical range
    publisher.publish(topic, telemetry(device, boot, 1))
    publisher.publish(topic, json.dumps(bad).encode())
    publisher.publish_cli(topic, b"this is not json")
    publisher.publish(topic, telemetry(device, boot, 3))
    wait_for_seqs(db, worker, device, boot, [1, 3])
    letters = db.execute(
        "SELECT code, reason, field, topic, source FROM dead_letter WHERE device_id = %s"
        " ORDER BY id",
        (device,),
    ).fetchall()
    assert [(code, field) for code, _, field, _, _ in letters] == [
        ("out_of_range", "readings[0].values.power_w"),
        ("bad_json", None),
    ]
    assert "-3.0 is outside [0, 100000] watt" in letters[0][1]
    assert all(row[3] == topic and row[4] == "device" for row in letters)
    assert stored_seqs(db, device, boot) == [1, 3]
    assert worker.alive(), worker.tail()

    wait_until(
        f"two error replies on {device}'s down/error topic",
        lambda: len(replies.for_device(device)) >= 2,
        lambda: f"replies so far: {replies.received}",
    )
    first, second = replies.for_device(device)
    assert first["code"] == "out_of_range" and first["field"] == "readings[0].values.power_w"
    assert first["ref"] == {"boot": boot, "seq": 2}
    assert second["code"] == "bad_json" and "ref" not in second


def test_a_sequence_gap_is_reported(
    worker: WorkerProcess, publisher: Publisher, db: psycopg.Connection[Any]
) -> None:
    device, boot = dev("gap"), new_boot()
    topic = protocol.uplink_topic(device, "telemetry")
    for seq in (1, 2, 5):
        publisher.publish(topic, telemetry(device, boot, seq))
    wait_for_seqs(db, worker, device, boot, [1, 2, 5])
    gaps = db.execute(
        "SELECT first_missing, last_missing, missing FROM sequence_gap"
        " WHERE device_id = %s AND boot_id = %s",
        (device, boot),
    ).fetchall()
    assert gaps == [(3, 4, 2)]
    # a late resend of the missing messages closes the gap
    for seq in (3, 4):
        publisher.publish(topic, telemetry(device, boot, seq))
    wait_for_seqs(db, worker, device, boot, [1, 2, 3, 4, 5])
    closed = db.execute(
        "SELECT count(*) FROM sequence_gap WHERE device_id = %s", (device,)
    ).fetchone()
    assert closed == (0,)


def test_a_gateway_batch_is_stored_entry_by_entry(
    worker: WorkerProcess,
    publisher: Publisher,
    replies: Replies,
    db: psycopg.Connection[Any],
) -> None:
    gateway, cabinet, sensor, boot = dev("gw"), dev("gwcab"), dev("gwleak"), new_boot()
    bad = telemetry(sensor, boot, 1)
    bad["readings"][0]["values"] = {"power": 1.0}  # no unit suffix
    event = {
        "v": 1,
        "kind": "event",
        "dev": sensor,
        "boot": boot,
        "seq": 2,
        "ts": TS + 2000,
        "code": "leak_suspected",
        "sev": "critical",
        "active": True,
        "detail": {"score_ratio": 0.91},
    }
    entries = [
        {
            "topic": protocol.uplink_topic(cabinet, "telemetry"),
            "payload": telemetry(cabinet, boot, 1),
        },
        {"topic": protocol.uplink_topic(sensor, "telemetry"), "payload": bad},
        {"topic": protocol.uplink_topic(sensor, "event"), "payload": event},
    ]
    envelope = {
        "v": 1,
        "kind": "batch",
        "gw": gateway,
        "boot": boot,
        "seq": 7,
        "ts": TS,
        "msgs": entries,
    }
    publisher.publish(f"lumeau/v1/gw/{gateway}/up/batch", json.dumps(envelope).encode())
    wait_for_seqs(db, worker, sensor, boot, [2])
    assert stored_seqs(db, cabinet, boot) == [1]
    assert stored_seqs(db, gateway, boot) == [7]
    assert db.execute(
        "SELECT code, severity, detail FROM event WHERE device_id = %s", (sensor,)
    ).fetchall() == [("leak_suspected", "critical", {"score_ratio": 0.91})]
    devices = db.execute(
        "SELECT device_id, role, last_gateway_id FROM device WHERE device_id = ANY(%s)"
        " ORDER BY device_id",
        ([gateway, cabinet, sensor],),
    ).fetchall()
    assert devices == sorted(
        [(gateway, "gateway", None), (cabinet, None, gateway), (sensor, None, gateway)]
    )
    letter = db.execute(
        "SELECT code, field, source, topic FROM dead_letter WHERE device_id = %s", (sensor,)
    ).fetchone()
    assert letter == (
        "bad_value",
        "readings[0].values.power",
        f"gateway:{gateway}",
        protocol.uplink_topic(sensor, "telemetry"),
    )
    wait_until(
        f"an error reply to {sensor}",
        lambda: bool(replies.for_device(sensor)),
        lambda: f"replies so far: {replies.received}",
    )
    assert replies.for_device(sensor)[0]["ref"] == {"boot": boot, "seq": 1}


def test_a_row_the_database_refuses_becomes_a_dead_letter_alone(
    worker: WorkerProcess, publisher: Publisher, db: psycopg.Connection[Any]
) -> None:
    # Valid protocol, but jsonb cannot hold U+0000: the batch is split and
    # only this message is rejected.
    device, boot = dev("nul"), new_boot()
    event = {
        "v": 1,
        "kind": "event",
        "dev": device,
        "boot": boot,
        "seq": 2,
        "ts": TS + 2000,
        "code": "door_open",
        "sev": "info",
        "active": True,
        "detail": {"note": "a\u0000b"},
    }
    publisher.publish(protocol.uplink_topic(device, "telemetry"), telemetry(device, boot, 1))
    publisher.publish(protocol.uplink_topic(device, "event"), event)
    publisher.publish(protocol.uplink_topic(device, "telemetry"), telemetry(device, boot, 3))
    wait_for_seqs(db, worker, device, boot, [1, 3])
    wait_until(
        "the refused event in dead_letter",
        lambda: (
            db.execute("SELECT 1 FROM dead_letter WHERE device_id = %s", (device,)).fetchone()
            is not None
        ),
        worker.tail,
    )
    assert stored_seqs(db, device, boot) == [1, 3]
    assert db.execute(
        "SELECT code FROM dead_letter WHERE device_id = %s", (device,)
    ).fetchall() == [("storage_rejected",)]


def test_nothing_is_lost_through_a_database_outage_and_a_crash(
    services: Stack,
    publisher: Publisher,
    client_ids: list[str],
    tmp_path: Path,
) -> None:
    """DB missing -> no acks; crash -> redelivery to the same session; DB back -> stored."""
    name = new_name("t_outage")
    url = with_database(services.database_url, name)
    client_id = f"ingest-test-{RUN}-outage"
    client_ids.append(client_id)
    device, boot = dev("outage"), new_boot()
    topic = protocol.uplink_topic(device, "telemetry")

    first = WorkerProcess(services, url, tmp_path / "first.log", client_id)
    try:
        first.wait_for_log("subscribed to")
        for seq in range(1, 6):
            publisher.publish(topic, telemetry(device, boot, seq))
        first.wait_for_log("database unavailable")
        assert first.alive(), first.tail()
    finally:
        first.kill()  # SIGKILL: nothing was committed, nothing acknowledged

    try:
        create_database(services.admin_database_url, services.database_url, name=name)
        migrate(url)
        second = WorkerProcess(services, url, tmp_path / "second.log", client_id)
        with psycopg.connect(url, autocommit=True) as conn:
            wait_for_seqs(conn, second, device, boot, [1, 2, 3, 4, 5])
            assert stored_seqs(conn, device, boot) == [1, 2, 3, 4, 5]
            assert conn.execute(
                "SELECT count(*) FROM reading WHERE device_id = %s", (device,)
            ).fetchone() == (10,)
        assert second.terminate() == 0, second.tail()
    finally:
        drop_database(services.admin_database_url, name)


def test_sigterm_flushes_what_was_received_and_exits_cleanly(
    services: Stack, publisher: Publisher, client_ids: list[str], tmp_path: Path
) -> None:
    client_id = f"ingest-test-{RUN}-term"
    client_ids.append(client_id)
    device, boot = dev("term"), new_boot()
    url = create_database(services.admin_database_url, services.database_url, "t_term")
    process: WorkerProcess | None = None
    try:
        migrate(url)
        # A flush delay far beyond the test: only the stop can flush this batch.
        process = WorkerProcess(
            services, url, tmp_path / "term.log", client_id, "--flush-ms", "600000"
        )
        process.wait_for_log("subscribed to")
        publisher.publish(protocol.uplink_topic(device, "telemetry"), telemetry(device, boot, 1))
        process.wait_for_log("received=1 ")
        with psycopg.connect(url, autocommit=True) as conn:
            assert stored_seqs(conn, device, boot) == []
            assert process.terminate() == 0, process.tail()
            assert stored_seqs(conn, device, boot) == [1]
        assert "stopped: received=1 stored=1 " in process.log(), process.tail()
    finally:
        if process is not None and process.alive():
            process.kill()  # a failed test must not leave a worker consuming the broker
        drop_database(services.admin_database_url, url)


def test_writer_throughput_on_a_100k_reading_batch(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A measurement, printed for the CI log; nothing is asserted about speed."""
    from datetime import UTC, datetime

    from backend.ingest.rows import Inbound, plan_batch
    from backend.ingest.writer import BatchWriter

    boot, now = new_boot(), datetime.now(UTC)
    items = []
    for seq in range(782):  # 782 messages x 128 readings x 1 value = 100,096 rows
        ts = TS + seq * 60_000
        message = {
            "v": 1,
            "kind": "telemetry",
            "dev": dev(f"bulk-{seq % 50}"),
            "boot": boot,
            "seq": seq,
            "ts": ts,
            "readings": [
                {"ts": ts + i, "ch": i % 4, "values": {"power_w": 100.0 + i}} for i in range(128)
            ],
        }
        items.append(Inbound(message, "bulk", None, None, now))
    with psycopg.connect(database, autocommit=True) as conn:
        writer = BatchWriter(conn)
        started = time.perf_counter()
        plan = plan_batch(items)
        planned = time.perf_counter()
        first = writer.write(plan)
        written = time.perf_counter()
        again = writer.write(plan)
        repeated = time.perf_counter()
    assert first.readings == 100_096 and first.messages == 782
    assert again.messages == 0 and again.readings == 0 and again.duplicates == 782
    total = written - started
    with capsys.disabled():
        print(
            f"\n[measure] writer, 100,096 readings in 782 messages: plan {planned - started:.3f}s,"
            f" write {written - planned:.3f}s -> {first.readings / total:,.0f} readings/s"
            f" end to end ({first.readings / (written - planned):,.0f}/s in the database);"
            f" the same batch again (all duplicates): {repeated - written:.3f}s"
        )


# ------------------------------------------------------------------ recordings


def recording_chunks(device: str, boot: str, raw: bytes, per: int) -> list[dict[str, Any]]:
    """The recording messages of ``raw`` (s16le), ``per`` samples a chunk."""
    pieces = [raw[i : i + 2 * per] for i in range(0, len(raw), 2 * per)]
    out = []
    for part, piece in enumerate(pieces):
        msg: dict[str, Any] = {
            "v": 1,
            "kind": "recording",
            "dev": device,
            "boot": boot,
            "seq": 100 + part,
            "ts": TS + 60_000 + part,
            "rec": f"{boot}-1",
            "part": part,
            "parts": len(pieces),
            "t0_us": TS * 1000 + 123_457,
            "fs": 8000,
            "fmt": "s16le",
            "n": len(piece) // 2,
            "clock": {"src": "gps", "unc_us": 3, "age_s": 12},
            "data": base64.b64encode(piece).decode(),
        }
        if part == len(pieces) - 1:
            msg["sha256"] = hashlib.sha256(raw).hexdigest()
        out.append(msg)
    return out


def recording_row(db: psycopg.Connection[Any], device: str) -> tuple[Any, ...] | None:
    return db.execute(
        "SELECT rec, parts, parts_received, complete, sha256_ok, samples, t0_us,"
        " t0 = to_timestamp(0) + t0_us * interval '1 microsecond', clock_src, clock_unc_us"
        " FROM recording WHERE device_id = %s",
        (device,),
    ).fetchone()


def test_a_recording_out_of_order_with_a_duplicate_is_stored_once_and_complete(
    worker: WorkerProcess, publisher: Publisher, db: psycopg.Connection[Any]
) -> None:
    device, boot = dev("rec"), new_boot()
    raw = os.urandom(2 * 7000)  # 7000 samples: parts of 2808, 2808 and 1384
    chunks = recording_chunks(device, boot, raw, per=2808)
    topic = protocol.uplink_topic(device, "recording")
    for msg in (chunks[2], chunks[0], chunks[2]):  # out of order, part 2 twice
        publisher.publish(topic, msg)
    # the same part 0 again in a new message (a get_recording answer): new seq
    publisher.publish(topic, {**chunks[0], "seq": 200, "ts": TS + 120_000})
    publisher.publish(topic, chunks[1])
    wait_until(
        f"{device}'s recording complete",
        lambda: (row := recording_row(db, device)) is not None and row[3] is True,
        lambda: f"row: {recording_row(db, device)}\n{worker.tail()}",
    )
    rec, parts, received, complete, sha_ok, samples, t0_us, t0_exact, src, unc = (
        recording_row(db, device) or ()
    )
    assert (rec, parts, received, complete, sha_ok, samples) == (
        f"{boot}-1",
        3,
        3,
        True,
        True,
        7000,
    )
    assert t0_us == TS * 1000 + 123_457 and t0_exact is True and (src, unc) == ("gps", 3)
    stored = db.execute(
        "SELECT part, n, seq FROM recording_chunk WHERE device_id = %s ORDER BY part", (device,)
    ).fetchall()
    assert stored == [(0, 2808, 100), (1, 2808, 101), (2, 1384, 102)]
    (joined,) = db.execute(
        "SELECT string_agg(data, ''::bytea ORDER BY part) FROM recording_chunk"
        " WHERE device_id = %s",
        (device,),
    ).fetchone() or (None,)
    assert joined == raw
    # every message was recorded once in uplink_message (the exact resend was not)
    assert stored_seqs(db, device, boot) == [100, 101, 102, 200]
    assert db.execute(
        "SELECT count(*) FROM recording_incomplete WHERE device_id = %s", (device,)
    ).fetchone() == (0,)


def test_a_recording_with_missing_parts_is_listed_for_a_new_request(
    worker: WorkerProcess, publisher: Publisher, db: psycopg.Connection[Any]
) -> None:
    device, boot = dev("recgap"), new_boot()
    raw = os.urandom(2 * 1000)
    chunks = recording_chunks(device, boot, raw, per=100)  # 10 parts
    topic = protocol.uplink_topic(device, "recording")
    for part in (0, 1, 4, 8):
        publisher.publish(topic, chunks[part])
    wait_until(
        f"{device}'s four parts",
        lambda: (row := recording_row(db, device)) is not None and row[2] == 4,
        lambda: f"row: {recording_row(db, device)}\n{worker.tail()}",
    )
    assert db.execute(
        "SELECT rec, parts, parts_received, missing, reason FROM recording_incomplete"
        " WHERE device_id = %s",
        (device,),
    ).fetchall() == [(f"{boot}-1", 10, 4, 6, "missing_parts")]
    missing = db.execute(
        "SELECT missing_rec, first_missing, last_missing, missing"
        " FROM recording_missing_parts() WHERE missing_device_id = %s",
        (device,),
    ).fetchall()
    assert missing == [(f"{boot}-1", 2, 3, 2), (f"{boot}-1", 5, 7, 3), (f"{boot}-1", 9, 9, 1)]
    # the parts asked for again arrive: complete, and gone from the lists
    for part in (2, 3, 5, 6, 7, 9):
        publisher.publish(topic, {**chunks[part], "seq": 300 + part})
    wait_until(
        f"{device}'s recording complete",
        lambda: (row := recording_row(db, device)) is not None and row[3] is True,
        lambda: f"row: {recording_row(db, device)}\n{worker.tail()}",
    )
    assert db.execute(
        "SELECT count(*) FROM recording_missing_parts() WHERE missing_device_id = %s", (device,)
    ).fetchone() == (0,)


def test_a_recording_whose_sha256_does_not_match_is_not_complete(
    worker: WorkerProcess, publisher: Publisher, db: psycopg.Connection[Any]
) -> None:
    device, boot = dev("recsha"), new_boot()
    chunks = recording_chunks(device, boot, bytes(range(256)) * 4, per=128)
    chunks[-1]["sha256"] = "0" * 64  # not the SHA-256 of these bytes
    topic = protocol.uplink_topic(device, "recording")
    for msg in chunks:
        publisher.publish(topic, msg)
    wait_until(
        f"{device}'s parts counted",
        lambda: (row := recording_row(db, device)) is not None and row[4] is not None,
        lambda: f"row: {recording_row(db, device)}\n{worker.tail()}",
    )
    row = recording_row(db, device)
    assert row is not None and row[2:5] == (4, False, False)
    assert db.execute(
        "SELECT reason FROM recording_incomplete WHERE device_id = %s", (device,)
    ).fetchall() == [("sha256_mismatch",)]


def test_writer_counts_recording_parts_and_flags_chunks_that_disagree(database: str) -> None:
    from datetime import UTC, datetime

    from backend.ingest.rows import Inbound, plan_batch
    from backend.ingest.writer import BatchWriter

    device, boot, now = dev("recwriter"), new_boot(), datetime.now(UTC)
    chunks = recording_chunks(device, boot, os.urandom(2 * 300), per=100)

    def items(*messages: dict[str, Any]) -> list[Inbound]:
        return [Inbound(protocol.validate(m), "t", None, None, now) for m in messages]

    with psycopg.connect(database, autocommit=True) as conn:
        writer = BatchWriter(conn)
        first = writer.write(plan_batch(items(chunks[0], chunks[1])))
        assert (first.messages, first.chunks, first.recordings_completed) == (2, 2, 0)
        # part 1 again in a new message, and the last part: one new chunk, complete
        again = writer.write(plan_batch(items({**chunks[1], "seq": 500}, chunks[2])))
        assert (again.messages, again.chunks, again.recordings_completed) == (2, 1, 1)
        # a chunk that describes the recording differently: flagged, no longer complete
        other = {**chunks[0], "seq": 501, "fs": 16000}
        assert writer.write(plan_batch(items(other))).chunks == 0
        row = conn.execute(
            "SELECT complete, conflict, sha256_ok, fs FROM recording WHERE device_id = %s",
            (device,),
        ).fetchone()
        assert row == (False, True, True, 8000)
        assert conn.execute(
            "SELECT reason FROM recording_incomplete WHERE device_id = %s", (device,)
        ).fetchall() == [("conflict",)]
