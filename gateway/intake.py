"""One site-broker delivery -> an accepted queue entry or a rejection. Pure.

Every delivery has exactly one outcome. An accepted message is kept as the
batch entry it will become (``{"payload": <canonical object>, "topic": ...}``),
so forwarding is string joining, never a second parse. A rejected one carries
what the dead-letter table needs and, when the topic names a device, the
``error`` reply telling that device what was wrong (docs/protocol.md, 8).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from edge import protocol
from edge.protocol import ProtocolError

# Priority classes (lower is more urgent). Alarms, presence and command
# outcomes are rare and matter more than any single reading, so they are
# never dropped for space and skip ahead of a telemetry backlog.
PRIORITY: Final = 0
TELEMETRY: Final = 1
CLASSES: Final = (PRIORITY, TELEMETRY)
CLASS_NAMES: Final = {PRIORITY: "priority", TELEMETRY: "telemetry"}

UNKNOWN_DEVICE: Final = "unknown_device"


def priority_of(kind: str) -> int:
    return TELEMETRY if kind == "telemetry" else PRIORITY


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid device uplink, ready to queue."""

    topic: str
    dev: str
    kind: str
    boot: str
    seq: int
    prio: int
    entry: bytes
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A delivery that failed; ``reply`` is the error downlink, if any."""

    topic: str
    payload: bytes
    code: str
    reason: str
    field: str | None
    dev: str | None
    reply_topic: str | None
    reply: bytes | None


def entry_bytes(topic: str, message: dict[str, Any]) -> bytes:
    """The canonical batch entry: keys sorted, ``payload`` before ``topic``."""
    return (
        b'{"payload":' + protocol.canonical_json(message) + b',"topic":"' + topic.encode() + b'"}'
    )


def classify(
    topic: str, payload: bytes, now_ms: int, allowed: frozenset[str] | None = None
) -> Accepted | Rejected:
    """Validate one delivery from the site broker; never raises on bad input."""
    dev = _topic_device(topic)
    try:
        scope, ident, direction, kind = protocol.parse_topic(topic)
        if scope != "dev" or direction != "up":
            raise ProtocolError("bad_topic", f"{topic!r} is not a device uplink topic", None)
        if allowed is not None and ident not in allowed:
            raise ProtocolError(
                UNKNOWN_DEVICE, f"device {ident!r} is not in this gateway's allow-list", None
            )
        message = protocol.decode(payload, topic)
    except ProtocolError as err:
        return _rejected(topic, payload, err, dev, now_ms)
    return Accepted(
        topic=topic,
        dev=ident,
        kind=kind,
        boot=message["boot"],
        seq=message["seq"],
        prio=priority_of(kind),
        entry=entry_bytes(topic, message),
        message=message,
    )


def _topic_device(topic: str) -> str | None:
    """The device a topic names, if any: it is who the site broker's ACL let publish."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[2] != "dev":
        return None
    try:
        protocol.downlink_topic(parts[3], "error")
    except ProtocolError:
        return None
    return parts[3]


def _rejected(
    topic: str, payload: bytes, err: ProtocolError, dev: str | None, now_ms: int
) -> Rejected:
    reply_topic = None
    reply = None
    if dev is not None:
        try:
            message = protocol.error_reply(err, dev, now_ms, _lenient_ref(payload))
            reply = protocol.encode(message)
            reply_topic = protocol.downlink_topic(dev, "error")
        except ProtocolError:  # pragma: no cover - error_reply cleans its input
            reply = None
    return Rejected(topic, payload, err.code, err.reason, err.field, dev, reply_topic, reply)


def _lenient_ref(payload: bytes) -> Any:
    """The offending message's boot/seq when they are readable at all."""
    if len(payload) > protocol.MAX_DEVICE_PAYLOAD:
        return None
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None
