"""Decoded protocol messages as rows of the storage tables. Pure: no I/O.

The writer needs three things from a batch: the identities of its messages
(to ask the database which ones are new), the content rows of each message
(written only for the new ones), and the per-device summary for the
``device`` table. ``plan_batch`` computes all three; ``rows_for`` then picks
the content of the messages the database accepted.

Messages here are the dicts returned by ``edge.protocol.decode``, so they are
already validated: this module converts, it does not re-check.

A ``recording`` message makes two rows: the description of its recording
(``RecordingRow``, merged per recording by ``merge_recordings``, since the
table holds one row per recording) and its chunk of samples (``ChunkRow``).
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from psycopg.types.json import Jsonb

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# (device_id, boot_id, seq, time): the idempotency key, in the column order of
# the uplink_message unique index.
MessageKey = tuple[str, str, int, datetime]

# Column order of each tuple = column order of the COPY in writer.py.
UplinkRow = tuple[datetime, str, str, int, str, str | None, datetime]
ReadingRow = tuple[datetime, str, int, str, float, str, int]
EventRow = tuple[datetime, str, str, int, str, str, int | None, bool, Jsonb | None]
StatusRow = tuple[datetime, str, str, int, str, str, str | None]
AckRow = tuple[datetime, str, str, int, str, bool, str | None, str | None, Jsonb | None]
DeadLetterRow = tuple[datetime, str, bytes, str, str, str | None, str | None, str]
ChunkRow = tuple[str, str, int, int, bytes, str, int, datetime, datetime]


@dataclass(frozen=True, slots=True)
class RecordingRow:
    """What a chunk says about its whole recording (one ``recording`` row)."""

    device_id: str
    rec: str
    t0: datetime
    t0_us: int
    fs: int
    fmt: str
    parts: int
    clock_src: str
    clock_unc_us: int
    clock_age_s: int
    sha256: bytes | None
    conflict: bool
    first_received_at: datetime
    last_received_at: datetime

    @property
    def key(self) -> tuple[str, str]:
        return (self.device_id, self.rec)

    @property
    def description(self) -> tuple[int, int, str, int, str, int, int]:
        """Everything every chunk of one recording must agree on (sha256 aside)."""
        return (
            self.t0_us,
            self.fs,
            self.fmt,
            self.parts,
            self.clock_src,
            self.clock_unc_us,
            self.clock_age_s,
        )


DeviceRow = tuple[
    str,  # device_id
    str | None,  # role
    datetime,  # first_seen
    datetime,  # last_seen
    datetime,  # last_message_at
    str,  # last_boot_id
    str | None,  # last_gateway_id
    str | None,  # last_status
    datetime | None,  # last_status_at
    str | None,  # fw
]


@dataclass(frozen=True, slots=True)
class Inbound:
    """One decoded uplink message and how it reached the backend.

    ``payload`` is the raw MQTT payload of a message sent directly, or None
    for a message that came inside a gateway batch (its canonical JSON is
    recomputed only if it must be dead-lettered).
    """

    message: Mapping[str, Any]
    topic: str
    payload: bytes | None
    gateway_id: str | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input that will not be stored as data, with the reason why."""

    received_at: datetime
    topic: str
    payload: bytes
    code: str
    reason: str
    field: str | None
    device_id: str | None
    source: str

    def row(self) -> DeadLetterRow:
        return (
            self.received_at,
            clean_text(self.topic),
            self.payload,
            clean_text(self.code),
            clean_text(self.reason),
            None if self.field is None else clean_text(self.field),
            None if self.device_id is None else clean_text(self.device_id),
            clean_text(self.source),
        )


@dataclass(slots=True)
class MessageRows:
    """The content rows of one message, by table."""

    readings: list[ReadingRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    statuses: list[StatusRow] = field(default_factory=list)
    acks: list[AckRow] = field(default_factory=list)
    recordings: list[RecordingRow] = field(default_factory=list)
    chunks: list[ChunkRow] = field(default_factory=list)


@dataclass(slots=True)
class BatchPlan:
    """Everything the writer needs for one transaction."""

    uplinks: list[UplinkRow]
    content: dict[MessageKey, MessageRows]
    devices: list[DeviceRow]
    dead_letters: list[DeadLetterRow]
    duplicates_in_batch: int


@dataclass(slots=True)
class TableRows:
    """Content rows of the new messages of a batch, ready to COPY."""

    readings: list[ReadingRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    statuses: list[StatusRow] = field(default_factory=list)
    acks: list[AckRow] = field(default_factory=list)
    recordings: list[RecordingRow] = field(default_factory=list)  # one per recording
    chunks: list[ChunkRow] = field(default_factory=list)


def to_time(ms: int) -> datetime:
    """UTC milliseconds -> aware datetime, exactly (no float rounding)."""
    return _EPOCH + timedelta(milliseconds=ms)


def to_time_us(us: int) -> datetime:
    """UTC microseconds -> aware datetime, exactly (datetime's own resolution)."""
    return _EPOCH + timedelta(microseconds=us)


def _time_memo() -> Callable[[int], datetime]:
    """``to_time`` remembering its results: one per distinct ms, for one batch.

    Readings of a message, and messages of a gateway batch, mostly share a
    few timestamps; datetimes are immutable, so rows may share one object.
    """
    cache: dict[int, datetime] = {}

    def time_of(ms: int) -> datetime:
        time = cache.get(ms)
        if time is None:
            time = cache[ms] = to_time(ms)
        return time

    return time_of


def clean_text(text: str) -> str:
    """Text PostgreSQL accepts: no NUL, no lone surrogates.

    Only dead letters need it; the codec refuses such strings in messages,
    but a dead letter's reason or field may quote the offending input.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def sender(message: Mapping[str, Any]) -> str:
    """The id of the device, or of the gateway for gateway messages."""
    ident = message.get("dev")
    return str(ident if ident is not None else message["gw"])


def message_key(
    message: Mapping[str, Any], time_of: Callable[[int], datetime] = to_time
) -> MessageKey:
    return (sender(message), message["boot"], message["seq"], time_of(message["ts"]))


def uplink_row(item: Inbound, key: MessageKey | None = None) -> UplinkRow:
    device_id, boot_id, seq, time = key if key is not None else message_key(item.message)
    return (time, device_id, boot_id, seq, item.message["kind"], item.gateway_id, item.received_at)


def message_rows(message: Mapping[str, Any], received_at: datetime | None = None) -> MessageRows:
    """The content rows of one message (none for a batch envelope).

    ``received_at`` (default: now) is stored with a recording's chunk.
    """
    return _message_rows(message, received_at, message_key(message), to_time)


def _message_rows(
    message: Mapping[str, Any],
    received_at: datetime | None,
    key: MessageKey,
    time_of: Callable[[int], datetime],
) -> MessageRows:
    """``message_rows`` given the message's key and a ms -> datetime function."""
    kind = message["kind"]
    device_id, boot_id, seq, time = key
    rows = MessageRows()
    if kind == "telemetry":
        # One datetime per reading, shared by its values (not one per value).
        readings: list[ReadingRow] = []
        for reading in message["readings"]:
            at_ts = time_of(reading["ts"])
            channel = reading["ch"]
            readings.extend(
                [
                    (at_ts, device_id, channel, metric, float(value), boot_id, seq)
                    for metric, value in reading["values"].items()
                ]
            )
        rows.readings = readings
    elif kind == "event":
        detail = message.get("detail")
        rows.events = [
            (
                time,
                device_id,
                boot_id,
                seq,
                message["code"],
                message["sev"],
                message.get("ch"),
                message["active"],
                None if detail is None else Jsonb(detail),
            )
        ]
    elif kind == "status":
        rows.statuses = [
            (time, device_id, boot_id, seq, message["state"], message["role"], message.get("fw"))
        ]
    elif kind == "ack":
        err = message.get("err") or {}
        result = message.get("result")
        rows.acks = [
            (
                time,
                device_id,
                boot_id,
                seq,
                message["cmd"],
                message["ok"],
                err.get("code"),
                err.get("reason"),
                None if result is None else Jsonb(result),
            )
        ]
    elif kind == "recording":
        at = received_at if received_at is not None else datetime.now(UTC)
        clock = message["clock"]
        sha = message.get("sha256")
        rows.recordings = [
            RecordingRow(
                device_id=device_id,
                rec=message["rec"],
                t0=to_time_us(message["t0_us"]),
                t0_us=message["t0_us"],
                fs=message["fs"],
                fmt=message["fmt"],
                parts=message["parts"],
                clock_src=clock["src"],
                clock_unc_us=clock["unc_us"],
                clock_age_s=clock["age_s"],
                sha256=None if sha is None else bytes.fromhex(sha),
                conflict=False,
                first_received_at=at,
                last_received_at=at,
            )
        ]
        rows.chunks = [
            (
                device_id,
                message["rec"],
                message["part"],
                message["n"],
                # canonical base64, checked by the codec
                binascii.a2b_base64(message["data"], strict_mode=True),
                boot_id,
                seq,
                time,
                at,
            )
        ]
    return rows


def merge_recordings(rows: Iterable[RecordingRow]) -> list[RecordingRow]:
    """One row per recording, sorted by (device_id, rec).

    The first description wins; a later one that disagrees (or a second,
    different sha256) sets ``conflict``. Reception times span all rows.
    """
    merged: dict[tuple[str, str], RecordingRow] = {}
    for row in rows:
        seen = merged.get(row.key)
        if seen is None:
            merged[row.key] = row
            continue
        differs = row.description != seen.description or (
            row.sha256 is not None and seen.sha256 is not None and row.sha256 != seen.sha256
        )
        merged[row.key] = replace(
            seen,
            sha256=seen.sha256 if seen.sha256 is not None else row.sha256,
            conflict=seen.conflict or row.conflict or differs,
            first_received_at=min(seen.first_received_at, row.first_received_at),
            last_received_at=max(seen.last_received_at, row.last_received_at),
        )
    return [merged[key] for key in sorted(merged)]


def plan_batch(items: Iterable[Inbound], dead_letters: Iterable[DeadLetter] = ()) -> BatchPlan:
    """Group a batch into identities, content and device summaries.

    A message present twice in the batch (a resend that caught up with the
    original) is kept once and counted in ``duplicates_in_batch``. Identities
    and devices are sorted so that concurrent workers lock index entries and
    device rows in the same order and cannot deadlock each other.
    """
    uplinks: dict[MessageKey, UplinkRow] = {}
    content: dict[MessageKey, MessageRows] = {}
    time_of = _time_memo()
    devices = _DeviceSummary()
    duplicates = 0
    for item in items:
        message = item.message
        key = message_key(message, time_of)
        devices.add(item, key[0])
        if key in uplinks:
            duplicates += 1
            continue
        uplinks[key] = uplink_row(item, key)
        content[key] = _message_rows(message, item.received_at, key, time_of)
    return BatchPlan(
        uplinks=[uplinks[key] for key in sorted(uplinks)],
        content=content,
        devices=devices.rows(time_of),
        dead_letters=[letter.row() for letter in dead_letters],
        duplicates_in_batch=duplicates,
    )


def rows_for(plan: BatchPlan, new_keys: Collection[MessageKey]) -> TableRows:
    """The content rows of the messages whose keys the database accepted."""
    out = TableRows()
    recordings: list[RecordingRow] = []
    for key in new_keys:
        rows = plan.content[key]
        out.readings.extend(rows.readings)
        out.events.extend(rows.events)
        out.statuses.extend(rows.statuses)
        out.acks.extend(rows.acks)
        recordings.extend(rows.recordings)
        out.chunks.extend(rows.chunks)
    if recordings:
        out.recordings = merge_recordings(recordings)
        out.chunks.sort(key=lambda chunk: chunk[:3])
    return out


def reading_count(messages: Sequence[Mapping[str, Any]]) -> int:
    """Number of reading rows the messages will make (for flush sizing)."""
    return sum(
        len(reading["values"])
        for message in messages
        if message["kind"] == "telemetry"
        for reading in message["readings"]
    )


@dataclass(slots=True)
class _Seen:
    device_id: str
    role: str | None
    first_seen: datetime
    last_seen: datetime
    latest_ts: int
    boot_id: str
    gateway_id: str | None
    status: str | None = None
    status_at: datetime | None = None
    fw: str | None = None

    def row(self, time_of: Callable[[int], datetime] = to_time) -> DeviceRow:
        return (
            self.device_id,
            self.role,
            self.first_seen,
            self.last_seen,
            time_of(self.latest_ts),
            self.boot_id,
            self.gateway_id,
            self.status,
            self.status_at,
            self.fw,
        )


class _DeviceSummary:
    """Per sender: first and last reception, latest boot, latest status."""

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}

    def add(self, item: Inbound, device_id: str | None = None) -> None:
        message = item.message
        if device_id is None:
            device_id = sender(message)
        seen = self._seen.get(device_id)
        if seen is None:
            seen = _Seen(
                device_id=device_id,
                role="gateway" if "gw" in message else None,
                first_seen=item.received_at,
                last_seen=item.received_at,
                latest_ts=message["ts"],
                boot_id=message["boot"],
                gateway_id=item.gateway_id,
            )
            self._seen[device_id] = seen
        seen.first_seen = min(seen.first_seen, item.received_at)
        seen.last_seen = max(seen.last_seen, item.received_at)
        if message["ts"] >= seen.latest_ts:
            seen.latest_ts = message["ts"]
            seen.boot_id = message["boot"]
            seen.gateway_id = item.gateway_id
        # Presence is the last status *received* (docs/protocol.md): a last-will
        # is composed at connect time, so its device timestamp is older than
        # the online status it follows. Items come in reception order, so the
        # later one wins on equal times.
        if message["kind"] == "status" and (
            seen.status_at is None or item.received_at >= seen.status_at
        ):
            seen.role = message["role"]
            seen.status = message["state"]
            seen.status_at = item.received_at
            seen.fw = message.get("fw")

    def rows(self, time_of: Callable[[int], datetime] = to_time) -> list[DeviceRow]:
        return [self._seen[key].row(time_of) for key in sorted(self._seen)]
