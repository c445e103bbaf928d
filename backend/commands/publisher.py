"""Publishing commands on the backend broker: ``CommandPublisher``.

The API process holds one ``MqttCommandPublisher`` (made and started in the
application's lifespan, stopped at shutdown): one paho MQTT v5 client whose
network thread connects in the background and reconnects by itself.
``publish`` blocks the calling thread (the API runs it in its thread pool)
until the broker's PUBACK for that message, or raises ``PublishError``:

- not connected: nothing is handed to paho, so nothing is sent later. Only
  the first connection attempt after ``start`` is waited for (up to the
  timeout); after that, a publisher that is not connected fails at once,
  so requests do not hold their database connections for the timeout
  while the broker is away;
- the connection is lost before the PUBACK: every waiting publish fails
  then (paho resends the message on reconnection; ``exp`` bounds it);
- the broker answers the PUBLISH with a failure reason code (e.g. 0x87 not
  authorised: the ACL refused the topic);
- no PUBACK within the timeout. Here MQTT cannot say whether the broker got
  it (the PUBACK may be what was lost), and paho resends an unacknowledged
  message when its connection comes back; the command's ``exp`` still
  bounds it (the broker drops it at the MQTT message expiry, and a device
  acks a late command with err ``expired`` without running it).

The PUBACK callback runs on paho's network thread while paho holds its own
lock on outgoing messages, so ``publish`` never calls paho while holding
``_lock``: it registers its waiter after ``client.publish`` returns, and an
acknowledgement that comes back before that is parked in ``_early``. Message
ids wrap at 65535, so neither may outlive its message: a waiter leaves
``_waiting`` when its publish gives up, both tables are emptied when the
connection drops, and a parked acknowledgement counts only for a publish
that began before it arrived (``_acks_seen``).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

if TYPE_CHECKING:
    from backend.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S: Final = 5.0
KEEPALIVE_S: Final = 30
RECONNECT_MIN_S: Final = 1
RECONNECT_MAX_S: Final = 30


class PublishError(RuntimeError):
    """The broker did not confirm a command (the API answers 503)."""


class CommandPublisher(Protocol):
    """Publishes one command message at QoS 1 and returns once the broker has it."""

    def start(self) -> None:
        """Begin connecting (must not block on the broker)."""
        ...

    def stop(self) -> None: ...

    def publish(self, topic: str, payload: bytes, expiry_s: int) -> None:
        """Return after the broker's PUBACK; raise ``PublishError`` otherwise."""
        ...


@dataclass
class _Waiter:
    done: threading.Event = field(default_factory=threading.Event)
    reason: ReasonCode | None = None
    lost: str | None = None  # the connection dropped before the PUBACK: why


class MqttCommandPublisher:
    """A ``CommandPublisher`` on one paho MQTT v5 connection (clean start, QoS 1)."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        *,
        tls_ca: Path | None = None,
        client_id: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        # Unique per process: two API processes with one id would take each
        # other's connection over, again and again.
        self.client_id = client_id or (
            f"lumeau-api-{socket.gethostname()[:20]}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self._username = username
        self._password = password
        self._tls_ca = tls_ca
        self._lock = threading.Lock()
        self._waiting: dict[int, _Waiter] = {}
        # mid -> (value of _acks_seen when it arrived, reason)
        self._early: dict[int, tuple[int, ReasonCode]] = {}
        self._acks_seen = 0
        self._connected = threading.Event()
        # Set once the first connection attempt after start() has an outcome.
        self._attempted = threading.Event()
        self.last_error: str | None = "not connected yet"
        self._client: mqtt.Client | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> MqttCommandPublisher:
        """The backend broker and service user of ``settings`` (``LUMEAU_MQTT_*``)."""
        return cls(
            settings.mqtt_host,
            settings.mqtt_port,
            settings.mqtt_username,
            settings.mqtt_password.get_secret_value(),
            tls_ca=settings.mqtt_tls_ca,
            timeout_s=timeout_s,
        )

    def __repr__(self) -> str:
        return (
            f"MqttCommandPublisher(host={self.host!r}, port={self.port},"
            f" client_id={self.client_id!r}, connected={self.connected})"
        )

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        if self._client is not None:
            return
        # A fresh client per start: paho makes a socket pair in every
        # loop_start and never closes the previous one; a client that is
        # dropped closes its own (the lifespan may run more than once).
        client = self._make_client()
        self.last_error = "not connected yet"
        self._attempted.clear()
        self._client = client
        client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S, clean_start=True)
        client.loop_start()

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        client.loop_stop()
        self._connected.clear()
        with self._lock:
            self._waiting.clear()
            self._early.clear()

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        if self._username is not None:
            client.username_pw_set(self._username, self._password)
        if self._tls_ca is not None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self._tls_ca))
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            client.tls_set_context(context)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        # A bug in a callback must not silently end the network thread.
        client.suppress_exceptions = True
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    # --- publishing -----------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, expiry_s: int) -> None:
        deadline = time.monotonic() + self.timeout_s
        client = self._client
        if client is None:
            raise PublishError("the command publisher is not running")
        if not self._connected.is_set():
            # Only the first attempt is worth waiting for; a broker that is
            # away is answered at once, not after the timeout.
            self._attempted.wait(self.timeout_s)
            if not self._connected.is_set():
                raise PublishError(
                    f"not connected to the broker {self.host}:{self.port} ({self.last_error})"
                )
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.MessageExpiryInterval = max(1, expiry_s)
        with self._lock:
            acks_before = self._acks_seen
        info = client.publish(topic, payload, qos=1, properties=props)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise PublishError(f"the MQTT client refused the message: {mqtt.error_string(info.rc)}")
        waiter = _Waiter()
        with self._lock:
            early = self._early.pop(info.mid, None)
            # Parked before this publish began: another message's, with the same id.
            reason = early[1] if early is not None and early[0] > acks_before else None
            if reason is None:
                self._waiting[info.mid] = waiter
        if reason is None:
            if not waiter.done.wait(max(0.0, deadline - time.monotonic())):
                with self._lock:
                    # Gone, so a PUBACK for a later message with this id is not taken for it.
                    if self._waiting.get(info.mid) is waiter:
                        del self._waiting[info.mid]
                raise PublishError(
                    f"no acknowledgement from the broker {self.host}:{self.port} within"
                    f" {self.timeout_s:g} s ({self.last_error or 'connection up'})"
                )
            if waiter.lost is not None:
                raise PublishError(
                    f"the connection to the broker {self.host}:{self.port} was lost before"
                    f" its acknowledgement ({waiter.lost})"
                )
            reason = waiter.reason
        if reason is not None and reason.is_failure:
            raise PublishError(f"the broker refused the message on {topic}: {reason}")

    # --- paho callbacks (network thread) ---------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.last_error = f"connection refused: {reason_code}"
            log.error("command publisher: broker refused the connection: %s", reason_code)
            self._attempted.set()
            return
        self.last_error = None
        self._connected.set()
        self._attempted.set()
        log.info("command publisher connected to %s:%d", self.host, self.port)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # The socket could not be opened (refused, unreachable); paho retries.
        if self._client is client:
            self.last_error = "cannot reach the broker"
        self._attempted.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        if self._client is not client:
            return  # a stopped client's (stop() empties the tables itself)
        self._attempted.set()
        self.last_error = f"disconnected: {reason_code}"
        log.warning("command publisher disconnected (%s); paho reconnects", reason_code)
        with self._lock:
            # Their PUBACKs may never come, and later messages may reuse their ids.
            for waiter in self._waiting.values():
                waiter.lost = f"disconnected: {reason_code}"
                waiter.done.set()
            self._waiting.clear()
            self._early.clear()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self._acks_seen += 1
            waiter = self._waiting.pop(mid, None)
            if waiter is None:
                self._early[mid] = (self._acks_seen, reason_code)
                return
            waiter.reason = reason_code
            waiter.done.set()
