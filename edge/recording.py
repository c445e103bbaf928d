"""Raw acoustic recordings on the sensor: record to flash, keep until released, chunk.

Leak location by cross-correlation needs the raw samples of two sensors on
the same pipe, with their start times to the microsecond and the quality of
the clock that stamped them. This module is the sensor side: it writes a
recording block by block to flash (one file of samples plus a small metadata
file per recording), keeps it until the backend releases it, and cuts it
into ``recording`` messages (docs/protocol.md) read back from flash one
chunk at a time. The whole recording is never in RAM.

Runs unchanged on MicroPython 1.27 and CPython 3.11 (the simulators)::

    >>> store = RecordingStore("/data/rec", boot, max_recordings=4,
    ...                        max_bytes=1024 * 1024)
    >>> w = store.start(t0_us, 8000, {"src": "ntp", "unc_us": 900, "age_s": 300})
    >>> while recording:
    ...     i2s.readinto(buf)
    ...     w.write(buf)                      # samples accepted (fewer when full)
    >>> rec = w.finish()                      # "<boot>-<n>", queued for sending
    >>> fields = store.next_chunk()           # what to put in the spool next, or None
    >>> uplink.queue("recording", fields)     # the firmware adds v/kind/dev/boot/seq/ts
    >>> store.sent(fields["rec"], fields["part"])
    >>> store.handle_command("release_recording", {"rec": rec})  # the backend has it

The firmware wiring, the file formats and the full policy are described in
``docs/recordings.md``. Nothing is read or written at import; the folder is
created and recovered by the constructor.
"""

import binascii
import hashlib
import json

from ._spool_fs import PosixFs
from .canonjson import canonical_json
from .protocol import (
    CLOCK_SOURCES,
    MAX_CLOCK_AGE_S,
    MAX_CLOCK_UNC_US,
    MAX_REC_PARTS,
    MAX_REC_SAMPLES,
    REC_FORMATS,
    VERSION,
    validate,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from typing import Any, Iterator  # noqa: F401  (used in type comments)

STORE_FILE = "store.jsn"
STORE_TMP = "store.tmp"
META_SUFFIX = ".met"
RAW_SUFFIX = ".raw"
TMP_SUFFIX = ".tmp"

DEFAULT_MAX_RECORDINGS = 8
DEFAULT_MAX_BYTES = 1024 * 1024  # samples on flash, all recordings together
MAX_RESULT_RECS = 32  # recording ids listed in a get_recording ack
_BLOCK = 512  # bytes read at a time when hashing a file again

COMMANDS = ("get_recording", "release_recording")


class RecordingError(ValueError):
    """A request the store cannot satisfy; ``code`` is the ack's err code."""

    def __init__(self, code, reason):
        # type: (str, str) -> None
        super().__init__(code + ": " + reason)
        self.code = code
        self.reason = reason


def _hex(digest):
    # type: (bytes) -> str
    return binascii.hexlify(digest).decode()


def _b64(data):
    # type: (bytes) -> str
    out = binascii.b2a_base64(data)
    if out[-1:] == b"\n":
        out = out[:-1]
    return bytes(out).decode()


def _parts(n, cs):
    # type: (int, int) -> int
    return (n + cs - 1) // cs


# ---------------------------------------------------------------- part ranges


def add_range(ranges, first, last):
    # type: (list[list[int]], int, int) -> list[list[int]]
    """Sorted, disjoint, inclusive ranges with [first, last] merged in."""
    out = []  # type: list[list[int]]
    for a, b in ranges:
        if b + 1 < first or a > last + 1:
            out.append([a, b])
        else:
            first = a if a < first else first
            last = b if b > last else last
    out.append([first, last])
    out.sort()
    return out


def remove_part(ranges, part):
    # type: (list[list[int]], int) -> list[list[int]]
    """The ranges without ``part``."""
    out = []  # type: list[list[int]]
    for a, b in ranges:
        if part < a or part > b:
            out.append([a, b])
            continue
        if a < part:
            out.append([a, part - 1])
        if part < b:
            out.append([part + 1, b])
    return out


def range_size(ranges):
    # type: (list[list[int]]) -> int
    total = 0
    for a, b in ranges:
        total += b - a + 1
    return total


def recording_message(dev, boot, seq, ts, fields):
    # type: (str, str, int, int, dict[str, Any]) -> dict[str, Any]
    """The full ``recording`` message of a chunk's fields (validated)."""
    msg = {"v": VERSION, "kind": "recording", "dev": dev, "boot": boot, "seq": seq, "ts": ts}
    msg.update(fields)
    return validate(msg)


# ---------------------------------------------------------------- the writer


class Recorder:
    """One recording being written; made by ``RecordingStore.start``.

    Attributes
    ----------
    rec : str
        The recording id.
    n : int
        Samples written so far.
    full : bool
        True once a ``write`` was cut short (store full, or the largest
        recording the protocol can carry: ``MAX_REC_PARTS`` chunks).
    """

    def __init__(self, store, meta, f):
        # type: (RecordingStore, dict[str, Any], Any) -> None
        self._store = store
        self._meta = meta
        self._f = f
        self._hash = hashlib.sha256()
        self._width = REC_FORMATS[meta["fmt"]]
        self._limit = MAX_REC_PARTS * meta["cs"]
        self.rec = meta["rec"]  # type: str
        self.n = 0
        self.full = False

    def write(self, samples):
        # type: (Any) -> int
        """Append samples (bytes-like, little-endian s16: bytes, bytearray,
        ``array("h")`` on a little-endian board). Returns how many were
        accepted: fewer than given once the store is full (``full`` is set)."""
        if self._f is None:
            raise ValueError("recording " + self.rec + " is finished")
        data = samples if isinstance(samples, (bytes, bytearray)) else bytes(samples)
        if len(data) % self._width:
            raise ValueError("samples must be whole " + str(self._width) + "-byte samples")
        count = len(data) // self._width
        if self.n + count > self._limit:
            count = self._limit - self.n
            self.full = True
        room = self._store._room(count * self._width) // self._width
        if room < count:
            count = room
            self.full = True
        if count <= 0:
            return 0
        if count * self._width != len(data):
            data = data[: count * self._width]
        self._f.write(data)
        self._hash.update(data)
        self.n += count
        self._store._bytes += count * self._width
        return count

    def finish(self):
        # type: () -> str | None
        """Close the recording and queue all its parts for sending; its id,
        or None when it holds no sample (it is deleted)."""
        if self._f is None:
            raise ValueError("recording " + self.rec + " is finished")
        store = self._store
        store._fs.sync(self._f)
        self._f.close()
        self._f = None
        store._writer = None
        if self.n == 0:
            store._delete(self._meta)
            return None
        meta = self._meta
        meta["n"] = self.n
        meta["sha256"] = _hex(self._hash.digest())
        meta["done"] = True
        meta["todo"] = [[0, _parts(self.n, meta["cs"]) - 1]]
        store._write_meta(meta)
        store._recs.append(meta)
        return self.rec

    def abort(self):
        # type: () -> None
        """Stop and delete the recording."""
        if self._f is None:
            return
        self._f.close()
        self._f = None
        self._store._writer = None
        self._store._bytes -= self.n * self._width
        self._store._delete(self._meta)


# ---------------------------------------------------------------- the store


class RecordingStore:
    """Recordings on flash, kept until the backend releases them.

    Parameters
    ----------
    dirpath : str
        Folder of the recordings (created if missing; its parent must exist).
        The store owns every ``*.met``, ``*.raw``, ``*.tmp`` and ``store.*``
        file in it.
    boot : str
        This boot's id: new recordings are named ``<boot>-<n>``.
    max_recordings : int
        Recordings kept (finished ones); starting one more drops one.
    max_bytes : int
        Bound on the sample files' total size; writing past it drops kept
        recordings, then cuts the recording being written short.
    chunk_samples : int
        Samples per chunk (``recording`` message), at most
        ``MAX_REC_SAMPLES``. Kept per recording, so a recording keeps its
        parts across a reboot with another setting.
    fs : object or None
        File system calls (``edge.spool.PosixFs``); None for the ``os`` module.

    Attributes
    ----------
    dropped : int
        Recordings deleted before the backend released them (the store was
        full), since the folder was created; persisted.
    recovered : int
        Recordings found unfinished after a reboot or power cut and closed
        with the samples that reached flash; persisted.
    """

    def __init__(
        self,
        dirpath,
        boot,
        max_recordings=DEFAULT_MAX_RECORDINGS,
        max_bytes=DEFAULT_MAX_BYTES,
        chunk_samples=MAX_REC_SAMPLES,
        fs=None,
    ):
        # type: (str, str, int, int, int, Any) -> None
        if max_recordings < 1:
            raise ValueError("max_recordings must be at least 1")
        if max_bytes < 2:
            raise ValueError("max_bytes must hold at least one sample")
        if chunk_samples < 1 or chunk_samples > MAX_REC_SAMPLES:
            raise ValueError("chunk_samples must be 1.." + str(MAX_REC_SAMPLES))
        self.dir = dirpath
        self.boot = boot
        self.max_recordings = max_recordings
        self.max_bytes = max_bytes
        self.chunk_samples = chunk_samples
        self._fs = fs if fs is not None else PosixFs()  # type: Any
        self._recs = []  # type: list[dict[str, Any]]  # finished, oldest first
        self._writer = None  # type: Recorder | None
        self._bytes = 0
        self._next = 1
        self.dropped = 0
        self.recovered = 0
        self._fs.mkdir(dirpath)
        self._recover()

    # ------------------------------------------------------------ files

    def _path(self, name):
        # type: (str) -> str
        return self.dir + "/" + name

    def _name(self, num, suffix):
        # type: (int, str) -> str
        return self._path("%08x" % num + suffix)

    def _read(self, path):
        # type: (str) -> bytes
        f = self._fs.open(path, "rb")
        try:
            data = f.read()  # type: bytes
            return data
        finally:
            f.close()

    def _replace(self, tmp, path, data):
        # type: (str, str, bytes) -> None
        """Write ``data`` to ``path`` atomically: a synced tmp, then a rename."""
        f = self._fs.open(tmp, "wb")
        try:
            f.write(data)
            self._fs.sync(f)
        finally:
            f.close()
        self._fs.rename(tmp, path)
        self._fs.sync_dir(self.dir)

    def _write_meta(self, meta):
        # type: (dict[str, Any]) -> None
        body = {}
        for k in meta:
            if k != "num":
                body[k] = meta[k]
        num = meta["num"]
        self._replace(
            self._name(num, TMP_SUFFIX), self._name(num, META_SUFFIX), canonical_json(body)
        )

    def _write_store(self):
        # type: () -> None
        body = {"dropped": self.dropped, "next": self._next, "recovered": self.recovered}
        self._replace(self._path(STORE_TMP), self._path(STORE_FILE), canonical_json(body))

    def _remove(self, path):
        # type: (str) -> None
        try:  # noqa: SIM105 (no contextlib on MicroPython)
            self._fs.remove(path)
        except OSError:
            pass

    def _delete(self, meta):
        # type: (dict[str, Any]) -> None
        """Remove a recording's files: metadata first, so a cut leaves an
        orphan sample file, which recovery removes."""
        num = meta["num"]
        self._remove(self._name(num, META_SUFFIX))
        self._remove(self._name(num, RAW_SUFFIX))
        self._fs.sync_dir(self.dir)

    # ------------------------------------------------------------ recovery

    def _recover(self):
        # type: () -> None
        names = self._fs.listdir(self.dir)
        have = {}  # type: dict[str, bool]
        for name in names:
            have[name] = True
        if STORE_TMP in have:
            if STORE_FILE in have:
                self._remove(self._path(STORE_TMP))
            else:
                self._fs.rename(self._path(STORE_TMP), self._path(STORE_FILE))
                have[STORE_FILE] = True
        if STORE_FILE in have:
            try:
                state = json.loads(self._read(self._path(STORE_FILE)))
                self._next = int(state["next"])
                self.dropped = int(state["dropped"])
                self.recovered = int(state["recovered"])
            except (ValueError, KeyError, TypeError):
                pass  # a damaged counter file: counting restarts, recordings do not
        nums = {}  # type: dict[int, bool]
        for name in names:
            num = _num(name)
            if num is None:
                continue
            if name.endswith(TMP_SUFFIX):
                meta_name = name[:8] + META_SUFFIX
                if meta_name in have:
                    self._remove(self._path(name))  # the rename never began
                else:
                    self._fs.rename(self._path(name), self._path(meta_name))
                    have[meta_name] = True
            nums[num] = True
        changed = False
        order = sorted(nums)
        for num in order:
            if num >= self._next:
                self._next = num + 1
                changed = True
            meta_name = "%08x" % num + META_SUFFIX
            raw_name = "%08x" % num + RAW_SUFFIX
            if meta_name not in have:
                if raw_name in have:  # deletion cut short, or a start cut short
                    self._remove(self._path(raw_name))
                continue
            meta = self._load_meta(num)
            if meta is None or raw_name not in have:
                if meta is None or meta["done"]:
                    self.dropped += 1  # a kept recording is lost
                self._delete({"num": num})
                changed = True
                continue
            if not meta["done"]:
                changed = True
                if not self._close_unfinished(meta):
                    self._delete(meta)
                    continue
                self.recovered += 1
            self._recs.append(meta)
            self._bytes += meta["n"] * REC_FORMATS[meta["fmt"]]
        if changed or STORE_FILE not in have:
            self._write_store()

    def _load_meta(self, num):
        # type: (int) -> dict[str, Any] | None
        try:
            m = json.loads(self._read(self._name(num, META_SUFFIX)))
            meta = {
                "num": num,
                "rec": str(m["rec"]),
                "t0_us": int(m["t0_us"]),
                "fs": int(m["fs"]),
                "fmt": str(m["fmt"]),
                "clock": {
                    "src": str(m["clock"]["src"]),
                    "unc_us": int(m["clock"]["unc_us"]),
                    "age_s": int(m["clock"]["age_s"]),
                },
                "cs": int(m["cs"]),
                "n": int(m["n"]),
                "sha256": m["sha256"],
                "done": m["done"] is True,
                "req": m["req"] is True,
                "todo": [[int(a), int(b)] for a, b in m["todo"]],
            }
            if meta["fmt"] not in REC_FORMATS or not 1 <= meta["cs"] <= MAX_REC_SAMPLES:
                return None
            return meta
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _close_unfinished(self, meta):
        # type: (dict[str, Any]) -> bool
        """Finish a recording cut by a reboot with the whole samples on flash
        (hashed again from the file); False when there are none."""
        width = REC_FORMATS[meta["fmt"]]
        raw = self._name(meta["num"], RAW_SUFFIX)
        n = self._fs.size(raw) // width
        n = min(n, MAX_REC_PARTS * meta["cs"])
        if n == 0:
            return False
        h = hashlib.sha256()
        left = n * width
        f = self._fs.open(raw, "rb")
        try:
            while left:
                block = f.read(_BLOCK if left > _BLOCK else left)
                if not block:
                    return False
                h.update(block)
                left -= len(block)
        finally:
            f.close()
        meta["n"] = n
        meta["sha256"] = _hex(h.digest())
        meta["done"] = True
        meta["todo"] = [[0, _parts(n, meta["cs"]) - 1]]
        self._write_meta(meta)
        return True

    # ------------------------------------------------------------ bounds

    def _victim(self):
        # type: () -> dict[str, Any] | None
        """The recording to drop: the oldest the backend has not asked for,
        else the oldest."""
        for meta in self._recs:
            if not meta["req"]:
                return meta
        return self._recs[0] if self._recs else None

    def _drop(self, meta):
        # type: (dict[str, Any]) -> None
        self._recs.remove(meta)
        self._bytes -= meta["n"] * REC_FORMATS[meta["fmt"]]
        self.dropped += 1
        self._write_store()  # counted before the files go
        self._delete(meta)

    def _room(self, want):
        # type: (int) -> int
        """Bytes (up to ``want``) the writer may add, dropping kept recordings."""
        while self._bytes + want > self.max_bytes:
            victim = self._victim()
            if victim is None:
                break
            self._drop(victim)
        room = self.max_bytes - self._bytes
        return want if want < room else (room if room > 0 else 0)

    # ------------------------------------------------------------ recording

    def start(self, t0_us, fs, clock, fmt="s16le"):
        # type: (int, int, dict[str, Any], str) -> Recorder
        """Begin a recording whose first sample is at ``t0_us`` (UTC µs).

        ``clock`` is ``{"src": "ntp"|"gps"|"rtc", "unc_us": int, "age_s":
        int}`` at ``t0_us``; uncertainty and age saturate at the protocol's
        limits. Raises ValueError (a ``ProtocolError`` for values the
        protocol refuses) and when a recording is already being written.
        """
        if self._writer is not None:
            raise ValueError("recording " + self._writer.rec + " is still being written")
        if not isinstance(clock, dict) or clock.get("src") not in CLOCK_SOURCES:
            raise ValueError("clock must be {src: ntp|gps|rtc, unc_us, age_s}")
        clk = {"src": clock["src"], "unc_us": clock["unc_us"], "age_s": clock["age_s"]}
        if isinstance(clk["unc_us"], int) and clk["unc_us"] > MAX_CLOCK_UNC_US:
            clk["unc_us"] = MAX_CLOCK_UNC_US
        if isinstance(clk["age_s"], int) and clk["age_s"] > MAX_CLOCK_AGE_S:
            clk["age_s"] = MAX_CLOCK_AGE_S
        num = self._next
        meta = {
            "num": num,
            "rec": self.boot + "-" + str(num),
            "t0_us": t0_us,
            "fs": fs,
            "fmt": fmt,
            "clock": clk,
            "cs": self.chunk_samples,
            "n": 0,
            "sha256": None,
            "done": False,
            "req": False,
            "todo": [],
        }  # type: dict[str, Any]
        # the protocol's own checks, on a one-sample chunk of this recording
        fields = self._fields(meta, 0, 1, 1, "AAA=" if REC_FORMATS.get(fmt) == 2 else "")
        recording_message("x", "00000000", 0, 1767225600000, fields)
        while len(self._recs) >= self.max_recordings:
            self._drop(self._victim())  # type: ignore[arg-type]
        self._next = num + 1
        self._write_store()
        self._write_meta(meta)
        f = self._fs.open(self._name(num, RAW_SUFFIX), "wb")
        self._writer = Recorder(self, meta, f)
        return self._writer

    # ------------------------------------------------------------ reading

    def _find(self, rec):
        # type: (str) -> dict[str, Any]
        for meta in self._recs:
            if meta["rec"] == rec:
                return meta
        raise RecordingError("not_found", "recording " + str(rec) + " is not kept")

    def _fields(self, meta, part, parts, n, data):
        # type: (dict[str, Any], int, int, int, str) -> dict[str, Any]
        clock = meta["clock"]
        fields = {
            "rec": meta["rec"],
            "part": part,
            "parts": parts,
            "t0_us": meta["t0_us"],
            "fs": meta["fs"],
            "fmt": meta["fmt"],
            "n": n,
            "clock": {"src": clock["src"], "unc_us": clock["unc_us"], "age_s": clock["age_s"]},
            "data": data,
        }  # type: dict[str, Any]
        if part == parts - 1 and meta["sha256"]:
            fields["sha256"] = meta["sha256"]
        return fields

    def chunk(self, rec, part):
        # type: (str, int) -> dict[str, Any]
        """The fields of part ``part`` of ``rec`` (everything of a
        ``recording`` message but the envelope), read from flash."""
        meta = self._find(rec)
        cs = meta["cs"]
        parts = _parts(meta["n"], cs)
        if not isinstance(part, int) or part < 0 or part >= parts:
            raise RecordingError(
                "bad_args", "part " + str(part) + " is not in 0.." + str(parts - 1)
            )
        width = REC_FORMATS[meta["fmt"]]
        start = part * cs
        n = cs if meta["n"] - start > cs else meta["n"] - start
        f = self._fs.open(self._name(meta["num"], RAW_SUFFIX), "rb")
        try:
            f.seek(start * width)
            data = f.read(n * width)
        finally:
            f.close()
        if len(data) != n * width:
            raise OSError("sample file of " + rec + " is shorter than its metadata says")
        return self._fields(meta, part, parts, n, _b64(data))

    def chunks(self, rec, first=0, last=None):
        # type: (str, int, int | None) -> Iterator[dict[str, Any]]
        """The fields of parts ``first`` .. ``last`` (inclusive; default all),
        one chunk in RAM at a time."""
        meta = self._find(rec)
        if last is None:
            last = _parts(meta["n"], meta["cs"]) - 1
        for part in range(first, last + 1):
            yield self.chunk(rec, part)

    # ------------------------------------------------------------ sending

    def next_chunk(self):
        # type: () -> dict[str, Any] | None
        """The next chunk to queue (recordings the backend asked for first,
        then the oldest), or None; changes nothing until ``sent``."""
        for want_req in (True, False):
            for meta in self._recs:
                if meta["todo"] and meta["req"] == want_req:
                    return self.chunk(meta["rec"], meta["todo"][0][0])
        return None

    def sent(self, rec, part):
        # type: (str, int) -> None
        """Part ``part`` of ``rec`` is in the spool: do not queue it again."""
        meta = self._find(rec)
        todo = remove_part(meta["todo"], part)
        if todo != meta["todo"]:
            meta["todo"] = todo
            self._write_meta(meta)

    def pending(self):
        # type: () -> int
        """Parts waiting to be queued, all recordings together."""
        total = 0
        for meta in self._recs:
            total += range_size(meta["todo"])
        return total

    def request(self, rec=None, first=None, last=None, since_ms=None):
        # type: (str | None, int | None, int | None, int | None) -> tuple[list[str], int]
        """Queue parts again (the backend's ``get_recording``): the recording
        ``rec`` (parts ``first``..``last``, default all), or those that
        started at or after ``since_ms``, or all. Returns (ids, parts
        requested: each will be queued, once, if it was waiting already).
        Raises RecordingError (``not_found``, ``bad_args``)."""
        if rec is None and (first is not None or last is not None):
            raise RecordingError("bad_args", "first/last need rec")
        metas = [self._find(rec)] if rec is not None else list(self._recs)
        if since_ms is not None:
            metas = [m for m in metas if m["t0_us"] >= since_ms * 1000]
            if rec is not None and not metas:
                raise RecordingError("not_found", "recording " + rec + " started before since")
        out = []
        added = 0
        for meta in metas:
            parts = _parts(meta["n"], meta["cs"])
            a = 0 if first is None else first
            b = parts - 1 if last is None else last
            if a < 0 or a > b or b >= parts:
                raise RecordingError(
                    "bad_args",
                    "parts "
                    + str(a)
                    + ".."
                    + str(b)
                    + " are not within 0.."
                    + str(parts - 1)
                    + " of "
                    + meta["rec"],
                )
            meta["todo"] = add_range(meta["todo"], a, b)
            meta["req"] = True
            added += b - a + 1
            self._write_meta(meta)
            out.append(meta["rec"])
        return out, added

    def release(self, rec):
        # type: (str) -> bool
        """The backend holds ``rec``: delete it. False if it was not kept."""
        try:
            meta = self._find(rec)
        except RecordingError:
            return False
        self._recs.remove(meta)
        self._bytes -= meta["n"] * REC_FORMATS[meta["fmt"]]
        self._delete(meta)
        return True

    def handle_command(self, name, args):
        # type: (str, dict[str, Any]) -> dict[str, Any] | None
        """The ack fields (``ok``, ``err`` or ``result``) of a recording
        command, None for other commands. Never raises on bad args."""
        if name == "get_recording":
            try:
                rec, first, last, since = _get_args(args)
                recs, added = self.request(rec, first, last, since)
            except RecordingError as e:
                return {"ok": False, "err": {"code": e.code, "reason": e.reason[:256]}}
            return {"ok": True, "result": {"recs": recs[:MAX_RESULT_RECS], "parts": added}}
        if name == "release_recording":
            if not isinstance(args, dict) or list(args) != ["rec"] or not _is_text(args["rec"]):
                return {
                    "ok": False,
                    "err": {"code": "bad_args", "reason": "args must be {rec: recording id}"},
                }
            return {"ok": True, "result": {"released": self.release(args["rec"])}}
        return None

    # ------------------------------------------------------------ state

    def list(self):
        # type: () -> list[dict[str, Any]]
        """Kept recordings, oldest first: rec, t0_us, fs, n, parts, pending
        (parts waiting to be queued), requested."""
        out = []
        for meta in self._recs:
            out.append(
                {
                    "rec": meta["rec"],
                    "t0_us": meta["t0_us"],
                    "fs": meta["fs"],
                    "n": meta["n"],
                    "parts": _parts(meta["n"], meta["cs"]),
                    "pending": range_size(meta["todo"]),
                    "requested": meta["req"],
                    "sha256": meta["sha256"],
                }
            )
        return out

    def __len__(self):
        # type: () -> int
        return len(self._recs)

    @property
    def bytes_used(self):
        # type: () -> int
        """Bytes of samples on flash (the recording being written included)."""
        return self._bytes


def _is_text(v):
    # type: (Any) -> bool
    return isinstance(v, str) and 0 < len(v) <= 64


def _is_count(v):
    # type: (Any) -> bool
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _get_args(args):
    # type: (Any) -> tuple[str | None, int | None, int | None, int | None]
    if not isinstance(args, dict):
        raise RecordingError("bad_args", "args must be an object")
    for k in args:
        if k not in ("rec", "first", "last", "since"):
            raise RecordingError("bad_args", "unknown argument " + str(k))
    rec = args.get("rec")
    if rec is not None and not _is_text(rec):
        raise RecordingError("bad_args", "rec must be a recording id")
    for k in ("first", "last", "since"):
        if k in args and not _is_count(args[k]):
            raise RecordingError("bad_args", k + " must be an integer >= 0")
    return rec, args.get("first"), args.get("last"), args.get("since")


def _num(name):
    # type: (str) -> int | None
    """The number of a recording file name ``XXXXXXXX.met|raw|tmp``."""
    if len(name) != 12 or name[8:] not in (META_SUFFIX, RAW_SUFFIX, TMP_SUFFIX):
        return None
    try:
        return int(name[:8], 16)
    except ValueError:
        return None
