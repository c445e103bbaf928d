"""Downlink commands: what the backend sent -> the device command to deliver. Pure.

Two ways in (docs/gateway.md):

- a device command on ``lumeau/v1/dev/{dev}/down/cmd`` of the backend broker,
  relayed unchanged to the same topic on the site broker;
- a gateway command ``relay`` on ``lumeau/v1/gw/{gw}/down/cmd`` whose ``args``
  are ``{"dev", "name", "args"}``: it becomes the device command with the
  gateway command's ``id``, ``ts`` and ``exp``.

A command the device never acknowledges before ``exp`` is reported upstream
as an ``ack`` with ``ok: false`` and err code ``timeout``, composed by the
gateway under its own boot id (so it never collides with the device's own
``(dev, boot, seq)`` identities).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from edge import protocol
from edge.protocol import ProtocolError

RELAY: Final = "relay"
TIMEOUT: Final = "timeout"


@dataclass(frozen=True, slots=True)
class DeviceCommand:
    id: str
    dev: str
    exp: int
    payload: bytes


def from_backend(topic: str, payload: bytes, gateway_id: str) -> DeviceCommand:
    """Decode a backend downlink into the device command to deliver.

    Raises ProtocolError (``unknown_command`` for a gateway command other
    than ``relay``; ``bad_args`` when its args do not make a valid command).
    """
    scope, ident, direction, kind = protocol.parse_topic(topic)
    if direction != "down" or kind != "cmd":
        raise ProtocolError("bad_topic", f"{topic!r} is not a command topic", None)
    if scope == "gw" and ident != gateway_id:
        raise ProtocolError("topic_mismatch", f"{topic!r} is for another gateway", "gw")
    msg = protocol.decode(payload, topic)
    if scope == "dev":
        return DeviceCommand(msg["id"], msg["dev"], msg["exp"], protocol.encode(msg))
    if msg["name"] != RELAY:
        raise ProtocolError(
            "unknown_command", f"gateway command {msg['name']!r} is not supported", "name"
        )
    args: dict[str, Any] = msg["args"]
    inner: dict[str, Any] = {
        "v": protocol.VERSION,
        "kind": "cmd",
        "dev": args.get("dev"),
        "id": msg["id"],
        "name": args.get("name"),
        "args": args.get("args", {}),
        "ts": msg["ts"],
        "exp": msg["exp"],
        "src": msg.get("src", gateway_id),
    }
    try:
        data = protocol.encode(inner)
    except ProtocolError as err:
        raise ProtocolError(
            "bad_args", f"relay args do not make a device command: {err.reason}", "args"
        ) from None
    return DeviceCommand(msg["id"], inner["dev"], msg["exp"], data)


def timeout_ack(
    dev: str, cmd_id: str, boot: str, seq: int, now_ms: int, tries: int
) -> dict[str, Any]:
    """The ``ack`` reporting that ``dev`` never acknowledged ``cmd_id``."""
    reason = (
        "expired before it could be delivered"
        if tries == 0
        else f"no ack from the device after {tries} deliveries before exp"
    )
    return protocol.validate(
        {
            "v": protocol.VERSION,
            "kind": "ack",
            "dev": dev,
            "boot": boot,
            "seq": seq,
            "ts": now_ms,
            "cmd": cmd_id,
            "ok": False,
            "err": {"code": TIMEOUT, "reason": reason},
        }
    )
