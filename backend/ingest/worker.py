"""The ingest worker: backend broker -> TimescaleDB, losing nothing.

Threads: paho's network thread decodes each delivery (``intake``), publishes
error replies and appends to the pending batch; the thread that calls
``run`` flushes batches to the database (``Store``) and only then sends the
MQTT acknowledgements. Hence:

- a crash before the commit leaves the deliveries unacknowledged, and the
  broker redelivers them on the next connection of this session (the
  session is persistent: a fixed client id and ``clean_start=False``);
- a crash between commit and acknowledgement causes a redelivery that the
  idempotent write turns into counted duplicates;
- while the database is down nothing is acknowledged, so the broker stops
  sending once ``receive_maximum`` deliveries are outstanding: memory stays
  bounded, and the batch is retried with exponential backoff.

Several workers share the load through the MQTT v5 shared subscription
``$share/<group>/...``; each needs its own client id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from backend.ingest.batching import Delivery, FlushPolicy, Pending
from backend.ingest.counters import Counters
from backend.ingest.intake import Intake, intake
from backend.ingest.rows import DeadLetter
from backend.ingest.store import Store, first_line

log = logging.getLogger(__name__)

# Device uplinks, and everything a gateway sends up (its batches and its own
# status). Downlinks are not ingested.
TOPIC_FILTERS: Final = ("lumeau/v1/dev/+/up/#", "lumeau/v1/gw/+/up/#")
INTERNAL_ERROR: Final = "internal_error"


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs; ``cli.py`` builds it from the settings."""

    conninfo: str
    mqtt_host: str
    mqtt_port: int
    mqtt_username: str
    mqtt_password: str
    mqtt_tls_ca: Path | None = None
    client_id: str = "lumeau-ingest"
    share_group: str = "lumeau-ingest"
    policy: FlushPolicy = field(default_factory=FlushPolicy)
    # Deliveries the broker may have outstanding at once: the memory bound
    # while the database is away, and the pipeline depth when it is not.
    receive_maximum: int = 4000
    # How long the broker keeps this worker's session (and its unacknowledged
    # deliveries) after a crash, in seconds.
    session_expiry: int = 3600
    keepalive: int = 30
    stats_interval: float = 30.0
    retry_min: float = 0.5
    retry_max: float = 30.0
    # After a stop request, how long to keep trying to commit what is
    # pending; past it the worker exits without acknowledging, and the broker
    # redelivers to the next session.
    shutdown_grace: float = 10.0

    def subscriptions(self) -> list[str]:
        return [f"$share/{self.share_group}/{topic}" for topic in TOPIC_FILTERS]


class IngestWorker:
    """One ingest process's worth of work; ``run`` blocks until ``stop``."""

    def __init__(
        self,
        config: WorkerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._clock = clock
        self._wall_clock = wall_clock
        self._store = Store(config.conninfo)
        self._cond = threading.Condition()
        self._pending = Pending()
        self._counters = Counters()
        self._generation = 0
        self._connected = False
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._unsubscribed = threading.Event()
        self._client = self._make_client()

    # ------------------------------------------------------------ public

    def run(self) -> None:
        """Connect, ingest until ``stop`` is called, flush, disconnect."""
        cfg = self._config
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho: untyped
        props.SessionExpiryInterval = cfg.session_expiry
        props.ReceiveMaximum = cfg.receive_maximum
        log.info("ingest %s: connecting to %s:%d", cfg.client_id, cfg.mqtt_host, cfg.mqtt_port)
        self._client.connect_async(
            cfg.mqtt_host,
            cfg.mqtt_port,
            keepalive=cfg.keepalive,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()
        try:
            self._loop()
        finally:
            self._client.disconnect()
            self._client.loop_stop()
            self._store.close()
            log.info("ingest %s stopped: %s", cfg.client_id, self.counters.line())

    def stop(self) -> None:
        """Ask ``run`` to flush and return. Safe from a signal handler."""
        self._stopping.set()

    @property
    def counters(self) -> Counters:
        with self._cond:
            return self._counters.snapshot()

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the broker has granted the subscriptions."""
        return self._subscribed.wait(timeout)

    # ------------------------------------------------------------ MQTT side

    def _make_client(self) -> mqtt.Client:
        cfg = self._config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.username_pw_set(cfg.mqtt_username, cfg.mqtt_password)
        if cfg.mqtt_tls_ca is not None:
            client.tls_set(ca_certs=str(cfg.mqtt_tls_ca))
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_message = self._on_message
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        with self._cond:
            self._generation += 1
            self._connected = True
        log.info("connected to the broker (session present: %s)", flags.session_present)
        if not self._stopping.is_set():
            # Retained statuses were stored when first published; MQTT 5 says a
            # shared subscription gets no retained messages, and Mosquitto
            # 2.0.11 sends them anyway unless told not to.
            options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
            client.subscribe([(topic, options) for topic in self._config.subscriptions()])

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            self._connected = False
        if not self._stopping.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("broker refused a subscription: %s", ", ".join(refused))
            return
        log.info("subscribed to %s", ", ".join(self._config.subscriptions()))
        self._subscribed.set()

    def _on_unsubscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._unsubscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received_at = datetime.now(UTC)
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "(topic is not UTF-8)"
        payload = bytes(message.payload)
        try:
            result = intake(topic, payload, received_at, int(self._wall_clock() * 1000))
        except Exception as exc:  # a codec bug must not stop the stream
            log.exception("cannot process a delivery on %s", topic)
            result = Intake(dead_letters=[_internal_error(received_at, topic, payload, exc)])
        for reply in result.replies:
            client.publish(reply.topic, reply.payload, qos=1)
        with self._cond:
            self._pending.add(
                result, Delivery(message.mid, message.qos, self._generation), self._clock()
            )
            self._counters.received += 1
            self._counters.replies += len(result.replies)
            if self._pending.due(self._config.policy, self._clock()):
                self._cond.notify()

    # ------------------------------------------------------------ database side

    def _loop(self) -> None:
        deadline: float | None = None
        next_stats = self._clock() + self._config.stats_interval
        while True:
            if self._stopping.is_set() and deadline is None:
                deadline = self._clock() + self._config.shutdown_grace
                self._unsubscribe()
            batch = self._take_batch()
            if batch is not None:
                if self._commit(batch, deadline):
                    self._acknowledge(batch)
                else:
                    log.error(
                        "could not store %d pending deliveries before exiting; "
                        "the broker will redeliver them",
                        len(batch.deliveries),
                    )
                    return
            elif deadline is not None:
                return
            if self._clock() >= next_stats:
                log.info("ingest: %s", self.counters.line())
                next_stats = self._clock() + self._config.stats_interval

    def _unsubscribe(self) -> None:
        """Stop new deliveries; those already sent arrive before the UNSUBACK."""
        self._unsubscribed.clear()
        result, _mid = self._client.unsubscribe(self._config.subscriptions())
        if result == mqtt.MQTT_ERR_SUCCESS:
            self._unsubscribed.wait(min(2.0, self._config.shutdown_grace))

    def _take_batch(self) -> Pending | None:
        """The pending batch once due (at once when stopping); None if idle."""
        policy = self._config.policy
        with self._cond:
            if not self._stopping.is_set() and not self._pending.due(policy, self._clock()):
                wait = self._pending.wait_time(policy, self._clock())
                # Short waits keep stop() and the stats line responsive
                # without a notification from a signal handler.
                self._cond.wait(0.2 if wait is None else min(wait, 0.2))
            if self._pending.empty:
                return None
            if not self._stopping.is_set() and not self._pending.due(policy, self._clock()):
                return None
            batch, self._pending = self._pending, Pending()
            return batch

    def _commit(self, batch: Pending, deadline: float | None) -> bool:
        """Store ``batch``, retrying while the database is unreachable."""
        delay = self._config.retry_min
        while True:
            try:
                result = self._store.commit(batch.messages, batch.dead_letters)
            except psycopg.OperationalError as exc:
                with self._cond:
                    self._counters.db_errors += 1
                log.warning(
                    "database unavailable (%s); holding %d deliveries, retrying in %.1fs",
                    first_line(exc),
                    len(batch.deliveries),
                    delay,
                )
            else:
                with self._cond:
                    self._counters.add_write(result)
                return True
            if deadline is None:
                self._stopping.wait(delay)
                if self._stopping.is_set():
                    deadline = self._clock() + self._config.shutdown_grace
            else:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                time.sleep(min(delay, remaining))
            delay = min(delay * 2, self._config.retry_max)

    def _acknowledge(self, batch: Pending) -> None:
        with self._cond:
            if not self._connected:
                return
            generation = self._generation
            acked = 0
            for delivery in batch.deliveries:
                # A delivery from an earlier connection is being redelivered
                # on this one, possibly under a packet id now used by another
                # message: acknowledging it could drop that other message.
                if delivery.qos > 0 and delivery.generation == generation:
                    self._client.ack(delivery.mid, delivery.qos)
                    acked += 1
            self._counters.acked += acked


def _internal_error(
    received_at: datetime, topic: str, payload: bytes, exc: Exception
) -> DeadLetter:
    return DeadLetter(
        received_at=received_at,
        topic=topic,
        payload=payload,
        code=INTERNAL_ERROR,
        reason=f"{type(exc).__name__}: {exc}",
        field=None,
        device_id=None,
        source="mqtt",
    )
