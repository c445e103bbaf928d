"""End-to-end ingest: readings/s from MQTT publish to rows committed in TimescaleDB.

Real ``lumeau ingest run`` workers (``python -m backend.cli ingest run``, one
or two processes sharing one MQTT v5 shared subscription) store a burst of
protocol-valid telemetry into a throwaway database (``backend.storage.scratch``
plus ``backend.storage.migrate``), so benchmark rows never mix with anyone
else's. Two kinds of traffic, the same cabinet message in both (4 circuits x
5 metrics = 20 readings):

- ``device messages``: each message on its own device topic
  (``lumeau/v1/dev/<id>/up/telemetry``), one ``mosquitto_pub -l`` per device;
- ``gateway batches``: ``batch`` messages of 500 device messages each
  (10,000 readings), one ``mosquitto_pub -l`` per gateway: the realistic path
  at national scale.

The publishers are Mosquitto's C client at QoS 1 (what devices and gateways
use), niced like in ``raw_limits``, fed through a pipe by a thread of this
process that writes the current time into each message's ``ts`` as it
writes the line: ``uplink_message.received_at`` (the worker's reception time)
minus that ``ts`` is the per-message latency, on one machine and one clock.

The rate runs from the first reception (``min(received_at)``) to the poll
(every 50 ms, ``count(*)`` of ``uplink_message``) that first sees every
message committed. Afterwards the database is checked: every identity and
every reading present exactly once, no dead letters.

The raw limits of the same parts are measured in the same run for the ratio:
the broker with its C clients on the same two streams (QoS 1, the
``raw.mosquitto`` method) and binary COPY into a bare hypertable (the
``raw.copy`` method).

``ingest.paced`` measures latency below capacity instead: device messages
published at fixed rates (5k, 18k, 50k readings/s) for a fixed time, and per
message the time from publish (the ``ts`` the feeder writes) to the commit of
the transaction that stored it, timed by a commit notification (see
``COMMIT_NOTIFIER``) and tied to each row by ``xmin``.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg

from bench._mqtt import (
    c_client_flow,
    client_options,
    publisher_command,
    stop_process,
    wait_until,
)
from bench.harness.context import Context, Services
from bench.harness.registry import Result, benchmark
from bench.harness.stats import summarize
from bench.harness.table import format_value, summary_note
from bench.raw_limits import PUBLISHER_NICE, _copy_once, copy_rows

REPO_ROOT = Path(__file__).resolve().parent.parent

CIRCUITS = 4  # channels 1-4 of a cabinet
READINGS_PER_MESSAGE = CIRCUITS * 5  # current_a, energy_wh, level_pct, power_w, voltage_v
BATCH_SIZE = 500  # device messages per gateway batch
DIRECT_PUBLISHERS = 4  # devices publishing directly, one mosquitto_pub each
GATEWAYS = 2  # gateways, one mosquitto_pub each
POLL_INTERVAL = 0.05  # s between count(*) polls
STALL_TIMEOUT = 15.0  # s without progress, publishers done: give up on the rest

# The worker's flush policy, as ``lumeau ingest run`` flags. Its defaults
# (5000 readings, 1000 deliveries, 200 ms) are what is measured: bigger flushes
# (--flush-readings 20000 --flush-ms 500) made no measurable difference, the
# cost is per reading (decode, row planning, COPY, index inserts), not per
# transaction. See docs/benchmarks.md.
WORKER_FLAGS: tuple[str, ...] = ()

TABLES = ("uplink_message", "reading", "event", "device_status", "command_ack", "dead_letter")

# F_SETPIPE_SZ (Linux): a small pipe keeps the feeder's timestamps close to
# the moment mosquitto_pub reads the line.
_F_SETPIPE_SZ = 1031


# --- traffic -----------------------------------------------------------------


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def cabinet_message(device: str, boot: str, seq: int, ts: int) -> str:
    """One cabinet telemetry message, 4 circuits x 5 metrics, canonical JSON."""
    readings = ",".join(
        f'{{"ch":{ch},"ts":{ts - 500},"values":{{"current_a":{5 + ch + seq % 7 / 10:.1f},'
        f'"energy_wh":{4_521_300 + seq},"level_pct":{50 + seq % 50},'
        f'"power_w":{1200 + ch * 10 + seq % 9 / 10:.1f},"voltage_v":{229 + seq % 5 / 10:.1f}}}}}'
        for ch in range(1, CIRCUITS + 1)
    )
    return (
        f'{{"boot":"{boot}","dev":"{device}","kind":"telemetry","readings":[{readings}],'
        f'"seq":{seq},"ts":{ts},"v":1}}'
    )


def device_topic(device: str) -> str:
    return f"lumeau/v1/dev/{device}/up/telemetry"


def gateway_batch(gateway: str, boot: str, seq: int, devices: Sequence[str], ts: int) -> str:
    """Batch ``seq`` of a gateway: message ``seq`` of each of its devices."""
    entries = ",".join(
        f'{{"payload":{cabinet_message(dev, boot, seq, ts)},"topic":"{device_topic(dev)}"}}'
        for dev in devices
    )
    return (
        f'{{"boot":"{boot}","gw":"{gateway}","kind":"batch","msgs":[{entries}],'
        f'"seq":{seq},"ts":{ts},"v":1}}'
    )


@dataclass(frozen=True)
class Stream:
    """What one publisher sends: ``count`` lines on ``topic``, made by ``line``."""

    topic: str
    count: int
    line: Callable[[int, int], str]  # (index, ts ms) -> payload


@dataclass(frozen=True)
class Traffic:
    name: str  # "device messages" / "gateway batches"
    streams: tuple[Stream, ...]
    deliveries: int  # MQTT messages
    messages: int  # uplink_message rows (batch envelopes included)
    readings: int


def _direct_line(device: str, boot: str, index: int, ts: int) -> str:
    return cabinet_message(device, boot, index, ts)


def _batch_line(gateway: str, boot: str, devices: Sequence[str], index: int, ts: int) -> str:
    return gateway_batch(gateway, boot, index, devices, ts)


def direct_traffic(messages: int, tag: str) -> Traffic:
    per = -(-messages // DIRECT_PUBLISHERS)
    boot = f"{abs(hash(tag)) % 2**32:08x}"
    streams = []
    total = 0
    for p in range(DIRECT_PUBLISHERS):
        n = min(per, messages - total)
        device = f"cab-{p:04d}"
        line = functools.partial(_direct_line, device, boot)
        streams.append(Stream(device_topic(device), n, line))
        total += n
    return Traffic(
        "device messages", tuple(streams), messages, messages, messages * READINGS_PER_MESSAGE
    )


def gateway_traffic(batches: int, tag: str) -> Traffic:
    per = -(-batches // GATEWAYS)
    boot = f"{abs(hash(tag + 'gw')) % 2**32:08x}"
    streams = []
    total = 0
    for g in range(GATEWAYS):
        n = min(per, batches - total)
        gateway = f"gw-{g:02d}"
        devices = [f"cab-{g:02d}{d:04d}" for d in range(BATCH_SIZE)]
        line = functools.partial(_batch_line, gateway, boot, devices)
        streams.append(Stream(f"lumeau/v1/gw/{gateway}/up/batch", n, line))
        total += n
    inner = batches * BATCH_SIZE
    return Traffic(
        f"gateway batches of {BATCH_SIZE}",
        tuple(streams),
        batches,
        inner + batches,
        inner * READINGS_PER_MESSAGE,
    )


def check_traffic(traffic: Traffic) -> None:
    """Refuse to measure a stream the protocol would reject."""
    from edge import protocol

    for stream in traffic.streams:
        payload = stream.line(0, now_ms()).encode()
        if stream.topic.endswith("/batch"):
            _env, good, bad = protocol.decode_batch(payload, stream.topic)
            if bad or len(good) != BATCH_SIZE:
                raise ValueError(f"bad benchmark batch: {bad[:1]}")
        else:
            protocol.decode(payload, stream.topic)


def write_stream_file(path: Path, stream: Stream) -> float:
    """The stream as a file for ``mosquitto_pub -l``; returns the mean size."""
    total = 0
    ts = now_ms()
    with path.open("w") as out:
        for i in range(stream.count):
            line = stream.line(i, ts)
            total += len(line)
            out.write(line + "\n")
    return total / max(1, stream.count)


# --- workers -----------------------------------------------------------------


@dataclass
class Worker:
    """One ``lumeau ingest run`` subprocess."""

    client_id: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def counters(self) -> dict[str, int]:
        """The counters of the worker's exit line (empty if it never wrote one)."""
        found = re.findall(r"stopped: (.*)$", self.log(), re.MULTILINE)
        if not found:
            return {}
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", found[-1])}


def write_run_dir(folder: Path, services: Services, database_url: str) -> Path:
    """A private run folder whose ``stack.env`` points the workers at ``database_url``."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    text = (
        f"LUMEAU_RUN_DIR={folder}\n"
        f"LUMEAU_DATABASE_URL={database_url}\n"
        f"LUMEAU_MQTT_HOST={services.mqtt_host}\n"
        f"LUMEAU_MQTT_PORT={services.mqtt_port}\n"
        f"LUMEAU_MQTT_USERNAME={services.mqtt_username}\n"
        f"LUMEAU_MQTT_PASSWORD={services.mqtt_password}\n"
    )
    path = folder / "stack.env"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return folder


def start_worker(run_dir: Path, client_id: str, group: str, flags: Sequence[str]) -> Worker:
    # The settings come from run_dir/stack.env; the real environment would win.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMEAU_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    log_path = run_dir / f"{client_id}.log"
    log_file = log_path.open("wb")
    command = [
        sys.executable,
        "-m",
        "backend.cli",
        "ingest",
        "run",
        "--run-dir",
        str(run_dir),
        "--client-id",
        client_id,
        "--share-group",
        group,
        "--stats-interval",
        "3600",
        *flags,
    ]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
    )
    return Worker(client_id, process, log_path, log_file)


def wait_subscribed(workers: Sequence[Worker], timeout: float = 60.0) -> None:
    def ready() -> bool:
        for w in workers:
            if w.process.poll() is not None:
                raise RuntimeError(f"ingest worker {w.client_id} exited:\n{w.tail()}")
        return all("subscribed to" in w.log() for w in workers)

    wait_until(ready, timeout, "the ingest workers to subscribe", every=0.1)


def stop_workers(workers: Sequence[Worker], services: Services) -> None:
    for w in workers:
        if w.process.poll() is None:
            w.process.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.process.wait(30)
        except subprocess.TimeoutExpired:
            stop_process(w.process)
        w.log_file.close()
        forget_session(services, w.client_id)


def forget_session(services: Services, client_id: str) -> None:
    """Drop a worker's persistent session so the broker stops keeping it."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(services.mqtt_username, services.mqtt_password)
    with contextlib.suppress(OSError):
        client.connect(services.mqtt_host, services.mqtt_port, clean_start=True)
        client.loop_start()
        client.disconnect()
        client.loop_stop()


@contextlib.contextmanager
def running_workers(
    count: int, run_dir: Path, services: Services, tag: str, flags: Sequence[str]
) -> Iterator[list[Worker]]:
    group = f"bench-e2e-{tag}"
    workers: list[Worker] = []
    try:
        for k in range(count):
            workers.append(start_worker(run_dir, f"{group}-w{k + 1}", group, flags))
        wait_subscribed(workers)
        yield workers
    finally:
        stop_workers(workers, services)


# --- one measurement -----------------------------------------------------------


@dataclass
class Publisher:
    process: subprocess.Popen[bytes]
    feeder: threading.Thread
    errors: list[BaseException] = field(default_factory=list)


def _feed(stream: Stream, pipe: IO[bytes], errors: list[BaseException]) -> None:
    try:
        for i in range(stream.count):
            pipe.write(stream.line(i, now_ms()).encode() + b"\n")
            pipe.flush()
    except BaseException as exc:  # reported by the caller
        errors.append(exc)
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


# (stream, pipe to mosquitto_pub, where to report an error)
Feed = Callable[[Stream, IO[bytes], list[BaseException]], None]


def start_publishers(
    traffic: Traffic, env: dict[str, str], err_dir: Path, feed: Feed = _feed
) -> list[Publisher]:
    publishers = []
    for k, stream in enumerate(traffic.streams):
        with (err_dir / f"pub-{k}.err").open("wb") as err:
            process = subprocess.Popen(
                publisher_command(stream.topic, 1, nice=PUBLISHER_NICE),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        assert process.stdin is not None
        with contextlib.suppress(OSError):
            fcntl.fcntl(process.stdin.fileno(), _F_SETPIPE_SZ, 4096)
        errors: list[BaseException] = []
        feeder = threading.Thread(target=feed, args=(stream, process.stdin, errors), daemon=True)
        feeder.start()
        publishers.append(Publisher(process, feeder, errors))
    return publishers


@dataclass(frozen=True)
class Run:
    """What one burst gave."""

    readings: int  # stored
    messages: int  # stored uplink_message rows
    rate: float  # readings/s, first reception -> everything committed
    seconds: float
    published_after: float  # s from first reception to the publishers' exit
    latency_p50: float  # ms, message ts -> received_at
    latency_p99: float
    lost_messages: int
    lost_readings: int
    duplicate_readings: int
    dead_letters: int


def reset_tables(database_url: str, admin_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        # CASCADE: later tables (commands, alerts) reference device.
        conn.execute("TRUNCATE " + ", ".join(TABLES) + ", device CASCADE")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("CHECKPOINT")


def measure_once(
    traffic: Traffic, env: dict[str, str], database_url: str, err_dir: Path, workers: list[Worker]
) -> Run:
    with psycopg.connect(database_url, autocommit=True) as conn:
        publishers = start_publishers(traffic, env, err_dir)
        published_at: float | None = None
        done_at: float | None = None
        seen, seen_at = 0, time.monotonic()
        deadline = time.monotonic() + 120 + traffic.readings / 5000
        try:
            while True:
                row = conn.execute("SELECT count(*) FROM uplink_message").fetchone()
                stored = int(row[0]) if row else 0
                now = time.monotonic()
                if published_at is None and all(p.process.poll() is not None for p in publishers):
                    published_at = time.time()
                if stored != seen:
                    seen, seen_at = stored, now
                if stored >= traffic.messages:
                    done_at = time.time()
                    break
                if published_at is not None and now - seen_at > STALL_TIMEOUT:
                    break
                if now > deadline:
                    break
                for w in workers:
                    if w.process.poll() is not None:
                        raise RuntimeError(f"ingest worker {w.client_id} exited:\n{w.tail()}")
                time.sleep(POLL_INTERVAL)
            for p in publishers:
                p.feeder.join(30)
                code = p.process.wait(30)
                if p.errors:
                    raise RuntimeError(f"feeding mosquitto_pub failed: {p.errors[0]!r}")
                if code != 0:
                    raise RuntimeError(f"mosquitto_pub exited with {code}")
            if published_at is None:
                published_at = time.time()
        finally:
            for p in publishers:
                stop_process(p.process)
        if done_at is None:
            # Give what is left a last chance to be counted before reporting losses.
            time.sleep(1.0)
            done_at = time.time()
        return _inspect(conn, traffic, done_at, published_at)


def _inspect(
    conn: psycopg.Connection[Any], traffic: Traffic, done_at: float, published_at: float
) -> Run:
    row = conn.execute(
        "SELECT count(*), extract(epoch FROM min(received_at))::float8,"
        " percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP"
        "   (ORDER BY extract(epoch FROM received_at - time)) FILTER (WHERE gateway_id IS NULL)"
        " FROM uplink_message"
    ).fetchone()
    assert row is not None
    messages, first, latency = int(row[0]), float(row[1] or done_at), row[2] or [0.0, 0.0]
    readings_row = conn.execute(
        "SELECT count(*), count(DISTINCT (device_id, boot_id, seq, channel, metric)) FROM reading"
    ).fetchone()
    assert readings_row is not None
    readings, distinct = int(readings_row[0]), int(readings_row[1])
    dead_row = conn.execute("SELECT count(*) FROM dead_letter").fetchone()
    dead = int(dead_row[0]) if dead_row else 0
    seconds = max(done_at - first, 1e-6)
    return Run(
        readings=readings,
        messages=messages,
        rate=distinct / seconds,
        seconds=seconds,
        published_after=published_at - first,
        latency_p50=1000 * float(latency[0]),
        latency_p99=1000 * float(latency[1]),
        lost_messages=traffic.messages - messages,
        lost_readings=traffic.readings - distinct,
        duplicate_readings=readings - distinct,
        dead_letters=dead,
    )


# --- the benchmark ---------------------------------------------------------------


def _raw_broker(
    ctx: Context, env: dict[str, str], traffic: Traffic, name: str
) -> tuple[float, float, int]:
    """Median msg/s of the broker alone (C clients, QoS 1) on this traffic's payloads."""
    stream = traffic.streams[0]
    path = ctx.scratch_dir / f"e2e-{name}.jsonl"
    size = write_stream_file(path, stream)
    rates = []
    try:
        for run in range(ctx.repeats):
            flow = c_client_flow(
                env,
                ctx.scratch_dir,
                path,
                stream.count,
                1,
                f"bench/ingest/{os.getpid()}/{name}",
                publisher_nice=PUBLISHER_NICE,
            )
            if flow.lost:
                raise RuntimeError(f"broker alone lost {flow.lost} of {flow.sent} messages")
            rates.append(flow.rate)
            ctx.log(
                f"  broker alone, {traffic.name}, run {run + 1}: {format_value(flow.rate)} msg/s"
            )
    finally:
        path.unlink(missing_ok=True)
    return summarize(rates).median, size, stream.count


def _ratio(value: float, ceiling: float) -> str:
    if ceiling <= 0:
        return "n/a"
    percent = 100 * value / ceiling
    return f"{percent:.0f} %" if percent >= 10 else f"{percent:.1f} %"


@benchmark(
    "ingest.e2e",
    "readings/s from MQTT publish to rows committed in TimescaleDB (1 and 2 `lumeau ingest run`"
    " workers, device messages and gateway batches), against the raw broker and COPY limits",
    order=30,
)
def ingest_e2e(ctx: Context) -> list[Result]:
    from backend.storage.migrate import migrate
    from backend.storage.scratch import create_database, drop_database

    services = ctx.services
    direct_messages = ctx.size(24_000, 2_000)
    batches = ctx.size(100, 8)
    pid = os.getpid()
    traffics = [
        direct_traffic(direct_messages, f"direct-{pid}"),
        gateway_traffic(batches, f"gw-{pid}"),
    ]
    for traffic in traffics:
        check_traffic(traffic)
    results: list[Result] = []

    with client_options(services, ctx.scratch_dir) as env:
        # The raw limits, same machine, same run.
        broker: dict[str, float] = {}
        for traffic, name, count in (
            (traffics[0], "direct", ctx.size(20_000, 3_000)),
            (traffics[1], "batch", ctx.size(200, 20)),
        ):
            probe = Traffic(
                traffic.name,
                (Stream(f"bench/ingest/{pid}/{name}", count, traffic.streams[0].line),),
                count,
                count,
                count * traffic.readings // traffic.deliveries,
            )
            rate, size, _n = _raw_broker(ctx, env, probe, name)
            per_delivery = traffic.readings / traffic.deliveries
            broker[traffic.name] = rate * per_delivery
            results.append(
                Result(
                    f"broker alone, {traffic.name}",
                    rate * per_delivery,
                    "readings/s",
                    f"median of {ctx.repeats}: {format_value(rate)} msg/s x {per_delivery:,.0f}"
                    f" readings; mosquitto_pub -> mosquitto_sub, QoS 1, {count:,} msgs of"
                    f" {size:,.0f} bytes",
                )
            )
        copy_count = ctx.size(300_000, 50_000)
        rows = copy_rows(copy_count)
        copy_rates = []
        for attempt in range(ctx.repeats):
            copy_rates.append(_copy_once(ctx, rows, True, attempt))
            ctx.log(f"  COPY binary run {attempt + 1}: {format_value(copy_rates[-1])} rows/s")
        copy_summary = summarize(copy_rates)
        copy_limit = copy_summary.median
        results.append(
            Result(
                "COPY binary alone",
                copy_limit,
                "rows/s",
                summary_note(
                    copy_summary, f"{copy_count:,} rows/run, 5 columns, no index (raw.copy)"
                ),
            )
        )

        url = create_database(services.admin_database_url, services.database_url, "bench_e2e")
        try:
            migrate(url)
            run_dir = write_run_dir(ctx.scratch_dir / f"ingest-e2e-{pid}", services, url)
            for worker_count in (1, 2):
                runs: dict[str, list[Run]] = {t.name: [] for t in traffics}
                tag = f"{pid}-{worker_count}"
                with running_workers(worker_count, run_dir, services, tag, WORKER_FLAGS) as workers:
                    for repeat in range(ctx.repeats):
                        for traffic in traffics:
                            reset_tables(url, services.admin_database_url)
                            run = measure_once(traffic, env, url, run_dir, workers)
                            runs[traffic.name].append(run)
                            ctx.log(
                                f"  {worker_count} worker(s), {traffic.name}, run {repeat + 1}: "
                                f"{format_value(run.rate)} readings/s over {run.seconds:.2f}s "
                                f"(published after {run.published_after:.2f}s), latency p50 "
                                f"{run.latency_p50:.0f} ms p99 {run.latency_p99:.0f} ms, "
                                f"lost {run.lost_readings}, dup {run.duplicate_readings}"
                            )
                counters = [w.counters() for w in workers]
                results.extend(_results(worker_count, traffics, runs, counters, broker, copy_limit))
        finally:
            # The worker logs stay for inspection; the credentials do not.
            (ctx.scratch_dir / f"ingest-e2e-{pid}" / "stack.env").unlink(missing_ok=True)
            drop_database(services.admin_database_url, url)
    return results


def _results(
    worker_count: int,
    traffics: Sequence[Traffic],
    runs: dict[str, list[Run]],
    counters: Sequence[dict[str, int]],
    broker: dict[str, float],
    copy_limit: float,
) -> list[Result]:
    label = "1 worker" if worker_count == 1 else f"{worker_count} workers"
    duplicates = sum(c.get("duplicates", 0) for c in counters)
    db_errors = sum(c.get("db_errors", 0) for c in counters)
    out = []
    for traffic in traffics:
        measured = runs[traffic.name]
        rate = summarize([r.rate for r in measured])
        lost = sum(r.lost_readings for r in measured)
        doubled = sum(r.duplicate_readings for r in measured)
        dead = sum(r.dead_letters for r in measured)
        sent = traffic.readings * len(measured)
        integrity = (
            f"all {sent:,} readings stored once"
            if lost == 0 and doubled == 0 and dead == 0
            else f"LOST {lost:,}, DUPLICATED {doubled:,}, dead letters {dead:,} of {sent:,}"
        )
        published = max(r.published_after for r in measured)
        seconds = summarize([r.seconds for r in measured]).median
        out.append(
            Result(
                f"{label}, {traffic.name}",
                rate.median,
                "readings/s",
                summary_note(
                    rate,
                    f"{_ratio(rate.median, broker[traffic.name])} of the broker alone, "
                    f"{_ratio(rate.median, copy_limit)} of COPY; "
                    f"{traffic.readings:,} readings/run in {traffic.deliveries:,} MQTT msgs, "
                    f"~{seconds:.1f} s; publishers done after <= {published:.1f} s; "
                    f"{integrity}; worker counters: {duplicates} duplicates, "
                    f"{db_errors} db errors",
                ),
            )
        )
        p50 = summarize([r.latency_p50 for r in measured])
        p99 = summarize([r.latency_p99 for r in measured])
        out.append(
            Result(
                f"{label}, {traffic.name}: latency p50",
                p50.median,
                "ms",
                f"p99 {format_value(p99.median)} ms (medians of {len(measured)}); publish ts ->"
                " received_at, one clock; during the burst, so mostly queueing; excludes the"
                " flush wait and the commit",
            )
        )
    return out


# --- paced: latency below capacity ------------------------------------------------

PACED_RATES = (5_000, 18_000, 50_000)  # readings/s; 18,000: 11 M light points every 10 min
PACED_SECONDS = 20.0  # of publishing per run
COMMIT_CHANNEL = "bench_commit"

# Benchmark-only, in the throwaway database: every transaction that inserts
# into uplink_message announces its id. PostgreSQL delivers a NOTIFY when (and
# only if) the transaction commits, so its arrival time at a listener is the
# commit time as a client sees it, and xmin ties each row to its transaction.
# One notification per worker flush: negligible next to the flush itself.
COMMIT_NOTIFIER = f"""
CREATE FUNCTION bench_notify_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{COMMIT_CHANNEL}', (txid_current() % 4294967296)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER bench_notify_commit AFTER INSERT ON uplink_message
    FOR EACH STATEMENT EXECUTE FUNCTION bench_notify_commit();
"""


class CommitListener:
    """Records when each transaction's commit notification arrives (wall clock)."""

    def __init__(self, database_url: str) -> None:
        self.commits: dict[int, float] = {}  # 32-bit transaction id -> time.time()
        self._conn = psycopg.connect(database_url, autocommit=True)
        self._conn.execute(f"LISTEN {COMMIT_CHANNEL}")
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        try:
            while not self._stop.is_set():
                for note in self._conn.notifies(timeout=0.2):
                    self.commits.setdefault(int(note.payload), time.time())
        except BaseException as exc:  # reported by close()
            self._errors.append(exc)

    def close(self) -> dict[int, float]:
        self._stop.set()
        self._thread.join(5)
        self._conn.close()
        if self._errors:
            raise RuntimeError(f"commit listener failed: {self._errors[0]!r}")
        return dict(self.commits)


@dataclass
class Pace:
    """When message ``i`` of a stream is due: ``start + i / per_second`` (monotonic)."""

    start: float
    per_second: float
    behind: list[float] = field(default_factory=list)  # worst lateness per stream, s


def _feed_paced(pace: Pace, stream: Stream, pipe: IO[bytes], errors: list[BaseException]) -> None:
    worst = 0.0
    try:
        for i in range(stream.count):
            due = pace.start + i / pace.per_second
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                worst = max(worst, -wait)
            # ts is the moment the line is written, late or not: latency stays honest.
            pipe.write(stream.line(i, now_ms()).encode() + b"\n")
            pipe.flush()
    except BaseException as exc:  # reported by the caller
        errors.append(exc)
    finally:
        pace.behind.append(worst)
        with contextlib.suppress(OSError):
            pipe.close()


def commit_latencies(
    rows: Sequence[tuple[int, int]], commits: dict[int, float]
) -> tuple[list[float], int]:
    """Publish -> commit in ms for each (xmin, ts ms) row, and how many rows had
    no commit notification."""
    latencies = []
    unmatched = 0
    for xmin, ts_ms in rows:
        committed = commits.get(xmin)
        if committed is None:
            unmatched += 1
        else:
            latencies.append(committed * 1000.0 - ts_ms)
    return latencies, unmatched


@dataclass(frozen=True)
class PacedRun:
    target: int  # readings/s asked for
    published: float  # readings/s the feeders achieved
    behind_ms: float  # worst lateness of a feeder against its schedule
    p50: float  # ms, publish -> commit
    p95: float
    p99: float
    worst: float
    received_p50: float  # ms, publish -> received_at (the worker's reception)
    unmatched: int
    lost_messages: int
    lost_readings: int
    duplicate_readings: int
    dead_letters: int


def measure_paced(
    target: int,
    seconds: float,
    env: dict[str, str],
    database_url: str,
    admin_url: str,
    err_dir: Path,
    workers: list[Worker],
    tag: str,
) -> PacedRun:
    from bench.harness.stats import percentile

    messages = max(DIRECT_PUBLISHERS, round(target * seconds / READINGS_PER_MESSAGE))
    traffic = direct_traffic(messages, tag)
    reset_tables(database_url, admin_url)
    listener = CommitListener(database_url)
    commits: dict[int, float] = {}
    try:
        pace = Pace(time.monotonic() + 0.2, target / READINGS_PER_MESSAGE / DIRECT_PUBLISHERS)
        publishers = start_publishers(traffic, env, err_dir, functools.partial(_feed_paced, pace))
        try:
            for p in publishers:
                p.feeder.join(seconds * 3 + 30)
            published_span = time.monotonic() - pace.start
            for p in publishers:
                code = p.process.wait(30)
                if p.errors:
                    raise RuntimeError(f"feeding mosquitto_pub failed: {p.errors[0]!r}")
                if code != 0:
                    raise RuntimeError(f"mosquitto_pub exited with {code}")
        finally:
            for p in publishers:
                stop_process(p.process)
        with psycopg.connect(database_url, autocommit=True) as conn:
            _wait_stored(conn, traffic.messages, workers)
            # The last notifications may trail the count that saw their rows.
            for _ in range(50):
                rows = [
                    (int(r[0]), int(r[1]))
                    for r in conn.execute(
                        "SELECT xmin::text::bigint,"
                        " (extract(epoch FROM time) * 1000)::bigint FROM uplink_message"
                    )
                ]
                if all(x in listener.commits for x, _ in rows):
                    break
                time.sleep(0.1)
            received = conn.execute(
                "SELECT percentile_cont(0.5) WITHIN GROUP"
                " (ORDER BY extract(epoch FROM received_at - time)) FROM uplink_message"
            ).fetchone()
            check = _inspect(conn, traffic, time.time(), time.time())
    finally:
        commits = listener.close()
    latencies, unmatched = commit_latencies(rows, commits)
    if not latencies:
        raise RuntimeError("no message was seen committed")
    return PacedRun(
        target=target,
        published=traffic.readings / published_span,
        behind_ms=1000 * max(pace.behind, default=0.0),
        p50=percentile(latencies, 50),
        p95=percentile(latencies, 95),
        p99=percentile(latencies, 99),
        worst=max(latencies),
        received_p50=1000 * float(received[0] or 0.0) if received else 0.0,
        unmatched=unmatched,
        lost_messages=check.lost_messages,
        lost_readings=check.lost_readings,
        duplicate_readings=check.duplicate_readings,
        dead_letters=check.dead_letters,
    )


def _wait_stored(conn: psycopg.Connection[Any], messages: int, workers: Sequence[Worker]) -> None:
    """Until every message is stored, or nothing new arrived for STALL_TIMEOUT s."""
    seen, seen_at = -1, time.monotonic()
    while True:
        row = conn.execute("SELECT count(*) FROM uplink_message").fetchone()
        stored = int(row[0]) if row else 0
        if stored >= messages:
            return
        now = time.monotonic()
        if stored != seen:
            seen, seen_at = stored, now
        elif now - seen_at > STALL_TIMEOUT:
            return
        for w in workers:
            if w.process.poll() is not None:
                raise RuntimeError(f"ingest worker {w.client_id} exited:\n{w.tail()}")
        time.sleep(POLL_INTERVAL)


@benchmark(
    "ingest.paced",
    "latency from MQTT publish to commit in TimescaleDB at fixed rates below capacity"
    " (5k, 18k, 50k readings/s of device messages; 1 and 2 `lumeau ingest run` workers)",
    order=31,
)
def ingest_paced(ctx: Context) -> list[Result]:
    from backend.storage.migrate import migrate
    from backend.storage.scratch import create_database, drop_database

    services = ctx.services
    rates = PACED_RATES if not ctx.quick else PACED_RATES[:1]
    seconds = ctx.size(int(PACED_SECONDS), 2)
    pid = os.getpid()
    check_traffic(direct_traffic(DIRECT_PUBLISHERS, f"paced-{pid}"))
    results: list[Result] = []
    with client_options(services, ctx.scratch_dir) as env:
        url = create_database(services.admin_database_url, services.database_url, "bench_paced")
        try:
            migrate(url)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(COMMIT_NOTIFIER)
            run_dir = write_run_dir(ctx.scratch_dir / f"ingest-paced-{pid}", services, url)
            for worker_count in (1, 2):
                tag = f"paced-{pid}-{worker_count}"
                runs: dict[int, list[PacedRun]] = {rate: [] for rate in rates}
                with running_workers(worker_count, run_dir, services, tag, WORKER_FLAGS) as workers:
                    for repeat in range(ctx.repeats):
                        for rate in rates:
                            run = measure_paced(
                                rate,
                                seconds,
                                env,
                                url,
                                services.admin_database_url,
                                run_dir,
                                workers,
                                f"{tag}-{rate}-{repeat}",
                            )
                            runs[rate].append(run)
                            ctx.log(
                                f"  {worker_count} worker(s), {rate:,} readings/s, run "
                                f"{repeat + 1}: published {format_value(run.published)}/s "
                                f"(worst {run.behind_ms:.0f} ms behind); commit latency p50 "
                                f"{run.p50:.0f} p95 {run.p95:.0f} p99 {run.p99:.0f} max "
                                f"{run.worst:.0f} ms; received p50 {run.received_p50:.0f} ms; "
                                f"lost {run.lost_readings}, dup {run.duplicate_readings}, "
                                f"unmatched {run.unmatched}"
                            )
                counters = [w.counters() for w in workers]
                results.extend(_paced_results(worker_count, seconds, runs, counters))
        finally:
            (ctx.scratch_dir / f"ingest-paced-{pid}" / "stack.env").unlink(missing_ok=True)
            drop_database(services.admin_database_url, url)
    return results


def _paced_results(
    worker_count: int,
    seconds: float,
    runs: dict[int, list[PacedRun]],
    counters: Sequence[dict[str, int]],
) -> list[Result]:
    label = "1 worker" if worker_count == 1 else f"{worker_count} workers"
    db_errors = sum(c.get("db_errors", 0) for c in counters)
    out = []
    for rate, measured in runs.items():
        lost = sum(r.lost_readings for r in measured)
        doubled = sum(r.duplicate_readings for r in measured)
        dead = sum(r.dead_letters for r in measured)
        unmatched = sum(r.unmatched for r in measured)
        integrity = (
            "all readings stored once"
            if lost == doubled == dead == 0
            else f"LOST {lost:,}, DUPLICATED {doubled:,}, dead letters {dead:,}"
        )

        def med(values: Sequence[float]) -> float:
            return summarize(values).median

        p95, p99 = med([r.p95 for r in measured]), med([r.p99 for r in measured])
        worst = max(r.worst for r in measured)
        received = med([r.received_p50 for r in measured])
        published = med([r.published for r in measured])
        behind = max(r.behind_ms for r in measured)
        out.append(
            Result(
                f"{label}, {rate:,} readings/s: publish -> commit p50",
                med([r.p50 for r in measured]),
                "ms",
                f"p95 {p95:,.0f}, p99 {p99:,.0f}, max {worst:,.0f} ms (medians of"
                f" {len(measured)} runs of {seconds:g} s, max of all); received_at p50"
                f" {received:,.0f} ms; published {format_value(published)} readings/s, feeder"
                f" up to {behind:,.0f} ms behind; {integrity}; {unmatched} rows without a"
                f" commit notice; {db_errors} db errors",
            )
        )
    return out
