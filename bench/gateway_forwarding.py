"""The field gateway's forwarding rate and added latency, against the broker's own.

Two throwaway Mosquitto brokers on loopback (site and backend, as in the
gateway tests); the gateway runs as its own process (``python -m gateway
run``), devices are one paho publisher, the backend one paho subscriber,
both in this process.

- ``broker direct``: the same publisher -> one broker -> the same subscriber,
  no gateway: the ceiling of this setup on this machine, measured in the run.
- ``gateway``: publisher -> site broker -> gateway (validate, SQLite commit
  with ``synchronous=FULL``, acknowledge, batch) -> backend broker -> subscriber.

Throughput: a burst of QoS 1 telemetry (one reading of 5 values each), rate
from the first publish to the last arrival. Latency: a paced stream (well
below the rate), device publish -> backend arrival, one clock.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.harness.context import Context
from bench.harness.registry import Result, benchmark
from bench.harness.stats import percentile, summarize
from bench.harness.table import summary_note
from edge import protocol

DEVICES = 100
VALUES_PER_MESSAGE = 5
BASE_TS = 1_795_392_000_000
REPO_ROOT = Path(__file__).resolve().parent.parent


def _payload(i: int, run: int) -> tuple[str, bytes]:
    dev = f"cab-{i % DEVICES:04d}"
    seq = i // DEVICES
    ts = BASE_TS + seq * 1000
    values = {"power_w": 1250.5, "voltage_v": 231.4, "current_a": 5.41, "level_pct": 70}
    values["energy_wh"] = 4_521_300 + i
    msg = {
        "v": 1,
        "kind": "telemetry",
        "dev": dev,
        "boot": f"{run + 1:08x}",
        "seq": seq,
        "ts": ts + 500,
        "readings": [{"ts": ts, "ch": 1, "values": values}],
    }
    return f"lumeau/v1/dev/{dev}/up/telemetry", protocol.encode(msg)


@dataclass
class _Sink:
    """Arrival time of each (dev, seq), from device messages or gateway batches."""

    arrivals: dict[tuple[str, int], float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        if msg.topic.endswith("/batch"):
            _env, good, _bad = protocol.decode_batch(msg.payload)
            keys = [(m["dev"], m["seq"]) for m in good]
        elif msg.topic.endswith("/status"):
            return
        else:
            m = protocol.decode(msg.payload)
            keys = [(m["dev"], m["seq"])]
        with self.lock:
            for k in keys:
                self.arrivals.setdefault(k, now)

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)


def _client(name: str) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)


def _subscriber(broker: Any, topic: str, sink: _Sink) -> mqtt.Client:
    sub = _client(f"bench-gw-sub-{os.getpid()}-{time.monotonic_ns()}")
    sub.on_message = sink.on_message
    done = threading.Event()
    sub.on_subscribe = lambda *a: done.set()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.ReceiveMaximum = 65535
    sub.connect(broker.host, broker.port, properties=props)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    if not done.wait(30):
        raise TimeoutError("subscriber not subscribed")
    return sub


def _stream(
    broker: Any, sink: _Sink, count: int, run: int, pace: float | None
) -> dict[tuple[str, int], float]:
    """Publish ``count`` messages (``pace`` msg/s, or a burst); wait for all arrivals."""
    pub = _client(f"bench-gw-pub-{os.getpid()}-{time.monotonic_ns()}")
    pub.max_inflight_messages_set(1000)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    sent: dict[tuple[str, int], float] = {}
    start = time.monotonic()
    for i in range(count):
        topic, payload = _payload(i, run)
        if pace is not None:
            time.sleep(max(0.0, start + i / pace - time.monotonic()))
        sent[(f"cab-{i % DEVICES:04d}", i // DEVICES)] = time.monotonic()
        pub.publish(topic, payload, qos=1)
    deadline = time.monotonic() + 120
    while sink.count() < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {sink.count()} of {count} arrived")
        time.sleep(0.01)
    pub.disconnect()
    pub.loop_stop()
    return sent


def _measure(
    broker_in: Any, broker_out: Any, out_topic: str, count: int, run: int, pace: float | None
) -> tuple[float, list[float]]:
    sink = _Sink()
    sub = _subscriber(broker_out, out_topic, sink)
    try:
        sent = _stream(broker_in, sink, count, run, pace)
    finally:
        sub.disconnect()
        sub.loop_stop()
    first = min(sent.values())
    last = max(sink.arrivals.values())
    latencies = [(sink.arrivals[k] - t) * 1000 for k, t in sent.items()]
    return count / (last - first), latencies


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_gateway(folder: Path, site: Any, backend: Any) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    config = folder / "gateway.toml"
    config.write_text(
        f'gateway_id = "gw-bench-1"\nsite_host = "{site.host}"\nsite_port = {site.port}\n'
        f'backend_host = "{backend.host}"\nbackend_port = {backend.port}\n'
        f'data_dir = "{folder / "gw-data"}"\nhttp_port = {port}\nlog_level = "WARNING"\n'
    )
    log = (folder / "gateway.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(config)],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=log,
    )
    return proc, port


def _wait(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _gateway_ready(port: int) -> bool:
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            report = json.loads(r.read())
    except OSError:
        return False
    return bool(report["site_connected"] and report["backend_connected"])


def _catch_up(
    folder: Path, site: Any, backend: Any, proc: subprocess.Popen[bytes], count: int, run: int
) -> tuple[subprocess.Popen[bytes], int, float]:
    """Stop the gateway, queue ``count`` messages at the site broker for its
    session, start it again: the drain rate is the gateway's own ceiling."""
    proc.terminate()
    proc.wait(30)
    pub = _client(f"bench-gw-pub-{os.getpid()}-{time.monotonic_ns()}")
    pub.max_inflight_messages_set(1000)
    pub.connect(site.host, site.port)
    pub.loop_start()
    infos = [pub.publish(*_payload(i, run), qos=1) for i in range(count)]
    _wait(lambda: all(i.is_published() for i in infos), "the backlog at the site broker", 120)
    pub.disconnect()
    pub.loop_stop()
    sink = _Sink()
    sub = _subscriber(backend, "lumeau/v1/gw/+/up/#", sink)
    try:
        proc, port = _start_gateway(folder, site, backend)
        _wait(lambda: sink.count() >= count, "the backlog at the backend", 300)
    finally:
        sub.disconnect()
        sub.loop_stop()
    times = sorted(sink.arrivals.values())
    return proc, port, (count - 1) / (times[-1] - times[0])


def _ready(port: int) -> Callable[[], bool]:
    return lambda: _gateway_ready(port)


def measure(folder: Path, count: int, paced: int, repeats: int) -> dict[str, Any]:
    """The figures, without the harness (also usable from a REPL)."""
    from backend import devstack

    folder.mkdir(parents=True, exist_ok=True)
    site = devstack.start_broker(folder / "site")
    backend = devstack.start_broker(folder / "backend")
    proc: subprocess.Popen[bytes] | None = None
    out: dict[str, Any] = {
        "direct": [],
        "gateway": [],
        "catch_up": [],
        "direct_lat": [],
        "gateway_lat": [],
    }
    try:
        proc, port = _start_gateway(folder, site, backend)
        _wait(_ready(port), "the gateway to connect")
        run = 0
        for _ in range(repeats):
            run += 1
            rate, _lat = _measure(backend, backend, "lumeau/v1/dev/+/up/#", count, run, None)
            out["direct"].append(rate)
            run += 1
            rate, _lat = _measure(site, backend, "lumeau/v1/gw/+/up/#", count, run, None)
            out["gateway"].append(rate)
            run += 1
            proc, port, rate = _catch_up(folder, site, backend, proc, count, run)
            out["catch_up"].append(rate)
            _wait(_ready(port), "the gateway to reconnect")
        run += 1
        _, lat = _measure(backend, backend, "lumeau/v1/dev/+/up/#", paced * 5, run, paced)
        out["direct_lat"] = lat
        run += 1
        _, lat = _measure(site, backend, "lumeau/v1/gw/+/up/#", paced * 5, run, paced)
        out["gateway_lat"] = lat
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        site.stop()
        backend.stop()
    return out


@benchmark(
    "gateway.forwarding",
    "field gateway: site broker -> gateway (SQLite FULL) -> backend broker, vs broker direct",
    order=60,
)
def gateway_forwarding(ctx: Context) -> list[Result]:
    count = ctx.size(20_000, 3_000)
    paced = ctx.size(1_000, 500)
    figures = measure(ctx.scratch_dir / "gateway", count, paced, ctx.repeats)
    direct = summarize(figures["direct"])
    gateway = summarize(figures["gateway"])
    catch_up = summarize(figures["catch_up"])
    note = f"{count:,} QoS 1 messages, {VALUES_PER_MESSAGE} values each"
    results = [
        Result("broker direct", direct.median, "msg/s", summary_note(direct, note)),
        Result("gateway", gateway.median, "msg/s", summary_note(gateway, note)),
        Result(
            "gateway values",
            gateway.median * VALUES_PER_MESSAGE,
            "values/s",
            f"{VALUES_PER_MESSAGE} values per message",
        ),
        Result(
            "gateway catch-up",
            catch_up.median,
            "msg/s",
            summary_note(catch_up, "backlog queued at the site broker, drained by the gateway"),
        ),
        Result(
            "gateway catch-up values",
            catch_up.median * VALUES_PER_MESSAGE,
            "values/s",
            f"{VALUES_PER_MESSAGE} values per message",
        ),
    ]
    for name, key in (("broker direct", "direct_lat"), ("gateway", "gateway_lat")):
        lat = figures[key]
        extra = f"{paced:,} msg/s paced, {len(lat):,} messages"
        if key == "gateway_lat":
            extra += ", batch linger 50 ms"
        results.append(Result(f"{name} latency p50", percentile(lat, 50), "ms", extra))
        results.append(Result(f"{name} latency p99", percentile(lat, 99), "ms", extra))
    return results
