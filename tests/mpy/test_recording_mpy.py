"""``edge/recording.py`` behaves the same, byte for byte, under MicroPython and CPython.

The scenario below (``SCENARIO``, in the subset MicroPython runs) is written
into MicroPython's in-memory file system as a module and run there on a
folder of that file system, and loaded as a module in CPython and run on a
real folder. Everything it returns must be identical: the encoded
``recording`` messages of every chunk, the store's counters and listings
after a reboot, the command acks, and the name and bytes of every file left.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge import protocol as p

from .harness import MicroPythonProcess, call_cpython, difference

pytestmark = pytest.mark.micropython

HELPER = "_lumeau_recording_scenario"

SCENARIO = r'''
import os

from edge import protocol
from edge.recording import RecordingStore, recording_message

T0 = 1767225600123456
CLOCK = {"src": "ntp", "unc_us": 850, "age_s": 412}
CONFIG = {"max_recordings": 3, "max_bytes": 6000, "chunk_samples": 120}


def samples(count, seed):
    """Deterministic s16le bytes (a linear congruential generator)."""
    out = bytearray(2 * count)
    x = seed
    for i in range(count):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        v = (x >> 8) & 0xFFFF
        out[2 * i] = v & 255
        out[2 * i + 1] = v >> 8
    return bytes(out)


def clean(dirpath):
    try:
        names = os.listdir(dirpath)
    except OSError:
        return
    for name in names:
        os.remove(dirpath + "/" + name)
    os.rmdir(dirpath)


def files(dirpath):
    out = []
    for name in sorted(os.listdir(dirpath)):
        with open(dirpath + "/" + name, "rb") as f:
            out.append([name, f.read()])
    return out


def encoded(store, rec, boot):
    out = []
    for fields in store.chunks(rec):
        msg = recording_message("leak-0107", boot, len(out), 1767225700000, fields)
        out.append(protocol.encode(msg))
    return out


def scenario(dirpath):
    trace = []
    s = RecordingStore(dirpath, "5f3a9c1e", **CONFIG)
    w = s.start(T0, 8000, CLOCK)
    raw = samples(1000, 7)
    for i in range(0, len(raw), 366):
        trace.append(w.write(raw[i : i + 366]))
    rec1 = w.finish()
    trace.append(["rec1", rec1, encoded(s, rec1, "5f3a9c1e")])
    w = s.start(T0 + 2000000, 16000, {"src": "gps", "unc_us": 1, "age_s": 0})
    w.write(samples(500, 9))
    rec2 = w.finish()
    for _ in range(4):
        fields = s.next_chunk()
        trace.append([fields["rec"], fields["part"], fields["n"]])
        s.sent(fields["rec"], fields["part"])
    trace.append(s.handle_command("get_recording", {"rec": rec2, "first": 1, "last": 2}))
    trace.append(s.handle_command("get_recording", {"rec": "nope"}))
    trace.append(s.handle_command("get_recording", {"rec": rec2, "last": 9}))
    # a third recording, cut by a power failure before it was finished
    w = s.start(T0 + 4000000, 8000, CLOCK)
    w.write(samples(333, 3))
    w._f.close()
    s2 = RecordingStore(dirpath, "a1b2c3d4e5f60718", **CONFIG)
    trace.append(["reboot", s2.recovered, s2.dropped, len(s2), s2.bytes_used, s2.pending()])
    trace.append(s2.list())
    for info in s2.list():
        trace.append(encoded(s2, info["rec"], "a1b2c3d4e5f60718"))
    trace.append(s2.next_chunk()["rec"])  # the requested recording goes first
    # a fourth recording: the count bound drops the oldest unrequested (rec1),
    # the byte bound the other unrequested (rec3), then the requested one
    # (rec2), then it is cut short
    w = s2.start(T0 + 6000000, 8000, CLOCK)
    trace.append([w.write(samples(2600, 5)), w.write(samples(500, 6)), w.full])
    rec4 = w.finish()
    trace.append([rec4, s2.dropped, [x["rec"] for x in s2.list()], s2.bytes_used])
    trace.append(s2.handle_command("release_recording", {"rec": rec2}))
    trace.append(s2.handle_command("release_recording", {"rec": rec2}))
    trace.append(encoded(s2, rec4, "a1b2c3d4e5f60718"))
    trace.append(files(dirpath))
    return trace


def full_chunks(dirpath):
    """A recording in chunks of the protocol's full size (2808 samples)."""
    s = RecordingStore(dirpath, "0c9d8e7f")
    w = s.start(T0, 48000, {"src": "rtc", "unc_us": 25000, "age_s": 86400})
    for i in range(6):
        w.write(samples(1000, 20 + i))
    rec = w.finish()
    return encoded(s, rec, "0c9d8e7f")
'''


def _load_cpython_helper() -> None:
    if HELPER not in sys.modules:
        module = types.ModuleType(HELPER)
        exec(compile(SCENARIO, HELPER + ".py", "exec"), module.__dict__)
        sys.modules[HELPER] = module


@pytest.fixture(scope="module")
def mpy(micropython: MicroPythonProcess) -> Iterator[MicroPythonProcess]:
    """The session's interpreter with the scenario on its path."""
    micropython.run(
        f"f = open('/lib/{HELPER}.py', 'w')\nf.write({SCENARIO!r})\nf.close()\nimport {HELPER}\n"
    )
    _load_cpython_helper()
    yield micropython


def test_recording_scenario_is_identical(mpy: MicroPythonProcess, tmp_path: Path) -> None:
    folder = "/rec-scenario"
    mpy.call(HELPER, "clean", folder)
    in_mpy = mpy.call(HELPER, "scenario", folder)
    in_cpy = call_cpython(HELPER, "scenario", str(tmp_path / "rec"))
    diff = difference(in_mpy, in_cpy)
    assert diff is None, f"MicroPython and CPython differ {diff}"

    # and the scenario did what it says (CPython's values, equal to MicroPython's)
    trace: list[Any] = in_cpy
    assert sum(trace[:6]) == 1000
    _, rec1, chunks1 = trace[6]
    assert rec1 == "5f3a9c1e-1"
    raw1 = call_cpython(HELPER, "samples", 1000, 7)
    got = b"".join(base64.b64decode(p.decode(c)["data"]) for c in chunks1)
    assert got == raw1
    assert p.decode(chunks1[-1])["sha256"] == hashlib.sha256(raw1).hexdigest()
    assert len(chunks1) == 9  # ceil(1000 / 120)
    ok, not_found, bad_args = trace[11:14]
    assert ok == {"ok": True, "result": {"recs": ["5f3a9c1e-2"], "parts": 2}}
    assert not_found["err"]["code"] == "not_found" and bad_args["err"]["code"] == "bad_args"
    reboot = trace[14]
    assert reboot[:4] == ["reboot", 1, 0, 3]  # the cut recording recovered, nothing lost
    assert [x["n"] for x in trace[15]] == [1000, 500, 333]
    # chunks read after the reboot are the chunks sent before it (other envelope)
    again = [p.decode(c) for c in trace[16]]
    assert [m["data"] for m in again] == [p.decode(c)["data"] for c in chunks1]
    assert trace[19] == "5f3a9c1e-2"
    assert trace[20] == [2600, 400, True]
    rec4, dropped, kept, used = trace[21]
    assert dropped == 3 and kept == [rec4] and used == 6000
    assert rec4 == "a1b2c3d4e5f60718-4"
    assert trace[22] == trace[23] == {"ok": True, "result": {"released": False}}
    assert len(trace[24]) == 25  # ceil(3000 / 120)
    names = [name for name, _ in trace[25]]
    assert names[-1] == "store.jsn" and all(n[:8] == "00000004" for n in names[:-1])


def test_full_size_chunks_are_identical(mpy: MicroPythonProcess, tmp_path: Path) -> None:
    folder = "/rec-full"
    mpy.call(HELPER, "clean", folder)
    in_mpy = mpy.call(HELPER, "full_chunks", folder)
    in_cpy = call_cpython(HELPER, "full_chunks", str(tmp_path / "full"))
    assert difference(in_mpy, in_cpy) is None
    assert [len(c) for c in in_cpy][:2] == [7735, 7735]  # full chunks, under 8 KiB
    assert [p.decode(c)["n"] for c in in_cpy] == [2808, 2808, 384]
