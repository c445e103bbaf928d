"""``MqttCommandPublisher`` without a broker: paho's callbacks driven by hand.

paho's ``Client`` is replaced by a scripted one that hands out the message
ids a test chooses and answers a PUBLISH with a PUBACK at once (before
``publish`` registers its waiter: the "early" acknowledgement) or never.
The connection events are the callbacks paho would call on its network
thread, called here from the test's thread.

Threads are joined with a bound far below the publisher's own timeout: a
safety net (a publish that waited for its timeout would fail the test),
not a speed requirement.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from backend.commands.publisher import MqttCommandPublisher, PublishError

LONG_S = 600.0  # a timeout no test may wait out
JOIN_S = 60.0
TOPIC = "lumeau/v1/dev/cab-0001/down/cmd"


class ScriptedClient:
    """Stands in for ``paho.mqtt.client.Client``: message ids and PUBACKs on cue."""

    made: ClassVar[list[ScriptedClient]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.mids: list[int] = []  # the ids of the next publishes, in order
        self.ack_at_once = False  # PUBACK before publish() returns
        self.published: list[int] = []
        self.on_connect: Any = None
        self.on_connect_fail: Any = None
        self.on_disconnect: Any = None
        self.on_publish: Any = None
        self.suppress_exceptions = False
        ScriptedClient.made.append(self)

    def username_pw_set(self, *args: Any) -> None:
        pass

    def reconnect_delay_set(self, *args: Any) -> None:
        pass

    def connect_async(self, *args: Any, **kwargs: Any) -> None:
        pass

    def loop_start(self) -> None:
        pass

    def loop_stop(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def publish(self, topic: str, payload: bytes, qos: int, properties: Any) -> Any:
        mid = self.mids.pop(0)
        self.published.append(mid)
        if self.ack_at_once:
            self.puback(mid)
        return mqtt.MQTTMessageInfo(mid)

    # --- what paho's network thread would call -----------------------------------------

    def connected(self) -> None:
        self.on_connect(self, None, mqtt.ConnectFlags(False), ReasonCode(PacketTypes.CONNACK), None)

    def connect_failed(self) -> None:
        self.on_connect_fail(self, None)

    def dropped(self) -> None:
        reason = ReasonCode(PacketTypes.DISCONNECT, "Unspecified error")
        self.on_disconnect(self, None, mqtt.DisconnectFlags(False), reason, None)

    def puback(self, mid: int) -> None:
        self.on_publish(self, None, mid, ReasonCode(PacketTypes.PUBACK, "Success"), None)


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    ScriptedClient.made.clear()
    monkeypatch.setattr(mqtt, "Client", ScriptedClient)
    yield


def started(timeout_s: float) -> tuple[MqttCommandPublisher, ScriptedClient]:
    publisher = MqttCommandPublisher("127.0.0.1", 1883, None, None, timeout_s=timeout_s)
    publisher.start()
    return publisher, ScriptedClient.made[-1]


def in_thread(publisher: MqttCommandPublisher) -> tuple[threading.Thread, list[BaseException]]:
    """A publish on a thread of its own (as the API runs it); what it raised, once done."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            publisher.publish(TOPIC, b"{}", 60)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, raised


def finished(thread: threading.Thread) -> bool:
    thread.join(JOIN_S)
    return not thread.is_alive()


# --- a broker that is away is answered at once ---------------------------------------------


@pytest.mark.usefixtures("scripted")
def test_after_a_failed_first_attempt_a_publish_fails_at_once() -> None:
    publisher, client = started(LONG_S)
    client.connect_failed()
    thread, raised = in_thread(publisher)
    assert finished(thread), "the publish waited for its timeout"
    assert len(raised) == 1 and isinstance(raised[0], PublishError)
    assert "not connected to the broker 127.0.0.1:1883" in str(raised[0])
    assert "cannot reach the broker" in str(raised[0])
    assert client.published == []  # nothing handed to paho, so nothing sent later


@pytest.mark.usefixtures("scripted")
def test_after_the_connection_dropped_a_publish_fails_at_once() -> None:
    publisher, client = started(LONG_S)
    client.connected()
    client.dropped()
    thread, raised = in_thread(publisher)
    assert finished(thread), "the publish waited for its timeout"
    assert isinstance(raised[0], PublishError)
    assert "disconnected" in str(raised[0])
    assert client.published == []


@pytest.mark.usefixtures("scripted")
def test_the_first_connection_attempt_is_waited_for() -> None:
    # Just after start: the attempt under way decides, not the state before it.
    publisher, client = started(LONG_S)
    client.mids = [1]
    client.ack_at_once = True
    thread, raised = in_thread(publisher)
    client.connected()
    assert finished(thread)
    assert raised == []
    assert client.published == [1]


# --- message ids are reused -----------------------------------------------------------------


@pytest.mark.usefixtures("scripted")
def test_a_timed_out_publish_does_not_swallow_a_later_early_ack_of_its_id() -> None:
    publisher, client = started(0.2)
    client.connected()
    client.mids = [7, 7]  # paho's ids wrapped around between the two
    with pytest.raises(PublishError, match="no acknowledgement"):
        publisher.publish(TOPIC, b"{}", 60)  # the broker never acked it
    client.dropped()
    client.connected()
    client.ack_at_once = True
    publisher.publish(TOPIC, b"{}", 60)  # confirmed: no PublishError


@pytest.mark.usefixtures("scripted")
def test_an_ack_parked_before_a_publish_began_is_not_taken_for_it() -> None:
    publisher, client = started(0.2)
    client.connected()
    client.mids = [9, 9]
    with pytest.raises(PublishError, match="no acknowledgement"):
        publisher.publish(TOPIC, b"{}", 60)
    client.puback(9)  # the late PUBACK of that first message
    with pytest.raises(PublishError, match="no acknowledgement"):
        publisher.publish(TOPIC, b"{}", 60)  # the second one was never acked


@pytest.mark.usefixtures("scripted")
def test_a_dropped_connection_fails_the_waiting_publishes_at_once() -> None:
    publisher, client = started(LONG_S)
    client.connected()
    client.mids = [3]
    thread, raised = in_thread(publisher)
    for _ in range(int(JOIN_S / 0.01)):
        if 3 in publisher._waiting:  # registered: waiting for its PUBACK
            break
        thread.join(0.01)
    client.dropped()
    assert finished(thread), "the publish waited for its timeout"
    assert isinstance(raised[0], PublishError)
    assert "lost before its acknowledgement" in str(raised[0])
    # Its PUBACK after the reconnection is not kept for a later message with id 3.
    client.connected()
    client.puback(3)
    client.mids = [3]
    publisher.timeout_s = 0.2
    with pytest.raises(PublishError, match="no acknowledgement"):
        publisher.publish(TOPIC, b"{}", 60)
