"""A PostgreSQL 15 cluster with TimescaleDB inside a run folder.

PostgreSQL refuses to run as root, so when we are root the cluster belongs to
the ``postgres`` OS user and every server-side command runs as that user;
otherwise everything runs as ourselves. Local socket logins use ``peer`` with a
map that lets the invoking OS user (and ``postgres``) in as the superuser, so
the superuser needs no password; TCP logins need a SCRAM password.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from ._util import (
    LOOPBACK,
    Account,
    accepts_connections,
    chown_tree,
    current_account,
    ensure_reachable,
    log,
    process_alive,
    read_pid,
    run,
    service_account,
    tail,
    wait_until,
    write_private,
)
from .errors import ServiceError
from .install import PG_BIN, PG_MAJOR

SUPERUSER = "postgres"
APP_ROLE = "lumeau"
APP_DB = "lumeau"
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the NUL


class Postgres:
    def __init__(self, run_dir: Path, port: int) -> None:
        self.root = run_dir / "postgres"
        self.data = self.root / "data"
        self.log_dir = self.root / "log"
        self.port = port
        self.account: Account = service_account("postgres", f"postgresql-{PG_MAJOR}")
        self.socket_dir = self._socket_dir(run_dir)

    def _socket_dir(self, run_dir: Path) -> Path:
        if len(f"{self.root}/.s.PGSQL.{self.port}") <= _SOCKET_PATH_MAX:
            return self.root
        # A deep run folder (pytest's tmp_path) would overflow sun_path.
        digest = hashlib.sha256(str(run_dir).encode()).hexdigest()[:12]
        return Path("/tmp") / f"lumeau-pg-{digest}"

    # --- state ---------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        pid = read_pid(self.data / "postmaster.pid")
        if pid is not None and process_alive(pid, str(self.data)):
            return pid
        return None

    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def running(self) -> bool:
        return self.pid is not None

    def _pg(self, tool: str, *args: str) -> None:
        run([str(PG_BIN / tool), *args], account=self.account, cwd=self.root)

    # --- setup ---------------------------------------------------------------

    def init(self) -> None:
        """Create the cluster once (initdb); later calls only fix ownership and config."""
        self.root.mkdir(parents=True, exist_ok=True)
        ensure_reachable(self.root, self.account)
        if not self.initialised():
            log.info("initdb %s", self.data)
            self.log_dir.mkdir(exist_ok=True)
            self.root.chmod(0o700)
            chown_tree(self.root, self.account)
            # trust only for initdb's own run; pg_hba.conf is replaced right after.
            self._pg(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            )
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write("\n# Lumeau dev stack settings, rewritten on every start\n")
                conf.write("include 'lumeau.conf'\n")
        self._write_access_files()

    def _write_access_files(self) -> None:
        invoker = current_account().name
        hba = (
            "# Written by backend.devstack.\n"
            "# TYPE  DATABASE USER ADDRESS        METHOD\n"
            "local   all      all                 peer map=lumeau\n"
            f"host    all      all  {LOOPBACK}/32  scram-sha-256\n"
        )
        ident = "# MAPNAME  SYSTEM-USER  PG-USER\n"
        for system_user in sorted({invoker, self.account.name}):
            ident += f"lumeau  {system_user}  {SUPERUSER}\n"
        # Any other local OS user may still log in as the role of its own name.
        ident += "lumeau  /^(.*)$  \\1\n"
        write_private(self.data / "pg_hba.conf", hba)
        write_private(self.data / "pg_ident.conf", ident)
        self.log_dir.mkdir(exist_ok=True)
        settings = {
            "listen_addresses": LOOPBACK,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "shared_preload_libraries": "timescaledb",
            "timescaledb.telemetry_level": "off",
            "logging_collector": "on",
            "log_directory": str(self.log_dir),
            "log_filename": "postgresql-%a.log",
            "log_truncate_on_rotation": "on",
            "log_rotation_age": "1d",
            "log_line_prefix": "%m [%p] %q%u@%d ",
        }
        lines = [f"{key} = '{value}'" for key, value in settings.items()]
        write_private(
            self.data / "lumeau.conf", "# Written by backend.devstack.\n" + "\n".join(lines) + "\n"
        )
        if self.socket_dir != self.root:
            self.socket_dir.mkdir(mode=0o700, exist_ok=True)
            chown_tree(self.socket_dir, self.account)
        chown_tree(self.root, self.account)

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        self._clear_stale_lock()
        self._write_access_files()
        startup_log = self.log_dir / "startup.log"
        try:
            self._pg(
                "pg_ctl",
                "start",
                "-D",
                str(self.data),
                "-l",
                str(startup_log),
                "-w",
                "-t",
                "60",
                "-s",
            )
        except ServiceError as exc:
            raise ServiceError(f"{exc}\n{tail(startup_log)}\n{self._latest_log_tail()}") from exc
        wait_until(
            lambda: accepts_connections(self.port),
            timeout=30,
            what=f"PostgreSQL on {LOOPBACK}:{self.port}",
            alive=self.running,
            details=self._latest_log_tail,
        )
        log.info(
            "PostgreSQL %d running on %s:%d (pid %s, data %s)",
            PG_MAJOR,
            LOOPBACK,
            self.port,
            self.pid,
            self.data,
        )

    def _clear_stale_lock(self) -> None:
        """Remove the lock files of a postmaster that died (crash, kill -9, reboot).

        PostgreSQL would do this itself, but it takes an unreaped (zombie) or
        reused pid for a live postmaster and refuses to start. Its real safety
        check, that no orphaned backend still uses the old shared memory, is
        kept: we wait for that segment to have no attachments first.
        """
        pid_file = self.data / "postmaster.pid"
        stale = read_pid(pid_file)
        if stale is not None:
            if process_alive(stale, str(self.data)):
                return
            lines = pid_file.read_text().splitlines()
            shm = lines[6].split() if len(lines) > 6 else []
            if len(shm) == 2 and shm[1].isdigit():
                shmid = int(shm[1])
                wait_until(
                    lambda: _shm_attachments(shmid) == 0,
                    timeout=30,
                    what=f"backends of the crashed postmaster {stale} to exit",
                )
            log.info("removing stale %s (pid %d is gone)", pid_file, stale)
            pid_file.unlink()
        socket_lock = self.socket_dir / f".s.PGSQL.{self.port}.lock"
        owner = read_pid(socket_lock)
        if owner is not None and not process_alive(owner, "postgres"):
            socket_lock.unlink()

    def stop(self) -> None:
        if self.running():
            self._pg("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "-s")
            log.info("PostgreSQL on port %d stopped", self.port)

    def _latest_log_tail(self) -> str:
        logs = sorted(self.log_dir.glob("postgresql-*.log"), key=lambda p: p.stat().st_mtime)
        return tail(logs[-1]) if logs else ""

    # --- connections ---------------------------------------------------------

    def admin_url(self, dbname: str = "postgres") -> str:
        host = quote(str(self.socket_dir), safe="")
        return f"postgresql://{SUPERUSER}@/{dbname}?host={host}&port={self.port}"

    def app_url(self, password: str) -> str:
        return f"postgresql://{APP_ROLE}:{quote(password, safe='')}@{LOOPBACK}:{self.port}/{APP_DB}"

    def provision(self, app_password: str) -> None:
        """Create or repair role ``lumeau``, its database and the timescaledb extension."""
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)
            ).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} WITH LOGIN PASSWORD {}").format(
                    sql.Identifier(APP_ROLE), sql.Literal(app_password)
                )
            )
            if (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (APP_DB,)).fetchone()
                is None
            ):
                log.info("creating database %s", APP_DB)
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(APP_DB), sql.Identifier(APP_ROLE)
                    )
                )
        with psycopg.connect(self.admin_url(APP_DB), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        # ALTER EXTENSION ... UPDATE must be the first statement of its session.
        with psycopg.connect(self.admin_url(APP_DB), autocommit=True) as conn:
            row = conn.execute(
                "SELECT e.extversion, a.default_version FROM pg_extension e "
                "JOIN pg_available_extensions a ON a.name = e.extname "
                "WHERE e.extname = 'timescaledb'"
            ).fetchone()
            if row is not None and row[0] != row[1]:
                log.info("updating the timescaledb extension from %s to %s", row[0], row[1])
                conn.execute("ALTER EXTENSION timescaledb UPDATE")

    def app_check(self, app_password: str) -> tuple[str, str] | None:
        """(extension version, edition) seen through the app login, or None if that fails."""
        try:
            with psycopg.connect(self.app_url(app_password), connect_timeout=5) as conn:
                row = conn.execute(
                    "SELECT e.extversion, current_setting('timescaledb.license', true), "
                    "a.default_version FROM pg_extension e "
                    "JOIN pg_available_extensions a ON a.name = e.extname "
                    "WHERE e.extname = 'timescaledb'"
                ).fetchone()
        except psycopg.Error as exc:
            log.debug("app login check failed: %s", exc)
            return None
        if row is None or row[0] != row[2]:
            return None
        return str(row[0]), str(row[1] or "unknown")


def _shm_attachments(shmid: int) -> int:
    """How many processes are attached to System V shared memory segment ``shmid``."""
    try:
        table = Path("/proc/sysvipc/shm").read_text().splitlines()
    except FileNotFoundError:
        return 0
    for row in table[1:]:
        fields = row.split()
        if len(fields) > 6 and fields[1] == str(shmid):
            return int(fields[6])
    return 0
