"""One MQTT delivery -> decoded messages, dead letters and error replies. Pure.

Every input has exactly one outcome per message: stored (``messages``) or
dead-lettered with the codec's code, reason and field. A device whose id is
known from the topic also gets an ``error`` downlink saying what was wrong;
a gateway has no error downlink in protocol v1, so only the devices inside
its batch are told about their own bad entries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backend.ingest.rows import DeadLetter, Inbound
from edge import protocol
from edge.protocol import ProtocolError


@dataclass(frozen=True, slots=True)
class Reply:
    """A downlink to publish: topic and payload."""

    topic: str
    payload: bytes


@dataclass(slots=True)
class Intake:
    """What one delivery turned into."""

    messages: list[Inbound] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)


def intake(topic: str, payload: bytes, received_at: datetime, now_ms: int) -> Intake:
    """Decode one delivery; never raises on bad input.

    Parameters
    ----------
    topic, payload
        As delivered by the broker.
    received_at
        Reception time, stored with the messages and dead letters.
    now_ms
        UTC milliseconds written in error replies.
    """
    out = Intake()
    try:
        scope, ident, direction, kind = protocol.parse_topic(topic)
        if direction != "up":
            raise ProtocolError("bad_topic", f"{topic}: ingest only takes uplink topics")
    except ProtocolError as err:
        out.dead_letters.append(_letter(received_at, topic, payload, err, None, "mqtt"))
        return out
    if scope == "gw" and kind == "batch":
        _batch(out, topic, payload, ident, received_at, now_ms)
        return out
    source = "device" if scope == "dev" else f"gateway:{ident}"
    try:
        message = protocol.decode(payload, topic)
    except ProtocolError as err:
        out.dead_letters.append(_letter(received_at, topic, payload, err, ident, source))
        if scope == "dev":
            _reply(out, err, ident, now_ms, _lenient_json(payload))
        return out
    out.messages.append(Inbound(message, topic, payload, None, received_at))
    return out


def _batch(
    out: Intake, topic: str, payload: bytes, gateway_id: str, received_at: datetime, now_ms: int
) -> None:
    source = f"gateway:{gateway_id}"
    try:
        envelope, good, bad = protocol.decode_batch(payload, topic)
    except ProtocolError as err:
        out.dead_letters.append(_letter(received_at, topic, payload, err, gateway_id, source))
        return
    # The envelope is a message of the gateway's own sequence: storing its
    # identity makes a lost or repeated batch visible like any message.
    head = {key: value for key, value in envelope.items() if key != "msgs"}
    out.messages.append(Inbound(head, topic, None, None, received_at))
    for message in good:
        message_topic = protocol.topic_of(message)
        out.messages.append(Inbound(message, message_topic, None, gateway_id, received_at))
    entries: list[Any] = envelope["msgs"]
    for index, entry_err in bad:
        entry = entries[index]
        entry_topic, device_id = _entry_topic(entry)
        data = _entry_bytes(entry, payload)
        letter = _letter(
            received_at, entry_topic or topic, data, entry_err, device_id or gateway_id, source
        )
        out.dead_letters.append(letter)
        if device_id is not None:
            inner = entry.get("payload") if isinstance(entry, dict) else None
            _reply(out, entry_err, device_id, now_ms, inner)


def _entry_topic(entry: Any) -> tuple[str | None, str | None]:
    """The entry's topic, and its device id when it is a device uplink topic."""
    topic = entry.get("topic") if isinstance(entry, dict) else None
    if not isinstance(topic, str):
        return None, None
    try:
        scope, ident, direction, _kind = protocol.parse_topic(topic)
    except ProtocolError:
        return topic, None
    if scope != "dev" or direction != "up":
        return topic, None
    return topic, ident


def _entry_bytes(entry: Any, batch_payload: bytes) -> bytes:
    """The bad entry alone, byte-stable; the whole batch if it cannot be encoded."""
    try:
        return protocol.canonical_json(entry)
    except (ProtocolError, RecursionError):
        return batch_payload


def _lenient_json(payload: bytes) -> Any:
    """The payload parsed as plain JSON if possible, so a reply can cite boot and seq."""
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None


def _reply(out: Intake, err: ProtocolError, device_id: str, now_ms: int, ref: Any) -> None:
    try:
        message = protocol.error_reply(err, device_id, now_ms, ref)
        out.replies.append(
            Reply(protocol.downlink_topic(device_id, "error"), protocol.encode(message))
        )
    except ProtocolError:
        # The reply itself would break the protocol (e.g. the clock is out of
        # range): the dead letter already records the problem.
        pass


def _letter(
    received_at: datetime,
    topic: str,
    payload: bytes,
    err: ProtocolError,
    device_id: str | None,
    source: str,
) -> DeadLetter:
    return DeadLetter(
        received_at=received_at,
        topic=topic,
        payload=payload,
        code=err.code,
        reason=err.reason,
        field=err.field,
        device_id=device_id,
        source=source,
    )
