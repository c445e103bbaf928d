"""Commands down, acks and timeouts up; device presence; the gateway's own status."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge import protocol
from tests.integration.gateway_kit import (
    BackendCounter,
    Publisher,
    RunningGateway,
    boot_of,
    gateway_settings,
    status,
    two_brokers,
    wait_for,
)

pytestmark = pytest.mark.services


def _cmd(dev: str, cmd_id: str, exp_in_ms: int) -> bytes:
    now = int(time.time() * 1000)
    return protocol.encode(
        {
            "v": 1,
            "kind": "cmd",
            "dev": dev,
            "id": cmd_id,
            "name": "set_level",
            "args": {"ch": 1, "level_pct": 50},
            "ts": now,
            "exp": now + exp_in_ms,
            "src": "api",
        }
    )


def _relay(gw: str, dev: str, cmd_id: str) -> bytes:
    now = int(time.time() * 1000)
    return protocol.encode(
        {
            "v": 1,
            "kind": "cmd",
            "gw": gw,
            "id": cmd_id,
            "name": "relay",
            "args": {"dev": dev, "name": "reboot", "args": {}},
            "ts": now,
            "exp": now + 60_000,
        }
    )


def _ack(dev: str, boot: str, seq: int, cmd_id: str) -> bytes:
    return protocol.encode(
        {
            "v": 1,
            "kind": "ack",
            "dev": dev,
            "boot": boot,
            "seq": seq,
            "ts": int(time.time() * 1000),
            "cmd": cmd_id,
            "ok": True,
        }
    )


def test_commands_acks_timeouts_and_presence(tmp_path: Path) -> None:
    with two_brokers(tmp_path) as brokers:
        counter = BackendCounter(brokers.backend)
        devices = Publisher(brokers.site)
        got: list[dict[str, Any]] = []
        lock = threading.Lock()
        site_sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

        def on_cmd(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            with lock:
                got.append(protocol.decode(msg.payload, msg.topic))

        site_sub.on_message = on_cmd
        site_sub.connect(brokers.site.host, brokers.site.port)
        site_sub.subscribe("lumeau/v1/dev/+/down/cmd", qos=1)
        site_sub.loop_start()
        backend_pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        backend_pub.connect(brokers.backend.host, brokers.backend.port)
        backend_pub.loop_start()
        settings = gateway_settings(tmp_path, brokers, command_retry_s=0.3)
        gw_id = settings.gateway_id
        with RunningGateway(settings) as running:
            gw = running.gateway
            wait_for(lambda: gw.backend.wait_subscribed(0), 30, "downlink subscriptions")
            # 1. a device command, acknowledged by its device
            backend_pub.publish(
                "lumeau/v1/dev/cab-0001/down/cmd", _cmd("cab-0001", "c-1", 60_000), 1
            )
            # 2. a gateway 'relay' command becomes a device command
            backend_pub.publish(
                f"lumeau/v1/gw/{gw_id}/down/cmd", _relay(gw_id, "cab-0002", "c-2"), 1
            )
            # 3. a command nobody acknowledges: retried, then a timeout ack goes up
            backend_pub.publish("lumeau/v1/dev/cab-0003/down/cmd", _cmd("cab-0003", "c-3", 1500), 1)
            wait_for(
                lambda: {m["id"] for m in got} >= {"c-1", "c-2", "c-3"}, 30, "commands at devices"
            )
            relayed = next(m for m in got if m["id"] == "c-2")
            assert relayed["dev"] == "cab-0002" and relayed["name"] == "reboot"
            devices.publish("cab-0001", "ack", _ack("cab-0001", boot_of(1), 0, "c-1"))
            wait_for(lambda: gw.metrics.snapshot()[0].commands_acked == 1, 30, "the ack of c-1")
            wait_for(
                lambda: gw.metrics.snapshot()[0].commands_timed_out == 1, 30, "the c-3 timeout"
            )
            wait_for(lambda: counter.count() >= 2, 30, "the acks at the backend")
            # presence: an online status, then a device whose will fires
            devices.publish("cab-0004", "status", status("cab-0004", boot_of(4), 1, "online"))
            will = shutil.which("mosquitto_sub")
            assert will is not None
            dying = subprocess.Popen(
                [
                    will, "-h", brokers.site.host, "-p", str(brokers.site.port), "-V", "mqttv5",
                    "-i", "cab-0005", "-t", "lumeau/v1/dev/cab-0005/down/cmd",
                    "--will-topic", "lumeau/v1/dev/cab-0005/up/status",
                    "--will-payload", status("cab-0005", boot_of(5), 0, "offline").decode(),
                    "--will-qos", "1", "--will-retain",
                ],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)  # let it connect before it dies
            dying.send_signal(signal.SIGKILL)
            dying.wait(10)
            wait_for(
                lambda: gw.store.presence() == {"cab-0004": "online", "cab-0005": "offline"},
                30,
                lambda: f"presence (now {gw.store.presence()})",
            )
            retries = sum(1 for m in got if m["id"] == "c-3")
            counters = gw.metrics.snapshot()[0]
            boot = gw.boot
        with counter.lock:
            acks = [k for k, kind in counter.received.order if kind == "ack"]
            statuses = list(counter.received.gateway_status)
        site_sub.loop_stop()
        backend_pub.loop_stop()
        devices.close()
        counter.close()
        print(
            f"\nCOUNTING REPORT [downlink] commands_received={counters.commands_received} "
            f"sent_with_retries={counters.commands_sent} acked={counters.commands_acked} "
            f"timed_out={counters.commands_timed_out} c3_deliveries={retries} "
            f"acks_upstream={len(acks)} gateway_status={[s['state'] for s in statuses]}"
        )
        assert counters.commands_received == 3
        assert retries >= 2, "an unacknowledged command is retried until it expires"
        assert ("cab-0001", boot_of(1), 0) in acks
        assert ("cab-0003", boot, 0) in acks, "the timeout ack carries the gateway's boot"
        assert [s["state"] for s in statuses] == ["online", "offline"]
        online, offline = statuses
        assert offline["seq"] == online["seq"] - 1, "the will takes seq n, online n+1"
        assert json.loads(protocol.canonical_json(online))["gw"] == gw_id
