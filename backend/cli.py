"""The ``lumeau`` command: one sub-command per job people do with the stack.

Each job lives beside the code it drives and exposes ``register(subparsers)``;
this module only assembles them, so ``lumeau --help`` stays cheap to run.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# (module, what it adds). Kept as data so a missing optional part does not
# break the other commands.
_COMMAND_MODULES = (
    "backend.devstack.cli",  # lumeau services up|down|status|install
    "backend.storage.cli",  # lumeau db migrate|status
    "backend.ingest.cli",  # lumeau ingest run
    "backend.api.cli",  # lumeau api run, lumeau api token create
    "gateway.cli",  # lumeau gateway run
    "firmware.tools.cli",  # lumeau firmware build|provision|flash
    "backend.demo",  # lumeau demo
    "backend.bench_cli",  # lumeau bench
    "backend.alerts.cli",  # lumeau alerts run
    "backend.notify.cli",  # lumeau notify run|test
    "backend.maintenance.cli",  # lumeau maintenance run
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lumeau",
        description="Lumeau: connected public lighting and water-leak detection.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
