"""Driving Mosquitto's own C clients (``mosquitto_pub``/``mosquitto_sub``).

The broker login is handed to the clients through their per-user option files
(``$XDG_CONFIG_HOME/mosquitto_pub`` and ``.../mosquitto_sub``, read by both
tools at start) in a private folder, so passwords never appear on a command
line where ``ps`` would show them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.harness.context import Services

# MQTT v5 lets the subscriber announce how many QoS 1/2 messages it accepts in
# flight. With Mosquitto's defaults (max_inflight_messages 20,
# max_queued_messages 1000) a subscriber that falls behind a burst loses the
# excess, QoS 1 included; a large window keeps more of the burst in flight.
RECEIVE_MAXIMUM = 65535
# mosquitto_pub -l numbers QoS 1/2 messages with 16-bit packet ids; 2.0.x stops
# waiting once the id of its last message is acknowledged, and after a wrap an
# older message with the same id may be acknowledged first, so it disconnects
# with messages still queued. One publisher run must stay below 65535 messages.
MAX_QOS1_PER_PUBLISHER = 65000


class MissingClient(RuntimeError):
    pass


def client_program(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/local/bin/{name}") if Path(p).exists()), None
    )
    if path is None:
        raise MissingClient(f"{name} not found: install the Debian package mosquitto-clients")
    return path


@contextlib.contextmanager
def client_options(services: Services, folder: Path) -> Iterator[dict[str, str]]:
    """An environment in which mosquitto_pub/sub log in to ``services``' broker."""
    config_home = folder / "mosquitto-clients"
    config_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    config_home.chmod(0o700)
    options = (
        f"-h {services.mqtt_host}\n"
        f"-p {services.mqtt_port}\n"
        f"-u {services.mqtt_username}\n"
        f"-P {services.mqtt_password}\n"
    )
    for tool in ("mosquitto_pub", "mosquitto_sub"):
        path = config_home / tool
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(options)
    env = dict(os.environ, XDG_CONFIG_HOME=str(config_home))
    try:
        yield env
    finally:
        shutil.rmtree(config_home, ignore_errors=True)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Terminate a child we started, then kill it if it does not go."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


class LineCounter:
    """Follows a growing text file and counts its complete lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self._offset = 0

    def poll(self) -> int:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return self.lines
        complete = chunk.rfind(b"\n") + 1
        self.lines += chunk.count(b"\n", 0, complete)
        self._offset += complete
        return self.lines


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, every: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


@dataclass(frozen=True)
class Flow:
    """What one subscriber saw of one published stream."""

    sent: int
    received: int
    first: float  # receive time of the first message (s, subscriber clock)
    last: float  # receive time of the last one

    @property
    def lost(self) -> int:
        return max(0, self.sent - self.received)

    @property
    def seconds(self) -> float:
        return self.last - self.first

    @property
    def rate(self) -> float:
        """Messages per second from the first message received to the last."""
        if self.received < 2 or self.seconds <= 0:
            return 0.0
        return (self.received - 1) / self.seconds


def publisher_command(
    topic: str, qos: int, *, nice: int = 0, extra: Sequence[str] = ()
) -> list[str]:
    command = [client_program("mosquitto_pub"), "-V", "mqttv5", "-q", str(qos), "-t", topic]
    command += [*extra, "-l"]
    if nice and shutil.which("nice"):
        command = ["nice", "-n", str(nice), *command]
    return command


def c_client_flow(
    env: dict[str, str],
    scratch: Path,
    lines_file: Path,
    count: int,
    qos: int,
    topic: str,
    *,
    publisher_nice: int = 0,
    idle_timeout: float = 1.5,
) -> Flow:
    """Publish ``count`` lines of ``lines_file`` with mosquitto_pub, receive them
    with mosquitto_sub, and time the reception.

    The subscriber prints each message's arrival time (``-F %U``) into a file;
    before the stream, probe messages confirm that its subscription is active
    and are left out of the count.
    """
    if qos > 0 and count > MAX_QOS1_PER_PUBLISHER:
        raise ValueError(f"at QoS {qos} one mosquitto_pub run can send {MAX_QOS1_PER_PUBLISHER}")
    out_file = scratch / f"sub-{os.getpid()}-{qos}.out"
    out_file.unlink(missing_ok=True)
    sub_cmd = [
        client_program("mosquitto_sub"),
        "-V",
        "mqttv5",
        "-D",
        "CONNECT",
        "receive-maximum",
        str(RECEIVE_MAXIMUM),
        "-q",
        str(qos),
        "-t",
        topic,
        "-F",
        "%U",
    ]
    counter = LineCounter(out_file)
    sub_err = scratch / "mosquitto_sub.err"
    pub_err = scratch / "mosquitto_pub.err"
    with out_file.open("wb") as out, sub_err.open("wb") as err:
        sub = subprocess.Popen(sub_cmd, stdout=out, stderr=err, env=env)
    publisher: subprocess.Popen[bytes] | None = None
    try:
        _wait_subscribed(env, sub, sub_err, counter, topic, qos)
        time.sleep(0.2)  # let stray probes arrive before taking the base count
        base = counter.poll()
        with lines_file.open("rb") as stdin, pub_err.open("wb") as err:
            publisher = subprocess.Popen(
                publisher_command(topic, qos, nice=publisher_nice),
                stdin=stdin,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        deadline = time.monotonic() + 60 + count / 1000
        seen, seen_at = base, time.monotonic()
        while True:
            now_count = counter.poll()
            now = time.monotonic()
            if now_count != seen:
                seen, seen_at = now_count, now
            if now_count - base >= count:
                break
            if publisher.poll() is not None and now - seen_at > idle_timeout:
                break
            if now > deadline:
                raise TimeoutError(f"stream of {count} messages did not finish in time")
            if sub.poll() is not None:
                raise RuntimeError(f"mosquitto_sub exited: {_stderr(sub, sub_err)}")
            time.sleep(0.02)
        if publisher.wait(30) != 0:
            raise RuntimeError(f"mosquitto_pub failed: {_stderr(publisher, pub_err)}")
    finally:
        if publisher is not None:
            stop_process(publisher)
        stop_process(sub)
    stamps = out_file.read_bytes().split(b"\n")[:-1]
    out_file.unlink(missing_ok=True)
    data = stamps[base:]
    if len(data) < 2:
        raise RuntimeError(f"only {len(data)} of {count} messages arrived")
    return Flow(sent=count, received=len(data), first=float(data[0]), last=float(data[-1]))


def publish_one(env: dict[str, str], topic: str, payload: str, qos: int = 0) -> None:
    subprocess.run(
        [client_program("mosquitto_pub"), "-q", str(qos), "-t", topic, "-m", payload],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=10,
    )


def _wait_subscribed(
    env: dict[str, str],
    sub: subprocess.Popen[bytes],
    sub_err: Path,
    counter: LineCounter,
    topic: str,
    qos: int,
) -> None:
    deadline = time.monotonic() + 15
    while counter.poll() == 0:
        if sub.poll() is not None:
            raise RuntimeError(f"mosquitto_sub exited: {_stderr(sub, sub_err)}")
        if time.monotonic() > deadline:
            raise TimeoutError("mosquitto_sub never received a probe message")
        publish_one(env, topic, "probe", qos)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: counter.poll() > 0, 0.3, "probe")


def _stderr(proc: subprocess.Popen[bytes], err_file: Path) -> str:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(1)
    try:
        text = err_file.read_text(errors="replace").strip()
    except OSError:
        text = ""
    return f"exit {proc.returncode}" + (f": {text[-500:]}" if text else "")


def paho_flow(
    services: Services,
    env: dict[str, str],
    scratch: Path,
    lines_file: Path,
    count: int,
    qos: int,
    topic: str,
    *,
    publisher_nice: int = 0,
    idle_timeout: float = 1.5,
) -> Flow:
    """Publish ``count`` lines with mosquitto_pub; one paho-mqtt client in this
    process subscribes and decodes every payload with :func:`json.loads`.

    paho runs its network loop in its own thread (``loop_start``), the way an
    application would; this thread only watches the count.
    """
    import json
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    lock = threading.Lock()
    subscribed = threading.Event()
    stats = {"received": 0, "checksum": 0}
    times = {"first": 0.0, "last": 0.0}
    clock = time.perf_counter

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        doc = json.loads(message.payload)
        now = clock()
        with lock:
            if stats["received"] == 0:
                times["first"] = now
            times["last"] = now
            stats["received"] += 1
            stats["checksum"] += doc["seq"]

    def on_subscribe(
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        subscribed.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"lumeau-bench-paho-{os.getpid()}",
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(services.mqtt_username, services.mqtt_password)
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    connect_props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    connect_props.ReceiveMaximum = RECEIVE_MAXIMUM
    client.connect(services.mqtt_host, services.mqtt_port, keepalive=60, properties=connect_props)
    client.loop_start()
    publisher: subprocess.Popen[bytes] | None = None
    pub_err = scratch / "mosquitto_pub.err"
    try:
        client.subscribe(topic, qos=qos)
        if not subscribed.wait(15):
            raise TimeoutError("paho-mqtt subscription was not acknowledged")
        with lines_file.open("rb") as stdin, pub_err.open("wb") as err:
            publisher = subprocess.Popen(
                publisher_command(topic, qos, nice=publisher_nice),
                stdin=stdin,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        deadline = time.monotonic() + 60 + count / 500
        seen, seen_at = 0, time.monotonic()
        while True:
            with lock:
                received = stats["received"]
            now = time.monotonic()
            if received != seen:
                seen, seen_at = received, now
            if received >= count:
                break
            if publisher.poll() is not None and now - seen_at > idle_timeout:
                break
            if now > deadline:
                raise TimeoutError(f"stream of {count} messages did not finish in time")
            time.sleep(0.05)
        if publisher.wait(30) != 0:
            raise RuntimeError(f"mosquitto_pub failed: {_stderr(publisher, pub_err)}")
    finally:
        if publisher is not None:
            stop_process(publisher)
        client.disconnect()
        client.loop_stop()
    with lock:
        return Flow(
            sent=count, received=stats["received"], first=times["first"], last=times["last"]
        )
