"""Spool scenarios that run unchanged on MicroPython and CPython (a test helper).

``test_spool_mpy.py`` copies this file into MicroPython's file system as
``/lib/_lumeau_spool_scenario.py`` and calls its functions there and in
CPython, each on a folder of its own, then compares the results: every value
a step returns, and at the end the name and bytes of every file the spool
left. Written in the subset MicroPython runs: no typing, no f-strings, no
``os.path``; files are cut and damaged with ``open`` only (MicroPython has no
``truncate``).
"""

import os

from edge.spool import Spool

CONFIG = {"max_bytes": 700, "max_records": 9, "segment_bytes": 180, "max_payload": 64}


def payload(i, size):
    """Deterministic bytes: a short JSON-looking prefix, padded to ``size``."""
    head = b'{"seq":' + str(i).encode() + b"}"
    if size <= len(head):
        return head[:size]
    return head + b"." * (size - len(head))


def _join(dirpath, name):
    return dirpath + "/" + name


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def files(dirpath):
    """[(name, bytes)] of the folder, sorted by name."""
    out = []
    for name in sorted(os.listdir(dirpath)):
        out.append((name, _read(_join(dirpath, name))))
    return out


def clean(dirpath):
    """Remove the folder and its files if it exists."""
    try:
        names = os.listdir(dirpath)
    except OSError:
        return
    for name in names:
        os.remove(_join(dirpath, name))
    os.rmdir(dirpath)


def _restore(dirpath, snapshot):
    for name in os.listdir(dirpath):
        os.remove(_join(dirpath, name))
    for name, data in snapshot:
        _write(_join(dirpath, name), data)


def _segments(dirpath):
    return [n for n in sorted(os.listdir(dirpath)) if n.endswith(".seg")]


def _state(q):
    return [len(q), q.bytes_used, q.dropped, q.corrupt, q.torn, q.next_id, q.peek(100)]


def _open(dirpath):
    return Spool(
        dirpath,
        max_bytes=CONFIG["max_bytes"],
        max_records=CONFIG["max_records"],
        segment_bytes=CONFIG["segment_bytes"],
        max_payload=CONFIG["max_payload"],
    )


def scenario(dirpath):
    """Appends, peeks, acks, the full policy, reboots, a torn write, a corrupted record.

    Returns the trace of every result and the files left behind.
    """
    trace = []
    q = _open(dirpath)
    for i in range(14):
        prio = 1 if i % 5 == 2 else 0
        rid = q.append(payload(i, 10 + (i * 7) % 40), prio)
        trace.append(["append", i, rid, len(q), q.bytes_used, q.dropped])
    trace.append(["peek", q.peek(4)])
    first = q.peek(2)
    trace.append(["ack", q.ack(first[1][0]), _state(q)])
    trace.append(["ack_count", q.ack_count(2), _state(q)])
    trace.append(["ack_again", q.ack(first[0][0]), len(q)])

    # reboot without close (a power cut between operations)
    q = _open(dirpath)
    trace.append(["reboot", _state(q)])

    # a torn append: the last record of the last segment loses its end
    rid = q.append(payload(100, 40), 0)
    seg = _join(dirpath, _segments(dirpath)[-1])
    data = _read(seg)
    _write(seg, data[: len(data) - 17])
    q = _open(dirpath)
    trace.append(["torn", rid, _state(q), files(dirpath)])

    # a bit flip inside a record in the middle of the oldest segment
    seg = _join(dirpath, _segments(dirpath)[0])
    data = bytearray(_read(seg))
    data[len(data) // 2] ^= 0x40
    _write(seg, bytes(data))
    q = _open(dirpath)
    trace.append(["corrupt", _state(q)])
    q = _open(dirpath)  # repaired: nothing is counted twice
    trace.append(["corrupt_again", _state(q)])

    # more traffic with alarms: byte bound, compaction, segment deletion
    for i in range(200, 230):
        prio = 1 if i % 4 == 0 else 0
        rid = q.append(payload(i, 20 + (i * 13) % 45), prio)
        trace.append(["append", i, rid, len(q), q.bytes_used, q.dropped])
        if i % 6 == 5:
            got = q.peek(3)
            trace.append(["ack", q.ack(got[-1][0])])
    q.close()
    q = _open(dirpath)
    trace.append(["reopen", _state(q)])
    while len(q):
        got = q.peek(4)
        trace.append(["drain", [r[0] for r in got], q.ack(got[-1][0])])
    trace.append(["empty", _state(q)])
    rid = q.append(payload(999, 30), 1)
    q.close()
    trace.append(["after", rid, files(dirpath)])
    return trace


def torn_sweep(dirpath):
    """Cut the last segment file at every offset; reopen each time.

    Returns, per cut: the cut, how many records are queued after recovery,
    ``torn``, their ids, and the files after one more append.
    """
    q = _open(dirpath)
    for i in range(6):
        q.append(payload(i, 12 + 5 * i), i % 2)
    q.ack(2)
    q.close()
    seg = _join(dirpath, _segments(dirpath)[-1])
    whole = _read(seg)
    snapshot = files(dirpath)
    out = []
    for cut in range(len(whole) + 1):
        _restore(dirpath, snapshot)
        _write(seg, whole[:cut])
        q = _open(dirpath)
        ids = [r[0] for r in q.peek(100)]
        q.append(payload(50, 9), 0)
        q.close()
        out.append([cut, len(ids), q.torn, ids, files(dirpath)])
    return out


# -- heap measurement (MicroPython). In the WebAssembly port, gc.collect()
# inside a running job frees almost nothing (the job's own frames still
# reach its garbage), so the test calls these one job at a time and compares
# gc.mem_alloc() with the Spool object held here and without it.

_held = []


def heap_fill(dirpath, count, size):
    """Hold a Spool with ``count`` queued records of ``size`` bytes; return bytes_used."""
    data = payload(0, size)
    q = Spool(dirpath, max_bytes=1 << 20, max_records=count + 1)
    for _ in range(count):
        q.append(data)
    _held.append(q)
    return q.bytes_used


def heap_reopen(dirpath, count):
    """Hold a new Spool recovered from the folder; return its length."""
    q = Spool(dirpath, max_bytes=1 << 20, max_records=count + 1)
    _held.append(q)
    return len(q)


def heap_release():
    """Close and let go of the held Spool objects."""
    while _held:
        _held.pop().close()


def heap_alloc():
    """Bytes allocated on the GC heap after a collection."""
    import gc

    gc.collect()
    return gc.mem_alloc()
