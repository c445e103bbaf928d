"""The gateway's durable state: one SQLite file in WAL mode.

Tables: ``outbox`` (the queue of accepted uplinks, as batch entries),
``dead_letter`` (rejected input), ``presence`` (last status per device),
``command`` (downlinks waiting for their device's ack).

One thread (the gateway's core loop) owns the connection; nothing here is
thread-safe. Durability: with ``synchronous=FULL`` every commit is on disk
(WAL fsync) before ``commit`` returns, so a message the gateway acknowledged
to the site broker survives a power cut; ``NORMAL`` survives a process crash
only (docs/gateway.md).

The queue is read through one cursor per priority class: ``take`` hands out
the oldest rows above the cursor and moves it; ``delete`` removes a batch once
the backend broker acknowledged it; ``rewind`` (connection lost) sends the
cursors back so unacknowledged rows go out again. Ids only grow
(AUTOINCREMENT), so a batch is an id range per class.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gateway.intake import CLASSES, PRIORITY, TELEMETRY

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    prio INTEGER NOT NULL,
    dev TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    entry BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_class ON outbox (prio, id);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    field TEXT,
    dev TEXT
);
CREATE TABLE IF NOT EXISTS presence (
    dev TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    boot TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    received_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS command (
    id TEXT PRIMARY KEY,
    dev TEXT NOT NULL,
    payload BLOB NOT NULL,
    exp INTEGER NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    next_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL
);
"""

# Rows read per query while looking for telemetry to drop.
_DROP_CHUNK = 2000


@dataclass(frozen=True, slots=True)
class QueuedRow:
    prio: int
    dev: str
    received_ms: int
    entry: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_ms: int
    topic: str
    payload: bytes
    code: str
    reason: str
    field: str | None
    dev: str | None


@dataclass(slots=True)
class Taken:
    """Rows handed out for one batch: an id range per class, and their entries."""

    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    entries: list[bytes] = field(default_factory=list)
    size: int = 0  # sum of entry lengths
    counts: dict[int, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.entries)


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    dev: str
    payload: bytes
    exp: int
    tries: int


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    queued: int
    dropped: int  # telemetry rows deleted (oldest first) to stay within bounds
    over_bound: bool  # still above a bound: only priority rows (never dropped) remain


class Store:
    def __init__(
        self,
        path: Path,
        *,
        synchronous: Literal["full", "normal"] = "full",
        max_rows: int = 1_000_000,
        max_bytes: int = 512 * 1024 * 1024,
        dead_letter_max_rows: int = 100_000,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are explicit (``transaction``).
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.dead_letter_max_rows = dead_letter_max_rows
        self._cursor = {c: 0 for c in CLASSES}
        self._inflight_rows = 0
        self.rows = 0
        self.bytes = 0
        self.class_rows = {c: 0 for c in CLASSES}
        self.dead_letters = 0
        self._recount()

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------ transactions

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic, durable unit; on error the in-memory counts are re-read."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            self._recount()
            raise

    def _recount(self) -> None:
        row = self._db.execute("SELECT count(*), coalesce(sum(length(entry)), 0) FROM outbox")
        self.rows, self.bytes = row.fetchone()
        self.class_rows = {c: 0 for c in CLASSES}
        for prio, n in self._db.execute("SELECT prio, count(*) FROM outbox GROUP BY prio"):
            self.class_rows[int(prio)] = int(n)
        (self.dead_letters,) = self._db.execute("SELECT count(*) FROM dead_letter").fetchone()

    # ------------------------------------------------------------ queue

    def enqueue(self, rows: Sequence[QueuedRow]) -> EnqueueResult:
        """Append rows, then enforce the bounds (call inside ``transaction``).

        Policy when full: the oldest telemetry not yet handed to a batch is
        deleted first (possibly rows just added); priority rows are never
        dropped, so only they can keep the queue above a bound.
        """
        self._db.executemany(
            "INSERT INTO outbox (prio, dev, received_ms, entry) VALUES (?, ?, ?, ?)",
            [(r.prio, r.dev, r.received_ms, r.entry) for r in rows],
        )
        self.rows += len(rows)
        self.bytes += sum(len(r.entry) for r in rows)
        for r in rows:
            self.class_rows[r.prio] += 1
        dropped = self._enforce_bounds()
        over = self.rows > self.max_rows or self.bytes > self.max_bytes
        return EnqueueResult(len(rows), dropped, over)

    def _enforce_bounds(self) -> int:
        dropped = 0
        while self.rows > self.max_rows or self.bytes > self.max_bytes:
            excess_rows = self.rows - self.max_rows
            excess_bytes = self.bytes - self.max_bytes
            candidates = self._db.execute(
                "SELECT id, length(entry) FROM outbox WHERE prio = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                (TELEMETRY, self._cursor[TELEMETRY], _DROP_CHUNK),
            ).fetchall()
            if not candidates:
                break
            last_id = 0
            freed_rows = 0
            freed_bytes = 0
            for row_id, size in candidates:
                if freed_rows >= excess_rows and freed_bytes >= excess_bytes:
                    break
                last_id = row_id
                freed_rows += 1
                freed_bytes += size
            self._db.execute(
                "DELETE FROM outbox WHERE prio = ? AND id > ? AND id <= ?",
                (TELEMETRY, self._cursor[TELEMETRY], last_id),
            )
            self.rows -= freed_rows
            self.bytes -= freed_bytes
            self.class_rows[TELEMETRY] -= freed_rows
            dropped += freed_rows
        return dropped

    def take(self, max_msgs: int, max_entry_bytes: int) -> Taken | None:
        """The next rows to send, priority class first, each class oldest first.

        ``max_entry_bytes`` bounds the entries' total length plus one comma
        each (the batch envelope is the caller's). Moves the cursors.
        """
        taken = Taken()
        budget = max_entry_bytes
        for prio in CLASSES:
            room = max_msgs - taken.count
            if room <= 0 or budget <= 0:
                break
            cur = self._db.execute(
                "SELECT id, entry FROM outbox WHERE prio = ? AND id > ? ORDER BY id LIMIT ?",
                (prio, self._cursor[prio], room),
            )
            first = last = 0
            n = 0
            for row_id, entry in cur:
                cost = len(entry) + 1
                if cost > budget and taken.count > 0:
                    break
                budget -= cost
                taken.entries.append(entry)
                taken.size += len(entry)
                first = first or row_id
                last = row_id
                n += 1
            cur.close()
            if n:
                taken.ranges[prio] = (first, last)
                taken.counts[prio] = n
                self._cursor[prio] = last
        if not taken.count:
            return None
        self._inflight_rows += taken.count
        return taken

    def delete(self, taken: Taken) -> None:
        """Forget a batch the backend broker acknowledged."""
        with self.transaction():
            for prio, (first, last) in taken.ranges.items():
                self._db.execute(
                    "DELETE FROM outbox WHERE prio = ? AND id >= ? AND id <= ?",
                    (prio, first, last),
                )
        self.rows -= taken.count
        self.bytes -= taken.size
        self._inflight_rows -= taken.count
        for prio, n in taken.counts.items():
            self.class_rows[prio] -= n

    def rewind(self) -> None:
        """Every unacknowledged row goes out again (the backend link was lost)."""
        self._cursor = {c: 0 for c in CLASSES}
        self._inflight_rows = 0

    @property
    def unsent(self) -> int:
        return self.rows - self._inflight_rows

    def oldest_received_ms(self) -> int | None:
        row = self._db.execute(
            "SELECT received_ms FROM outbox WHERE id = (SELECT min(id) FROM outbox)"
        ).fetchone()
        return None if row is None else int(row[0])

    # ------------------------------------------------------------ dead letters

    def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Store rejected input (inside ``transaction``); the oldest go past the bound."""
        if not letters:
            return
        self._db.executemany(
            "INSERT INTO dead_letter (received_ms, topic, payload, code, reason, field, dev) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (d.received_ms, d.topic, d.payload, d.code, d.reason, d.field, d.dev)
                for d in letters
            ],
        )
        self.dead_letters += len(letters)
        excess = self.dead_letters - self.dead_letter_max_rows
        if excess > 0:
            self._db.execute(
                "DELETE FROM dead_letter WHERE id IN "
                "(SELECT id FROM dead_letter ORDER BY id LIMIT ?)",
                (excess,),
            )
            self.dead_letters -= excess

    def dead_letters_list(self) -> list[DeadLetter]:
        return [
            DeadLetter(int(r[0]), r[1], bytes(r[2]), r[3], r[4], r[5], r[6])
            for r in self._db.execute(
                "SELECT received_ms, topic, payload, code, reason, field, dev "
                "FROM dead_letter ORDER BY id"
            )
        ]

    # ------------------------------------------------------------ presence

    def set_presence(
        self, dev: str, state: str, boot: str, seq: int, ts: int, received_ms: int
    ) -> None:
        self._db.execute(
            "INSERT INTO presence (dev, state, boot, seq, ts, received_ms) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dev) DO UPDATE SET state = excluded.state, "
            "boot = excluded.boot, seq = excluded.seq, ts = excluded.ts, "
            "received_ms = excluded.received_ms",
            (dev, state, boot, seq, ts, received_ms),
        )

    def presence(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self._db.execute("SELECT dev, state FROM presence")}

    # ------------------------------------------------------------ commands

    def add_command(self, cmd_id: str, dev: str, payload: bytes, exp: int, now_ms: int) -> bool:
        """Remember a command to deliver; False if its id is known already."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO command (id, dev, payload, exp, tries, next_ms, received_ms) "
            "VALUES (?, ?, ?, ?, 0, ?, ?)",
            (cmd_id, dev, payload, exp, now_ms, now_ms),
        )
        return cur.rowcount == 1

    def due_commands(self, now_ms: int) -> list[Command]:
        return [
            Command(r[0], r[1], bytes(r[2]), int(r[3]), int(r[4]))
            for r in self._db.execute(
                "SELECT id, dev, payload, exp, tries FROM command WHERE next_ms <= ? "
                "ORDER BY next_ms",
                (now_ms,),
            )
        ]

    def command_sent(self, cmd_id: str, next_ms: int) -> None:
        self._db.execute(
            "UPDATE command SET tries = tries + 1, next_ms = ? WHERE id = ?", (next_ms, cmd_id)
        )

    def remove_command(self, cmd_id: str, dev: str) -> bool:
        cur = self._db.execute("DELETE FROM command WHERE id = ? AND dev = ?", (cmd_id, dev))
        return cur.rowcount == 1

    def pending_commands(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM command").fetchone()[0])


__all__ = [
    "PRIORITY",
    "TELEMETRY",
    "Command",
    "DeadLetter",
    "EnqueueResult",
    "QueuedRow",
    "Store",
    "Taken",
]
