"""Install the pinned MicroPython WebAssembly interpreter into the run folder.

MicroPython's official WebAssembly port is the npm package
``@micropython/micropython-webassembly-pyscript``; Node.js runs it. It is
installed with npm, at an exact version, without a lockfile and without
touching any ``package.json``, into ``$LUMEAU_RUN_DIR/node`` (default: the
repository's ``.run/node``, which git ignores).

Standard library only, so it also runs as a script before any virtual
environment exists::

    python3 tests/mpy/install.py            # install if missing, print the path
    python3 tests/mpy/install.py --check    # only report; exit 1 when missing
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "@micropython/micropython-webassembly-pyscript"
VERSION = "1.27.0"
NODE_MIN_MAJOR = 18  # top-level await and WebAssembly as the port needs them

REPO_ROOT = Path(__file__).resolve().parents[2]
_REQUIRED_FILES = ("package.json", "micropython.mjs", "micropython.wasm")


class MicroPythonUnavailable(RuntimeError):
    """Node.js, npm or the interpreter package is missing and cannot be installed."""


def run_dir() -> Path:
    """The run folder: ``$LUMEAU_RUN_DIR``, else ``<repo>/.run``."""
    env = os.environ.get("LUMEAU_RUN_DIR")
    return Path(env).resolve() if env else REPO_ROOT / ".run"


def default_prefix() -> Path:
    """Where npm installs the interpreter: ``<run folder>/node``."""
    return run_dir() / "node"


def package_dir(prefix: Path | None = None) -> Path:
    """The installed package's folder under an npm prefix."""
    return (prefix or default_prefix()) / "node_modules" / PACKAGE


def installed_version(prefix: Path | None = None) -> str | None:
    """The version installed under prefix, or None if absent or incomplete."""
    pkg = package_dir(prefix)
    if not all((pkg / name).is_file() for name in _REQUIRED_FILES):
        return None
    try:
        meta = json.loads((pkg / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = meta.get("version")
    return version if isinstance(version, str) else None


def find_node() -> str:
    """Path of a Node.js new enough for the port; MicroPythonUnavailable if none."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise MicroPythonUnavailable(
            "Node.js is not installed; it runs MicroPython's WebAssembly port. "
            "On Debian/Ubuntu: apt-get install nodejs npm"
        )
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise MicroPythonUnavailable(f"{node} --version failed: {exc}") from exc
    match = re.match(r"v?(\d+)\.", out)
    if match is None or int(match.group(1)) < NODE_MIN_MAJOR:
        raise MicroPythonUnavailable(
            f"Node.js {out} at {node} is too old: MicroPython's WebAssembly port "
            f"needs Node.js >= {NODE_MIN_MAJOR}"
        )
    return node


def _find_npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise MicroPythonUnavailable(
            f"npm is not installed; it installs {PACKAGE}@{VERSION}. "
            "On Debian/Ubuntu: apt-get install nodejs npm"
        )
    return npm


@contextlib.contextmanager
def _locked(prefix: Path) -> Iterator[None]:
    """One installer at a time per prefix (parallel test sessions)."""
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_micropython(prefix: Path | None = None, *, version: str = VERSION) -> Path:
    """Install ``PACKAGE@version`` under prefix when missing; return the package folder.

    Raises MicroPythonUnavailable, saying what to install, when Node.js or npm
    is missing or npm fails.
    """
    prefix = (prefix or default_prefix()).resolve()
    find_node()
    if installed_version(prefix) == version:
        return package_dir(prefix)
    with _locked(prefix):
        if installed_version(prefix) == version:  # another process finished it
            return package_dir(prefix)
        npm = _find_npm()
        cmd = [
            npm,
            "install",
            "--prefix",
            str(prefix),
            "--no-save",
            "--no-package-lock",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            f"{PACKAGE}@{version}",
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as exc:
            raise MicroPythonUnavailable(f"{' '.join(cmd)} failed: {exc}") from exc
        got = installed_version(prefix)
        if proc.returncode != 0 or got != version:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
            raise MicroPythonUnavailable(
                f"npm could not install {PACKAGE}@{version} into {prefix} "
                f"(exit {proc.returncode}, found version {got}):\n" + "\n".join(tail)
            )
    return package_dir(prefix)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", type=Path, help="npm prefix (default: <run folder>/node)")
    parser.add_argument("--check", action="store_true", help="report only, install nothing")
    args = parser.parse_args(argv)
    prefix = args.prefix or default_prefix()
    if args.check:
        got = installed_version(prefix)
        print(f"{PACKAGE}: {got or 'not installed'} (pinned {VERSION}) in {prefix}")
        return 0 if got == VERSION else 1
    try:
        pkg = ensure_micropython(prefix)
    except MicroPythonUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(pkg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
