"""``lumeau bench [--only NAME] [--quick] [--json FILE]``: the benchmarks.

The benchmarks live in the repository's ``bench/`` folder, which is not part of
the installed distribution. This command looks for it from the current
directory upwards, then beside the ``backend`` package, puts that repository
root on ``sys.path`` and runs ``bench`` exactly as ``python -m bench`` does.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

HELP = "run the benchmarks (services, throughput, COPY) and print a table"


def _is_repo_root(folder: Path) -> bool:
    return (folder / "bench" / "__init__.py").is_file() and (
        folder / "bench" / "harness" / "runner.py"
    ).is_file()


def candidate_roots(cwd: Path | None = None) -> list[Path]:
    """Where ``bench/`` may be: the current directory and its parents, then the
    folder that holds the ``backend`` package."""
    here = (cwd or Path.cwd()).resolve()
    backend_parent = Path(__file__).resolve().parent.parent
    seen: list[Path] = []
    for folder in (here, *here.parents, backend_parent):
        if folder not in seen:
            seen.append(folder)
    return seen


def find_repo_root(candidates: Iterable[Path] | None = None) -> Path | None:
    for folder in candidate_roots() if candidates is None else candidates:
        if _is_repo_root(folder):
            return folder
    return None


def import_bench_runner(root: Path | None = None) -> ModuleType:
    """``bench.harness.runner`` from the repository found by :func:`find_repo_root`."""
    found = root if root is not None else find_repo_root()
    if found is None:
        raise ImportError(
            "the bench/ folder was not found (looked in the current directory, its "
            "parents and beside the backend package); run from a Lumeau checkout"
        )
    path = str(found)
    if path not in sys.path:
        sys.path.insert(0, path)
    return importlib.import_module("bench.harness.runner")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench", help=HELP, description=HELP.capitalize() + "."
    )
    try:
        runner = import_bench_runner()
    except ImportError as exc:
        error = str(exc)
        # Accept whatever was typed, so the user sees why rather than a usage error.
        parser.add_argument("ignored", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

        def unavailable(args: argparse.Namespace) -> int:
            print(f"error: {error}", file=sys.stderr)
            return 2

        parser.set_defaults(func=unavailable)
        return
    runner.add_arguments(parser)

    def run(args: argparse.Namespace) -> int:
        return int(runner.run(args))

    parser.set_defaults(func=run)
