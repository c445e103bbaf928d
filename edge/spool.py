"""The device's store-and-forward queue: a bounded FIFO of uplink messages on flash.

Runs unchanged on MicroPython 1.27 (ESP32, LittleFS or FAT) and CPython 3.11
(the simulators). Messages (the bytes of ``edge.protocol.encode``) are
appended when produced, whether or not the network is up, read in order with
``peek`` and removed only by ``ack``, once the broker (MQTT PUBACK) or the
application has confirmed them. A reboot or a power cut at any moment loses
nothing that was appended and not acknowledged; what was acknowledged is not
sent again, except the last acknowledgements when ``ack_every`` > 1.

    >>> q = Spool("/data/spool", max_bytes=128 * 1024, max_records=1000)
    >>> rid = q.append(encode(msg))                 # id, or None if refused
    >>> q.append(encode(alarm), priority=1)         # kept when full, see below
    >>> for rid, payload in q.peek(8):
    ...     publish(payload)                        # QoS 1
    >>> q.ack(rid)                                  # PUBACK: up to and including rid
    >>> len(q), q.bytes_used, q.dropped             # queue_count, flash, dropped_count

When full (``max_records`` live records, or ``max_bytes`` of segment files),
routine records go first, oldest first, and priority records (events, alarms)
are kept; a new routine record is refused while only priority records are
queued, and a new priority record then replaces the oldest priority one.
``dropped`` counts every record lost, across reboots. The format, the full
policy and the recovery rules are in ``docs/spool.md``.

Nothing is read or written at import; the folder is created by the
constructor, which also recovers from whatever it finds there. RAM holds one
small list per segment file and a 256-byte buffer, never the queue.

The work is split into modules with one job each; import from here:

    _spool_format   the on-flash format: records, segment scan, head log
    _spool_fs       the file system calls (``PosixFs``); tests pass their own
"""

from ._spool_format import (
    FLAG_PRIORITY,
    HEAD_ENTRY,
    HEAD_LOG,
    HEAD_TMP,
    MAX_ID,
    MAX_LENGTH,
    REC_HDR,
    SEG_HDR,
    SEG_MAGIC,
    SEG_SUFFIX,
    TMP_SUFFIX,
    head_entry,
    parse_head,
    parse_segment_name,
    read_header,
    record_header,
    scan,
    segment_name,
)
from ._spool_fs import PosixFs as PosixFs

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from typing import Any, Iterator  # noqa: F401  (used in type comments)

# Slots of a segment's summary (a list: the only per-segment state in RAM).
_NAME = 0  # number in the file name: the id of its first record when created
_SIZE = 1  # bytes in the file
_LAST = 2  # id of its last record
_LASTR = 3  # id of its last routine record, 0 if none
_NR = 4  # live routine records
_NP = 5  # live priority records
_LIVE = 6  # bytes of its live records, framing included

_HEAD_MAX = 1024  # the head log is rewritten (one entry) past 64 entries
_BUF = 256  # bytes of the copy / checksum buffer

DEFAULT_MAX_BYTES = 256 * 1024
DEFAULT_MAX_RECORDS = 2048
DEFAULT_SEGMENT_BYTES = 16 * 1024
DEFAULT_MAX_PAYLOAD = 8192  # the protocol's device message limit


def _new_segment(name):
    # type: (int) -> list[int]
    return [name, SEG_HDR, 0, 0, 0, 0, 0]


def _gap(before, after, acked):
    # type: (int, int, int) -> int
    """Ids strictly between two valid records that were not acknowledged."""
    low = before if before > acked else acked
    return after - low - 1 if after - low > 1 else 0


class Spool:
    """A bounded, flash-backed FIFO of encoded uplink messages.

    Parameters
    ----------
    dirpath : str
        Folder of the queue (created if missing; its parent must exist). The
        spool owns every ``*.seg``, ``*.tmp`` and ``head.*`` file in it.
    max_bytes : int
        Bound on the segment files' total size (flash used, framing and
        not-yet-reclaimed acknowledged records included). Rewriting a
        segment needs up to one more segment of free space, for a moment.
    max_records : int
        Bound on the number of queued (live) records.
    segment_bytes : int
        A segment file takes records until the next one would pass this size.
    max_payload : int
        Largest payload accepted (``ValueError`` beyond); at most 65535.
    ack_every : int
        Persist the acknowledgement point every that many ``ack`` calls (1:
        every time, one 16-byte append). Drops, segment deletions and
        ``close`` always persist it. After a power cut, up to
        ``ack_every - 1`` acknowledged ``ack`` calls are undone (resent).
    fs : object or None
        File system calls (see ``PosixFs``); None for the ``os`` module.

    Attributes
    ----------
    dropped : int
        Records lost since the folder was created (full policy, refused
        appends, records found corrupted): the device's ``dropped_count``.
    corrupt : int
        Damaged spans found in segment files by this object's recoveries.
    torn : int
        Torn last records (power cut during an append) truncated by them.
    """

    def __init__(
        self,
        dirpath,
        max_bytes=DEFAULT_MAX_BYTES,
        max_records=DEFAULT_MAX_RECORDS,
        segment_bytes=DEFAULT_SEGMENT_BYTES,
        max_payload=DEFAULT_MAX_PAYLOAD,
        ack_every=1,
        fs=None,
    ):
        # type: (str, int, int, int, int, int, Any) -> None
        if not 0 <= max_payload <= MAX_LENGTH:
            raise ValueError("max_payload must be 0..65535, not " + str(max_payload))
        smallest = SEG_HDR + REC_HDR + max_payload
        if segment_bytes < smallest:
            raise ValueError(
                "segment_bytes " + str(segment_bytes) + " < " + str(smallest) + " (one record)"
            )
        if max_bytes < smallest:
            raise ValueError(
                "max_bytes " + str(max_bytes) + " < " + str(smallest) + " (one record)"
            )
        if max_records < 1 or ack_every < 1:
            raise ValueError("max_records and ack_every must be >= 1")
        self._dir = dirpath
        self._prefix = dirpath if dirpath.endswith("/") else dirpath + "/"
        self.max_bytes = max_bytes
        self.max_records = max_records
        self.segment_bytes = segment_bytes
        self.max_payload = max_payload
        self.ack_every = ack_every
        self._fs = PosixFs() if fs is None else fs
        self._buf = bytearray(_BUF)
        self.dropped = 0
        self.corrupt = 0
        self.torn = 0
        self._closed = False
        self._broken = False
        self._reset()
        self._recover()

    # ------------------------------------------------------------ public API

    def append(self, payload, priority=0):
        # type: (bytes, int) -> int | None
        """Queue ``payload``; its id (1, 2, ...), or None when the full policy refused it.

        Durable when it returns. ``priority`` true marks an event or alarm
        that the full policy keeps while routine records remain to drop.
        """
        self._ready()
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError("payload must be bytes")
        payload = bytes(payload)
        if len(payload) > self.max_payload:
            raise ValueError(
                "payload of " + str(len(payload)) + " bytes > max_payload " + str(self.max_payload)
            )
        if self._next > MAX_ID:
            raise ValueError("record ids exhausted (2**32 - 1 appended)")
        try:
            return self._append(payload, FLAG_PRIORITY if priority else 0)
        except OSError:
            self._broken = True
            raise

    def peek(self, n=1):
        # type: (int) -> list[tuple[int, bytes]]
        """The first ``n`` queued records, oldest first, as ``(id, payload)``; removes nothing."""
        self._ready()
        out = []  # type: list[tuple[int, bytes]]
        if n <= 0:
            return out
        a, d = self._acked, self._upto
        it = self._records(self._acur)
        try:
            for _seg, _off, rid, flags, length, f in it:
                if rid > a and (flags & FLAG_PRIORITY or rid > d):
                    out.append((rid, f.read(length)))
                    if len(out) >= n:
                        break
        except OSError:
            self._broken = True
            raise
        finally:
            it.close()
        return out

    def ack(self, rid):
        # type: (int) -> int
        """Remove every queued record with id <= ``rid``; return how many there were.

        Acknowledging an id again (or an older one) does nothing; an id never
        handed out raises ``ValueError``.
        """
        self._ready()
        if rid < 0 or rid >= self._next:
            raise ValueError("ack(" + str(rid) + "): the last id given is " + str(self._next - 1))
        if rid <= self._acked:
            return 0
        try:
            killed = self._advance(rid)
            self._head_dirty = True
            self._pending += 1
            if self._pending >= self.ack_every:
                self._flush_head()
            self._sweep()
        except OSError:
            self._broken = True
            raise
        return killed

    def ack_count(self, n):
        # type: (int) -> int
        """Acknowledge the first ``n`` queued records (fewer if fewer are queued)."""
        self._ready()
        if n <= 0:
            return 0
        a, d = self._acked, self._upto
        last = 0
        seen = 0
        it = self._records(self._acur)
        try:
            for _seg, _off, rid, flags, _length, _f in it:
                if rid > a and (flags & FLAG_PRIORITY or rid > d):
                    last = rid
                    seen += 1
                    if seen >= n:
                        break
        finally:
            it.close()
        return self.ack(last) if last else 0

    def __len__(self):
        # type: () -> int
        """Queued records (appended, not acknowledged, not dropped)."""
        n = 0
        for seg in self._segs:
            n += seg[_NR] + seg[_NP]
        return n

    @property
    def bytes_used(self):
        # type: () -> int
        """Bytes of the segment files on flash (what ``max_bytes`` bounds)."""
        n = 0
        for seg in self._segs:
            n += seg[_SIZE]
        return n

    @property
    def next_id(self):
        # type: () -> int
        """The id the next append will get."""
        return self._next

    def flush(self):
        # type: () -> None
        """Persist the acknowledgement point now (useful with ``ack_every`` > 1)."""
        self._ready()
        self._flush_head()

    def close(self):
        # type: () -> None
        """Persist what is pending; later calls raise ``ValueError``. Idempotent."""
        if self._closed:
            return
        if not self._broken:
            self._flush_head()
        self._closed = True

    def __enter__(self):
        # type: () -> Spool
        return self

    def __exit__(self, *exc):
        # type: (Any) -> None
        self.close()

    # ------------------------------------------------------------ internals

    def _reset(self):
        # type: () -> None
        self._segs = []  # type: list[list[int]]
        self._acked = 0  # no record with an id <= this is live
        self._upto = 0  # no routine record with an id <= this is live
        self._next = 1
        self._acur = None  # type: tuple[int, int] | None  # first record after _acked
        self._dcur = None  # type: tuple[int, int] | None  # where the last drop stopped
        self._head_size = 0
        self._head_dirty = False
        self._pending = 0

    def _ready(self):
        # type: () -> None
        if self._closed:
            raise ValueError("spool is closed")
        if self._broken:  # a write failed half way: start again from what flash says
            self._reset()
            self._recover()
            self._broken = False

    def _path(self, name):
        # type: (str) -> str
        return self._prefix + name

    def _seg_path(self, num):
        # type: (int) -> str
        return self._prefix + segment_name(num)

    def _tmp_path(self, num):
        # type: (int) -> str
        return self._prefix + "%08x" % num + TMP_SUFFIX

    # -- appending and the full policy

    def _append(self, payload, flags):
        # type: (bytes, int) -> int | None
        framed = REC_HDR + len(payload)
        if not self._make_room(framed, flags):
            return None
        rid = self._next
        segs = self._segs
        tail = segs[-1] if segs else None
        new = tail is None or tail[_SIZE] + framed > self.segment_bytes
        if new:
            tail = _new_segment(rid)
        fs = self._fs
        f = fs.open(self._seg_path(tail[_NAME]), "ab")
        try:
            if new:
                f.write(SEG_MAGIC)
            f.write(record_header(flags, rid, payload))
            f.write(payload)
            fs.sync(f)
        finally:
            f.close()
        if new:
            fs.sync_dir(self._dir)
            segs.append(tail)
        tail[_SIZE] += framed
        tail[_LAST] = rid
        if flags & FLAG_PRIORITY:
            tail[_NP] += 1
        else:
            tail[_NR] += 1
            tail[_LASTR] = rid
        tail[_LIVE] += framed
        self._next = rid + 1
        if new:
            self._sweep()  # the previous tail goes if everything in it was acknowledged
        return rid

    def _make_room(self, framed, flags):
        # type: (int, int) -> bool
        """Drop, delete or compact until a record of ``framed`` bytes fits.

        False when the record itself is refused (counted in ``dropped``).
        """
        prio = flags & FLAG_PRIORITY
        while len(self) >= self.max_records:
            if not self._drop_one(prio):
                return self._refuse()
        while True:
            segs = self._segs
            need = framed
            if not segs or segs[-1][_SIZE] + framed > self.segment_bytes:
                need += SEG_HDR
            if self.bytes_used + need <= self.max_bytes:
                return True
            if self._reclaim():
                continue
            if not self._drop_segment(prio):
                return self._refuse()

    def _refuse(self):
        # type: () -> bool
        self._count_drop(1)
        self._flush_head()
        return False

    def _count_drop(self, n):
        # type: (int) -> None
        self.dropped = min(self.dropped + n, MAX_ID)
        self._head_dirty = True

    def _drop_one(self, prio):
        # type: (int) -> bool
        """Drop the oldest routine record, else (for a priority newcomer) the oldest one."""
        for seg in self._segs:
            if not seg[_NR]:
                continue
            floor = self._acked if self._acked > self._upto else self._upto
            dcur = self._dcur
            start = dcur if dcur is not None and dcur[0] == seg[_NAME] else (seg[_NAME], SEG_HDR)
            found = None
            it = self._records(start)
            try:
                for s, off, rid, flags, length, _f in it:
                    if s is not seg:
                        break
                    if not flags & FLAG_PRIORITY and rid > floor:
                        found = (off, rid, length)
                        break
            finally:
                it.close()
            if found is None:  # pragma: no cover - the summary says a routine record lives here
                raise OSError("spool: segment summary out of step with its file")
            off, rid, length = found
            self._upto = rid
            seg[_NR] -= 1
            seg[_LIVE] -= REC_HDR + length
            self._dcur = (seg[_NAME], off + REC_HDR + length)
            self._count_drop(1)
            self._advance(self._acked)
            self._flush_head()
            self._sweep()
            return True
        if not prio:
            return False
        first = self._first_live()
        if not first:
            return False
        self._count_drop(self._advance(first))
        self._flush_head()
        self._sweep()
        return True

    def _drop_segment(self, prio):
        # type: (int) -> bool
        """Free a segment: its routine records (oldest such segment), else the oldest one."""
        for seg in self._segs:
            if not seg[_NR]:
                continue
            if seg[_LASTR] > self._upto:
                self._upto = seg[_LASTR]
            self._count_drop(seg[_NR])
            seg[_NR] = 0
            self._advance(self._acked)
            self._flush_head()
            if seg[_NP]:
                self._compact(seg)
            else:
                self._delete(seg)
            return True
        if not prio:
            return False
        for seg in self._segs:
            if seg[_NP]:
                self._count_drop(self._advance(seg[_LAST]))
                self._flush_head()
                self._delete(seg)
                return True
        return False

    def _reclaim(self):
        # type: () -> bool
        """Free flash without losing a record: delete a dead segment, or compact one."""
        for seg in self._segs:
            if seg[_NR] + seg[_NP] == 0:
                self._delete(seg)
                return True
        for seg in self._segs:
            if seg[_SIZE] - SEG_HDR > seg[_LIVE]:
                self._compact(seg)
                return True
        return False

    # -- acknowledging

    def _records(self, pos):
        # type: (tuple[int, int] | None) -> Iterator[tuple[list[int], int, int, int, int, Any]]
        """Yield (segment, offset, id, flags, length, file) for each record from ``pos`` on.

        ``pos`` is (segment number, offset), or None for the first segment's
        start; a position in a segment that is gone means the next one. The
        file is open at the payload when an item is yielded. Close the
        generator when done (the file is closed then).
        """
        segs = self._segs
        i = 0
        off = SEG_HDR
        if pos is not None:
            name, off = pos
            while i < len(segs) and segs[i][_NAME] < name:
                i += 1
            if i < len(segs) and segs[i][_NAME] != name:
                off = SEG_HDR
        while i < len(segs):
            seg = segs[i]
            if off < seg[_SIZE]:
                f = self._fs.open(self._seg_path(seg[_NAME]), "rb")
                try:
                    while off < seg[_SIZE]:
                        flags, length, rid = read_header(f, off)[1:4]
                        yield seg, off, rid, flags, length, f
                        off += REC_HDR + length
                finally:
                    f.close()
            i += 1
            off = SEG_HDR

    def _first_live(self):
        # type: () -> int
        a, d = self._acked, self._upto
        it = self._records(self._acur)
        try:
            for _seg, _off, rid, flags, _length, _f in it:
                if rid > a and (flags & FLAG_PRIORITY or rid > d):
                    return rid
        finally:
            it.close()
        return 0

    def _advance(self, upto):
        # type: (int) -> int
        """Kill the live records with id <= ``upto``; move the read cursor to the next live one.

        Returns how many were killed. ``_acked`` ends just below the first
        live record (everything before it is dead anyway), so ``peek`` starts
        there; with ``upto == _acked`` this only moves the cursor.
        """
        a, d = self._acked, self._upto
        killed = 0
        pos = None
        it = self._records(self._acur)
        try:
            for seg, off, rid, flags, length, _f in it:
                prio = flags & FLAG_PRIORITY
                if rid > a and (prio or rid > d):  # live
                    if rid > upto:
                        pos = (seg[_NAME], off, rid)
                        break
                    seg[_NP if prio else _NR] -= 1
                    seg[_LIVE] -= REC_HDR + length
                    killed += 1
        finally:
            it.close()
        if pos is None:
            segs = self._segs
            self._acur = (segs[-1][_NAME], segs[-1][_SIZE]) if segs else None
            self._acked = self._next - 1
        else:
            self._acur = (pos[0], pos[1])
            self._acked = pos[2] - 1
        return killed

    # -- files

    def _flush_head(self):
        # type: () -> None
        """Persist (acked, dropped_upto, dropped) if they changed since the last time."""
        if not self._head_dirty:
            return
        entry = head_entry(self._acked, self._upto, self.dropped)
        fs = self._fs
        if self._head_size + HEAD_ENTRY > _HEAD_MAX:
            self._write_head_fresh(entry)
        else:
            f = fs.open(self._path(HEAD_LOG), "ab")
            try:
                f.write(entry)
                fs.sync(f)
            finally:
                f.close()
            if not self._head_size:
                fs.sync_dir(self._dir)
            self._head_size += HEAD_ENTRY
        self._head_dirty = False
        self._pending = 0

    def _write_head_fresh(self, entry):
        # type: (bytes) -> None
        """Replace the head log by one entry (written aside, then renamed over)."""
        fs = self._fs
        tmp = self._path(HEAD_TMP)
        f = fs.open(tmp, "wb")
        try:
            f.write(entry)
            fs.sync(f)
        finally:
            f.close()
        fs.rename(tmp, self._path(HEAD_LOG))
        fs.sync_dir(self._dir)
        self._head_size = HEAD_ENTRY

    def _sweep(self):
        # type: () -> None
        """Delete the dead segments other than the one being appended to."""
        segs = self._segs
        i = 0
        while i < len(segs) - 1:
            if segs[i][_NR] + segs[i][_NP] == 0:
                self._delete(segs[i])
            else:
                i += 1

    def _delete(self, seg):
        # type: (list[int]) -> None
        self._flush_head()  # the records must be dead on flash before their file goes
        self._fs.remove(self._seg_path(seg[_NAME]))
        self._fs.sync_dir(self._dir)
        self._segs.remove(seg)

    def _copy(self, src, dst, off, n):
        # type: (Any, Any, int, int) -> None
        buf = self._buf
        mv = memoryview(buf)
        src.seek(off)
        while n:
            k = src.readinto(mv[: min(n, len(buf))])
            if not k:
                raise OSError("spool: segment shorter than its records")
            dst.write(mv[:k])
            n -= k

    def _compact(self, seg):
        # type: (list[int]) -> None
        """Rewrite a segment with its live records only (aside, then renamed over)."""
        self._flush_head()
        fs = self._fs
        name = seg[_NAME]
        a, d = self._acked, self._upto
        new = _new_segment(name)
        src = fs.open(self._seg_path(name), "rb")
        try:
            dst = fs.open(self._tmp_path(name), "wb")
            try:
                dst.write(SEG_MAGIC)
                off = SEG_HDR
                while off < seg[_SIZE]:
                    flags, length, rid = read_header(src, off)[1:4]
                    framed = REC_HDR + length
                    prio = flags & FLAG_PRIORITY
                    if rid > a and (prio or rid > d):
                        self._copy(src, dst, off, framed)
                        new[_SIZE] += framed
                        new[_LAST] = rid
                        if prio:
                            new[_NP] += 1
                        else:
                            new[_NR] += 1
                            new[_LASTR] = rid
                        new[_LIVE] += framed
                    off += framed
                fs.sync(dst)
            finally:
                dst.close()
        finally:
            src.close()
        fs.rename(self._tmp_path(name), self._seg_path(name))
        fs.sync_dir(self._dir)
        for k in range(len(new)):  # in place: callers hold this list
            seg[k] = new[k]
        if self._dcur is not None and self._dcur[0] == name:
            self._dcur = None
        if self._acur is not None and self._acur[0] == name:
            self._acur = (name, SEG_HDR)
            self._advance(self._acked)

    # -- recovery

    def _recover(self):
        # type: () -> None
        """Rebuild the in-RAM summary from the folder, repairing what a power cut left."""
        fs = self._fs
        fs.mkdir(self._dir)
        nums = []  # type: list[int]
        tmps = []  # type: list[int]
        has_head = has_head_tmp = False
        for entry in fs.listdir(self._dir):
            low = entry.lower()
            if low == HEAD_LOG:
                has_head = True
            elif low == HEAD_TMP:
                has_head_tmp = True
            elif low.endswith(SEG_SUFFIX) and parse_segment_name(low) >= 0:
                nums.append(parse_segment_name(low))
            elif low.endswith(TMP_SUFFIX) and parse_segment_name(low) >= 0:
                tmps.append(parse_segment_name(low))
        # A rewrite renames a complete tmp over its file. With the file still
        # there, the rename never began and the tmp may be partial: drop it.
        # Without it (FAT's rename removes the target first), finish the rename.
        for num in tmps:
            if num in nums:
                fs.remove(self._tmp_path(num))
            else:
                fs.rename(self._tmp_path(num), self._seg_path(num))
                nums.append(num)
        if has_head_tmp:
            if has_head:
                fs.remove(self._path(HEAD_TMP))
            else:
                fs.rename(self._path(HEAD_TMP), self._path(HEAD_LOG))
                has_head = True
        state = None
        clean = True
        if has_head:
            f = fs.open(self._path(HEAD_LOG), "rb")
            try:
                data = f.read()
            finally:
                f.close()
            state, clean = parse_head(data)
            self._head_size = len(data)
        if state is not None:
            self._acked, self._upto, self.dropped = state
        a, d = self._acked, self._upto
        nums.sort()

        last_id = 0
        waiting = -1  # id before a damaged span whose end is not known yet
        corrupt = lost = 0
        last_bad = None  # (segment number, reaches its end) of the latest damaged span
        repair = []  # type: list[list[int]]
        empty = []  # type: list[int]
        for num in nums:
            seg = _new_segment(num)
            size = fs.size(self._seg_path(num))
            damaged = False
            f = fs.open(self._seg_path(num), "rb")
            try:
                for ok, start, end, rid, flags in scan(f, size, last_id, self._buf):
                    if not ok:
                        damaged = True
                        corrupt += 1
                        waiting = last_id
                        last_bad = (num, end == size)
                        continue
                    if waiting >= 0:
                        lost += _gap(waiting, rid, a)
                        waiting = -1
                    framed = end - start
                    prio = flags & FLAG_PRIORITY
                    seg[_SIZE] += framed
                    seg[_LAST] = last_id = rid
                    if not prio:
                        seg[_LASTR] = rid
                    if rid > a and (prio or rid > d):
                        seg[_NP if prio else _NR] += 1
                        seg[_LIVE] += framed
            finally:
                f.close()
            if seg[_LAST] == 0:
                empty.append(num)
            else:
                self._segs.append(seg)
                if damaged:
                    repair.append(seg)
        if last_bad is not None and nums and last_bad[0] == nums[-1] and last_bad[1]:
            corrupt -= 1  # the end of the last file: a torn append, never confirmed
            self.torn += 1
        self.corrupt += corrupt
        for seg in repair:
            self._repair(seg, size_hint=seg[_SIZE])
        for num in empty:
            fs.remove(self._seg_path(num))
        if repair or empty:
            fs.sync_dir(self._dir)
        if lost:
            self._count_drop(lost)
        self._next = max(last_id, self._acked, self._upto) + 1
        self._advance(self._acked)
        if lost or not clean:
            self._head_dirty = True
            self._write_head_fresh(head_entry(self._acked, self._upto, self.dropped))
            self._head_dirty = False
        self._sweep()

    def _repair(self, seg, size_hint):
        # type: (list[int], int) -> None
        """Rewrite a damaged segment with its valid records (aside, then renamed over)."""
        fs = self._fs
        name = seg[_NAME]
        path = self._seg_path(name)
        size = fs.size(path)
        min_id = 0
        for other in self._segs:
            if other[_NAME] < name and other[_LAST] > min_id:
                min_id = other[_LAST]
        src = fs.open(path, "rb")
        try:
            dst = fs.open(self._tmp_path(name), "wb")
            try:
                dst.write(SEG_MAGIC)
                written = SEG_HDR
                for ok, start, end, _rid, _flags in scan(src, size, min_id, self._buf):
                    if ok:
                        self._copy(src, dst, start, end - start)
                        written += end - start
                fs.sync(dst)
            finally:
                dst.close()
        finally:
            src.close()
        if written != size_hint:  # pragma: no cover - the same scan twice
            raise OSError("spool: repair of " + path + " is not reproducible")
        fs.rename(self._tmp_path(name), path)
