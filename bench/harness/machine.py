"""What the figures were measured on: cores, CPU, Python, server versions, date."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import subprocess
from pathlib import Path

from bench.harness.context import Services


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    return parse_cpu_model(text) or platform.processor() or platform.machine()


def parse_cpu_model(cpuinfo_text: str) -> str | None:
    for line in cpuinfo_text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name":
            return value.strip()
    return None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def mosquitto_version() -> str | None:
    """``2.0.11`` from ``mosquitto -h`` (which prints its version first)."""
    exe = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None,
    )
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "-h"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_mosquitto_version(out)


def parse_mosquitto_version(help_text: str) -> str | None:
    for line in help_text.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "mosquitto" and words[1] == "version":
            return words[2]
    return None


def database_versions(services: Services) -> dict[str, str | None]:
    """PostgreSQL's and TimescaleDB's versions as the running server reports them."""
    import psycopg

    versions: dict[str, str | None] = {
        "postgresql": None,
        "timescaledb": services.timescaledb_version,
        "timescaledb_license": None,
    }
    try:
        # The app database: the timescaledb extension is created there.
        with psycopg.connect(services.database_url, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            versions["postgresql"] = str(row[0]) if row else None
            row = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone()
            if row:
                versions["timescaledb"] = str(row[0])
                lic = conn.execute("SELECT current_setting('timescaledb.license', true)")
                found = lic.fetchone()
                versions["timescaledb_license"] = str(found[0]) if found and found[0] else None
    except psycopg.Error:
        pass
    return versions


def machine_info(services: Services | None, now: dt.datetime | None = None) -> dict[str, object]:
    moment = now or dt.datetime.now(dt.UTC).astimezone()
    info: dict[str, object] = {
        "date": moment.isoformat(timespec="seconds"),
        "cores": usable_cores(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "mosquitto": mosquitto_version(),
    }
    try:
        from importlib.metadata import PackageNotFoundError, version

        for package in ("psycopg", "paho-mqtt"):
            try:
                info[package] = version(package)
            except PackageNotFoundError:
                info[package] = None
    except ImportError:  # pragma: no cover - stdlib since 3.8
        pass
    try:
        import psycopg

        info["psycopg_impl"] = psycopg.pq.__impl__  # "binary"/"c": C-accelerated adaptation
    except ImportError:
        info["psycopg_impl"] = None
    if services is not None:
        info.update(database_versions(services))
    else:
        info.update({"postgresql": None, "timescaledb": None, "timescaledb_license": None})
    return info


def describe(info: dict[str, object]) -> str:
    """One line for the top of the printed table."""

    def get(key: str) -> str:
        value = info.get(key)
        return "?" if value is None else str(value)

    return (
        f"{get('date')} | {get('cores')} cores, {get('cpu_model')} | Python {get('python')} | "
        f"Mosquitto {get('mosquitto')} | PostgreSQL {get('postgresql')} | "
        f"TimescaleDB {get('timescaledb')}"
        + (f" ({info['timescaledb_license']})" if info.get("timescaledb_license") else "")
        + (
            f" | load average {info['load_average_before']} before"
            if info.get("load_average_before") is not None
            else ""
        )
    )
