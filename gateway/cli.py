"""``lumeau gateway run --config FILE``: one field gateway in the foreground."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from gateway import logs
from gateway.config import load_settings
from gateway.service import Gateway


def register(subparsers: Any) -> None:
    """Add ``gateway run`` to the ``lumeau`` parser."""
    gw = subparsers.add_parser("gateway", help="field gateway: site broker -> backend broker")
    actions = gw.add_subparsers(dest="gateway_command", metavar="ACTION", required=True)
    run = actions.add_parser(
        "run",
        help="run the gateway until SIGTERM/SIGINT",
        description="Validate, persist, batch and forward the site's device messages to "
        "the backend broker; route commands down. Settings: the TOML file, overridden "
        "by LUMEAU_GATEWAY_* environment variables (docs/gateway.md).",
    )
    run.add_argument("--config", type=Path, default=None, help="TOML settings file")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except (ValidationError, FileNotFoundError, ValueError) as exc:
        print(f"lumeau gateway: bad configuration: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    gateway = Gateway(settings)

    def _stop(signum: int, frame: FrameType | None) -> None:
        gateway.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    gateway.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gateway run --config FILE`` without the rest of the ``lumeau`` CLI."""
    parser = argparse.ArgumentParser(prog="python -m gateway")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register(subparsers)
    args = parser.parse_args(["gateway", *(argv if argv is not None else sys.argv[1:])])
    result: int = args.func(args)
    return result
