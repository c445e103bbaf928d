"""edge/recording.py: raw recordings to flash, kept until released, cut into chunks."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from array import array
from pathlib import Path
from typing import Any

import pytest

from edge import protocol as p
from edge import recording as r
from edge.recording import RecordingError, RecordingStore, recording_message
from edge.spool import PosixFs

BOOT = "5f3a9c1e"
T0 = 1_767_225_600_123_456  # 2026-01-01T00:00:00.123456Z
CLOCK = {"src": "gps", "unc_us": 2, "age_s": 1}


def samples(count: int, seed: int = 1) -> bytes:
    rnd = random.Random(seed)
    return array("h", [rnd.randint(-32768, 32767) for _ in range(count)]).tobytes()


def record(store: RecordingStore, raw: bytes, block: int = 1000, t0: int = T0) -> str:
    w = store.start(t0, 8000, CLOCK)
    for i in range(0, len(raw), block):
        w.write(raw[i : i + block])
    rec = w.finish()
    assert rec is not None
    return rec


def reassemble(chunks: list[dict[str, Any]], dev: str = "leak-0107") -> tuple[bytes, str | None]:
    """Through the protocol and back: encoded, decoded, concatenated."""
    out = b""
    digest = None
    for seq, fields in enumerate(chunks):
        data = p.encode(recording_message(dev, BOOT, seq, 1_767_225_700_000, fields))
        assert len(data) <= p.MAX_DEVICE_PAYLOAD
        msg = p.decode(data, p.uplink_topic(dev, "recording"))
        assert msg["part"] == seq and msg["parts"] == len(chunks)
        out += base64.b64decode(msg["data"], validate=True)
        digest = msg.get("sha256", digest)
    return out, digest


@pytest.fixture
def folder(tmp_path: Path) -> str:
    return str(tmp_path / "rec")


# ---------------------------------------------------------------- round trip


def test_samples_to_chunks_and_back_equal_the_original(folder: str) -> None:
    store = RecordingStore(folder, BOOT, chunk_samples=1000)
    raw = samples(7770)
    rec = record(store, raw, block=1554)  # blocks that do not line up with chunks
    assert rec == BOOT + "-1"
    chunks = list(store.chunks(rec))
    assert [c["n"] for c in chunks] == [1000] * 7 + [770]
    assert all("sha256" not in c for c in chunks[:-1])
    got, digest = reassemble(chunks)
    assert got == raw
    assert digest == hashlib.sha256(raw).hexdigest()
    only = chunks[-1]
    assert (only["t0_us"], only["fs"], only["fmt"], only["clock"]) == (T0, 8000, "s16le", CLOCK)


def test_full_size_chunks_fit_the_protocol(folder: str) -> None:
    store = RecordingStore(folder, BOOT)  # chunk_samples = MAX_REC_SAMPLES
    raw = samples(3 * p.MAX_REC_SAMPLES + 5)
    rec = record(store, raw, block=4096)
    chunks = list(store.chunks(rec))
    assert [c["n"] for c in chunks] == [p.MAX_REC_SAMPLES] * 3 + [5]
    assert reassemble(chunks)[0] == raw


def test_arrays_bytes_and_memoryviews_are_accepted(folder: str) -> None:
    store = RecordingStore(folder, BOOT, chunk_samples=64)
    w = store.start(T0, 16000, CLOCK)
    assert w.write(array("h", [1, -2, 3])) == 3
    assert w.write(memoryview(array("h", [4, 5]).tobytes())) == 2
    assert w.write(bytearray(b"\x06\x00")) == 1
    with pytest.raises(ValueError):
        w.write(b"\x07")  # half a sample
    rec = w.finish()
    assert rec is not None
    assert reassemble(list(store.chunks(rec)))[0] == array("h", [1, -2, 3, 4, 5, 6]).tobytes()


def test_a_part_range_and_single_parts(folder: str) -> None:
    store = RecordingStore(folder, BOOT, chunk_samples=100)
    raw = samples(1000)
    rec = record(store, raw)
    some = list(store.chunks(rec, 3, 5))
    assert [c["part"] for c in some] == [3, 4, 5]
    assert base64.b64decode(some[0]["data"]) == raw[600:800]
    assert store.chunk(rec, 9)["sha256"] == hashlib.sha256(raw).hexdigest()
    for bad in (-1, 10):
        with pytest.raises(RecordingError) as info:
            store.chunk(rec, bad)
        assert info.value.code == "bad_args"
    with pytest.raises(RecordingError) as info:
        store.chunk("nope", 0)
    assert info.value.code == "not_found"


class CountingFs(PosixFs):
    """Records the largest read and write, to show nothing holds a whole recording."""

    def __init__(self) -> None:
        self.largest_read = 0
        self.largest_write = 0

    def open(self, path: str, mode: str) -> object:
        f = open(path, mode)  # noqa: SIM115 (returned to the store, which closes it)
        fs = self

        class Watched:
            def read(self, n: int = -1) -> bytes:
                data: bytes = f.read(n)
                fs.largest_read = max(fs.largest_read, len(data))
                return data

            def write(self, data: bytes) -> int:
                fs.largest_write = max(fs.largest_write, len(data))
                return f.write(data)

            def __getattr__(self, name: str) -> Any:
                return getattr(f, name)

        return Watched()


def test_never_more_than_a_block_or_a_chunk_in_ram(folder: str) -> None:
    fs = CountingFs()
    store = RecordingStore(folder, BOOT, chunk_samples=500, fs=fs)
    w = store.start(T0, 8000, CLOCK)
    raw = samples(20000)
    for i in range(0, len(raw), 512):
        w.write(raw[i : i + 512])
    rec = w.finish()
    assert rec is not None
    assert fs.largest_write == 512  # the caller's blocks, never accumulated
    for _ in store.chunks(rec):
        pass
    assert fs.largest_read == 1000  # one chunk (500 samples)
    # recovery re-hashes an unfinished file block by block
    w2 = store.start(T0, 8000, CLOCK)
    w2.write(raw)
    w2._f.close()  # a power cut: never finished
    fs.largest_read = 0
    again = RecordingStore(folder, "a1b2c3d4", chunk_samples=500, fs=fs)
    assert again.recovered == 1
    assert 0 < fs.largest_read <= 512


# ---------------------------------------------------------------- reboot


def test_a_reboot_keeps_unreleased_recordings(folder: str) -> None:
    store = RecordingStore(folder, BOOT, chunk_samples=300)
    first, second = samples(1000, seed=1), samples(650, seed=2)
    rec1 = record(store, first)
    rec2 = record(store, second, t0=T0 + 5_000_000)
    before = [list(store.chunks(rec)) for rec in (rec1, rec2)]

    after = RecordingStore(folder, "a1b2c3d4", chunk_samples=100)  # a new boot, other setting
    assert [x["rec"] for x in after.list()] == [rec1, rec2]
    # the same chunks, byte for byte: a recording keeps the chunk size it was made with
    assert [list(after.chunks(rec)) for rec in (rec1, rec2)] == before
    assert reassemble(before[1])[0] == second
    assert after.release(rec1) is True
    assert after.release(rec1) is False

    third = RecordingStore(folder, "0badcafe")
    assert [x["rec"] for x in third.list()] == [rec2]
    rec3 = record(third, samples(10))
    assert rec3 == "0badcafe-3"  # numbers go on: ids never repeat in this folder
    assert third.bytes_used == 2 * (650 + 10)


def test_an_unfinished_recording_is_closed_after_a_reboot(folder: str) -> None:
    store = RecordingStore(folder, BOOT, chunk_samples=400)
    raw = samples(1000)
    w = store.start(T0, 8000, CLOCK)
    w.write(raw)
    w._f.write(b"\x01")  # half a sample reached flash before the cut
    w._f.close()
    after = RecordingStore(folder, "a1b2c3d4", chunk_samples=400)
    assert after.recovered == 1 and after.dropped == 0
    [info] = after.list()
    assert info["n"] == 1000 and info["pending"] == 3
    got, digest = reassemble(list(after.chunks(info["rec"])))
    assert got == raw and digest == hashlib.sha256(raw).hexdigest()
    assert RecordingStore(folder, "0badcafe").recovered == 1  # persisted, not counted again


def test_a_recording_cut_before_its_first_sample_disappears(folder: str) -> None:
    store = RecordingStore(folder, BOOT)
    store.start(T0, 8000, CLOCK)._f.close()
    after = RecordingStore(folder, "a1b2c3d4")
    assert len(after) == 0 and after.recovered == 0 and after.dropped == 0
    assert sorted(Path(folder).iterdir()) == [Path(folder) / "store.jsn"]


def test_interrupted_metadata_rewrites_and_orphans(folder: str) -> None:
    store = RecordingStore(folder, BOOT, chunk_samples=100)
    rec = record(store, samples(500))
    d = Path(folder)
    meta = (d / "00000001.met").read_bytes()
    # a rewrite that never reached its rename: the old metadata stays
    (d / "00000001.tmp").write_bytes(b'{"torn')
    # a deletion cut between the metadata and the samples: an orphan
    (d / "00000007.raw").write_bytes(b"\x00" * 10)
    after = RecordingStore(folder, "a1b2c3d4")
    assert [x["rec"] for x in after.list()] == [rec]
    assert sorted(x.name for x in d.iterdir()) == ["00000001.met", "00000001.raw", "store.jsn"]
    # a rewrite cut after its tmp was synced and the target removed (FAT): finished
    (d / "00000001.met").rename(d / "00000001.tmp")
    again = RecordingStore(folder, "0badcafe")
    assert [x["rec"] for x in again.list()] == [rec]
    assert (d / "00000001.met").read_bytes() == meta


def test_damaged_metadata_loses_that_recording_and_counts_it(folder: str) -> None:
    store = RecordingStore(folder, BOOT)
    record(store, samples(10))
    rec2 = record(store, samples(10))
    (Path(folder) / "00000001.met").write_bytes(b"\xff\x00garbage")
    after = RecordingStore(folder, "a1b2c3d4")
    assert [x["rec"] for x in after.list()] == [rec2]
    assert after.dropped == 1


# ---------------------------------------------------------------- bounds


def test_the_count_bound_drops_the_oldest_unrequested_first(folder: str) -> None:
    store = RecordingStore(folder, BOOT, max_recordings=3, chunk_samples=100)
    recs = [record(store, samples(200, seed=i)) for i in range(3)]
    store.request(recs[0])  # the backend asked for the oldest: keep it
    rec4 = record(store, samples(200, seed=4))
    assert [x["rec"] for x in store.list()] == [recs[0], recs[2], rec4]
    assert store.dropped == 1
    store.request()  # everything requested: plain oldest first
    record(store, samples(200, seed=5))
    assert [x["rec"] for x in store.list()][:1] == [recs[2]]
    assert store.dropped == 2
    assert RecordingStore(folder, "a1b2c3d4", max_recordings=3).dropped == 2  # persisted


def test_the_byte_bound_drops_old_recordings_then_cuts_the_new_one_short(folder: str) -> None:
    store = RecordingStore(folder, BOOT, max_bytes=3000, chunk_samples=100)
    old = record(store, samples(600))  # 1200 bytes
    w = store.start(T0, 8000, CLOCK)
    assert w.write(samples(1000)) == 1000  # 2000 bytes: 3200 > 3000, the old one goes
    assert [x["rec"] for x in store.list()] == [] and store.dropped == 1
    assert w.write(samples(1000)) == 500  # only 1000 bytes left
    assert w.full and w.write(samples(10)) == 0
    rec = w.finish()
    assert rec != old and store.bytes_used == 3000
    assert store.list()[0]["n"] == 1500


def test_a_recording_stops_at_the_most_parts_the_protocol_carries(folder: str) -> None:
    store = RecordingStore(folder, BOOT, max_bytes=10**9, chunk_samples=1)
    w = store.start(T0, 8000, CLOCK)
    assert w.write(bytes(2 * (p.MAX_REC_PARTS + 7))) == p.MAX_REC_PARTS
    assert w.full
    rec = w.finish()
    assert rec is not None
    assert store.chunk(rec, p.MAX_REC_PARTS - 1)["parts"] == p.MAX_REC_PARTS


# ---------------------------------------------------------------- sending


def test_the_send_cursor_survives_a_reboot(folder: str) -> None:
    store = RecordingStore(folder, BOOT, chunk_samples=100)
    rec1 = record(store, samples(450, seed=1))
    rec2 = record(store, samples(250, seed=2))
    assert store.pending() == 8
    queued = []
    for _ in range(6):
        fields = store.next_chunk()
        assert fields is not None
        queued.append((fields["rec"], fields["part"]))
        store.sent(fields["rec"], fields["part"])
    assert queued == [(rec1, i) for i in range(5)] + [(rec2, 0)]
    after = RecordingStore(folder, "a1b2c3d4")
    assert after.pending() == 2
    assert [after.next_chunk()["part"] for _ in range(1)] == [1]  # type: ignore[index]
    # the backend asks again for parts 1..2 of rec1: those go first
    assert after.request(rec1, 1, 2) == ([rec1], 2)
    fields = after.next_chunk()
    assert fields is not None and (fields["rec"], fields["part"]) == (rec1, 1)
    after.sent(rec1, 1)
    after.sent(rec1, 2)
    after.sent(rec2, 1)
    after.sent(rec2, 2)
    after.sent(rec2, 2)  # twice: harmless
    assert after.pending() == 0 and after.next_chunk() is None


def test_get_recording_and_release_recording_commands(folder: str) -> None:
    store = RecordingStore(folder, BOOT, chunk_samples=100)
    rec1 = record(store, samples(300, seed=1), t0=T0)
    rec2 = record(store, samples(300, seed=2), t0=T0 + 60_000_000)
    for rec in (rec1, rec2):
        for part in range(3):
            store.sent(rec, part)
    h = store.handle_command
    assert h("set_level", {}) is None
    assert h("get_recording", {"rec": rec2, "first": 2}) == {
        "ok": True,
        "result": {"recs": [rec2], "parts": 1},
    }
    since = (T0 + 1_000_000) // 1000
    assert h("get_recording", {"since": since}) == {
        "ok": True,
        "result": {"recs": [rec2], "parts": 3},
    }
    assert h("get_recording", {}) == {"ok": True, "result": {"recs": [rec1, rec2], "parts": 6}}
    assert store.pending() == 6
    errors: list[tuple[dict[str, Any], str]] = [
        ({"rec": "nope"}, "not_found"),
        ({"rec": rec1, "since": since}, "not_found"),
        ({"rec": rec1, "first": 2, "last": 1}, "bad_args"),
        ({"rec": rec1, "last": 3}, "bad_args"),
        ({"rec": rec1, "first": -1}, "bad_args"),
        ({"rec": rec1, "first": True}, "bad_args"),
        ({"first": 1}, "bad_args"),
        ({"rec": 7}, "bad_args"),
        ({"recs": [rec1]}, "bad_args"),
        ({"since": 1.5}, "bad_args"),
    ]
    for args, code in errors:
        ack = h("get_recording", args)
        assert ack is not None and not ack["ok"] and ack["err"]["code"] == code, (args, ack)
    assert h("release_recording", {"rec": rec1}) == {"ok": True, "result": {"released": True}}
    assert h("release_recording", {"rec": rec1}) == {"ok": True, "result": {"released": False}}
    ack = h("release_recording", {})
    assert ack is not None and ack["err"]["code"] == "bad_args"
    # every answer is a valid protocol ack
    for args, _ in errors:
        fields = h("get_recording", args)
        assert fields is not None
        msg = {"v": 1, "kind": "ack", "dev": "leak-1", "boot": BOOT, "seq": 1, "cmd": "c-1"}
        p.validate({**msg, "ts": 1_767_225_600_000, **fields})


def test_the_ack_lists_at_most_32_recordings(folder: str) -> None:
    store = RecordingStore(folder, BOOT, max_recordings=40)
    for i in range(35):
        record(store, samples(1, seed=i))
    ack = store.handle_command("get_recording", {})
    assert ack is not None and len(ack["result"]["recs"]) == 32 and ack["result"]["parts"] == 35


# ---------------------------------------------------------------- arguments and files


def test_start_checks_what_the_protocol_checks(folder: str) -> None:
    store = RecordingStore(folder, BOOT)
    with pytest.raises(p.ProtocolError) as info:
        store.start(T0 // 1000, 8000, CLOCK)  # milliseconds by mistake
    assert info.value.field == "t0_us"
    with pytest.raises(p.ProtocolError):
        store.start(T0, 50, CLOCK)
    with pytest.raises(p.ProtocolError):
        store.start(T0, 8000, CLOCK, fmt="f32le")
    with pytest.raises(ValueError):
        store.start(T0, 8000, {"src": "wifi", "unc_us": 1, "age_s": 1})
    w = store.start(T0, 8000, {"src": "rtc", "unc_us": 10**15, "age_s": 2**40})
    with pytest.raises(ValueError):
        store.start(T0, 8000, CLOCK)  # one at a time
    w.write(samples(3))
    rec = w.finish()
    assert rec is not None
    clock = store.chunk(rec, 0)["clock"]
    assert clock == {"src": "rtc", "unc_us": p.MAX_CLOCK_UNC_US, "age_s": p.MAX_CLOCK_AGE_S}
    w = store.start(T0, 8000, CLOCK)
    assert w.finish() is None  # nothing recorded, nothing kept
    w = store.start(T0, 8000, CLOCK)
    w.write(samples(3))
    w.abort()
    assert [x["rec"] for x in store.list()] == [rec]
    with pytest.raises(ValueError):
        RecordingStore(folder, BOOT, chunk_samples=p.MAX_REC_SAMPLES + 1)


def test_files_are_small_and_named_8_3(folder: str) -> None:
    store = RecordingStore(folder, BOOT, chunk_samples=100)
    rec = record(store, samples(250))
    names = sorted(x.name for x in Path(folder).iterdir())
    assert names == ["00000001.met", "00000001.raw", "store.jsn"]
    meta = json.loads((Path(folder) / "00000001.met").read_bytes())
    assert meta["rec"] == rec and meta["todo"] == [[0, 2]] and meta["cs"] == 100
    assert (Path(folder) / "00000001.raw").stat().st_size == 500
    assert json.loads((Path(folder) / "store.jsn").read_bytes()) == {
        "dropped": 0,
        "next": 2,
        "recovered": 0,
    }


def test_range_helpers() -> None:
    assert r.add_range([], 3, 5) == [[3, 5]]
    assert r.add_range([[0, 1], [7, 9]], 2, 6) == [[0, 9]]
    assert r.add_range([[0, 1], [7, 9]], 4, 4) == [[0, 1], [4, 4], [7, 9]]
    assert r.remove_part([[0, 9]], 4) == [[0, 3], [5, 9]]
    assert r.remove_part([[0, 0], [2, 3]], 0) == [[2, 3]]
    assert r.range_size([[0, 3], [5, 9]]) == 9
