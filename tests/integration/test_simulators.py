"""Simulated devices: the real firmware apps on simulated hardware, on the real broker.

Five simulated days of one cabinet and one leak sensor, fast-forwarded, and
what the backend broker received: telemetry on the cabinet's 10-minute grid,
the faults the scenario injected raised (and cleared) by the firmware's own
fault detection, and the leak lifting the sensor's night background.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend import devstack
from edge import protocol
from simulators.cabinet import BrokerAccount, Circuit, SimCabinet
from simulators.clock import SimClock
from simulators.fleet import Fleet
from simulators.happenings import Happening
from simulators.leak_sensor import SimLeakSensor

pytestmark = pytest.mark.services

DAY = 86_400_000
HOUR = 3_600_000


class Received:
    """Everything published under the devices' uplink topics, decoded."""

    def __init__(self, stack: Any) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"sim-test-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        self.client.username_pw_set(stack.mqtt_username, stack.mqtt_password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect(stack.mqtt_host, stack.mqtt_port)
        self.client.subscribe("lumeau/v1/dev/+/up/#", 1)
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if not msg.payload:
            return  # a retained status being cleared
        with self._lock:
            self.messages.append(protocol.decode(msg.payload, msg.topic))

    def of(self, dev: str, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if m["dev"] == dev and m["kind"] == kind]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def five_days(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    suffix = uuid.uuid4().hex[:6]
    cab_id, leak_id = f"cab-sim-{suffix}", f"leak-sim-{suffix}"
    folder = tmp_path_factory.mktemp("sim")
    start = (int(time.time() * 1000) // DAY - 6) * DAY
    clock = SimClock(start)
    door = Happening("door_open", start + DAY + 20 * HOUR, start + DAY + 20 * HOUR + 30 * 60_000)
    lamps = Happening("lamps_failed", start + 2 * DAY + 22 * HOUR, channel=1, count=4)
    leak = Happening("leak", start + 3 * DAY, level_db=-50.0, growth_db=1.0)

    def account(dev: str) -> BrokerAccount:
        return BrokerAccount(stack.mqtt_host, stack.mqtt_port, devstack.add_broker_user(stack, dev))

    cabinet = SimCabinet(
        cab_id,
        account(cab_id),
        clock,
        folder / "cab",
        lat=45.76,
        lon=4.83,
        circuits={1: Circuit(24, 40.0), 2: Circuit(12, 60.0)},
        happenings=(door, lamps),
        seed=1,
    )
    sensor = SimLeakSensor(leak_id, account(leak_id), clock, folder / "leak", happenings=(leak,))
    received = Received(stack)
    fleet = Fleet(clock, [cabinet], [sensor])
    try:
        fleet.run_until(start + 5 * DAY)
        assert fleet.drain()
        fleet.stop()
        wanted = len(cabinet.boots)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(received.of(cab_id, "telemetry")) < 719:
            time.sleep(0.1)
        yield {
            "cab": cab_id,
            "leak": leak_id,
            "start": start,
            "received": received,
            "leak_start": leak.start_ms,
            "boots": wanted,
        }
    finally:
        # Devices leave their retained status on the broker, as real ones do;
        # other tests of this session subscribe to every device's uplinks.
        for dev in (cab_id, leak_id):
            topic = protocol.uplink_topic(dev, "status")
            received.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)
        received.close()


def test_cabinet_reports_every_ten_minutes_on_the_grid(five_days: dict[str, Any]) -> None:
    tele = five_days["received"].of(five_days["cab"], "telemetry")
    stamps = sorted({m["readings"][0]["ts"] for m in tele})
    assert len(stamps) == len(tele)  # nothing twice
    assert all(ts % 600_000 == 0 for ts in stamps)
    assert 5 * 144 - 2 <= len(stamps) <= 5 * 144
    # each message carries the cabinet and both circuits, with the energy counter
    channels = {r["ch"] for r in tele[-1]["readings"]}
    assert channels == {0, 1, 2}
    energy = [r["values"]["energy_wh"] for m in tele for r in m["readings"] if r["ch"] == 2]
    assert energy == sorted(energy) and energy[-1] > energy[0]


def test_lights_follow_the_night_at_lyon(five_days: dict[str, Any]) -> None:
    tele = five_days["received"].of(five_days["cab"], "telemetry")
    lit_hours = set()
    for m in tele:
        ch1 = next(r for r in m["readings"] if r["ch"] == 1)
        if ch1["values"]["level_pct"] > 0:
            lit_hours.add(time.gmtime(ch1["ts"] / 1000).tm_hour)
        else:
            assert ch1["values"]["power_w"] < 1.0  # dark circuits draw nothing
    assert 0 in lit_hours and 3 in lit_hours  # lit in the night
    assert 12 not in lit_hours  # dark at midday


def test_injected_faults_are_raised_by_the_firmware(five_days: dict[str, Any]) -> None:
    events = five_days["received"].of(five_days["cab"], "event")
    door = [(e["active"], e["ts"]) for e in events if e["code"] == "door_open"]
    assert [a for a, _ in door] == [True, False]
    opened = door[0][1] - five_days["start"]
    assert DAY + 20 * HOUR <= opened <= DAY + 20 * HOUR + 5 * 60_000
    lamp = [e for e in events if e["code"] == "lamp_failure"]
    assert len(lamp) == 1 and lamp[0]["ch"] == 1 and lamp[0]["active"] is True
    assert lamp[0]["detail"]["failed_count"] == 4


def test_leak_lifts_the_night_background(five_days: dict[str, Any]) -> None:
    tele = five_days["received"].of(five_days["leak"], "telemetry")
    nights = sorted((m["ts"], m["readings"][0]["values"]) for m in tele)
    assert len(nights) == 5  # one measurement a night, sent at once
    before = [v["noise_l90_db"] for ts, v in nights if ts < five_days["leak_start"]]
    after = [v["noise_l90_db"] for ts, v in nights if ts >= five_days["leak_start"]]
    assert before and after
    assert min(after) > max(before) + 10.0
    assert all(v["battery_v"] > 3.3 for _, v in nights)
