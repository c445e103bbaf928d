"""``lumeau notify run`` (the dispatcher) and ``lumeau notify test --channel NAME``.

The dispatcher and its HTTP client are imported when a command runs, so
``lumeau --help`` stays cheap.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.settings import Settings, get_settings, load_settings

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add ``notify run`` and ``notify test`` to the ``lumeau`` parser."""
    notify = subparsers.add_parser("notify", help="alert notifications: webhooks and e-mail")
    actions = notify.add_subparsers(dest="notify_command", metavar="ACTION", required=True)

    run = actions.add_parser(
        "run",
        help="run the notification dispatcher until SIGTERM/SIGINT",
        description="Fan new alert history out to the notification channels and send"
        " the deliveries, with retries; wakes on NOTIFY lumeau_alert. Several may run.",
    )
    run.add_argument("--run-dir", type=Path, default=None, help="run folder holding stack.env")
    run.add_argument("--once", action="store_true", help="one pass (fan out, send what is due)")
    run.add_argument(
        "--interval", type=float, default=5.0, help="seconds between passes (default: 5)"
    )
    run.set_defaults(func=_run)

    test = actions.add_parser(
        "test",
        help="send a test message to one channel",
        description="Send a 'notification.test' message to the channel now (no delivery"
        " row, no retry) and print what the receiver answered. Exit 1 if it failed.",
    )
    test.add_argument("--channel", required=True, help="the channel's name")
    test.add_argument("--run-dir", type=Path, default=None, help="run folder holding stack.env")
    test.set_defaults(func=_test)


def _settings(run_dir: Path | None) -> Settings:
    return load_settings(run_dir) if run_dir is not None else get_settings()


def _config(run_dir: Path | None) -> Any:
    from backend.notify.dispatcher import DispatcherConfig
    from backend.notify.settings import load_smtp_settings

    settings = _settings(run_dir)
    return DispatcherConfig(
        conninfo=settings.database_url.get_secret_value(), smtp=load_smtp_settings(run_dir)
    )


async def serve(config: Any, interval_s: float, stop: asyncio.Event) -> None:
    """The dispatcher until ``stop`` is set.

    It connects inside ``Dispatcher.run``'s retry loop, not before it: a
    database still starting (or down) when the service starts is waited for
    with backoff, logged, instead of ending the service with a traceback.
    """
    from backend.notify.dispatcher import Dispatcher

    dispatcher = Dispatcher(config)
    try:
        log.info("notification dispatcher running (interval %.1f s)", interval_s)
        await dispatcher.run(interval_s, stop)
    finally:
        await dispatcher.close()


def _run(args: argparse.Namespace) -> int:
    import psycopg

    from backend.notify.dispatcher import Dispatcher

    config = _config(args.run_dir)

    async def once() -> int:
        try:
            async with Dispatcher(config) as dispatcher:
                attempts = await dispatcher.run_once()
        except psycopg.OperationalError as exc:
            print(f"error: database unavailable: {exc}", file=sys.stderr)
            return 1
        for attempt in attempts:
            print(
                f"delivery {attempt.delivery_id} -> {attempt.channel}:"
                f" {attempt.state} (attempt {attempt.attempts})"
                + (f": {attempt.result.error}" if attempt.result.error else "")
            )
        return 0

    async def forever() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(config, args.interval, stop)
        return 0

    return asyncio.run(once() if args.once else forever())


def _test(args: argparse.Namespace) -> int:
    from backend.notify import message, store
    from backend.notify.dispatcher import Dispatcher

    config = _config(args.run_dir)

    async def main() -> int:
        conn = await store.connect(config.conninfo)
        try:
            channel = await store.channel_by_name(conn, args.channel)
        finally:
            await conn.close()
        if channel is None:
            print(f"no notification channel named {args.channel!r}", file=sys.stderr)
            return 2
        now = datetime.now(UTC)
        async with Dispatcher(config) as dispatcher:
            if channel["kind"] == "webhook":
                result = await dispatcher.send_webhook(
                    channel["url"],
                    channel["secret"],
                    message.probe_webhook_body(channel["name"], now),
                    event=message.TEST_EVENT,
                    delivery_id=None,
                )
            else:
                result = await dispatcher.send_mail(
                    channel["recipients"],
                    f"[Lumeau] test message for channel {channel['name']}",
                    f"This is a test message from Lumeau's notifier, sent {now.isoformat()}"
                    f" to channel {channel['name']}.\n",
                    delivery_id=None,
                )
        where = channel["url"] if channel["kind"] == "webhook" else ", ".join(channel["recipients"])
        status = f" (status {result.status_code})" if result.status_code else ""
        print(f"{channel['name']} ({channel['kind']}, {where}): {result.verdict.value}{status}")
        if result.error:
            print(f"  {result.error}")
        if not channel["enabled"]:
            print("  note: the channel is disabled; the dispatcher sends it nothing")
        return 0 if result.verdict.value == "sent" else 1

    return asyncio.run(main())
