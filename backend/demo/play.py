"""Playing the script through the site, then showing where each message was handled."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import psycopg

from edge import protocol

from .children import wait
from .devices import ErrorReplies, publish
from .gateway import GATEWAY_COUNTERS, GatewayProcess, counter
from .script import BAD_CODES, CABINET, GATEWAY, GOOD_MESSAGES, SENSOR, build_publications
from .tables import table


def play(
    stack: Any,
    site: Any,
    passwords: dict[str, str],
    gateway: GatewayProcess,
    gw_boot: str,
    worker: Any,
    stop_ingest: Callable[[], None],
    tool_pub: str,
    tool_sub: str,
    start_ms: int,
) -> int:
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        started = conn.execute("SELECT now()").fetchone()
        since = started[0] if started else None
        cab_boot, sensor_boot = secrets.token_hex(4), secrets.token_hex(4)
        boots = [cab_boot, sensor_boot]
        # The town's traffic went through the same gateway before: the script's
        # own share of its counters is what changed from here.
        before = gateway.metrics()

        def since_start(metrics: dict[str, float], name: str) -> int:
            if name.endswith("_total"):
                return counter(metrics, name) - counter(before, name)
            return counter(metrics, name)

        replies = ErrorReplies(site.host, site.port, passwords[CABINET], tool_sub)
        sent = []
        for n, pub in enumerate(build_publications(cab_boot, sensor_boot, start_ms)):
            outcome = publish(pub, site.host, site.port, passwords[pub.device], tool_pub)
            sent.append(
                (pub.device, pub.topic.removeprefix(protocol.TOPIC_ROOT + "/"), pub.note, outcome)
            )
            if n == 0:
                # The first message is a retained status: once the gateway has it
                # (live, or retained when it subscribes) its subscription exists.
                wait(lambda: since_start(gateway.metrics(), "received_total") >= 1)
        table(
            f"Published with mosquitto_pub to the SITE broker {site.host}:{site.port} (QoS 1, v5)",
            ("device", "topic", "what", "mosquitto_pub"),
            sent,
        )

        def stored() -> int:
            row = conn.execute(
                "SELECT count(*) FROM uplink_message WHERE boot_id = ANY(%s)", (boots,)
            ).fetchone()
            return int(row[0]) if row else 0

        def gateway_status() -> str | None:
            row = conn.execute(
                "SELECT s.state FROM device_status s JOIN uplink_message u USING"
                " (device_id, boot_id, seq, time) WHERE s.device_id = %s AND s.boot_id = %s"
                " ORDER BY u.received_at DESC, s.seq DESC LIMIT 1",
                (GATEWAY, gw_boot),
            ).fetchone()
            return str(row[0]) if row else None

        complete = wait(
            lambda: (
                stored() >= GOOD_MESSAGES
                and since_start(gateway.metrics(), "rejected_total") >= len(BAD_CODES)
                and len(replies.codes()) >= len(BAD_CODES)
                and gateway_status() == "online"
            )
        )
        time.sleep(0.5)  # a late duplicate, if any, would now be visible too
        metrics = gateway.metrics()
        devices_while_running = conn.execute(
            "SELECT device_id, role, last_status, fw, last_gateway_id FROM device"
            " WHERE device_id = ANY(%s) ORDER BY device_id",
            ([CABINET, GATEWAY, SENSOR],),
        ).fetchall()

        # A clean stop: in-flight batches drained, offline status published.
        exit_code = gateway.stop()
        wait(lambda: gateway_status() == "offline", 15)
        stop_ingest()
        replies.close()
        letters = gateway.dead_letters()

        table(
            f"Gateway counters for the script (totals: change since it began), read from"
            f" {gateway.metrics_url} before it stopped",
            ("counter", "value", "meaning"),
            [(name, since_start(metrics, name), meaning) for name, meaning in GATEWAY_COUNTERS]
            + [
                (key, int(value - before.get(key, 0.0)), "  by code")
                for key, value in sorted(metrics.items())
                if key.startswith("rejected_total{") and value > before.get(key, 0.0)
            ],
        )
        table(
            f"Gateway dead letters (its SQLite {gateway.queue.name}: bad input stops at the site)",
            ("device", "code", "field", "reason"),
            [(dev, code, field, reason[:70]) for dev, code, field, reason, _topic in letters],
        )
        table(
            f"Error replies {CABINET} read on its own down/error topic of the SITE broker",
            ("reply",),
            [[line[:110]] for line in replies.lines],
        )
        rows = conn.execute(
            "SELECT device_id, boot_id, seq, kind, to_char(time AT TIME ZONE 'UTC', 'HH24:MI:SS'),"
            " gateway_id FROM uplink_message WHERE boot_id = ANY(%s) ORDER BY device_id, seq",
            (boots,),
        ).fetchall()
        table("Stored device messages (uplink_message: one row per device, boot, seq)",
               ("device", "boot", "seq", "kind", "time UTC", "via gateway"), rows)  # fmt: skip
        rows = conn.execute(
            "SELECT device_id, boot_id, seq, kind, to_char(time AT TIME ZONE 'UTC', 'HH24:MI:SS')"
            " FROM uplink_message WHERE device_id = %s AND boot_id = %s AND received_at >= %s"
            " ORDER BY seq",
            (GATEWAY, gw_boot, since),
        ).fetchall()
        batches = sum(1 for r in rows if r[3] == "batch")
        table(f"The gateway's own messages during the script (uplink_message, {GATEWAY} boot"
              f" {gw_boot})",
               ("gateway", "boot", "seq", "kind", "time UTC"), rows)  # fmt: skip
        rows = conn.execute(
            "SELECT device_id, channel, metric, count(*), round(avg(value)::numeric, 2)"
            " FROM reading WHERE boot_id = ANY(%s) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            (boots,),
        ).fetchall()
        table("Readings (reading hypertable)", ("device", "ch", "metric", "rows", "mean"), rows)
        rows = conn.execute(
            "SELECT device_id, code, severity, active FROM event WHERE boot_id = ANY(%s)", (boots,)
        ).fetchall()
        table("Events", ("device", "code", "severity", "active"), rows)
        table("Devices and gateway while the gateway ran (device table)",
               ("id", "role", "status", "firmware", "last gateway"),
               devices_while_running)  # fmt: skip
        rows = conn.execute(
            "SELECT s.device_id, s.seq, s.state,"
            " to_char(s.time AT TIME ZONE 'UTC', 'HH24:MI:SS.MS'),"
            " to_char(u.received_at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS')"
            " FROM device_status s JOIN uplink_message u USING (device_id, boot_id, seq, time)"
            " WHERE s.device_id = %s AND s.boot_id = %s ORDER BY u.received_at, s.seq",
            (GATEWAY, gw_boot),
        ).fetchall()
        table("Gateway presence (device_status of its boot, in order received)",
               ("gateway", "seq", "state", "composed UTC", "received UTC"), rows)  # fmt: skip
        rows = conn.execute(
            "SELECT device_id, boot_id, first_missing, last_missing, missing"
            " FROM sequence_gap WHERE boot_id = ANY(%s)",
            ([*boots, gw_boot],),
        ).fetchall()
        table("Sequence gaps (reported, never silent)",
               ("device", "boot", "first", "last", "missing"), rows)  # fmt: skip
        backend_letters = conn.execute(
            "SELECT count(*) FROM dead_letter WHERE received_at >= %s", (since,)
        ).fetchone()
        dup = conn.execute(
            "SELECT count(*) FROM uplink_message WHERE boot_id = %s AND seq = 2", (cab_boot,)
        ).fetchone()
        acl = conn.execute(
            "SELECT count(*) FROM uplink_message WHERE device_id = %s AND boot_id = %s",
            (SENSOR, cab_boot),
        ).fetchone()
        via = conn.execute(
            "SELECT count(*) FROM uplink_message WHERE boot_id = ANY(%s) AND gateway_id = %s",
            (boots, GATEWAY),
        ).fetchone()
        good = stored()
    print()
    print(
        f"Good messages: {GOOD_MESSAGES} distinct sent, {good} stored, "
        f"{via[0] if via else '?'} of them via {GATEWAY}."
    )
    print(
        f"Duplicate: seq 2 published twice, stored {dup[0] if dup else '?'} time(s) "
        f"(gateway duplicates={since_start(metrics, 'duplicates_total')})."
    )
    print(f"ACL: {CABINET}'s messages under {SENSOR}'s topic stored: {acl[0] if acl else '?'}.")
    print(
        f"Bad input: {len(letters)} gateway dead letters "
        f"({', '.join(sorted(code for _, code, _, _, _ in letters))}), "
        f"{len(replies.codes())} error replies; backend dead letters this run: "
        f"{backend_letters[0] if backend_letters else '?'}."
    )
    print(f"Gateway batches stored: {batches} (kind batch); gateway exit code {exit_code}.")
    print(f"Ingest counters: {worker.counters.line()}")
    if not complete:
        print("\nNot everything arrived within the wait; see the tables above.")
        print(f"Gateway log ({gateway.log}):\n{gateway.log_tail()}")
        return 1
    return 0
