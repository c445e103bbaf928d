"""The raw limits of this machine, before any Lumeau code runs.

- ``raw.mosquitto``: the broker with its own C clients (``mosquitto_pub -l``
  reading ~150-byte JSON lines from a file, ``mosquitto_sub`` printing only
  each arrival time), QoS 0 and QoS 1.
- ``raw.paho``: the same stream into one paho-mqtt subscriber that decodes each
  payload with ``json.loads`` (one Python thread, so at most one core).
- ``raw.copy``: psycopg 3 ``COPY ... FROM STDIN`` with ``write_row`` into a
  fresh TimescaleDB hypertable over one connection, text and binary format.

The services are the dev stack's (``backend.devstack``) as configured for the
project: password login, ACL and persistence on; nothing is tuned here.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import time
from collections.abc import Sequence

from bench._messages import write_lines
from bench._mqtt import Flow, c_client_flow, client_options, paho_flow
from bench.harness.context import Context
from bench.harness.registry import Result, benchmark
from bench.harness.stats import summarize
from bench.harness.table import format_value, summary_note

# mosquitto_pub runs at a lower CPU priority. On two cores the publisher, the
# broker and the subscriber compete; a publisher at equal priority takes a core
# to produce faster than anything can be delivered, and the broker then drops
# QoS 0 messages beyond its per-client queue (1000 by default). Niced, it only
# takes what the broker and the subscriber leave, so the figure is how fast
# they go rather than how the scheduler shares the cores.
PUBLISHER_NICE = 10


def _lost_note(flows: Sequence[Flow]) -> str:
    sent = sum(f.sent for f in flows)
    lost = sum(f.lost for f in flows)
    if lost == 0:
        return f"none lost of {sent:,}"
    return f"{lost:,} of {sent:,} dropped ({100.0 * lost / sent:.1f} %)"


def _rate_result(metric: str, flows: Sequence[Flow], extra: str, if_lost: str = "") -> Result:
    """Median rate; notes: spread, losses (explained by ``if_lost``), ``extra``."""
    summary = summarize([f.rate for f in flows])
    parts = [_lost_note(flows)]
    if if_lost and any(f.lost for f in flows):
        parts.append(if_lost)
    if extra:
        parts.append(extra)
    return Result(metric, summary.median, "msg/s", summary_note(summary, "; ".join(parts)))


@benchmark(
    "raw.mosquitto",
    "Mosquitto with its C clients: mosquitto_pub -l -> broker -> mosquitto_sub, ~150-byte JSON",
    order=10,
)
def mosquitto_c_clients(ctx: Context) -> list[Result]:
    services = ctx.services
    scratch = ctx.scratch_dir
    counts = {0: ctx.size(200_000, 20_000), 1: ctx.size(60_000, 10_000)}
    files = {}
    mean_size = 0.0
    for qos, count in counts.items():
        files[qos] = scratch / f"stream-{count}.jsonl"
        mean_size = write_lines(files[qos], count)
    flows: dict[int, list[Flow]] = {0: [], 1: []}
    topic = f"bench/raw/{os.getpid()}/c"
    with client_options(services, scratch) as env:
        for run in range(ctx.repeats):
            for qos, count in counts.items():
                flow = c_client_flow(
                    env,
                    scratch,
                    files[qos],
                    count,
                    qos,
                    f"{topic}/{qos}",
                    publisher_nice=PUBLISHER_NICE,
                )
                flows[qos].append(flow)
                ctx.log(
                    f"  run {run + 1}: QoS {qos} {format_value(flow.rate)} msg/s, "
                    f"{flow.received:,}/{flow.sent:,} received"
                )
    size = f"{mean_size:.0f}-byte payloads"
    dropped = "the broker dropped what its per-client queue could not hold"
    return [
        _rate_result("QoS 0 throughput", flows[0], f"{counts[0]:,} msgs/run, {size}", dropped),
        _rate_result("QoS 1 throughput", flows[1], f"{counts[1]:,} msgs/run, {size}", dropped),
    ]


@benchmark(
    "raw.paho",
    "one paho-mqtt subscriber decoding JSON (json.loads per message, one core)",
    order=11,
)
def paho_subscriber(ctx: Context) -> list[Result]:
    services = ctx.services
    scratch = ctx.scratch_dir
    count = ctx.size(100_000, 10_000)
    qos1_count = min(count, 60_000)
    files = {0: scratch / f"stream-{count}.jsonl", 1: scratch / f"stream-{qos1_count}.jsonl"}
    write_lines(files[0], count)
    write_lines(files[1], qos1_count)
    flows: dict[int, list[Flow]] = {0: [], 1: []}
    topic = f"bench/raw/{os.getpid()}/paho"
    with client_options(services, scratch) as env:
        for run in range(ctx.repeats):
            for qos, n in ((0, count), (1, qos1_count)):
                flow = paho_flow(
                    services,
                    env,
                    scratch,
                    files[qos],
                    n,
                    qos,
                    f"{topic}/{qos}",
                    publisher_nice=PUBLISHER_NICE,
                )
                flows[qos].append(flow)
                ctx.log(
                    f"  run {run + 1}: QoS {qos} {format_value(flow.rate)} msg/s, "
                    f"{flow.received:,}/{flow.sent:,} received"
                )
    outrun = "the publisher outruns it and the broker drops the excess; the rate is paho's own"
    return [
        _rate_result("QoS 0 decode rate", flows[0], f"{count:,} msgs/run", outrun),
        _rate_result(
            "QoS 1 decode rate", flows[1], f"{qos1_count:,} msgs/run, PUBACK per msg", outrun
        ),
    ]


# --- COPY into a hypertable ----------------------------------------------------

Row = tuple[dt.datetime, str, int, str, float]

COPY_COLUMNS = ("time", "device_id", "channel", "metric", "value")
COPY_TYPES = ("timestamptz", "text", "int2", "text", "float8")


def copy_rows(count: int, seed: int = 7) -> list[Row]:
    """Readings of 1000 cabinets, 4 channels, a few metrics, 50 ms apart."""
    rng = random.Random(seed)
    base = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    devices = [f"cab-{d:04d}" for d in range(1000)]
    metrics = ("power_w", "voltage_v", "current_a", "level_pct")
    step = dt.timedelta(milliseconds=50)
    return [
        (
            base + i * step,
            devices[i % 1000],
            1 + i % 4,
            metrics[(i // 1000) % 4],
            round(rng.uniform(0, 2000), 2),
        )
        for i in range(count)
    ]


def _copy_once(ctx: Context, rows: Sequence[Row], binary: bool, attempt: int) -> float:
    import psycopg
    from psycopg import sql

    services = ctx.services
    table = sql.Identifier(f"bench_copy_{os.getpid()}_{attempt}")
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in COPY_COLUMNS)
    statement = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
        table, columns, sql.SQL(" (FORMAT BINARY)" if binary else "")
    )
    # A checkpoint first, so that no run pays for the previous run's writes.
    with psycopg.connect(services.admin_database_url, autocommit=True) as admin:
        admin.execute("CHECKPOINT")
    with psycopg.connect(services.database_url) as conn:
        try:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (time timestamptz NOT NULL, device_id text NOT NULL, "
                    "channel smallint NOT NULL, metric text NOT NULL, value double precision)"
                ).format(table)
            )
            conn.execute(
                "SELECT create_hypertable(%s::regclass, by_range('time', INTERVAL '1 day'))",
                (table.as_string(conn),),
            )
            conn.commit()
            started = time.perf_counter()
            with conn.cursor() as cur, cur.copy(statement) as copy:
                if binary:
                    copy.set_types(list(COPY_TYPES))
                for row in rows:
                    copy.write_row(row)
            conn.commit()
            elapsed = time.perf_counter() - started
            found = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
            if found is None or found[0] != len(rows):
                raise RuntimeError(f"COPY stored {found} rows, expected {len(rows)}")
        finally:
            conn.rollback()
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            conn.commit()
    return len(rows) / elapsed


@benchmark(
    "raw.copy",
    "psycopg 3 COPY (write_row) into a fresh TimescaleDB hypertable, one connection",
    order=12,
)
def copy_into_hypertable(ctx: Context) -> list[Result]:
    count = ctx.size(1_000_000, 100_000)
    rows = copy_rows(count)
    rates: dict[bool, list[float]] = {False: [], True: []}
    for run in range(ctx.repeats):
        for binary in (False, True):
            rate = _copy_once(ctx, rows, binary, run)
            rates[binary].append(rate)
            ctx.log(
                f"  run {run + 1}: {'binary' if binary else 'text'} {format_value(rate)} rows/s"
            )
    shape = f"{count:,} rows/run (timestamptz, text, int2, text, float8), 1 chunk"
    results = []
    for binary, metric in ((False, "COPY text"), (True, "COPY binary")):
        summary = summarize(rates[binary])
        results.append(Result(metric, summary.median, "rows/s", summary_note(summary, shape)))
    return results
