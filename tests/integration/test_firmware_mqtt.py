"""The firmware's MQTT client (``firmware/lib/mqtt.py``) against a real Mosquitto.

The client runs here under CPython with the very code and socket calls it
uses on the boards. The broker has per-device users and the stack's real ACL
(``backend.devstack.broker.LUMEAU_ACL``); a paho client as the backend's
service user watches what is delivered. TLS is checked against a second
Mosquitto with a TLS listener and a throwaway CA made with the ``openssl`` CLI.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend import devstack
from backend.devstack._util import chown_tree, ensure_reachable, service_account, wait_until
from backend.devstack.broker import LUMEAU_ACL, SERVICE_USER, BrokerHandle
from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "firmware" / "lib"))

import mqtt
import mqtt_codec

pytestmark = pytest.mark.services

DEV = "cab-0001"
OTHER = "cab-0002"
PASSWORDS = {DEV: "pw-cab-0001-xyz", OTHER: "pw-cab-0002-xyz", SERVICE_USER: "pw-backend-xyz"}
UP = f"lumeau/v1/dev/{DEV}/up"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerHandle]:
    folder = tmp_path_factory.mktemp("fw-mqtt-broker")
    try:
        handle = devstack.start_broker(folder, users=dict(PASSWORDS), acl=LUMEAU_ACL)
    except devstack.MissingDependency as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Mosquitto unavailable: {exc}")
    with handle:
        yield handle


class Watcher:
    """A paho subscriber (the backend's user: it may read everything)."""

    def __init__(self, port: int, topic: str, user: str | None = SERVICE_USER) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{time.time_ns()}")
        if user is not None:
            self.client.username_pw_set(user, PASSWORDS[user])
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "paho watcher did not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(msg)

    def payloads(self, topic: str | None = None, retained: bool = False) -> list[bytes]:
        """What was delivered live (and, with ``retained``, what was retained before)."""
        with self.lock:
            return [
                m.payload
                for m in self.messages
                if (topic is None or m.topic == topic) and (retained or not m.retain)
            ]

    def wait(self, pred: Callable[[], bool], timeout: float = 10.0) -> None:
        wait_until(pred, timeout=timeout, what="messages at the watcher")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def watcher(broker: BrokerHandle) -> Iterator[Watcher]:
    w = Watcher(broker.port, "lumeau/v1/dev/#")
    yield w
    w.close()


def device(broker: BrokerHandle, user: str = DEV, **kw: Any) -> mqtt.MQTTClient:
    kw.setdefault("password", PASSWORDS[user])
    kw.setdefault("keepalive", 30)
    kw.setdefault("timeout_s", 5)
    return mqtt.MQTTClient(user, broker.host, broker.port, user=user, **kw)


def test_publish_qos1_is_acknowledged_and_delivered(broker: BrokerHandle, watcher: Watcher) -> None:
    c = device(broker)
    acked: list[int] = []
    c.on_puback = acked.append
    assert c.connect() is False  # clean session: nothing present
    pids = [c.publish(f"{UP}/telemetry", b"m%d" % i, qos=1) for i in range(5)]
    c.wait_for(lambda: len(acked) == 5)
    assert acked == pids  # the broker acknowledges in order
    assert c.inflight == {}
    assert c.publish(f"{UP}/event", b"q0", qos=0) == 0
    watcher.wait(lambda: len(watcher.payloads()) == 6)
    assert watcher.payloads() == [b"m0", b"m1", b"m2", b"m3", b"m4", b"q0"]
    c.disconnect(publish_will=False)
    assert not c.connected


def test_receives_a_command_on_down_cmd(broker: BrokerHandle) -> None:
    got: list[tuple[str, bytes, bool, bool]] = []
    c = device(broker, clean_session=False)
    c.on_message = lambda *m: got.append(m)
    c.connect()
    c.subscribe(f"lumeau/v1/dev/{DEV}/down/cmd", qos=1)
    backend = paho.Client(CallbackAPIVersion.VERSION2, client_id="backend-cmd")
    backend.username_pw_set(SERVICE_USER, PASSWORDS[SERVICE_USER])
    backend.connect(broker.host, broker.port)
    backend.loop_start()
    try:
        backend.publish(f"lumeau/v1/dev/{DEV}/down/cmd", b'{"id":"c-1"}', qos=1).wait_for_publish(5)
        c.wait_for(lambda: len(got) == 1)
        assert got[0] == (f"lumeau/v1/dev/{DEV}/down/cmd", b'{"id":"c-1"}', False, False)
        # Persistent session: a command sent while the device is away is queued...
        c.close()
        backend.publish(f"lumeau/v1/dev/{DEV}/down/cmd", b'{"id":"c-2"}', qos=1).wait_for_publish(5)
        assert c.connect() is True  # session present
        c.wait_for(lambda: len(got) == 2)  # ...and delivered on reconnect
        assert got[1][1] == b'{"id":"c-2"}'
        # ...and acknowledged: a third connection gets nothing again.
        c.disconnect(publish_will=False)
        c.connect()
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            c.poll(50)
        assert len(got) == 2
    finally:
        backend.loop_stop()
        backend.disconnect()
        c.disconnect(publish_will=False)
        # leave no persistent session behind for other tests
        c2 = device(broker, clean_session=True)
        c2.connect()
        c2.disconnect(publish_will=False)


def test_last_will_is_published_when_the_socket_dies(
    broker: BrokerHandle, watcher: Watcher
) -> None:
    status = f"{UP}/status"
    c = device(broker)
    c.set_will(status, b'{"seq":0,"state":"offline"}', qos=1, retain=True)
    c.connect()
    c.publish(status, b'{"seq":1,"state":"online"}', qos=1, retain=True)
    c.wait_for(lambda: not c.inflight)
    raw = c._sock
    assert raw is not None
    raw.shutdown(socket.SHUT_RDWR)  # the device vanishes: no DISCONNECT
    raw.close()
    watcher.wait(lambda: watcher.payloads(status)[-1:] == [b'{"seq":0,"state":"offline"}'])
    assert watcher.payloads(status) == [
        b'{"seq":1,"state":"online"}',
        b'{"seq":0,"state":"offline"}',
    ]
    # retained: a newcomer sees the will
    late = Watcher(broker.port, status)
    try:
        late.wait(lambda: late.payloads(retained=True) == [b'{"seq":0,"state":"offline"}'])
        assert late.messages[0].retain
    finally:
        late.close()


def test_clean_disconnect_publishes_the_will_exactly_once(
    broker: BrokerHandle, watcher: Watcher
) -> None:
    status = f"{UP}/status"
    c = device(broker)
    c.set_will(status, b'{"seq":2,"state":"offline"}', qos=1, retain=True)
    c.connect()
    c.publish(status, b'{"seq":3,"state":"online"}', qos=1, retain=True)
    c.disconnect()  # publishes the will itself, then DISCONNECT
    watcher.wait(lambda: len(watcher.payloads(status)) == 2)
    time.sleep(0.3)
    assert watcher.payloads(status) == [
        b'{"seq":3,"state":"online"}',
        b'{"seq":2,"state":"offline"}',
    ]


def test_wrong_password_is_refused_with_the_connack_code(broker: BrokerHandle) -> None:
    c = device(broker, password="not-the-password")
    with pytest.raises(mqtt.ConnectRefused) as info:
        c.connect()
    # Mosquitto answers 3.1.1 clients with 5 (not authorized) for a bad password.
    assert info.value.code in (4, 5)
    assert "refused" in str(info.value)
    assert not c.connected
    unknown = mqtt.MQTTClient("nobody", broker.host, broker.port, user="nobody", password="x")
    with pytest.raises(mqtt.ConnectRefused):
        unknown.connect()


def test_acl_keeps_a_device_out_of_another_devices_topics(
    broker: BrokerHandle, watcher: Watcher
) -> None:
    c = device(broker)
    got: list[Any] = []
    c.on_message = lambda *m: got.append(m)
    c.connect()
    acked: list[int] = []
    c.on_puback = acked.append
    # Mosquitto acknowledges a denied QoS 1 publish (3.1.1 has no way to say no)...
    c.publish(f"lumeau/v1/dev/{OTHER}/up/telemetry", b"forged", qos=1)
    c.publish(f"lumeau/v1/dev/{OTHER}/down/cmd", b"forged-cmd", qos=1)
    c.publish(f"{UP}/telemetry", b"mine", qos=1)
    c.wait_for(lambda: len(acked) == 3)
    watcher.wait(lambda: b"mine" in watcher.payloads())
    time.sleep(0.3)
    # ...but delivers neither.
    assert watcher.payloads() == [b"mine"]
    # Nor can it read another device's commands.
    c.subscribe(f"lumeau/v1/dev/{OTHER}/down/cmd", qos=1)
    other = device(broker, user=OTHER)
    other.connect()
    other.disconnect(publish_will=False)
    backend = paho.Client(CallbackAPIVersion.VERSION2, client_id="backend-acl")
    backend.username_pw_set(SERVICE_USER, PASSWORDS[SERVICE_USER])
    backend.connect(broker.host, broker.port)
    backend.loop_start()
    try:
        backend.publish(f"lumeau/v1/dev/{OTHER}/down/cmd", b"secret", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            c.poll(50)
        assert got == []
    finally:
        backend.loop_stop()
        backend.disconnect()
        c.disconnect(publish_will=False)


def test_keepalive_pings_and_poll_is_non_blocking(broker: BrokerHandle) -> None:
    now = [0]
    c = device(broker, keepalive=10)
    c.connect()
    c._clock = lambda: now[0]  # a fake clock from here on
    c._last_send = 0
    t0 = time.monotonic()
    assert c.poll(0) == 0
    assert time.monotonic() - t0 < 0.05
    now[0] = 5000  # half the keepalive idle: a PINGREQ goes out
    c.poll(0)
    assert c._ping_since == 5000
    c.wait_for(lambda: c._ping_since is None, timeout_ms=10**9)  # PINGRESP came back
    c.disconnect(publish_will=False)


def test_a_malformed_packet_is_a_clear_error_and_closes(tmp_path: Path) -> None:
    """A fake server answers CONNECT with garbage: MalformedPacket, socket closed."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve(reply: bytes) -> None:
        conn, _ = srv.accept()
        conn.recv(1024)
        conn.sendall(reply)
        time.sleep(0.5)
        conn.close()

    cases = (
        (b"\x20\x02\x00\x00\x90\x02\x00\x01", "SUBACK: body"),  # SUBACK too short
        (b"\x20\x02\x00\x00\x30\xff\xff\xff\xff\x7f", "longer than 4 bytes"),
        (b"\x20\x02\x00\x00\x50\x02\x00\x01", "unexpected PUBREC"),  # no QoS 2 here
        (b"\x32\x05\x00\x03a/b", "expected CONNACK"),
        (b"\x20\x02\x00\x00\x30\x03\x00\x05a", "runs past the packet"),
    )
    try:
        for reply, words in cases:
            t = threading.Thread(target=serve, args=(reply,))
            t.start()
            c = mqtt.MQTTClient("x", "127.0.0.1", port, timeout_s=3)
            try:
                with pytest.raises(mqtt.MalformedPacket, match=words):
                    c.connect()
                    c.poll(1000)
                assert not c.connected
            finally:
                c.close()
                t.join()
    finally:
        srv.close()


# ---------------------------------------------------------------- TLS


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(folder: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
        cwd=folder,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if shutil.which("openssl") is None or not Path(mosquitto).exists():
        if os.environ.get("CI"):
            raise RuntimeError("openssl and mosquitto are needed for the TLS tests")
        pytest.skip("openssl or mosquitto missing")
    folder = tmp_path_factory.mktemp("fw-mqtt-tls")
    _make_ca(folder, "ca")
    _make_ca(folder, "otherca")
    (folder / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "server.key", "-out", "server.csr", cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "server.crt",
        cwd=folder,
    )  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    account = service_account("mosquitto", "mosquitto")
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        f"cafile {folder / 'ca.crt'}\n"
        f"certfile {folder / 'server.crt'}\n"
        f"keyfile {folder / 'server.key'}\n"
        "tls_version tlsv1.2\n"
        "persistence false\n"
        "log_dest stderr\n" + ("" if account.is_current else f"user {account.name}\n")
    )
    ensure_reachable(folder, account)
    chown_tree(folder, account)
    proc = subprocess.Popen(
        [mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_until(
            lambda: _port_open(port),
            timeout=10,
            what="TLS Mosquitto",
            alive=lambda: proc.poll() is None,
        )
        yield port, folder
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_tls_connects_with_the_right_ca(tls_broker: tuple[int, Path]) -> None:
    port, folder = tls_broker
    ca = (folder / "ca.crt").read_bytes()
    got: list[Any] = []
    c = mqtt.MQTTClient(
        "tls-dev",
        "127.0.0.1",
        port,
        timeout_s=5,
        tls={"cadata": ca, "server_hostname": "localhost"},
    )
    c.on_message = lambda *m: got.append(m)
    c.connect()
    c.subscribe("t/echo", qos=1)
    acked: list[int] = []
    c.on_puback = acked.append
    pid = c.publish("t/echo", b"over tls", qos=1)
    c.wait_for(lambda: acked == [pid] and len(got) == 1)
    assert got[0][:2] == ("t/echo", b"over tls")
    assert c._sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[union-attr]
    c.disconnect()


def test_tls_refuses_a_server_signed_by_another_ca(tls_broker: tuple[int, Path]) -> None:
    port, folder = tls_broker
    other = (folder / "otherca.crt").read_bytes()
    c = mqtt.MQTTClient(
        "tls-dev",
        "127.0.0.1",
        port,
        timeout_s=5,
        tls={"cadata": other, "server_hostname": "localhost"},
    )
    with pytest.raises(mqtt.TLSError, match="certificate verify failed"):
        c.connect()
    assert not c.connected


def test_tls_refuses_a_host_name_mismatch(tls_broker: tuple[int, Path]) -> None:
    port, folder = tls_broker
    ca = (folder / "ca.crt").read_bytes()
    c = mqtt.MQTTClient(
        "tls-dev", "127.0.0.1", port, timeout_s=5,
        tls={"cadata": ca, "server_hostname": "broker.elsewhere.example"},
    )  # fmt: skip
    with pytest.raises(mqtt.TLSError, match="ostname mismatch"):
        c.connect()
    # without cadata there is no TLS at all, rather than TLS without checks
    with pytest.raises(ValueError, match="cadata"):
        mqtt.MQTTClient("x", "127.0.0.1", port, tls={}).connect()


def test_backoff_grows_with_jitter_and_resets() -> None:
    b = mqtt.Backoff(base_ms=1000, max_ms=60000, rand=lambda: 0.999)
    seq = [b.next_ms() for _ in range(9)]
    assert seq[:4] == [999, 1999, 3998, 7996]
    assert max(seq) < 60000 and seq[-1] >= 30000
    lo = mqtt.Backoff(base_ms=1000, max_ms=60000, rand=lambda: 0.0)
    assert [lo.next_ms() for _ in range(3)] == [500, 1000, 2000]
    lo.reset()
    assert lo.next_ms() == 500


def test_codec_is_importable_alone() -> None:
    assert mqtt_codec.encode_connect("a", 60, True) == (
        b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01a"
    )
