"""Process, file and port helpers shared by the broker and database code."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pwd
import random
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import MissingDependency, ServiceError

log = logging.getLogger("lumeau.devstack")

LOOPBACK = "127.0.0.1"

# Below Linux's default ephemeral range (32768-60999), so a port remembered in a
# run folder is not handed out to some outgoing connection while the stack is down.
_PORT_RANGE = (20000, 32767)


def is_root() -> bool:
    return os.geteuid() == 0


@dataclass(frozen=True)
class Account:
    """The OS account a service process runs as."""

    name: str
    uid: int
    gid: int

    @property
    def is_current(self) -> bool:
        return self.uid == os.geteuid()


def current_account() -> Account:
    uid = os.geteuid()
    return Account(pwd.getpwuid(uid).pw_name, uid, os.getegid())


def service_account(name: str, package: str) -> Account:
    """``name`` when we are root (servers must not run as root), else ourselves."""
    if not is_root():
        return current_account()
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise MissingDependency(
            f"OS user {name!r} is missing; it is created by the Debian package {package}:\n"
            f"  apt-get install -y {package}"
        ) from None
    return Account(name, entry.pw_uid, entry.pw_gid)


def as_account(cmd: Sequence[str], account: Account) -> list[str]:
    """Prefix ``cmd`` so it runs as ``account`` (runuser needs root, which we are then)."""
    if account.is_current:
        return list(cmd)
    return ["runuser", "-u", account.name, "--", *cmd]


def run(
    cmd: Sequence[str],
    *,
    account: Account | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output; on failure the output is in the error."""
    full = as_account(cmd, account) if account is not None else list(cmd)
    log.debug("run: %s", " ".join(full))
    merged = {**os.environ, **env} if env is not None else None
    result = subprocess.run(
        full,
        cwd=cwd,
        env=merged,
        input=stdin,
        text=True,
        capture_output=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise ServiceError(
            f"command failed ({result.returncode}): {' '.join(full)}\n"
            f"{(result.stdout + result.stderr).strip()[-4000:]}"
        )
    return result


def chown_tree(path: Path, account: Account) -> None:
    if account.is_current and not is_root():
        return
    for folder, dirs, files in os.walk(path):
        os.chown(folder, account.uid, account.gid)
        for name in [*dirs, *files]:
            os.chown(os.path.join(folder, name), account.uid, account.gid, follow_symlinks=False)


def ensure_reachable(path: Path, account: Account) -> None:
    """Make every folder above ``path`` traversable by ``account``.

    A run folder under e.g. /root or pytest's 0700 temp root is unreachable for
    the postgres and mosquitto users. Adding only the search bit for others lets
    them reach their own sub-folder without being able to list anything.
    """
    if account.uid == 0:
        return
    groups = set(os.getgrouplist(account.name, account.gid))
    for folder in reversed(path.resolve().parents):
        info = folder.stat()
        if info.st_uid == account.uid:
            needed = stat.S_IXUSR
        elif info.st_gid in groups:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if info.st_mode & needed:
            continue
        if not is_root() and info.st_uid != os.geteuid():
            raise ServiceError(
                f"user {account.name} cannot reach {path}: {folder} is not searchable; "
                f"run: chmod o+x {folder}"
            )
        log.info("chmod o+x %s so that user %s can reach %s", folder, account.name, path)
        folder.chmod(stat.S_IMODE(info.st_mode) | stat.S_IXOTH)


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write atomically with ``mode`` from the start (no window where it is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, mode)  # the umask may have narrowed it
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise ServiceError(f"{path}: expected a JSON object")
    return data


def write_json(path: Path, data: Mapping[str, object], mode: int = 0o644) -> None:
    write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Serialise up/down/add-user on one run folder across processes."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".devstack.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --- ports -------------------------------------------------------------------


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Same flag the servers set, so a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def pick_free_port(avoid: set[int] | None = None) -> int:
    avoid = avoid or set()
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(*_PORT_RANGE)
        if port not in avoid and port_is_free(port):
            return port
    raise ServiceError("no free TCP port found on 127.0.0.1")


def accepts_connections(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    details: Callable[[], str] | None = None,
) -> None:
    """Poll ``condition``; fail early if ``alive`` says the process died."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if condition():
            return
        if alive is not None and not alive():
            extra = details() if details is not None else ""
            raise ServiceError(f"{what}: the process exited\n{extra}".rstrip())
        if time.monotonic() > deadline:
            extra = details() if details is not None else ""
            raise ServiceError(f"{what}: timed out after {timeout:.0f} s\n{extra}".rstrip())
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


# --- processes -----------------------------------------------------------------


def process_alive(pid: int, needle: str | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and its command line contains ``needle``.

    The needle guards against a pid from a stale pid file that now belongs to
    some other program (after a reboot pids are reused).
    """
    if pid <= 0:
        return False
    proc = Path(f"/proc/{pid}")
    try:
        status = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    # Field 3 of /proc/<pid>/stat is the state; it follows the ")" closing the name.
    state = status.rsplit(")", 1)[-1].split()[0]
    if state in ("Z", "X"):
        return False
    return needle is None or needle in cmdline


def read_pid(path: Path) -> int | None:
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except (FileNotFoundError, PermissionError):
        return None
    return int(first) if first.isdigit() else None


def terminate(pid: int, needle: str, *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Send ``sig`` and wait for the process to go; SIGKILL if it outstays ``timeout``."""
    if not process_alive(pid, needle):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    try:
        wait_until(lambda: not process_alive(pid, needle), timeout=timeout, what=f"stop pid {pid}")
    except ServiceError:
        log.warning("pid %d ignored signal %d; killing it", pid, sig)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not process_alive(pid, needle), timeout=5, what=f"kill pid {pid}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except (FileNotFoundError, PermissionError):
        return ""
    return "\n".join(text.splitlines()[-lines:])
