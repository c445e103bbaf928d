"""One MQTT v5 connection that keeps itself up: a fresh paho client per attempt.

A supervisor thread connects, runs paho's network loop, and when the
connection is lost waits (exponential backoff with jitter) and connects again
with the same client id and ``clean_start=False``, so the broker's session
(subscriptions, queued QoS 1 deliveries) carries over. A fresh client per
attempt means nothing of an old connection survives inside paho: the will is
composed anew for each connection (the protocol gives each its own seq), and
unacknowledged publishes are the caller's to resend, which it does from its
durable queue. Each connection has a ``generation``; a delivery must be
acknowledged on the connection that brought it.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.backoff import Backoff

log = logging.getLogger(__name__)


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the TLS handshake fails.

    paho wraps the TCP socket and calls ``do_handshake()``; when that raises
    (e.g. the server's certificate does not verify) it drops the SSL socket
    without closing it, leaking one descriptor per attempt until the garbage
    collector finds it. A gateway retrying for days against a misconfigured
    broker must not leak.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def tls_context(ca_file: Path) -> ssl.SSLContext:
    """TLS >= 1.2; the server's certificate and host name verified against ``ca_file``."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    context.sslsocket_class = _ClosingSSLSocket
    return context


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    tls_ca: Path | None = None
    keepalive: int = 30
    session_expiry: int = 3600
    receive_maximum: int = 1000


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True


@dataclass(frozen=True)
class Delivery:
    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes
    retain: bool


class Link:
    """Callbacks run on paho's network thread; keep them short."""

    def __init__(
        self,
        name: str,
        endpoint: Endpoint,
        backoff: Backoff,
        *,
        on_message: Callable[[Delivery], None] | None = None,
        on_publish: Callable[[int, int, bool], None] | None = None,
        on_connected: Callable[[mqtt.Client, int, bool], None] | None = None,
        will: Callable[[], Will | None] | None = None,
        subscriptions: Callable[[], list[str]] | None = None,
        max_inflight: int = 20,
    ) -> None:
        self.name = name
        self._endpoint = endpoint
        self._backoff = backoff
        self._on_message = on_message
        self._on_publish = on_publish
        self._on_connected = on_connected
        self._will = will
        self._subscriptions = subscriptions
        self._max_inflight = max_inflight
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._generation = 0
        self._connected = False
        self._lost = threading.Event()
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None
        self.reconnects = 0
        # Failed attempts, and why the last one failed (None once connected):
        # a certificate that does not verify shows here and in the log.
        self.connect_failures = 0
        self.last_error: str | None = None
        self.current_will: Will | None = None

    # ------------------------------------------------------------ public

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name=f"link-{self.name}")
        self._thread.daemon = True
        self._thread.start()

    def stop(self, before_disconnect: Callable[[mqtt.Client], None] | None = None) -> None:
        """Disconnect; ``before_disconnect`` may publish a last message first."""
        self._stopping.set()
        self._lost.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            client, self._client = self._client, None
            connected, self._connected = self._connected, False
        if client is None:
            return
        if connected and before_disconnect is not None:
            try:
                before_disconnect(client)
            except Exception:  # a failed farewell must not block the shutdown
                log.exception("%s: last publish before disconnect failed", self.name)
        client.disconnect()
        client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def generation(self) -> int:
        return self._generation

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> tuple[int, int] | None:
        """Publish on the current connection: ``(generation, mid)``, or None if down."""
        with self._lock:
            client, generation, connected = self._client, self._generation, self._connected
        if client is None or not connected:
            return None
        info = client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        return generation, info.mid

    def ack(self, generation: int, mid: int, qos: int) -> bool:
        """Acknowledge a delivery, only on the connection that brought it.

        After a reconnect the broker redelivers under possibly reused packet
        ids: acknowledging an old mid could acknowledge another message.
        """
        with self._lock:
            client, current = self._client, self._generation
        if client is None or generation != current or qos == 0:
            return False
        return client.ack(mid, qos) == mqtt.MQTT_ERR_SUCCESS

    def force_reconnect(self) -> None:
        """Drop the connection (the broker then redelivers what was not acknowledged)."""
        with self._lock:
            client = self._client
        if client is not None:
            client.disconnect()

    # ------------------------------------------------------------ supervisor

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            client = self._attempt()
            if client is None:
                delay = self._backoff.next()
                log.info("%s: reconnecting in %.2fs", self.name, delay)
                self._stopping.wait(delay)
                continue
            self._lost.wait()
            if self._stopping.is_set():
                return  # ``stop`` disconnects this client
            with self._lock:
                self._connected = False
                self._client = None
            client.disconnect()
            client.loop_stop()
            self.reconnects += 1
            delay = self._backoff.next()
            log.warning("%s: connection lost; reconnecting in %.2fs", self.name, delay)
            self._stopping.wait(delay)

    def _attempt(self) -> mqtt.Client | None:
        ep = self._endpoint
        with self._lock:
            self._generation += 1
            generation = self._generation
        client = self._make_client(generation)
        will = self._will() if self._will is not None else None
        self.current_will = will
        if will is not None:
            client.will_set(will.topic, will.payload, qos=1, retain=will.retain)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = ep.session_expiry
        props.ReceiveMaximum = ep.receive_maximum
        self._lost.clear()
        try:
            client.connect(
                ep.host, ep.port, keepalive=ep.keepalive, clean_start=False, properties=props
            )
        except (OSError, ssl.SSLError) as exc:
            # ssl.SSLCertVerificationError lands here: the server's certificate
            # does not verify against ``tls_ca`` (or names another host).
            log.warning("%s: cannot connect to %s:%d: %s", self.name, ep.host, ep.port, exc)
            self.connect_failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return None
        with self._lock:
            self._client = client
        client.loop_start()
        return client

    def _make_client(self, generation: int) -> mqtt.Client:
        ep = self._endpoint
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=ep.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
            reconnect_on_failure=False,  # the supervisor reconnects, with jitter
        )
        if ep.username is not None:
            client.username_pw_set(ep.username, ep.password)
        if ep.tls_ca is not None:
            client.tls_set_context(tls_context(ep.tls_ca))
        client.max_inflight_messages_set(self._max_inflight)
        client.max_queued_messages_set(0)
        # A bug in a callback must not silently end the network thread.
        client.suppress_exceptions = True

        def on_connect(
            c: mqtt.Client,
            userdata: Any,
            flags: mqtt.ConnectFlags,
            reason_code: ReasonCode,
            properties: Properties | None,
        ) -> None:
            if reason_code.is_failure:
                log.error("%s: broker refused the connection: %s", self.name, reason_code)
                self.connect_failures += 1
                self.last_error = f"refused: {reason_code}"
                self._lost.set()
                return
            self._backoff.reset()
            self.last_error = None
            with self._lock:
                self._connected = True
            log.info(
                "%s: connected to %s:%d (session present: %s)",
                self.name,
                self._endpoint.host,
                self._endpoint.port,
                flags.session_present,
            )
            if self._on_connected is not None:
                self._on_connected(c, generation, flags.session_present)
            topics = self._subscriptions() if self._subscriptions is not None else []
            if topics:
                # Retain handling 1: retained messages only for a new subscription,
                # so a resumed session is not flooded with every retained status.
                c.subscribe([(t, SubscribeOptions(qos=1, retainHandling=1)) for t in topics])

        def on_subscribe(
            c: mqtt.Client,
            userdata: Any,
            mid: int,
            reason_codes: list[ReasonCode],
            properties: Properties | None,
        ) -> None:
            refused = [str(code) for code in reason_codes if code.is_failure]
            if refused:
                log.error("%s: subscription refused: %s", self.name, ", ".join(refused))
                return
            self._subscribed.set()

        def on_disconnect(
            c: mqtt.Client,
            userdata: Any,
            flags: mqtt.DisconnectFlags,
            reason_code: ReasonCode,
            properties: Properties | None,
        ) -> None:
            with self._lock:
                if self._generation == generation:
                    self._connected = False
            if not self._stopping.is_set():
                log.warning("%s: disconnected (%s)", self.name, reason_code)
            self._lost.set()

        def on_message(c: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
            if self._on_message is None:
                return
            try:
                topic = message.topic
            except UnicodeDecodeError:
                topic = message._topic.decode("utf-8", "replace")
            self._on_message(
                Delivery(
                    generation,
                    message.mid,
                    message.qos,
                    topic,
                    bytes(message.payload),
                    bool(message.retain),
                )
            )

        def on_publish(
            c: mqtt.Client,
            userdata: Any,
            mid: int,
            reason_code: ReasonCode,
            properties: Properties | None,
        ) -> None:
            # Called under paho's own lock: only hand the news over.
            if self._on_publish is not None:
                self._on_publish(generation, mid, not reason_code.is_failure)

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        client.on_publish = on_publish
        return client
