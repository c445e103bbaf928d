"""On-flash format of ``edge.spool``: segment files, records, the head log.

Part of ``edge.spool`` (import from there); runs unchanged on CPython and
MicroPython. The layout is described in ``docs/spool.md``::

    segment file  <8 hex digits>.seg   "LSQ" 0x01, then records
    record        magic 0xA5 | flags u8 | length u16 | id u32 | crc32 u32 | payload
    head log      head.log             16-byte entries: acked u32 | dropped_upto u32 |
                                       dropped u32 | crc32 u32

All integers are big-endian. A record's CRC-32 covers its first 8 header bytes
and the payload; a head entry's covers its first 12 bytes.
"""

import binascii
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from typing import Any, Iterator  # noqa: F401  (used in type comments)

SEG_MAGIC = b"LSQ\x01"  # "LSQ" + format version 1
SEG_HDR = 4
REC_MAGIC = 0xA5
REC_HDR = 12
FLAG_PRIORITY = 1
MAX_ID = 0xFFFFFFFF
MAX_LENGTH = 0xFFFF
HEAD_ENTRY = 16
HEAD_LOG = "head.log"
HEAD_TMP = "head.tmp"
SEG_SUFFIX = ".seg"
TMP_SUFFIX = ".tmp"

_MAGIC_BYTE = b"\xa5"


def crc32(data, crc=0):
    # type: (Any, int) -> int
    """CRC-32 (zlib's), as an unsigned int on both interpreters."""
    return binascii.crc32(data, crc) & 0xFFFFFFFF


def record_header(flags, rid, payload):
    # type: (int, int, bytes) -> bytes
    """The 12 header bytes that precede ``payload`` on flash."""
    head = struct.pack(">BBHI", REC_MAGIC, flags, len(payload), rid)
    return head + struct.pack(">I", crc32(payload, crc32(head)))


def segment_name(first_id):
    # type: (int) -> str
    """File name of the segment created for record ``first_id`` (FAT 8.3-safe)."""
    return "%08x" % first_id + SEG_SUFFIX


def parse_segment_name(name):
    # type: (str) -> int
    """The number in a segment (or segment tmp) file name, or -1."""
    if len(name) != 12 or name[8] != ".":
        return -1
    try:
        return int(name[:8], 16)
    except ValueError:
        return -1


def head_entry(acked, dropped_upto, dropped):
    # type: (int, int, int) -> bytes
    body = struct.pack(">III", acked, dropped_upto, dropped)
    return body + struct.pack(">I", crc32(body))


def parse_head(data):
    # type: (bytes) -> tuple[tuple[int, int, int] | None, bool]
    """(last valid (acked, dropped_upto, dropped) or None, whether the log is clean).

    A log is clean when every entry is whole and valid; otherwise the caller
    rewrites it, so later entries stay aligned.
    """
    state = None
    clean = len(data) % HEAD_ENTRY == 0
    off = 0
    while off + HEAD_ENTRY <= len(data):
        acked, upto, dropped, crc = struct.unpack_from(">IIII", data, off)
        if crc32(data[off : off + 12]) == crc:
            state = (acked, upto, dropped)
        else:
            clean = False
        off += HEAD_ENTRY
    return state, clean


def read_header(f, off):
    # type: (Any, int) -> tuple[int, int, int, int, int]
    """(magic, flags, length, id, crc) of the record at ``off`` (trusted data)."""
    f.seek(off)
    return struct.unpack(">BBHII", f.read(REC_HDR))


def _check_record(f, off, size, min_id, buf):
    # type: (Any, int, int, int, bytearray) -> tuple[int, int, int] | None
    """(id, flags, length) when a valid record starts at ``off``, else None."""
    if size - off < REC_HDR:
        return None
    f.seek(off)
    hdr = f.read(REC_HDR)
    if len(hdr) < REC_HDR:
        return None
    magic, flags, length, rid, crc = struct.unpack(">BBHII", hdr)
    if magic != REC_MAGIC or flags & ~FLAG_PRIORITY or rid <= min_id:
        return None
    if off + REC_HDR + length > size:
        return None
    c = crc32(hdr[:8])
    mv = memoryview(buf)
    left = length
    while left:
        n = f.readinto(mv[: min(left, len(buf))])
        if not n:
            return None
        c = crc32(mv[:n], c)
        left -= n
    if c != crc:
        return None
    return rid, flags, length


def _next_magic(f, start, size, buf):
    # type: (Any, int, int, bytearray) -> int
    """Offset of the next record magic byte at or after ``start``, or ``size``."""
    off = start
    while off < size:
        f.seek(off)
        n = f.readinto(buf)
        if not n:
            break
        i = bytes(buf[:n]).find(_MAGIC_BYTE)
        if i >= 0:
            return off + i
        off += n
    return size


def scan(f, size, min_id, buf):
    # type: (Any, int, int, bytearray) -> Iterator[tuple[bool, int, int, int, int]]
    """Check a whole segment file; yield its valid records and damaged spans in order.

    Yields ``(True, start, end, id, flags)`` for a record whose header is
    plausible, whose CRC matches and whose id is above every id before it
    (``min_id`` for the first), and ``(False, start, end, 0, 0)`` for a damaged
    span. After a damaged span the scan resynchronises on the next offset
    where a valid record starts. A file without the segment header is one
    damaged span. Every read is preceded by a seek, so the caller may use
    ``f`` between items.
    """
    if size < SEG_HDR:
        if size:
            yield False, 0, size, 0, 0
        return
    f.seek(0)
    if f.read(SEG_HDR) != SEG_MAGIC:
        yield False, 0, size, 0, 0
        return
    off = SEG_HDR
    bad = -1
    last = min_id
    while off < size:
        rec = _check_record(f, off, size, last, buf)
        if rec is None:
            if bad < 0:
                bad = off
            off = _next_magic(f, off + 1, size, buf)
            continue
        if bad >= 0:
            yield False, bad, off, 0, 0
            bad = -1
        rid, flags, length = rec
        end = off + REC_HDR + length
        yield True, off, end, rid, flags
        last = rid
        off = end
    if bad >= 0:
        yield False, bad, size, 0, 0
