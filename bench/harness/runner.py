"""Run the selected benchmarks, print the table, optionally save JSON.

Shared by ``python -m bench`` and ``lumeau bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from bench.harness.context import Context, ServicesFactory, start_devstack
from bench.harness.machine import describe, machine_info
from bench.harness.registry import REGISTRY, Registry, Row, UnknownBenchmark, discover
from bench.harness.table import format_markdown, format_table

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_RUN_DIR = REPO_ROOT / ".run" / "bench"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this benchmark, or this group (e.g. 'raw'); repeatable",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke test, not a measurement"
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="also save results as JSON")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        metavar="N",
        help="runs per measurement; the median is shown (default 3, 2 with --quick)",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the table as Markdown (for the docs)"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--keep-services",
        action="store_true",
        help="leave Mosquitto and PostgreSQL running if this run started them",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help=f"run folder for the services (default {DEFAULT_RUN_DIR})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run Lumeau's benchmarks and print one table of results.",
    )
    add_arguments(parser)
    return parser


def list_benchmarks(registry: Registry) -> str:
    benches = registry.all()
    width = max((len(b.name) for b in benches), default=0)
    return "".join(f"{b.name.ljust(width)}  {b.description}\n" for b in benches)


def run_benchmarks(
    ctx: Context, registry: Registry, only: Sequence[str] | None = None
) -> tuple[list[Row], bool]:
    """Every selected benchmark in order; a failure becomes a row, not an abort.

    Returns the rows and whether all benchmarks succeeded.
    """
    rows: list[Row] = []
    ok = True
    if not only:
        for module, error in sorted(registry.broken.items()):
            ok = False
            ctx.log(f"{module} did not import: {error}")
            rows.append(Row(module, "import", None, "", f"FAILED: {error}"))
    for bench in registry.select(only):
        ctx.log(f"{bench.name}: {bench.description}")
        started = time.monotonic()
        try:
            results = bench.function(ctx)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            ok = False
            ctx.log(f"{bench.name} failed:\n{traceback.format_exc()}")
            rows.append(Row(bench.name, "error", None, "", f"FAILED: {type(exc).__name__}: {exc}"))
            continue
        rows.extend(Row.of(bench.name, result) for result in results)
        ctx.log(f"{bench.name} done in {time.monotonic() - started:.1f}s")
    return rows, ok


def results_document(
    rows: Sequence[Row], machine: dict[str, object], *, quick: bool, repeats: int
) -> dict[str, object]:
    return {
        "format": "lumeau-bench/1",
        "machine": machine,
        "settings": {"quick": quick, "repeats": repeats},
        "results": [row.as_dict() for row in rows],
    }


def run(
    args: argparse.Namespace,
    *,
    out: TextIO | None = None,
    services_factory: ServicesFactory = start_devstack,
) -> int:
    """Run what ``args`` (from :func:`add_arguments`) asks; 0 when all succeeded."""
    stream = out if out is not None else sys.stdout
    registry = discover()
    if args.list:
        stream.write(list_benchmarks(registry))
        for module, error in sorted(registry.broken.items()):
            stream.write(f"({module} did not import: {error})\n")
        return 0
    repeats = args.repeat if args.repeat is not None else (2 if args.quick else 3)
    if repeats < 1:
        print("--repeat must be at least 1", file=sys.stderr)
        return 2
    try:
        registry.select(args.only)
    except UnknownBenchmark as exc:
        print(exc.args[0], file=sys.stderr)
        for module, error in sorted(registry.broken.items()):
            print(f"(benchmark module {module} did not import: {error})", file=sys.stderr)
        return 2
    run_dir = (args.run_dir or DEFAULT_RUN_DIR).resolve()
    ctx = Context(
        run_dir=run_dir, quick=args.quick, repeats=repeats, services_factory=services_factory
    )
    started = time.monotonic()
    load_before = _load_average()
    try:
        rows, ok = run_benchmarks(ctx, registry, args.only)
        machine = machine_info(ctx.services_started)
    finally:
        ctx.close(keep_services=args.keep_services)
    machine["wall_seconds"] = round(time.monotonic() - started, 1)
    machine["load_average_before"] = load_before
    machine["load_average_after"] = _load_average()
    stream.write("\n" + describe(machine) + "\n\n")
    stream.write(format_markdown(rows) if args.markdown else format_table(rows))
    if args.quick:
        stream.write("(--quick: small sizes, figures are not representative)\n")
    stream.flush()
    if args.json is not None:
        document = results_document(rows, machine, quick=args.quick, repeats=repeats)
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        ctx.log(f"results saved to {path}")
    return 0 if ok else 1


def _load_average() -> float | None:
    """1-minute load average: other work on the machine skews the figures."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


# Keep the module-level registry importable from here for tests and tools.
__all__ = ["REGISTRY", "add_arguments", "build_parser", "main", "run", "run_benchmarks"]
