"""Mosquitto brokers run from a folder of their own, on loopback.

Who the broker runs as: started as root, Mosquitto drops to the user named by
``user`` in its config (``mosquitto`` by default) and reads its password and
ACL files (also on every SIGHUP reload) and writes persistence and log as that
user. We keep that unprivileged user and make the broker folder belong to it,
rather than ``user root``: a network daemon has no need for root, and it is
how the Debian service runs it too. Not started as root, it runs as whoever
started it, which owns the folder already.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import signal
import socket
import struct
import weakref
from collections.abc import Mapping
from pathlib import Path

from ._util import (
    LOOPBACK,
    Account,
    accepts_connections,
    chown_tree,
    ensure_reachable,
    log,
    pick_free_port,
    port_is_free,
    process_alive,
    read_pid,
    run,
    service_account,
    tail,
    terminate,
    wait_until,
    write_private,
)
from .errors import ServiceError
from .install import ensure_installed, find_program

SERVICE_USER = "lumeau-backend"

# Topic rights of the Lumeau stack: the backend sees everything, a device only
# its own up (write) and down (read) branches, a gateway its own subtree.
LUMEAU_ACL = f"""\
user {SERVICE_USER}
topic readwrite #

pattern write lumeau/v1/dev/%u/up/#
pattern read lumeau/v1/dev/%u/down/#
pattern readwrite lumeau/v1/gw/%u/#
"""

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_START_TIMEOUT = 15.0


def check_username(username: str) -> None:
    # ':' would break the password file and MQTT wildcards would widen %u patterns.
    if not _USERNAME.match(username):
        raise ValueError(
            f"invalid broker user name {username!r}: use letters, digits, '.', '_', '-'"
        )


def new_password() -> str:
    return secrets.token_urlsafe(24)


def _encode_string(value: str) -> bytes:
    data = value.encode()
    return struct.pack("!H", len(data)) + data


def mqtt_connack(
    port: int,
    username: str | None = None,
    password: str | None = None,
    host: str = LOOPBACK,
    timeout: float = 2.0,
) -> int:
    """Send one MQTT 3.1.1 CONNECT and return the CONNACK return code (0 = accepted).

    Hand-written so readiness checks need no client library and no event loop.
    """
    flags = 0x02  # clean session
    payload = _encode_string(f"lumeau-devstack-probe-{secrets.token_hex(4)}")
    if username is not None:
        flags |= 0x80
        payload += _encode_string(username)
        if password is not None:
            flags |= 0x40
            payload += _encode_string(password)
    body = _encode_string("MQTT") + bytes([4, flags]) + struct.pack("!H", 10) + payload
    length = len(body)
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(bytes([0x10]) + bytes(encoded) + body)
        reply = b""
        while len(reply) < 4:
            chunk = conn.recv(4 - len(reply))
            if not chunk:
                raise ConnectionError("broker closed the connection before CONNACK")
            reply += chunk
        if reply[0] != 0x20:
            raise ConnectionError(f"unexpected reply to CONNECT: {reply!r}")
        if reply[3] == 0:
            with contextlib.suppress(OSError):
                conn.sendall(b"\xe0\x00")  # DISCONNECT, so the broker logs a clean exit
        return reply[3]


def _password_matches(entry: str, password: str) -> bool:
    """Check a mosquitto_passwd ``$7$`` (PBKDF2-SHA512) or ``$6$`` (SHA512) entry."""
    parts = entry.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            iterations, salt, digest = (
                int(parts[2]),
                base64.b64decode(parts[3]),
                base64.b64decode(parts[4]),
            )
            got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(digest))
        elif len(parts) == 4 and parts[1] == "6":
            salt, digest = base64.b64decode(parts[2]), base64.b64decode(parts[3])
            got = hashlib.sha512(password.encode() + salt).digest()
        else:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(got, digest)


class BrokerHandle:
    """One Mosquitto whose config, passwords, ACL, persistence and log live in ``folder``."""

    host = LOOPBACK

    def __init__(
        self,
        folder: Path,
        port: int,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
    ) -> None:
        self.folder = folder.resolve()
        self.port = port
        # None: anonymous clients allowed (a throwaway loopback broker for tests).
        self.users: dict[str, str] | None = dict(users) if users is not None else None
        self.acl = acl
        self.account: Account = service_account("mosquitto", "mosquitto")
        self.config_file = self.folder / "mosquitto.conf"
        self.password_file = self.folder / "passwd"
        self.acl_file = self.folder / "acl"
        self.pid_file = self.folder / "mosquitto.pid"
        self.log_file = self.folder / "mosquitto.log"
        self.data_dir = self.folder / "data"

    def __repr__(self) -> str:
        return (
            f"BrokerHandle(host={self.host!r}, port={self.port}, pid={self.pid}, "
            f"folder={str(self.folder)!r})"
        )

    # --- state ---------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Pid of the running broker, or None."""
        pid = read_pid(self.pid_file)
        if pid is not None and process_alive(pid, str(self.config_file)):
            return pid
        return None

    def running(self) -> bool:
        return self.pid is not None

    def _config_text(self) -> str:
        lines = [
            "# Written by backend.devstack; rewritten on every start.",
            "per_listener_settings false",
            f"listener {self.port} {LOOPBACK}",
            f"allow_anonymous {'true' if self.users is None else 'false'}",
        ]
        if self.users is not None:
            lines.append(f"password_file {self.password_file}")
        if self.acl is not None:
            lines.append(f"acl_file {self.acl_file}")
        lines += [
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "autosave_interval 30",
            # Mosquitto's default per-client queue (1000 QoS 1 messages) silently
            # drops the rest while a consumer is not acknowledging, which ingest
            # does on purpose while the database is down. Bound it far higher.
            "max_queued_messages 1000000",
            f"pid_file {self.pid_file}",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if not self.account.is_current:
            lines.append(f"user {self.account.name}")
        return "\n".join(lines) + "\n"

    # --- files ---------------------------------------------------------------

    def _read_passwords(self) -> dict[str, str]:
        entries: dict[str, str] = {}
        with contextlib.suppress(FileNotFoundError):
            for line in self.password_file.read_text().splitlines():
                name, sep, hashed = line.partition(":")
                if sep:
                    entries[name] = hashed
        return entries

    def _sync_passwords(self) -> bool:
        """Bring the password file in line with ``users``; True if it changed."""
        if self.users is None:
            return False
        mosquitto_passwd = find_program("mosquitto_passwd")
        if mosquitto_passwd is None:
            raise ServiceError("mosquitto_passwd not found (Debian package mosquitto)")
        existing = self._read_passwords()
        if not self.password_file.exists():
            write_private(self.password_file, "")
        changed = False
        for name in sorted(set(existing) - set(self.users)):
            run([str(mosquitto_passwd), "-D", str(self.password_file), name])
            changed = True
        for name, password in sorted(self.users.items()):
            if name in existing and _password_matches(existing[name], password):
                continue
            # Password on stdin, not in argv where any local user could read it.
            run(
                [str(mosquitto_passwd), str(self.password_file), name],
                stdin=f"{password}\n{password}\n",
            )
            changed = True
        return changed

    def _write_files(self) -> bool:
        """Write config, passwords and ACL; True if passwords or ACL changed."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        ensure_reachable(self.folder, self.account)
        changed = self._sync_passwords()
        if self.acl is not None:
            old = self.acl_file.read_text() if self.acl_file.exists() else None
            if old != self.acl:
                write_private(self.acl_file, self.acl, 0o600)
                changed = True
        config = self._config_text()
        if not self.config_file.exists() or self.config_file.read_text() != config:
            write_private(self.config_file, config, 0o644)
        # Everything here is read (and on reload re-read) by the broker's own user.
        self.folder.chmod(0o700)
        chown_tree(self.folder, self.account)
        return changed

    # --- lifecycle -----------------------------------------------------------

    def _healthy(self) -> bool:
        try:
            if self.users is None:
                return mqtt_connack(self.port) == 0
            name, password = next(iter(sorted(self.users.items())))
            return mqtt_connack(self.port, name, password) == 0
        except (OSError, ConnectionError):
            return False

    def _start(self) -> None:
        mosquitto = find_program("mosquitto")
        if mosquitto is None:
            raise ServiceError("mosquitto not found (Debian package mosquitto)")
        if not port_is_free(self.port):
            raise ServiceError(f"port {self.port} on {LOOPBACK} is taken; cannot start Mosquitto")
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()  # stale: the process it names is gone
        # Daemonised (-d): the broker is reparented to init, so it outlives the
        # caller and never lingers as our zombie.
        run([str(mosquitto), "-c", str(self.config_file), "-d"], cwd=self.folder)
        wait_until(
            lambda: self.pid is not None and accepts_connections(self.port),
            timeout=_START_TIMEOUT,
            what=f"Mosquitto on {LOOPBACK}:{self.port}",
            details=lambda: tail(self.log_file),
        )
        wait_until(
            self._healthy,
            timeout=_START_TIMEOUT,
            what=f"Mosquitto on {LOOPBACK}:{self.port} accepting logins",
            alive=self.running,
            details=lambda: tail(self.log_file),
        )
        log.info(
            "Mosquitto running on %s:%d (pid %s, folder %s)",
            LOOPBACK,
            self.port,
            self.pid,
            self.folder,
        )

    def ensure_running(self) -> None:
        """Start the broker, or bring a running one in line with the wanted config."""
        was_running = self.running()
        config_before = self.config_file.read_text() if self.config_file.exists() else None
        changed = self._write_files()
        if was_running and config_before == self._config_text():
            if changed:
                self.reload()
            elif not self._healthy():
                raise ServiceError(
                    f"Mosquitto pid {self.pid} runs but refuses our login on port {self.port}\n"
                    + tail(self.log_file)
                )
            return
        if was_running:
            log.info("Mosquitto config changed; restarting it")
            self.stop()
        self._start()

    def reload(self) -> None:
        """Make the broker re-read its password and ACL files, and wait until it has."""
        pid = self.pid
        if pid is None:
            raise ServiceError(f"Mosquitto in {self.folder} is not running")
        os.kill(pid, signal.SIGHUP)
        wait_until(
            self._all_users_accepted,
            timeout=_START_TIMEOUT,
            what="Mosquitto reloading its password file",
            alive=self.running,
            details=lambda: tail(self.log_file),
        )

    def _all_users_accepted(self) -> bool:
        if self.users is None:
            return self._healthy()
        try:
            return all(mqtt_connack(self.port, n, p) == 0 for n, p in self.users.items())
        except (OSError, ConnectionError):
            return False

    def add_user(self, username: str, password: str | None = None) -> str:
        """Add or update a user; reloads a running broker. Returns the password."""
        check_username(username)
        if self.users is None:
            raise ServiceError("this broker allows anonymous clients and has no password file")
        password = password or self.users.get(username) or new_password()
        self.users[username] = password
        if self._write_files() and self.running():
            self.reload()
        return password

    def stop(self) -> None:
        """SIGTERM, then wait for the broker to exit (it saves persistence on the way)."""
        pid = self.pid
        if pid is not None:
            terminate(pid, str(self.config_file))
            log.info("Mosquitto on port %d stopped", self.port)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no persistence save, the pid file stays behind."""
        pid = self.pid
        if pid is not None:
            terminate(pid, str(self.config_file), sig=signal.SIGKILL)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port with the same users."""
        self.stop()
        self._write_files()
        self._start()

    def __enter__(self) -> BrokerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Extra brokers belong to the process that asked for them (tests): stop them
# when it exits, so a forgotten one does not hold its port forever.
_extra_brokers: weakref.WeakSet[BrokerHandle] = weakref.WeakSet()


@atexit.register
def _stop_extra_brokers() -> None:
    for handle in list(_extra_brokers):
        with contextlib.suppress(Exception):
            handle.stop()


def start_broker(
    folder: Path,
    *,
    port: int | None = None,
    users: dict[str, str] | None = None,
    acl: str | None = None,
) -> BrokerHandle:
    """Start an extra, independent Mosquitto with its files in ``folder``.

    ``users`` maps user names to passwords; without it the broker accepts
    anonymous clients (it listens on loopback only). ``acl`` is the text of a
    Mosquitto ACL file; without it every client may use every topic. The broker
    is stopped when this process exits, or earlier with ``.stop()``.
    """
    ensure_installed(install=True)
    for name in users or {}:
        check_username(name)
    handle = BrokerHandle(folder, port if port is not None else pick_free_port(), users, acl)
    handle.ensure_running()
    _extra_brokers.add(handle)
    return handle


def stack_broker(folder: Path, port: int, users: Mapping[str, str]) -> BrokerHandle:
    """The stack's own broker (not stopped at exit: it serves other processes)."""
    return BrokerHandle(folder, port, users, LUMEAU_ACL)
