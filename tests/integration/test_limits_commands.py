"""The command publisher and a real Mosquitto that is away, then back.

While the broker is away a publish fails at once instead of holding its
caller (and, in the API, the request's pooled database connection) for the
whole timeout; once paho has reconnected by itself, publishing works again.
The publisher's timeout is long on purpose; threads are joined with a much
shorter bound, a safety net (a publish that waited would fail the test),
not a speed requirement.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from backend.commands.publisher import MqttCommandPublisher, PublishError
from backend.devstack import start_broker
from backend.devstack._util import pick_free_port

pytestmark = pytest.mark.services

LONG_S = 600.0
JOIN_S = 60.0
POLL_S = 0.1
TOPIC = "lumeau/v1/dev/x/down/cmd"


def publish_in_thread(publisher: MqttCommandPublisher) -> BaseException | None:
    """What a publish raised (None: confirmed), run as the API runs it, on a thread."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            publisher.publish(TOPIC, b"{}", 60)
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(JOIN_S)
    assert outcome, "the publish waited for its timeout"
    return outcome[0]


def test_while_the_broker_is_away_a_publish_fails_at_once_then_works_again(
    tmp_path: Path,
) -> None:
    port = pick_free_port()
    publisher = MqttCommandPublisher("127.0.0.1", port, None, None, timeout_s=LONG_S)
    publisher.start()
    try:
        for _ in range(3):  # each one, not only the first
            failed = publish_in_thread(publisher)
            assert isinstance(failed, PublishError)
            assert f"not connected to the broker 127.0.0.1:{port}" in str(failed)
        broker = start_broker(tmp_path / "late-broker", port=port)
        try:
            for _ in range(int(JOIN_S / POLL_S)):  # paho retries by itself
                if publisher.connected:
                    break
                time.sleep(POLL_S)
            assert publisher.connected
            assert publish_in_thread(publisher) is None
        finally:
            broker.stop()
        for _ in range(int(JOIN_S / POLL_S)):
            if not publisher.connected:
                break
            time.sleep(POLL_S)
        failed = publish_in_thread(publisher)  # away again: at once again
        assert isinstance(failed, PublishError)
    finally:
        publisher.stop()
