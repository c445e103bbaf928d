"""Protocol v1 topics: build, parse, and match a payload against its topic.

Part of ``edge.protocol`` (import from there). The tree is
``lumeau/v1/{dev|gw}/{id}/{up|down}/{kind}`` (docs/protocol.md, section 1).
"""

import sys

from ._protocol_fields import fail, is_id
from ._protocol_spec import (
    DOWNLINK_KINDS,
    GATEWAY_DOWNLINK_KINDS,
    GATEWAY_UPLINK_KINDS,
    MAX_ID_LEN,
    TOPIC_ROOT,
    UPLINK_KINDS,
)
from .canonjson import show, type_name

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from typing import Any  # noqa: F401  (used in type comments)

_CPYTHON = sys.implementation.name == "cpython"
if not _CPYTHON:
    from .strictjson import utf8_ok


def _topic_id(v, what):
    # type: (Any, str) -> str
    if not isinstance(v, str) or not is_id(v):
        raise fail(
            "bad_topic",
            None,
            what + " " + show(v) + " is not an id (1.." + str(MAX_ID_LEN) + " of [a-z0-9-_.])",
        )
    return v


def uplink_topic(device_id, kind):
    # type: (str, str) -> str
    """``lumeau/v1/dev/{device_id}/up/{kind}``."""
    _topic_id(device_id, "device id")
    if kind not in UPLINK_KINDS:
        raise fail("bad_topic", None, show(kind) + " is not an uplink kind")
    return TOPIC_ROOT + "/dev/" + device_id + "/up/" + kind


def downlink_topic(device_id, kind):
    # type: (str, str) -> str
    """``lumeau/v1/dev/{device_id}/down/{kind}``."""
    _topic_id(device_id, "device id")
    if kind not in DOWNLINK_KINDS:
        raise fail("bad_topic", None, show(kind) + " is not a downlink kind")
    return TOPIC_ROOT + "/dev/" + device_id + "/down/" + kind


def gateway_topic(gateway_id, direction, kind):
    # type: (str, str, str) -> str
    """``lumeau/v1/gw/{gateway_id}/{direction}/{kind}``."""
    _topic_id(gateway_id, "gateway id")
    kinds = ()  # type: tuple[str, ...]
    if direction == "up":
        kinds = GATEWAY_UPLINK_KINDS
    elif direction == "down":
        kinds = GATEWAY_DOWNLINK_KINDS
    else:
        raise fail("bad_topic", None, "direction " + show(direction) + " is not up|down")
    if kind not in kinds:
        raise fail("bad_topic", None, show(kind) + " is not a gateway " + direction + " kind")
    return TOPIC_ROOT + "/gw/" + gateway_id + "/" + direction + "/" + kind


def _kinds_for(scope, direction):
    # type: (str, str) -> tuple[str, ...]
    if scope == "dev":
        return UPLINK_KINDS if direction == "up" else DOWNLINK_KINDS
    return GATEWAY_UPLINK_KINDS if direction == "up" else GATEWAY_DOWNLINK_KINDS


def parse_topic(topic):
    # type: (Any) -> tuple[str, str, str, str]
    """Split a v1 topic into (scope "dev"|"gw", id, direction "up"|"down", kind)."""
    if isinstance(topic, (bytes, bytearray)):
        topic = bytes(topic)
        try:
            if not _CPYTHON and not utf8_ok(topic):
                raise ValueError("not UTF-8")  # MicroPython's decode() is lenient
            topic = topic.decode("utf-8")
        except (UnicodeError, ValueError):
            raise fail("bad_topic", None, "topic is not UTF-8") from None
    if not isinstance(topic, str):
        raise fail("bad_topic", None, "topic must be a string, got " + type_name(topic))
    parts = topic.split("/")
    if len(parts) != 6 or parts[0] + "/" + parts[1] != TOPIC_ROOT:
        raise fail(
            "bad_topic",
            None,
            show(topic) + " is not " + TOPIC_ROOT + "/{dev|gw}/{id}/{up|down}/{kind}",
        )
    scope = parts[2]
    ident = parts[3]
    direction = parts[4]
    kind = parts[5]
    if scope != "dev" and scope != "gw":
        raise fail("bad_topic", None, show(topic) + ": scope " + show(scope) + " is not dev|gw")
    if not is_id(ident):
        raise fail("bad_topic", None, show(topic) + ": " + show(ident) + " is not an id")
    if direction != "up" and direction != "down":
        raise fail(
            "bad_topic", None, show(topic) + ": direction " + show(direction) + " is not up|down"
        )
    if kind not in _kinds_for(scope, direction):
        raise fail(
            "bad_topic",
            None,
            show(topic) + ": " + show(kind) + " is not a " + scope + " " + direction + " kind",
        )
    return (scope, ident, direction, kind)


def topic_of(msg):
    # type: (dict[str, Any]) -> str
    """The topic a (valid) message is published on."""
    kind = msg["kind"]
    if "gw" in msg:
        direction = "down" if kind == "cmd" else "up"
        return gateway_topic(msg["gw"], direction, kind)
    if kind in DOWNLINK_KINDS:
        return downlink_topic(msg["dev"], kind)
    return uplink_topic(msg["dev"], kind)


def check_topic(msg, parsed):
    # type: (dict[str, Any], tuple[str, str, str, str]) -> None
    scope, ident, _direction, kind = parsed
    if msg["kind"] != kind:
        raise fail(
            "topic_mismatch",
            "kind",
            "payload kind " + show(msg["kind"]) + " does not match topic kind " + show(kind),
        )
    if scope not in msg:
        other = "gw" if scope == "dev" else "dev"
        raise fail(
            "topic_mismatch",
            other,
            "payload is a " + other + " message but the topic is under " + scope + "/",
        )
    if msg[scope] != ident:
        raise fail(
            "topic_mismatch",
            scope,
            show(msg[scope]) + " does not match the topic's id " + show(ident),
        )


# ---------------------------------------------------------------- codec
