"""The alert engine: every interval, signals from every source -> transitions.

``evaluate_once(conn, policy, now)`` is one evaluation: read each due
source (each in its own read transaction; a source that fails is logged and
counted, the others still run), then in **one** write transaction lock the
live alerts concerned, fold each key's signals through the lifecycle and
write alert rows, history rows (each announced on ``lumeau_alert`` by the
table's trigger), condition memory and cursors. A key whose judgement or
write fails is rolled back alone (a savepoint) and counted.

``AlertEngine`` runs it in a loop. Only one engine may act at a time: it
holds a session advisory lock on a dedicated connection; a second engine
waits as a standby and takes over when the first one's connection goes.
That connection uses TCP keepalives at both ends, so a session cut off by
the network ends (and frees the lock) within about a minute instead of
hours; and the write transaction checks in ``pg_locks`` that the lock
session still holds the lock (else nothing is written) while it holds a
transaction lock every engine's writes take, so two engines never write at
once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
import psycopg.errors

from backend.alerts import store
from backend.alerts.conditions import Condition, combine
from backend.alerts.lifecycle import ENGINE, AlertState, fold
from backend.alerts.policy import Policy
from backend.alerts.signals import Signal
from backend.alerts.sources import BadRow, SourceResult
from backend.alerts.sources.acoustic import leak_signal, read_samples
from backend.alerts.sources.battery import Sample, battery_signal, read_latest
from backend.alerts.sources.energy import circuit_signal, read_cabinets, read_circuits
from backend.alerts.sources.events import RETRY_PREFIX, read_events
from backend.alerts.sources.presence import DeviceRow, presence_signal, read_devices

log = logging.getLogger(__name__)

# Scoped to one database, like the migration runner's key (which ends in 1).
ENGINE_LOCK_KEY: Final = 0x4C554D4541550A1E
# taken by every engine's write transaction (when it acts under ENGINE_LOCK_KEY)
ENGINE_WRITE_KEY: Final = 0x4C554D4541550A1F
# a dead peer is noticed after idle + interval x count = 60 s
KEEPALIVE_IDLE_S: Final = 30
KEEPALIVE_INTERVAL_S: Final = 10
KEEPALIVE_COUNT: Final = 3
RUN_CURSOR_PREFIX: Final = "run:"
_TICK: Final = timedelta(microseconds=1)


@dataclass
class Counts:
    """What one evaluation (or an engine since its start) did."""

    signals: int = 0
    stale: int = 0
    disabled: int = 0
    suppressed: int = 0
    opened: int = 0
    reoccurred: int = 0
    escalated: int = 0
    cleared: int = 0
    resolved: int = 0
    reopened: int = 0
    bad_rows: int = 0
    clock_ahead: int = 0
    errors: int = 0
    sources: list[str] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        for f in fields(self):
            if f.name != "sources":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def line(self) -> str:
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))

    @property
    def transitions(self) -> int:
        return (
            self.opened
            + self.reoccurred
            + self.escalated
            + self.cleared
            + self.resolved
            + (self.reopened)
        )


Source = Callable[[psycopg.Connection[Any], Policy, datetime, dict[str, datetime]], SourceResult]


def _events(
    conn: psycopg.Connection[Any], policy: Policy, now: datetime, cursors: dict[str, datetime]
) -> SourceResult:
    retries = {
        name.removeprefix(RETRY_PREFIX): position
        for name, position in cursors.items()
        if name.startswith(RETRY_PREFIX)
    }
    return read_events(conn, policy, now, cursors.get("events"), retries)


def _presence(
    conn: psycopg.Connection[Any], policy: Policy, now: datetime, cursors: dict[str, datetime]
) -> SourceResult:
    result = SourceResult()
    for row in read_devices(conn):
        _guarded(result, row["device_id"], _presence_of, row, policy, now)
    return result


def _battery(
    conn: psycopg.Connection[Any], policy: Policy, now: datetime, cursors: dict[str, datetime]
) -> SourceResult:
    result = SourceResult()
    latest: dict[tuple[str, str | None], dict[str, Sample]] = defaultdict(dict)
    for row in read_latest(conn, policy, now):
        latest[(row["device_id"], row["site"])][row["metric"]] = Sample(row["value"], row["time"])
    for (device_id, site), samples in latest.items():
        volts, percent = samples.get("battery_v"), samples.get("battery_pct")
        _guarded(result, device_id, battery_signal, device_id, site, volts, percent, policy, now)
    return result


def _acoustic(
    conn: psycopg.Connection[Any], policy: Policy, now: datetime, cursors: dict[str, datetime]
) -> SourceResult:
    result = SourceResult()
    for (device_id, site), samples in read_samples(conn, policy, now).items():
        _guarded(result, device_id, leak_signal, device_id, site, samples, policy, now)
    return result


def _energy(
    conn: psycopg.Connection[Any], policy: Policy, now: datetime, cursors: dict[str, datetime]
) -> SourceResult:
    result = SourceResult()
    for cabinet in read_cabinets(conn):
        device_id, site = cabinet["device_id"], cabinet["site"]
        for channel, samples in sorted(read_circuits(conn, device_id, policy, now).items()):
            what = f"{device_id}:{channel}"
            _guarded(result, what, circuit_signal, device_id, site, channel, samples, policy, now)
    return result


def _presence_of(row: dict[str, Any], policy: Policy, now: datetime) -> Signal | None:
    return presence_signal(DeviceRow(**row), policy, now)


def _guarded(
    result: SourceResult, what: str, make: Callable[..., Signal | None], *args: Any
) -> None:
    """Add one device's signal; a device whose data breaks the rule is counted."""
    try:
        signal = make(*args)
    except (BadRow, ValueError, TypeError, ArithmeticError) as exc:
        result.bad_rows += 1
        log.warning("%s: row refused: %s", what, exc)
        return
    if signal is not None:
        result.signals.append(signal)


def _sources(policy: Policy) -> list[tuple[str, Source, float | None]]:
    """(name, source, minimum seconds between runs or None for every evaluation)."""
    s = policy.schedule
    return [
        ("events", _events, None),
        ("presence", _presence, None),
        ("battery", _battery, s.battery_s),
        ("acoustic", _acoustic, s.leak_s),
        ("energy", _energy, s.energy_s),
    ]


def collect(
    conn: psycopg.Connection[Any], policy: Policy, now: datetime, counts: Counts
) -> tuple[list[Signal], dict[str, datetime]]:
    """Signals of every due source, and the cursors to save with the writes."""
    with conn.transaction():
        cursors = store.read_cursors(conn)
    signals: list[Signal] = []
    updates: dict[str, datetime] = {}
    for name, source, every_s in _sources(policy):
        if every_s is not None:
            last = cursors.get(RUN_CURSOR_PREFIX + name)
            if last is not None and now - last < timedelta(seconds=every_s) and now >= last:
                continue
        try:
            with conn.transaction():
                result = source(conn, policy, now, cursors)
        except psycopg.OperationalError:
            raise
        except Exception:
            log.exception("alert source %s failed; the others go on", name)
            counts.errors += 1
            continue
        counts.sources.append(name)
        counts.bad_rows += result.bad_rows
        counts.clock_ahead += result.clock_ahead
        signals.extend(result.signals)
        updates.update(result.cursors)
        if every_s is not None:
            updates[RUN_CURSOR_PREFIX + name] = now
    return signals, updates


class LockLost(RuntimeError):
    """The engine's lock session no longer holds the engine lock: nothing was written."""


@dataclass(frozen=True)
class HeldLock:
    """The session advisory lock an engine acts under: its key and its session's pid."""

    key: int
    pid: int


def check_lock(conn: psycopg.Connection[Any], lock: HeldLock) -> None:
    """Inside the write transaction: wait for any other engine's write, then make
    sure ``lock`` is still held (its session may have died since the last look)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (ENGINE_WRITE_KEY,))
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND classid = %s::oid AND objid = %s::oid AND objsubid = 1 AND pid = %s)",
        (lock.key >> 32 & 0xFFFFFFFF, lock.key & 0xFFFFFFFF, lock.pid),
    ).fetchone()
    if row is None or not row[0]:
        raise LockLost(f"session {lock.pid} no longer holds the engine lock")


def apply(
    conn: psycopg.Connection[Any],
    policy: Policy,
    now: datetime,
    signals: list[Signal],
    cursors: dict[str, datetime],
    counts: Counts,
    lock: HeldLock | None = None,
) -> None:
    """Judge and write every key in one transaction (none if ``lock`` is lost)."""
    by_key: dict[str, list[Signal]] = defaultdict(list)
    for signal in signals:
        if not policy.rule(signal.rule).enabled:
            counts.disabled += 1
            continue
        by_key[signal.dedup_key].append(signal)
    counts.signals += sum(len(v) for v in by_key.values())
    failed: set[str] = set()
    with conn.transaction():
        if lock is not None:
            check_lock(conn, lock)
        live = store.lock_live(conn, by_key)
        active = [k for k, sigs in by_key.items() if k not in live and any(s.active for s in sigs)]
        resolved = store.latest_resolved(conn, active)
        memory = store.load_conditions(conn, by_key)
        # keys with signals, then live alerts that wait out a clear hold (ticks)
        for key in [*by_key, *(k for k in live if k not in by_key)]:
            current = live.get(key) or resolved.get(key)
            try:
                _judge_and_write(
                    conn, policy, now, key, by_key.get(key, []), current, memory, counts
                )
            except psycopg.OperationalError:
                raise
            except Exception:
                log.exception("alert key %s failed; the other keys go on", key)
                counts.errors += 1
                failed.add(key)
        for name, position in cursors.items():
            store.save_cursor(conn, name, position, now)
        _keep_event_retries(conn, policy, now, by_key, failed, "events" in counts.sources)


def _keep_event_retries(
    conn: psycopg.Connection[Any],
    policy: Policy,
    now: datetime,
    by_key: dict[str, list[Signal]],
    failed: set[str],
    events_read: bool,
) -> None:
    """Events of a failed key are read again next time (the cursor has moved on)."""
    existing = {
        name.removeprefix(RETRY_PREFIX): position
        for name, position in store.read_cursors(conn).items()
        if name.startswith(RETRY_PREFIX)
    }
    for key in sorted(failed):
        # just before the first unwritten event (a read is "after position")
        positions = [s.received_at - _TICK for s in by_key.get(key, []) if s.received_at]
        if key in existing:
            positions.append(existing[key])
        if not positions:
            continue
        position = min(positions)
        if (now - position).total_seconds() > policy.events.retry_max_s:
            log.error(
                "alert key %s: its events since %s failed to be written for more than"
                " %.0f s; given up",
                key,
                position.isoformat(),
                policy.events.retry_max_s,
            )
            store.delete_cursor(conn, RETRY_PREFIX + key)
            continue
        store.save_cursor(conn, RETRY_PREFIX + key, position, now)
    if events_read:  # their events were read again, and written
        for key in existing:
            if key not in failed:
                store.delete_cursor(conn, RETRY_PREFIX + key)


def _judge_and_write(
    conn: psycopg.Connection[Any],
    policy: Policy,
    now: datetime,
    key: str,
    signals: list[Signal],
    current: AlertState | None,
    memory: dict[str, dict[str, Condition]],
    counts: Counts,
) -> None:
    rule_name = signals[0].rule if signals else (current.rule if current else None)
    if rule_name is None:
        return
    rule = policy.rule(rule_name)
    if not rule.enabled:
        return
    known = dict(memory.get(key, {}))
    changed: dict[str, Condition] = {}
    steps: list[tuple[Signal | None, bool]] = []
    for signal in signals:
        combined = combine(known, signal)
        if combined.stale:
            counts.stale += 1
            continue
        if combined.memory is not None:
            known[combined.memory.source] = combined.memory
            changed[combined.memory.source] = combined.memory
        steps.append((combined.effective, combined.was_active))
    if not steps:
        steps = [(None, any(c.active for c in known.values()))]
    writes = fold(current, steps, now=now, rule=rule)
    if (
        not writes
        and current is not None
        and not current.live
        and current.resolved_by != ENGINE
        and any(s is not None and s.active for s, _ in steps)
    ):
        counts.suppressed += 1
    if not writes and not changed:
        return
    with conn.transaction():  # a savepoint: this key alone rolls back on error
        for transition in writes:
            store.write(conn, transition, now)
        for condition in changed.values():
            store.save_condition(conn, condition, now)
    for transition in writes:
        for entry in transition.history:
            setattr(counts, entry.action, getattr(counts, entry.action) + 1)


def evaluate_once(
    conn: psycopg.Connection[Any], policy: Policy, now: datetime, *, lock: HeldLock | None = None
) -> Counts:
    """One evaluation of every due source at ``now`` (timezone-aware).

    With ``lock``, the writes happen only if that session still holds it
    (else ``LockLost``).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    counts = Counts()
    signals, cursors = collect(conn, policy, now, counts)
    apply(conn, policy, now, signals, cursors, counts, lock)
    return counts


@dataclass
class EngineConfig:
    conninfo: str = field(repr=False)  # holds a password
    interval_s: float = 30.0
    stats_interval_s: float = 300.0
    lock_key: int = ENGINE_LOCK_KEY
    retry_max_s: float = 30.0


def connect_lock_session(conninfo: str) -> psycopg.Connection[Any]:
    """The lock's connection, with TCP keepalives at both ends.

    Without them a session cut off by the network stays open on the server
    (holding the lock, so no engine acts) until the kernel gives up, hours
    later; libpq's probe the server from this side, the server's settings
    probe this side from the server.
    """
    conn = psycopg.connect(
        conninfo,
        autocommit=True,
        application_name="lumeau-alerts-lock",
        keepalives=1,
        keepalives_idle=KEEPALIVE_IDLE_S,
        keepalives_interval=KEEPALIVE_INTERVAL_S,
        keepalives_count=KEEPALIVE_COUNT,
    )
    try:
        for setting, value in (
            ("tcp_keepalives_idle", KEEPALIVE_IDLE_S),
            ("tcp_keepalives_interval", KEEPALIVE_INTERVAL_S),
            ("tcp_keepalives_count", KEEPALIVE_COUNT),
        ):
            conn.execute("SELECT set_config(%s, %s, false)", (setting, str(value)))
    except BaseException:
        conn.close()
        raise
    return conn


class AlertEngine:
    """Runs ``evaluate_once`` every interval while it holds the engine lock."""

    def __init__(
        self,
        config: EngineConfig,
        policy: Policy,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.policy = policy
        self.clock = clock
        self.totals = Counts()
        self.evaluations = 0
        self._stop = threading.Event()
        self._lock_conn: psycopg.Connection[Any] | None = None
        self._work_conn: psycopg.Connection[Any] | None = None
        self.active = False

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, once: bool = False) -> int:
        """Loop until ``stop()``; with ``once``, one evaluation (exit 2: another engine acts)."""
        delay = 0.5
        last_stats = self.clock()
        try:
            while not self._stop.is_set():
                try:
                    if not self._hold_lock():
                        if once:
                            log.error("another alert engine holds the lock; nothing done")
                            return 2
                        self._stop.wait(self.config.interval_s)
                        continue
                    counts = self._evaluate()
                    delay = 0.5
                except LockLost as exc:
                    # the lock session died after the last look: another engine may act
                    log.warning("engine lock lost (%s); evaluation not written", exc)
                    self._close()
                    if once:
                        return 2
                    self._stop.wait(delay)
                    continue
                except psycopg.OperationalError as exc:
                    log.warning("database unavailable (%s); retrying in %.1f s", exc, delay)
                    self._close()
                    if once:
                        return 1
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.config.retry_max_s)
                    continue
                except psycopg.errors.UndefinedTable as exc:
                    log.error("alert tables missing (%s): run `lumeau db migrate`", exc)
                    if once:
                        return 1
                    self._stop.wait(self.config.interval_s)
                    continue
                except Exception:
                    # a bug or a refused write: logged, counted, tried again next time
                    log.exception("evaluation failed; the engine goes on")
                    self.totals.errors += 1
                    if once:
                        return 1
                    self._stop.wait(self.config.interval_s)
                    continue
                if counts.transitions or counts.errors or counts.bad_rows:
                    log.info("evaluation: %s", counts.line())
                if once:
                    return 0
                now = self.clock()
                if (now - last_stats).total_seconds() >= self.config.stats_interval_s:
                    log.info(
                        "totals after %d evaluations: %s", self.evaluations, self.totals.line()
                    )
                    last_stats = now
                self._stop.wait(self.config.interval_s)
        finally:
            self._close()
        return 0

    def _hold_lock(self) -> bool:
        """True while this engine holds the lock (checked on every evaluation)."""
        if self._lock_conn is not None and self.active:
            self._lock_conn.execute("SELECT 1")  # a dead session has lost the lock
            return True
        if self._lock_conn is None or self._lock_conn.closed:
            self._lock_conn = connect_lock_session(self.config.conninfo)
        row = self._lock_conn.execute(
            "SELECT pg_try_advisory_lock(%s)", (self.config.lock_key,)
        ).fetchone()
        acquired = bool(row and row[0])
        if acquired and not self.active:
            log.info("alert engine active (lock held)")
        elif not acquired:
            log.debug("another alert engine is active; standing by")
        self.active = acquired
        return acquired

    def _evaluate(self) -> Counts:
        if self._work_conn is None or self._work_conn.closed:
            self._work_conn = psycopg.connect(
                self.config.conninfo, autocommit=True, application_name="lumeau-alerts"
            )
        assert self._lock_conn is not None
        lock = HeldLock(self.config.lock_key, self._lock_conn.info.backend_pid)
        counts = evaluate_once(self._work_conn, self.policy, self.clock(), lock=lock)
        self.evaluations += 1
        self.totals.add(counts)
        return counts

    def _close(self) -> None:
        self.active = False
        for conn in (self._work_conn, self._lock_conn):
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    conn.close()
        self._work_conn = self._lock_conn = None
