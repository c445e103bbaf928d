"""The dev stack of one run folder: its broker, its database, their credentials.

Layout of ``<run_dir>``::

    stack.env          LUMEAU_* settings for the services (0600, has passwords)
    credentials.json   generated passwords (0600)
    ports.json         ports chosen at the first ``up``
    mosquitto/         config, passwd, acl, persistence, mosquitto.log
    postgres/data      the cluster; postgres/log its logs
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

from ._util import (
    LOOPBACK,
    folder_lock,
    log,
    pick_free_port,
    port_is_free,
    read_json,
    write_json,
    write_private,
)
from .broker import SERVICE_USER, BrokerHandle, check_username, new_password, stack_broker
from .errors import MissingDependency, ServiceError
from .install import ensure_installed
from .postgres import Postgres

STACK_ENV = "stack.env"
CREDENTIALS = "credentials.json"
PORTS = "ports.json"


@dataclass(frozen=True)
class Stack:
    """Where the running services are and how to log in to them."""

    run_dir: Path
    database_url: str
    admin_database_url: str
    mqtt_host: str
    mqtt_port: int
    mqtt_username: str
    mqtt_password: str
    timescaledb_version: str

    def env(self) -> dict[str, str]:
        """The ``LUMEAU_*`` variables that ``backend.settings`` reads."""
        return {
            "LUMEAU_RUN_DIR": str(self.run_dir),
            "LUMEAU_DATABASE_URL": self.database_url,
            "LUMEAU_MQTT_HOST": self.mqtt_host,
            "LUMEAU_MQTT_PORT": str(self.mqtt_port),
            "LUMEAU_MQTT_USERNAME": self.mqtt_username,
            "LUMEAU_MQTT_PASSWORD": self.mqtt_password,
        }

    def __repr__(self) -> str:
        # Keep passwords out of logs and tracebacks.
        return (
            f"Stack(run_dir={str(self.run_dir)!r}, "
            f"postgres=127.0.0.1:{_port_of(self.database_url)}, "
            f"mqtt={self.mqtt_host}:{self.mqtt_port}, timescaledb={self.timescaledb_version})"
        )


def _port_of(url: str) -> str:
    match = re.search(r"@[^/]*:(\d+)/", url)
    return match.group(1) if match else "?"


# --- run folder state ----------------------------------------------------------


@dataclass
class _Credentials:
    postgres_password: str
    mqtt_users: dict[str, str]

    @classmethod
    def load(cls, run_dir: Path) -> _Credentials:
        data = read_json(run_dir / CREDENTIALS)
        postgres = data.get("postgres_password")
        users = data.get("mqtt_users")
        creds = cls(
            postgres_password=postgres
            if isinstance(postgres, str) and postgres
            else new_password(),
            mqtt_users={str(k): str(v) for k, v in users.items()}
            if isinstance(users, dict)
            else {},
        )
        creds.mqtt_users.setdefault(SERVICE_USER, new_password())
        return creds

    def save(self, run_dir: Path) -> None:
        write_json(
            run_dir / CREDENTIALS,
            {"postgres_password": self.postgres_password, "mqtt_users": self.mqtt_users},
            mode=0o600,
        )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _choose_port(
    name: str, explicit: int | None, remembered: int | None, in_use_by_us: bool, avoid: set[int]
) -> int:
    if explicit is not None:
        return explicit
    if remembered is not None and (in_use_by_us or port_is_free(remembered)):
        return remembered
    if remembered is not None:
        log.warning("%s port %d is taken by another program; choosing a new one", name, remembered)
    return pick_free_port(avoid)


def _quote_env(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./~-]*", value):
        return value
    return "'" + value.replace("'", "") + "'"


# --- public operations ---------------------------------------------------------


def up(
    run_dir: Path,
    *,
    install: bool = True,
    postgres_port: int | None = None,
    mqtt_port: int | None = None,
) -> Stack:
    """Start (or just check) Mosquitto and PostgreSQL+TimescaleDB for ``run_dir``.

    Idempotent: running services are verified and reused. Ports are chosen at
    the first call and remembered in the run folder.
    """
    run_dir = run_dir.resolve()
    ensure_installed(install=install)
    run_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(run_dir):
        creds = _Credentials.load(run_dir)
        creds.save(run_dir)
        ports = read_json(run_dir / PORTS)

        remembered_mqtt = _int(ports.get("mqtt_port"))
        probe_broker = stack_broker(run_dir / "mosquitto", remembered_mqtt or 0, creds.mqtt_users)
        broker_port = _choose_port(
            "MQTT", mqtt_port, remembered_mqtt, probe_broker.running(), set()
        )
        broker = stack_broker(run_dir / "mosquitto", broker_port, creds.mqtt_users)

        remembered_pg = _int(ports.get("postgres_port"))
        pg_probe = Postgres(run_dir, remembered_pg or 0)
        pg_port = _choose_port(
            "PostgreSQL", postgres_port, remembered_pg, pg_probe.running(), {broker_port}
        )
        write_json(run_dir / PORTS, {"mqtt_port": broker_port, "postgres_port": pg_port})

        broker.ensure_running()

        pg = Postgres(run_dir, pg_port)
        if pg.running() and pg_port != remembered_pg:
            pg.stop()  # the port is part of the config: restart to apply it
        if not pg.running():
            pg.init()
            pg.start()
        seen = pg.app_check(creds.postgres_password)
        if seen is None:
            pg.provision(creds.postgres_password)
            seen = pg.app_check(creds.postgres_password)
            if seen is None:
                raise ServiceError(
                    f"PostgreSQL on port {pg_port}: role lumeau cannot log in after setup"
                )
        version, _edition = seen

        stack = Stack(
            run_dir=run_dir,
            database_url=pg.app_url(creds.postgres_password),
            admin_database_url=pg.admin_url(),
            mqtt_host=LOOPBACK,
            mqtt_port=broker.port,
            mqtt_username=SERVICE_USER,
            mqtt_password=creds.mqtt_users[SERVICE_USER],
            timescaledb_version=version,
        )
        env_text = "".join(f"{key}={_quote_env(value)}\n" for key, value in stack.env().items())
        write_private(
            run_dir / STACK_ENV,
            "# Written by `lumeau services up`; regenerated each time.\n" + env_text,
        )
        return stack


def down(run_dir: Path) -> None:
    """Stop the broker and the database of ``run_dir``; nothing to do if not running."""
    run_dir = run_dir.resolve()
    if not run_dir.exists():
        return
    with folder_lock(run_dir):
        ports = read_json(run_dir / PORTS)
        # A missing package (no service user) means nothing of it can be running.
        with contextlib.suppress(MissingDependency):
            BrokerHandle(run_dir / "mosquitto", _int(ports.get("mqtt_port")) or 0).stop()
        with contextlib.suppress(MissingDependency):
            Postgres(run_dir, _int(ports.get("postgres_port")) or 0).stop()


def status(run_dir: Path) -> dict[str, object]:
    """What runs for ``run_dir``: pids, ports, TimescaleDB version and edition."""
    run_dir = run_dir.resolve()
    ports = read_json(run_dir / PORTS)
    mqtt_port = _int(ports.get("mqtt_port"))
    pg_port = _int(ports.get("postgres_port"))
    mosquitto: dict[str, object] = {
        "running": False,
        "pid": None,
        "host": LOOPBACK,
        "port": mqtt_port,
        "log": str(run_dir / "mosquitto" / "mosquitto.log"),
    }
    postgres: dict[str, object] = {
        "running": False,
        "pid": None,
        "host": LOOPBACK,
        "port": pg_port,
        "data_dir": str(run_dir / "postgres" / "data"),
        "log_dir": str(run_dir / "postgres" / "log"),
        "timescaledb_version": None,
        "edition": None,
    }
    # A missing package (no service user) means nothing of it can be running.
    with contextlib.suppress(MissingDependency):
        broker = BrokerHandle(run_dir / "mosquitto", mqtt_port or 0)
        mosquitto.update(running=broker.running(), pid=broker.pid)
    with contextlib.suppress(MissingDependency):
        pg = Postgres(run_dir, pg_port or 0)
        postgres.update(running=pg.running(), pid=pg.pid)
        if pg.running() and (run_dir / CREDENTIALS).exists():
            seen = pg.app_check(_Credentials.load(run_dir).postgres_password)
            if seen is not None:
                postgres["timescaledb_version"], postgres["edition"] = seen
    return {
        "run_dir": str(run_dir),
        "credentials_file": str(run_dir / STACK_ENV),
        "mosquitto": mosquitto,
        "postgres": postgres,
    }


def add_broker_user(stack: Stack, username: str, password: str | None = None) -> str:
    """Add or update a broker user of the stack and reload Mosquitto; returns the password.

    Without ``password`` a user that exists keeps its password (so re-running a
    simulator keeps working) and a new one gets a generated password.
    """
    check_username(username)
    with folder_lock(stack.run_dir):
        creds = _Credentials.load(stack.run_dir)
        chosen = password or creds.mqtt_users.get(username) or new_password()
        creds.mqtt_users[username] = chosen
        creds.save(stack.run_dir)
        broker = stack_broker(stack.run_dir / "mosquitto", stack.mqtt_port, creds.mqtt_users)
        broker.ensure_running()
        return chosen
