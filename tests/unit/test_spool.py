"""``edge.spool``: the device's store-and-forward queue, on real files (CPython).

Order, acknowledgement, the bounds and the full policy, reboots, torn writes
at every byte, corrupted records, a power cut at every write of a scenario,
and a hypothesis state machine against an in-memory model. The same code in
the real MicroPython is compared with CPython in ``tests/mpy/test_spool_mpy.py``.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from edge import spool as spool_module
from edge.spool import PosixFs, Spool

SMALL: dict[str, int] = {
    "max_bytes": 600,
    "max_records": 8,
    "segment_bytes": 160,
    "max_payload": 64,
}
SEG_HDR = 4
REC_HDR = 12


def body(i: int, size: int = 20) -> bytes:
    head = b'{"seq":%d}' % i
    return (head + b"." * size)[:size] if size >= len(head) else head[:size]


def open_spool(path: Path, **kw: Any) -> Spool:
    return Spool(str(path), **{**SMALL, **kw})


def queued(q: Spool) -> list[tuple[int, bytes]]:
    return q.peek(10**6)


def ids(q: Spool) -> list[int]:
    return [rid for rid, _ in queued(q)]


def seg_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.seg"))


def files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def check_consistent(q: Spool, path: Path) -> None:
    """What the object says agrees with the folder and the bounds."""
    sizes = sum(p.stat().st_size for p in seg_files(path))
    assert q.bytes_used == sizes <= q.max_bytes
    assert len(q) == len(queued(q)) <= q.max_records
    assert all(p.stat().st_size <= q.segment_bytes for p in seg_files(path))
    got = ids(q)
    assert got == sorted(got) and len(set(got)) == len(got)
    assert not list(path.glob("*.tmp"))


# ---------------------------------------------------------------- order and ack


def test_fifo_order_ids_and_peek(tmp_path: Path) -> None:
    q = open_spool(tmp_path / "q")
    got = [q.append(body(i)) for i in range(5)]
    assert got == [1, 2, 3, 4, 5]
    assert queued(q) == [(i + 1, body(i)) for i in range(5)]
    assert q.peek(2) == [(1, body(0)), (2, body(1))]
    assert q.peek(0) == [] and q.peek() == [(1, body(0))]
    assert len(q) == 5  # peek removes nothing
    assert q.next_id == 6


def test_ack_is_up_to_and_including(tmp_path: Path) -> None:
    q = open_spool(tmp_path / "q")
    for i in range(6):
        q.append(body(i))
    assert q.ack(3) == 3
    assert ids(q) == [4, 5, 6]
    assert q.ack(3) == 0 and q.ack(2) == 0  # duplicates (QoS 1 PUBACK again) do nothing
    assert q.ack(0) == 0
    with pytest.raises(ValueError, match="last id given is 6"):
        q.ack(7)
    with pytest.raises(ValueError):
        q.ack(-1)
    assert q.ack_count(1) == 1 and ids(q) == [5, 6]
    assert q.ack_count(0) == 0
    assert q.ack_count(10) == 2 and len(q) == 0
    assert q.ack_count(1) == 0 and q.peek(5) == []


def test_ack_of_a_dropped_id_still_acknowledges_the_records_before(tmp_path: Path) -> None:
    q = open_spool(tmp_path / "q", max_records=3)
    q.append(body(0), priority=1)  # 1
    for i in range(1, 5):
        q.append(body(i))  # 2..5: 2 and 3 dropped by the count bound
    assert ids(q) == [1, 4, 5] and q.dropped == 2
    assert q.ack(3) == 1  # 3 was dropped; 1 was still queued
    assert ids(q) == [4, 5]


def test_arguments_are_checked(tmp_path: Path) -> None:
    q = open_spool(tmp_path / "q")
    with pytest.raises(TypeError):
        q.append("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_payload"):
        q.append(b"x" * 65)
    assert q.append(bytearray(b"x" * 64)) == 1
    assert q.append(memoryview(b"")) == 2  # empty payloads are records too
    assert queued(q) == [(1, b"x" * 64), (2, b"")]
    for bad in (
        {"segment_bytes": 79},  # one record of max_payload must fit a segment
        {"max_bytes": 79},
        {"max_records": 0},
        {"ack_every": 0},
        {"max_payload": 70000},
    ):
        with pytest.raises(ValueError):
            open_spool(tmp_path / "other", **bad)


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    with open_spool(tmp_path / "q") as q:
        q.append(b"a")
    q.close()
    for call in (lambda: q.append(b"b"), lambda: q.peek(1), lambda: q.ack(1), q.flush):
        with pytest.raises(ValueError, match="closed"):
            call()


def test_on_flash_format(tmp_path: Path) -> None:
    """The bytes of docs/spool.md: segment header, record framing, head entry."""
    q = open_spool(tmp_path / "q")
    assert q.append(b"hi", priority=1) == 1
    assert q.append(b"{}") == 2
    head1 = struct.pack(">BBHI", 0xA5, 1, 2, 1)
    head2 = struct.pack(">BBHI", 0xA5, 0, 2, 2)
    rec1 = head1 + struct.pack(">I", zlib.crc32(head1 + b"hi")) + b"hi"
    rec2 = head2 + struct.pack(">I", zlib.crc32(head2 + b"{}")) + b"{}"
    assert files(tmp_path / "q") == {"00000001.seg": b"LSQ\x01" + rec1 + rec2}
    assert q.bytes_used == 4 + 14 + 14
    q.ack(1)
    entry = struct.pack(">III", 1, 0, 0)
    assert (tmp_path / "q" / "head.log").read_bytes() == entry + struct.pack(
        ">I", zlib.crc32(entry)
    )


def test_segments_roll_over_and_go_when_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "q"
    q = open_spool(path, max_bytes=2000, max_records=100)
    for i in range(20):
        q.append(body(i, 30))  # 42 bytes framed: 3 per 160-byte segment
    names = [p.name for p in seg_files(path)]
    assert names[:3] == ["00000001.seg", "00000004.seg", "00000007.seg"]
    assert len(names) == 7
    check_consistent(q, path)
    q.ack(4)  # segment 1 entirely, segment 4 in part
    assert seg_files(path)[0].name == "00000004.seg"
    q.ack(20)
    # everything acknowledged: the segment being appended to stays until full
    assert [p.name for p in seg_files(path)] == ["00000013.seg"]
    assert len(q) == 0 and q.bytes_used == 4 + 2 * 42
    assert q.append(b"next") == 21  # appended to that segment (104 bytes now)
    assert [p.name for p in seg_files(path)] == ["00000013.seg"]
    q.ack(21)
    assert q.append(body(0, 60)) == 22  # 72 bytes do not fit: a new segment
    # and the old one, all acknowledged, is deleted
    assert [p.name for p in seg_files(path)] == ["00000016.seg"]
    assert ids(q) == [22]
    check_consistent(q, path)


# ---------------------------------------------------------------- bounds and the full policy


def test_count_bound_drops_the_oldest_routine_record_first(tmp_path: Path) -> None:
    q = open_spool(tmp_path / "q", max_records=4, max_bytes=2000)
    q.append(body(1))  # 1 routine
    q.append(body(2), priority=1)  # 2 alarm
    q.append(body(3))  # 3
    q.append(body(4))  # 4
    assert q.append(body(5)) == 5 and ids(q) == [2, 3, 4, 5] and q.dropped == 1
    assert q.append(body(6)) == 6 and ids(q) == [2, 4, 5, 6] and q.dropped == 2
    assert q.append(body(7), priority=1) == 7 and ids(q) == [2, 5, 6, 7]
    assert q.dropped == 3
    check_consistent(q, tmp_path / "q")


def test_only_alarms_left_routine_is_refused_alarm_replaces_oldest_alarm(
    tmp_path: Path,
) -> None:
    q = open_spool(tmp_path / "q", max_records=3, max_bytes=2000)
    for i in range(3):
        q.append(body(i), priority=1)
    assert q.append(body(9)) is None  # refused, counted
    assert ids(q) == [1, 2, 3] and q.dropped == 1
    assert q.next_id == 4  # a refused record takes no id
    assert q.append(body(10), priority=1) == 4
    assert ids(q) == [2, 3, 4] and q.dropped == 2


def test_byte_bound_drops_a_whole_segment_of_routine_records(tmp_path: Path) -> None:
    path = tmp_path / "q"
    # 3 records of 42 bytes per segment (130 bytes), room for exactly 3 segments
    q = open_spool(path, max_bytes=3 * 130, max_records=100)
    for i in range(9):
        q.append(body(i, 30))
    assert q.bytes_used == 390 and q.dropped == 0
    assert q.append(body(9, 30)) == 10
    assert q.dropped == 3 and ids(q) == list(range(4, 11))
    assert [p.name for p in seg_files(path)] == ["00000004.seg", "00000007.seg", "0000000a.seg"]
    check_consistent(q, path)


def test_byte_bound_keeps_alarms_by_compacting_their_segment(tmp_path: Path) -> None:
    path = tmp_path / "q"
    q = open_spool(path, max_bytes=3 * 130, max_records=100)
    for i in range(9):
        q.append(body(i, 30), priority=1 if i == 1 else 0)
    assert q.append(body(9, 30)) == 10
    # segment 1 lost its routine records 1 and 3 but kept alarm 2, rewritten alone
    assert ids(q) == [2, *range(4, 11)] and q.dropped == 2
    assert (path / "00000001.seg").stat().st_size == 4 + 42
    check_consistent(q, path)


def test_byte_bound_reclaims_acknowledged_space_before_dropping(tmp_path: Path) -> None:
    path = tmp_path / "q"
    q = open_spool(path, max_bytes=3 * 130, max_records=100)
    for i in range(9):
        q.append(body(i, 30))
    q.ack(2)  # records 1 and 2 acknowledged; their segment still holds record 3
    assert q.bytes_used == 390
    assert q.append(body(9, 30)) == 10
    assert q.dropped == 0 and ids(q) == list(range(3, 11))
    assert (path / "00000001.seg").stat().st_size == 4 + 42  # compacted
    check_consistent(q, path)


def test_byte_bound_with_only_alarms_drops_the_oldest_alarm_segment(tmp_path: Path) -> None:
    path = tmp_path / "q"
    q = open_spool(path, max_bytes=3 * 130, max_records=100)
    for i in range(9):
        q.append(body(i, 30), priority=1)
    assert q.append(body(9, 30)) is None and q.dropped == 1  # routine: refused
    assert q.append(body(10, 30), priority=1) == 10
    assert q.dropped == 4 and ids(q) == list(range(4, 11))
    check_consistent(q, path)


def test_mixed_traffic_never_breaks_the_bounds(tmp_path: Path) -> None:
    path = tmp_path / "q"
    q = open_spool(path, max_bytes=500, max_records=7)
    acked: set[int] = set()
    alarms: set[int] = set()
    for i in range(400):
        before = dict(queued(q))
        prio = int(i % 9 == 0)
        rid = q.append(body(i, 5 + (i * 37) % 60), priority=prio)
        if rid and prio:
            alarms.add(rid)
        live = set(ids(q))
        lost_alarms = (alarms & set(before)) - live
        if lost_alarms:  # routine records go first: none of those queued before is left
            assert not {r for r in before if r not in alarms} & live
        if i % 13 == 12:
            acked |= {r for r, _ in q.peek(2)}
            q.ack_count(2)
        check_consistent(q, path)
        assert i + 1 == len(q) + len(acked) + q.dropped


def test_dropped_survives_reboots(tmp_path: Path) -> None:
    path = tmp_path / "q"
    q = open_spool(path, max_records=2)
    for i in range(5):
        q.append(body(i))
    assert q.dropped == 3
    del q  # no close: a power cut
    q = open_spool(path, max_records=2)
    assert q.dropped == 3 and ids(q) == [4, 5]


# ---------------------------------------------------------------- reboots


@pytest.mark.parametrize("clean", [True, False], ids=["close", "power-cut"])
def test_reboot_keeps_exactly_the_unacknowledged(tmp_path: Path, clean: bool) -> None:
    path = tmp_path / "q"
    q = open_spool(path, max_records=100, max_bytes=3000)
    for i in range(30):
        q.append(body(i, 10 + i), priority=i % 4 == 0)
    q.ack(11)
    before = queued(q)
    if clean:
        q.close()
    del q
    q = open_spool(path, max_records=100, max_bytes=3000)
    assert queued(q) == before
    assert q.next_id == 31 and q.append(b"more") == 31
    check_consistent(q, path)


def test_reboot_after_everything_was_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "q"
    q = open_spool(path)
    for i in range(3):
        q.append(body(i))
    q.ack(3)
    q = open_spool(path)
    assert len(q) == 0 and q.next_id == 4
    assert q.append(b"x") == 4 and ids(q) == [4]


def test_ack_every_trades_head_writes_for_resends(tmp_path: Path) -> None:
    path = tmp_path / "q"
    q = open_spool(path, ack_every=3)
    for i in range(6):
        q.append(body(i))
    q.ack(1)
    q.ack(2)
    assert not (path / "head.log").exists()
    del q  # power cut: the two acknowledgements are undone, records resent
    q = open_spool(path, ack_every=3)
    assert ids(q) == [1, 2, 3, 4, 5, 6]
    q.ack(1)
    q.ack(2)
    q.ack(3)  # the third persists
    assert (path / "head.log").stat().st_size == 16
    q.ack(4)
    q.close()  # close persists the rest
    assert ids(open_spool(path)) == [5, 6]


def test_head_log_is_rewritten_when_long(tmp_path: Path) -> None:
    path = tmp_path / "q"
    q = open_spool(path, max_records=200, max_bytes=20000)
    for i in range(150):
        q.append(body(i, 5))
    for rid in range(1, 140):
        q.ack(rid)
        assert (path / "head.log").stat().st_size <= 1024
    assert (path / "head.log").stat().st_size % 16 == 0
    assert ids(open_spool(path, max_records=200, max_bytes=20000)) == list(range(140, 151))


# ---------------------------------------------------------------- torn writes


def _last_record_span(path: Path) -> tuple[Path, int, int]:
    seg = seg_files(path)[-1]
    data = seg.read_bytes()
    off = SEG_HDR
    start = off
    while off < len(data):
        start = off
        off += REC_HDR + struct.unpack_from(">H", data, off + 2)[0]
    return seg, start, len(data)


def test_torn_last_record_at_every_byte(tmp_path: Path) -> None:
    """A power cut anywhere in the last append: earlier records all kept, the torn one dropped."""
    base = tmp_path / "base"
    q = open_spool(base)
    for i in range(3):
        q.append(body(i, 20), priority=i == 1)
    q.ack(1)
    q.close()
    reference = files(base)  # the folder before the last append
    q = open_spool(base)
    q.append(body(99, 40))
    q.close()
    seg, start, end = _last_record_span(base)
    assert start > SEG_HDR  # the last segment holds earlier records too
    whole = seg.read_bytes()
    for cut in range(start, end):
        path = tmp_path / f"cut{cut}"
        shutil.copytree(base, path)
        (path / seg.name).write_bytes(whole[:cut])
        q = open_spool(path)
        assert ids(q) == [2, 3], cut
        assert q.torn == (1 if cut > start else 0) and q.corrupt == 0 and q.dropped == 0
        assert files(path) == reference  # truncated back to the last whole record
        assert q.append(body(99, 40)) == 4  # the torn record's id is free again
        check_consistent(q, path)


def test_torn_first_record_of_a_new_segment(tmp_path: Path) -> None:
    base = tmp_path / "base"
    q = open_spool(base)
    for i in range(3):
        q.append(body(i, 45))  # 57 framed: two per segment
    q.close()
    seg = seg_files(base)[-1]
    whole = seg.read_bytes()
    assert len(whole) == SEG_HDR + 57
    for cut in range(len(whole)):
        path = tmp_path / f"cut{cut}"
        shutil.copytree(base, path)
        (path / seg.name).write_bytes(whole[:cut])
        q = open_spool(path)
        assert ids(q) == [1, 2] and q.corrupt == 0
        assert q.torn == (0 if cut == SEG_HDR else 1 if cut else 0)
        assert not (path / seg.name).exists()  # nothing valid left in it: deleted
        check_consistent(q, path)


def test_zero_filled_tail_is_a_torn_write(tmp_path: Path) -> None:
    """FAT can grow a file before its data lands: zeros after the last record."""
    path = tmp_path / "q"
    q = open_spool(path)
    q.append(body(1))
    q.append(body(2))
    q.close()
    seg = seg_files(path)[-1]
    good = seg.read_bytes()
    seg.write_bytes(good + b"\xa5\x00\x00\x10" + bytes(40))
    q = open_spool(path)
    assert ids(q) == [1, 2] and q.torn == 1 and q.dropped == 0
    assert seg.read_bytes() == good


def test_torn_or_damaged_head_log(tmp_path: Path) -> None:
    path = tmp_path / "q"
    q = open_spool(path)
    for i in range(5):
        q.append(body(i))
    q.ack(2)
    q.ack(3)
    q.close()
    log = path / "head.log"
    data = log.read_bytes()
    log.write_bytes(data[:-5])  # the second entry torn: back to ack(2)
    q = open_spool(path)
    assert ids(q) == [3, 4, 5]
    assert log.stat().st_size == 16  # rewritten clean, so later entries stay aligned
    q.ack(3)
    q.close()
    assert log.stat().st_size == 32
    data = bytearray(log.read_bytes())
    data[-1] ^= 1  # the newest entry damaged: the one before it holds
    log.write_bytes(bytes(data))
    assert ids(open_spool(path)) == [3, 4, 5]


# ---------------------------------------------------------------- corruption


def _record_offsets(seg: Path) -> list[int]:
    data = seg.read_bytes()
    out = []
    off = SEG_HDR
    while off < len(data):
        out.append(off)
        off += REC_HDR + struct.unpack_from(">H", data, off + 2)[0]
    return out


def _damage(seg: Path, at: int, fn: Callable[[int], int] = lambda b: b ^ 0x10) -> None:
    data = bytearray(seg.read_bytes())
    data[at] = fn(data[at])
    seg.write_bytes(bytes(data))


def _three_segments(path: Path, **kw: Any) -> Spool:
    q = open_spool(path, max_records=100, max_bytes=2000, **kw)
    for i in range(9):
        q.append(body(i, 30))  # three per segment
    q.close()
    return q


def test_corrupted_payload_in_the_middle_is_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "q"
    _three_segments(path)
    seg = seg_files(path)[1]  # ids 4, 5, 6
    _damage(seg, _record_offsets(seg)[1] + REC_HDR + 3)  # in record 5's payload
    q = open_spool(path, max_records=100, max_bytes=2000)
    assert ids(q) == [1, 2, 3, 4, 6, 7, 8, 9]
    assert q.corrupt == 1 and q.dropped == 1 and q.torn == 0
    check_consistent(q, path)  # the segment was rewritten without it
    q = open_spool(path, max_records=100, max_bytes=2000)
    assert q.corrupt == 0 and q.dropped == 1  # not counted twice


def test_corrupted_length_field_resynchronises_on_the_next_record(tmp_path: Path) -> None:
    path = tmp_path / "q"
    _three_segments(path)
    seg = seg_files(path)[1]
    _damage(seg, _record_offsets(seg)[0] + 3, lambda b: b ^ 0x07)  # record 4's length
    q = open_spool(path, max_records=100, max_bytes=2000)
    assert ids(q) == [1, 2, 3, 5, 6, 7, 8, 9]
    assert q.corrupt == 1 and q.dropped == 1


def test_corruption_spanning_records_counts_each_lost_id(tmp_path: Path) -> None:
    path = tmp_path / "q"
    _three_segments(path)
    seg = seg_files(path)[0]  # ids 1, 2, 3
    offsets = _record_offsets(seg)
    data = bytearray(seg.read_bytes())
    data[offsets[0] + 5 : offsets[2] - 2] = bytes(offsets[2] - 2 - offsets[0] - 5)
    seg.write_bytes(bytes(data))
    q = open_spool(path, max_records=100, max_bytes=2000)
    assert ids(q) == [3, 4, 5, 6, 7, 8, 9]
    assert q.corrupt == 1 and q.dropped == 2


def test_damage_at_the_end_of_an_older_segment_counts_until_the_next(tmp_path: Path) -> None:
    path = tmp_path / "q"
    _three_segments(path)
    seg = seg_files(path)[0]
    _damage(seg, seg.stat().st_size - 1)  # record 3, the last of segment 1
    q = open_spool(path, max_records=100, max_bytes=2000)
    assert ids(q) == [1, 2, 4, 5, 6, 7, 8, 9]
    assert q.corrupt == 1 and q.torn == 0 and q.dropped == 1


def test_corrupted_segment_header_loses_that_segment(tmp_path: Path) -> None:
    path = tmp_path / "q"
    _three_segments(path)
    _damage(seg_files(path)[1], 1)
    q = open_spool(path, max_records=100, max_bytes=2000)
    assert ids(q) == [1, 2, 3, 7, 8, 9]
    assert q.corrupt == 1 and q.dropped == 3
    assert [p.name for p in seg_files(path)] == ["00000001.seg", "00000007.seg"]


def test_corruption_in_acknowledged_records_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "q"
    q = _three_segments(path)
    q = open_spool(path, max_records=100, max_bytes=2000)
    q.ack(2)
    q.close()
    seg = seg_files(path)[0]
    _damage(seg, _record_offsets(seg)[0] + REC_HDR)  # record 1, acknowledged
    q = open_spool(path, max_records=100, max_bytes=2000)
    assert ids(q) == list(range(3, 10))
    assert q.corrupt == 1 and q.dropped == 0


def test_leftover_rewrites_are_finished_or_discarded(tmp_path: Path) -> None:
    path = tmp_path / "q"
    _three_segments(path)
    seg = seg_files(path)[1]
    # a rewrite cut before its rename: the tmp goes, the segment stays
    (path / "00000004.tmp").write_bytes(b"LSQ\x01\xa5")
    assert ids(open_spool(path, max_records=100, max_bytes=2000)) == list(range(1, 10))
    assert not (path / "00000004.tmp").exists()
    # FAT's rename removed the target, then the power went: the tmp is complete
    seg.rename(path / "00000004.tmp")
    assert ids(open_spool(path, max_records=100, max_bytes=2000)) == list(range(1, 10))
    assert seg.exists() and not (path / "00000004.tmp").exists()


def test_unknown_files_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "q"
    path.mkdir()
    (path / "notes.txt").write_text("hello")
    (path / "zzzzzzzz.seg").write_bytes(b"x")
    q = open_spool(path)
    q.append(b"a")
    assert (path / "notes.txt").exists() and (path / "zzzzzzzz.seg").exists()


# ---------------------------------------------------------------- failing writes


class PowerCut(BaseException):
    """The power went: nothing after this runs (not an OSError: no clean-up path)."""


class _CutFile:
    def __init__(self, fs: CrashFs, f: Any) -> None:
        self._fs = fs
        self._f = f

    def write(self, data: Any) -> int:
        data = bytes(data)
        n = self._fs.take(len(data))
        self._f.write(data[:n])
        if n < len(data):
            self._f.flush()
            raise PowerCut
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


class CrashFs(PosixFs):
    """A file system whose power goes after ``budget`` units of work.

    A written byte is a unit (the cut can land inside a write, which then
    leaves only its first bytes, like a FAT volume); a remove or a rename is
    one unit (they happen or not). ``fat_rename`` makes a rename two units:
    remove the target, then rename, as MicroPython does on FAT.
    """

    def __init__(self, budget: float = float("inf"), fat_rename: bool = False) -> None:
        self.budget = budget
        self.used = 0
        self.fat_rename = fat_rename
        self.log: list[str] = []  # removes and renames, by file name

    def take(self, n: int) -> int:
        k = int(min(n, max(self.budget - self.used, 0)))
        self.used += k
        return k

    def _step(self) -> None:
        if self.take(1) < 1:
            raise PowerCut

    def open(self, path: str, mode: str) -> Any:
        f = super().open(path, mode)
        return _CutFile(self, f) if ("a" in mode or "w" in mode) else f

    def remove(self, path: str) -> None:
        self._step()
        super().remove(path)
        self.log.append("remove " + Path(path).name)

    def rename(self, src: str, dst: str) -> None:
        self.log.append("rename " + Path(src).name)
        if self.fat_rename and Path(dst).exists():
            self._step()
            super().remove(dst)
        self._step()
        super().rename(src, dst)


class DiskFull(PosixFs):
    """Writes fail with an OSError (ENOSPC) after ``budget`` bytes, while ``full``."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.full = True

    def open(self, path: str, mode: str) -> Any:
        f = super().open(path, mode)
        if "a" not in mode and "w" not in mode:
            return f
        fs = self

        class Limited:
            def write(self, data: Any) -> int:
                data = bytes(data)
                if fs.full and len(data) > fs.budget:
                    f.write(data[: fs.budget])
                    fs.budget = 0
                    raise OSError(28, "No space left on device")
                fs.budget -= len(data)
                return int(f.write(data))

            def __getattr__(self, name: str) -> Any:
                return getattr(f, name)

        return Limited()


def test_a_failed_write_is_repaired_before_the_next_call(tmp_path: Path) -> None:
    path = tmp_path / "q"
    fs = DiskFull(budget=10**6)
    q = open_spool(path, fs=fs)
    for i in range(4):
        q.append(body(i, 30))
    fs.budget = 20  # the next append gets its header and part of its payload out
    with pytest.raises(OSError):
        q.append(body(4, 30))
    fs.full = False
    assert ids(q) == [1, 2, 3, 4] and q.torn == 1  # recovered from flash first
    assert q.append(body(5, 30)) == 5
    check_consistent(q, path)
    assert ids(open_spool(path)) == [1, 2, 3, 4, 5]


# Ops of the power-cut scenario: ("a", size, priority) or ("k", n) for ack_count(n).
CUT_CONFIG = {"max_bytes": 420, "max_records": 6, "segment_bytes": 150, "max_payload": 60}
CUT_OPS: list[tuple[Any, ...]] = [
    ("a", 30, 0),
    ("a", 50, 1),
    ("a", 20, 0),
    ("a", 45, 0),
    ("k", 1),
    ("a", 10, 0),
    ("a", 55, 0),
    ("a", 40, 1),
    ("a", 35, 0),  # count bound: drops
    ("a", 25, 0),
    ("a", 60, 0),  # byte bound: compaction, segment drops
    ("k", 2),
    ("a", 15, 1),
    ("a", 50, 0),
    ("a", 45, 0),
    ("k", 3),
    ("a", 30, 1),
    ("a", 30, 1),
    ("a", 60, 1),
    ("a", 20, 0),
    ("a", 60, 1),
    ("a", 60, 1),
    ("a", 60, 1),  # only alarms left: alarm segments dropped
    ("a", 60, 0),  # refused
    ("k", 4),
    ("k", 10),
    ("a", 5, 0),
]


def _apply(q: Spool, op: tuple[Any, ...], i: int) -> None:
    if op[0] == "a":
        q.append(body(i, op[1]), priority=op[2])
    else:
        q.ack_count(op[1])


@pytest.mark.parametrize("fat_rename", [False, True], ids=["atomic-rename", "fat-rename"])
def test_power_cut_at_every_write_of_a_scenario(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fat_rename: bool
) -> None:
    """Cut the power after every byte, remove and rename of every operation, then reboot.

    After the reboot the queue holds everything the interrupted operation had
    to keep (the appended record may be missing: its append never returned),
    nothing it did not have before, in order, and every record that went
    missing is in ``dropped``. A second cut during that recovery changes
    nothing.
    """
    monkeypatch.setattr(spool_module, "_HEAD_MAX", 64)  # the head log rewrite happens too
    ref = tmp_path / "ref"
    q = Spool(str(ref), **CUT_CONFIG)
    snapshots = []
    log = []
    for i, op in enumerate(CUT_OPS):
        before = (files(ref), queued(q), q.dropped)
        fs = CrashFs()
        q = Spool(str(ref), fs=fs, **CUT_CONFIG)  # a reboot before each op: same files
        _apply(q, op, i)
        after = (queued(q), q.dropped)
        snapshots.append((before, after, fs.used))
        log += fs.log
    # the scenario deletes and compacts segments, and rewrites the head log
    assert {e.split(" ")[0] + " " + e.split(".")[1] for e in log} == {
        "remove seg",
        "rename tmp",
    }
    assert "rename head.tmp" in log and q.dropped == 9
    assert sum(used for _, _, used in snapshots) > 1000
    run = 0
    for i, (op, ((snap, pre, pre_dropped), (post, post_dropped), units)) in enumerate(
        zip(CUT_OPS, snapshots, strict=True)
    ):
        for budget in range(units):
            run += 1
            path = tmp_path / f"r{run}"
            path.mkdir()
            for name, data in snap.items():
                (path / name).write_bytes(data)
            q = Spool(str(path), fs=CrashFs(budget, fat_rename), **CUT_CONFIG)
            with pytest.raises(PowerCut):
                _apply(q, op, i)
            if budget % 5 == 0:  # and a cut during the recovery that follows
                with pytest.raises(PowerCut):
                    Spool(str(path), fs=CrashFs(budget % 23, fat_rename), **CUT_CONFIG)
                    raise PowerCut  # the recovery needed fewer units: fine too
            q = Spool(str(path), **CUT_CONFIG)
            got = queued(q)
            new = {(q_id, p) for q_id, p in post} - set(pre)
            assert set(got) <= set(pre) | new, (i, budget)
            assert set(post) - new <= set(got), (i, budget)
            assert [r for r, _ in got] == sorted(r for r, _ in got)
            assert pre_dropped <= q.dropped <= post_dropped
            if op[0] == "a":
                assert len(set(pre) - set(got)) <= q.dropped - pre_dropped, (i, budget)
            check_consistent(q, path)
            shutil.rmtree(path)


# ---------------------------------------------------------------- model-based


class Model:
    """The spool's contract in memory: segments as lists of records, the same policy."""

    def __init__(self, max_bytes: int, max_records: int, segment_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.max_records = max_records
        self.segment_bytes = segment_bytes
        self.segs: list[list[list[Any]]] = []  # [[id, prio, framed, alive, payload], ...]
        self.next = 1
        self.dropped = 0

    def live(self) -> list[list[Any]]:
        return [r for s in self.segs for r in s if r[3]]

    def size(self, seg: list[list[Any]]) -> int:
        return SEG_HDR + sum(r[2] for r in seg)

    def bytes_used(self) -> int:
        return sum(self.size(s) for s in self.segs)

    def sweep(self) -> None:
        self.segs = [s for s in self.segs[:-1] if any(r[3] for r in s)] + self.segs[-1:]

    def kill(self, recs: list[list[Any]]) -> int:
        for r in recs:
            r[3] = False
        return len(recs)

    def append(self, payload: bytes, prio: int) -> int | None:
        framed = REC_HDR + len(payload)
        while len(self.live()) >= self.max_records:
            routine = [r for r in self.live() if not r[1]]
            if routine:
                self.dropped += self.kill(routine[:1])
            elif prio:
                self.dropped += self.kill(self.live()[:1])
            else:
                self.dropped += 1
                return None
            self.sweep()
        while True:
            tail = self.segs[-1] if self.segs else None
            need = framed
            if tail is None or self.size(tail) + framed > self.segment_bytes:
                need += SEG_HDR
            if self.bytes_used() + need <= self.max_bytes:
                break
            dead = [s for s in self.segs if not any(r[3] for r in s)]
            if dead:
                self.segs.remove(dead[0])
                continue
            holed = [s for s in self.segs if not all(r[3] for r in s)]
            if holed:
                holed[0][:] = [r for r in holed[0] if r[3]]
                continue
            with_routine = [s for s in self.segs if any(r[3] and not r[1] for r in s)]
            if with_routine:
                seg = with_routine[0]
                self.dropped += self.kill([r for r in seg if r[3] and not r[1]])
                seg[:] = [r for r in seg if r[3]]
                if not seg:
                    self.segs.remove(seg)
                continue
            if prio:
                seg = self.segs[0]
                self.dropped += self.kill([r for r in seg if r[3]])
                self.segs.remove(seg)
                continue
            self.dropped += 1
            return None
        rid = self.next
        self.next += 1
        tail = self.segs[-1] if self.segs else None
        new = tail is None or self.size(tail) + framed > self.segment_bytes
        if new:
            self.segs.append([])
        self.segs[-1].append([rid, prio, framed, True, payload])
        if new:
            self.sweep()
        return rid

    def ack(self, upto: int) -> int:
        n = self.kill([r for r in self.live() if r[0] <= upto])
        self.sweep()
        return n


class SpoolMachine(RuleBasedStateMachine):
    """Random appends, peeks, acks and reboots; the spool must match the model exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(self._tmp())
        self.count = 0

    @staticmethod
    def _tmp() -> str:
        import tempfile

        return tempfile.mkdtemp(prefix="spool-machine-")

    @initialize(
        segment_bytes=st.integers(80, 260),
        extra=st.integers(0, 500),
        max_records=st.integers(1, 12),
        ack_every=st.sampled_from([1, 1, 2]),
    )
    def setup(self, segment_bytes: int, extra: int, max_records: int, ack_every: int) -> None:
        self.config = {
            "segment_bytes": segment_bytes,
            "max_bytes": segment_bytes + extra,
            "max_records": max_records,
            "max_payload": segment_bytes - SEG_HDR - REC_HDR,
            "ack_every": ack_every,
        }
        self.path = self.root / "q"
        self.spool = Spool(str(self.path), **self.config)
        self.model = Model(self.config["max_bytes"], max_records, segment_bytes)

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @rule(size=st.integers(0, 300), prio=st.sampled_from([0, 0, 0, 1]))
    def append(self, size: int, prio: int) -> None:
        size = min(size, self.config["max_payload"])
        self.count += 1
        data = body(self.count, size)
        assert self.spool.append(data, priority=prio) == self.model.append(data, prio)

    @rule(n=st.integers(0, 15))
    def peek(self, n: int) -> None:
        want = [(r[0], r[4]) for r in self.model.live()[:n]]
        assert self.spool.peek(n) == want

    @precondition(lambda self: self.model.next > 1)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        upto = data.draw(st.integers(0, self.model.next - 1))
        assert self.spool.ack(upto) == self.model.ack(upto)

    @rule(n=st.integers(0, 5))
    def ack_count(self, n: int) -> None:
        live = self.model.live()
        upto = live[min(n, len(live)) - 1][0] if n and live else 0
        got = self.spool.ack_count(n)
        assert got == (self.model.ack(upto) if upto else 0)

    @rule(clean=st.booleans())
    def reboot(self, clean: bool) -> None:
        if clean or self.config["ack_every"] == 1:
            if clean:
                self.spool.close()
            self.spool = Spool(str(self.path), **self.config)
        else:  # ack_every > 1 and a power cut may resurrect acknowledged records
            self.spool.flush()
            self.spool = Spool(str(self.path), **self.config)

    @invariant()
    def same_as_model(self) -> None:
        if not hasattr(self, "spool"):
            return
        assert queued(self.spool) == [(r[0], r[4]) for r in self.model.live()]
        assert len(self.spool) == len(self.model.live())
        assert self.spool.bytes_used == self.model.bytes_used() <= self.config["max_bytes"]
        assert self.spool.dropped == self.model.dropped
        assert self.spool.next_id == self.model.next
        names = sorted(p.name for p in self.path.glob("*.seg"))
        assert len(names) == len(self.model.segs)
        sizes = sum(p.stat().st_size for p in self.path.glob("*.seg"))
        assert sizes == self.spool.bytes_used


TestSpoolMachine = SpoolMachine.TestCase
TestSpoolMachine.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
