"""TLS to the backend broker, with the server certificate verified.

A throwaway CA and a server certificate (for 127.0.0.1) are made with the
``openssl`` CLI; a Mosquitto with a TLS listener runs from ``tmp_path``. With
``backend_tls_ca`` set to that CA the gateway's batches arrive. With another
CA the gateway refuses the broker (certificate verification fails, logged
and counted), keeps every accepted message in its durable queue, and once
restarted with the right CA forwards all of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge import protocol
from tests.integration.gateway_kit import (
    Brokers,
    Key,
    Publisher,
    RunningGateway,
    boot_of,
    counting_report,
    gateway_settings,
    telemetry,
    wait_for,
)

pytestmark = pytest.mark.services

DEVICES = 4
PER_DEVICE = 50


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    return key, cert


def _make_server_cert(folder: Path, ca_key: Path, ca_cert: Path) -> tuple[Path, Path]:
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.pem"
    ext = folder / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth\n"
        "basicConstraints=CA:FALSE\n"
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext),
        cwd=folder,
    )  # fmt: skip
    return key, cert


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TlsBroker:
    """Mosquitto in the foreground with one TLS listener on loopback."""

    host = "127.0.0.1"

    def __init__(self, folder: Path, ca: Path, cert: Path, key: Path) -> None:
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(mosquitto).exists():
            if os.environ.get("CI"):
                raise RuntimeError("mosquitto is needed for the TLS test")
            pytest.skip("mosquitto not installed")
        self.port = _free_port()
        self.log = folder / "mosquitto.log"
        config = folder / "mosquitto-tls.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"cafile {ca}",
            f"certfile {cert}",
            f"keyfile {key}",
            "tls_version tlsv1.2",
            "allow_anonymous true",
            "persistence false",
            "max_queued_messages 1000000",
            f"log_dest file {self.log}",
            "log_type all",
        ]
        if os.geteuid() == 0:
            # Started as root, Mosquitto drops to the user ``mosquitto``, which
            # cannot read a root-only tmp_path: this throwaway broker stays who we are.
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        config.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [mosquitto, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._listening, 30, lambda: "the TLS broker to listen\n" + self._log_text())

    def _listening(self) -> bool:
        assert self.proc.poll() is None, "mosquitto exited:\n" + self._log_text()
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 1):
            return True
        return False

    def _log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


class TlsCounter:
    """Subscribes (over verified TLS) to gateway uplinks and records inner message keys."""

    def __init__(self, broker: TlsBroker, ca: Path) -> None:
        self.keys: list[tuple[Key, str]] = []
        self.batches = 0
        self.lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="tls-counter", protocol=mqtt.MQTTv5
        )
        self.client.tls_set(ca_certs=str(ca))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(
            [("lumeau/v1/gw/+/up/batch", SubscribeOptions(qos=1))]
        )
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect(broker.host, broker.port, clean_start=False, properties=props)
        self.client.loop_start()
        wait_for(self._subscribed.is_set, 30, "the TLS subscriber")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        _envelope, good, _bad = protocol.decode_batch(msg.payload, msg.topic)
        with self.lock:
            self.batches += 1
            self.keys.extend(((m["dev"], m["boot"], m["seq"]), m["kind"]) for m in good)

    def unique(self) -> int:
        with self.lock:
            return len({k for k, _ in self.keys})

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def tls_setup(tmp_path: Path) -> Iterator[tuple[Any, TlsBroker, Path, Path]]:
    """Site broker, TLS backend broker, the right CA and an unrelated one."""
    from backend import devstack

    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    pki = tmp_path / "pki"
    pki.mkdir()
    ca_key, ca = _make_ca(pki, "lumeau-test-ca")
    _wrong_key, wrong_ca = _make_ca(pki, "someone-else-ca")
    key, cert = _make_server_cert(pki, ca_key, ca)
    try:
        site = devstack.start_broker(tmp_path / "site")
    except devstack.MissingDependency as exc:  # pragma: no cover - machine without mosquitto
        if os.environ.get("CI"):
            raise
        pytest.skip(f"mosquitto unavailable: {exc}")
    backend = TlsBroker(tmp_path, ca, cert, key)
    try:
        yield site, backend, ca, wrong_ca
    finally:
        site.stop()
        backend.stop()


def _publish_all(devices: Publisher) -> None:
    for seq in range(PER_DEVICE):
        for d in range(DEVICES):
            dev, boot = f"tls-{d:02d}", boot_of(d + 500)
            devices.publish(dev, "telemetry", telemetry(dev, boot, seq), (dev, boot, seq))
    devices.wait_acked()


def test_batches_arrive_over_verified_tls(tmp_path: Path) -> None:
    with tls_setup(tmp_path) as (site, backend, ca, _wrong):
        counter = TlsCounter(backend, ca)
        devices = Publisher(site)
        settings = gateway_settings(tmp_path, Brokers(site, backend), backend_tls_ca=ca)
        with RunningGateway(settings) as running:
            _publish_all(devices)
            total = DEVICES * PER_DEVICE
            wait_for(lambda: counter.unique() >= total, 60, lambda: f"{counter.unique()}/{total}")
            wait_for(lambda: running.gateway.store.rows == 0, 30, "the queue to empty")
        devices.close()
        counter.close()
        report = counting_report(devices.sent, counter.keys)
        report.show("TLS, verified CA", f"batches={counter.batches}")
        assert report.received_once == report.sent == total
        assert report.missing == 0
        assert report.out_of_order == 0
        assert report.unexpected == 0


def test_wrong_ca_is_refused_and_the_queue_is_kept_until_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.link")
    total = DEVICES * PER_DEVICE
    with tls_setup(tmp_path) as (site, backend, ca, wrong_ca):
        counter = TlsCounter(backend, ca)
        devices = Publisher(site)
        wrong = gateway_settings(tmp_path, Brokers(site, backend), backend_tls_ca=wrong_ca)
        gateway = RunningGateway(wrong)
        thread = threading.Thread(target=gateway.gateway.run, name="gateway", daemon=True)
        thread.start()
        try:
            wait_for(lambda: gateway.gateway.site.wait_subscribed(0), 30, "the site subscription")
            _publish_all(devices)
            gw = gateway.gateway
            wait_for(
                lambda: gw.metrics.snapshot()[0].accepted == total and gw.store.rows == total,
                60,
                lambda: f"{total} accepted and queued (queue {gw.store.rows})",
            )
            # Several attempts, each refused by certificate verification.
            wait_for(
                lambda: (
                    "CERTIFICATE_VERIFY_FAILED" in caplog.text and gw.backend.connect_failures >= 2
                ),
                60,
                "the gateway to report a certificate verification failure",
            )
            time.sleep(0.5)  # gauges are refreshed every 0.5 s
            counters, gauges, _ = gw.metrics.snapshot()
            metrics_text = gw.metrics.render()
        finally:
            gateway.gateway.stop()
            thread.join(30)
        assert not thread.is_alive()
        assert gauges.backend_connected == 0
        assert gauges.queue_rows == total, "every accepted message stays queued"
        assert counters.forwarded == 0 and counters.batches == 0
        assert counter.unique() == 0
        assert counters.connect_failures_backend >= 2
        assert "lumeau_gateway_connect_failures_backend_total" in metrics_text
        assert "certificate verify failed" in (gw.backend.last_error or "").lower()
        queued_while_refused = gauges.queue_rows

        # The operator fixes the CA; the same data_dir: the queue survives the restart.
        fixed = gateway_settings(tmp_path, Brokers(site, backend), backend_tls_ca=ca)
        with RunningGateway(fixed) as running:
            wait_for(lambda: counter.unique() >= total, 60, lambda: f"{counter.unique()}/{total}")
            wait_for(lambda: running.gateway.store.rows == 0, 30, "the queue to empty")
        devices.close()
        counter.close()
        report = counting_report(devices.sent, counter.keys)
        report.show(
            "TLS, wrong CA then fixed",
            f"queued_while_refused={queued_while_refused} "
            f"connect_failures={counters.connect_failures_backend} batches={counter.batches}",
        )
        assert report.received_once == report.sent == total
        assert report.missing == 0
        assert report.out_of_order == 0
        assert report.unexpected == 0
