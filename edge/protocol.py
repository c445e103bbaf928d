"""Lumeau protocol v1: topics, validation and the canonical JSON codec.

The specification is ``docs/protocol.md``; this module is its executable form.
It runs unchanged on CPython 3.11 and MicroPython 1.27, so it uses only the
subset both share: no typing at run time (types live in ``# type:`` comments),
no dataclasses or enums, ``json.loads`` only, and a hand-written encoder whose
bytes are identical on both interpreters. Bad input fails the same way on
both: MicroPython's lenient JSON parser and UTF-8 decoder are preceded by the
strict checks of ``edge.strictjson``.

Public surface::

    VERSION, TOPIC_ROOT, MAX_DEVICE_PAYLOAD, MAX_BATCH_PAYLOAD, ...limits
    ProtocolError(ValueError)      .code .reason .field
    uplink_topic / downlink_topic / gateway_topic / parse_topic / topic_of
    validate(msg) -> dict          checked and normalised copy
    encode(msg) -> bytes           validate, then canonical JSON
    decode(payload, topic=None)    bytes -> validated dict
    decode_batch(payload, topic=None) -> (envelope, good, bad)
    error_reply(err, device_id, ts_ms, ref=None) -> dict
    canonical_json(obj) -> bytes   the encoder alone, no validation
    format_float(x), normalize_float(x)
    new_boot_id(random_bytes) -> str

Every failure is a ``ProtocolError``; ``decode`` and ``decode_batch`` raise
nothing else, whatever the input bytes.

This module keeps the public API and the codec's entry points; the rest is in
modules with one job each (internal: import from here):

    _protocol_spec      constants, limits, error codes, ProtocolError
    canonjson           canonical JSON encoder, float formatting
    _protocol_fields    field checks: scalars, ids, text, metrics, free JSON
    _protocol_topics    the topic tree
    _protocol_messages  the checks of each message kind, validate
    strictjson          strict JSON and UTF-8 checks (MicroPython side)
    _json_cpython       no NaN/Infinity, depth bound (CPython side)
"""

import json
import sys

from ._protocol_fields import HEX as _HEX
from ._protocol_fields import fail as _fail
from ._protocol_fields import is_int as _is_int
from ._protocol_fields import is_name as _is_name
from ._protocol_messages import InnerError as _InnerError
from ._protocol_messages import check_entry as _check_entry
from ._protocol_messages import check_message as _check_message
from ._protocol_messages import validate as validate
from ._protocol_spec import *  # noqa: F403  (the constants, ProtocolError: public here)
from ._protocol_spec import (
    BOOT_MAX_LEN,
    BOOT_MIN_LEN,
    MAX_BATCH_PAYLOAD,
    MAX_DEVICE_PAYLOAD,
    MAX_JSON_DEPTH,
    MAX_NAME_LEN,
    MAX_TEXT_LEN,
    SEQ_MAX,
    VERSION,
)
from ._protocol_topics import check_topic as _check_topic
from ._protocol_topics import downlink_topic as downlink_topic
from ._protocol_topics import gateway_topic as gateway_topic
from ._protocol_topics import parse_topic as parse_topic
from ._protocol_topics import topic_of as topic_of
from ._protocol_topics import uplink_topic as uplink_topic
from .canonjson import FLOAT_DIGITS as FLOAT_DIGITS
from .canonjson import canonical_json as canonical_json
from .canonjson import format_float as format_float
from .canonjson import normalize_float as normalize_float
from .canonjson import show as _show
from .canonjson import type_name as _type_name

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from typing import Any  # noqa: F401  (used in type comments)

_CPYTHON = sys.implementation.name == "cpython"
if _CPYTHON:
    from ._json_cpython import loads as _loads
    from ._json_cpython import too_deep as _too_deep
else:
    from .strictjson import check as _check
    from .strictjson import join_pairs as _join_pairs


# ---------------------------------------------------------------- codec


def _limit_for(kind):
    # type: (Any) -> int
    return MAX_BATCH_PAYLOAD if kind == "batch" else MAX_DEVICE_PAYLOAD


def encode(msg):
    # type: (Any) -> bytes
    """Validate, then canonical JSON (compact, sorted keys, UTF-8).

    Raises ProtocolError, including ``too_large`` past the size limit.
    """
    m = validate(msg)
    data = canonical_json(m)
    limit = _limit_for(m["kind"])
    if len(data) > limit:
        raise _fail(
            "too_large",
            None,
            "encoded message is " + str(len(data)) + " bytes; the limit is " + str(limit),
        )
    return data


def _payload_bytes(payload):
    # type: (Any) -> bytes
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    if isinstance(payload, str):
        try:
            return payload.encode("utf-8")
        except (UnicodeError, ValueError):
            raise _fail("bad_json", None, "payload text is not valid Unicode") from None
    raise _fail("bad_type", None, "payload must be bytes, got " + _type_name(payload))


def _parse(data, limit):
    # type: (bytes, int) -> Any
    """The JSON value of a payload: valid UTF-8, strict JSON (RFC 8259, no
    NaN/Infinity), nested at most MAX_JSON_DEPTH deep; else bad_json, the
    same on CPython and MicroPython."""
    if len(data) > limit:
        raise _fail(
            "too_large",
            None,
            "payload is " + str(len(data)) + " bytes; the limit is " + str(limit),
        )
    if _CPYTHON:
        try:
            text = data.decode("utf-8")
        except (UnicodeError, ValueError):
            raise _fail("bad_json", None, "payload is not valid UTF-8") from None
        if _too_deep(data, MAX_JSON_DEPTH):
            raise _bad_json("nested deeper than " + str(MAX_JSON_DEPTH) + " levels")
        try:
            return _loads(text)
        except (ValueError, RuntimeError) as e:  # RecursionError is a RuntimeError
            raise _bad_json(str(e)) from None
    # MicroPython: its json.loads and bytes.decode are lenient, check first
    try:
        pairs = _check(data, MAX_JSON_DEPTH)
    except ValueError as e:
        raise _bad_json(str(e)) from None
    if pairs:
        data = _join_pairs(data, pairs)
    try:
        return json.loads(data)
    except (ValueError, RuntimeError) as e:  # pragma: no cover - checked above
        raise _bad_json(str(e)) from None


def _bad_json(detail):
    # type: (str) -> ProtocolError
    if len(detail) > 80:
        detail = detail[:80]
    return _fail("bad_json", None, "payload is not valid JSON (" + detail + ")")


def decode(payload, topic=None):
    # type: (Any, Any) -> dict[str, Any]
    """Bytes -> validated, normalised message dict.

    With ``topic``, also checks that the topic is a v1 topic and that its
    scope, id and kind agree with the payload (``topic_mismatch``).
    Raises ProtocolError and nothing else.
    """
    parsed = None
    limit = MAX_BATCH_PAYLOAD
    if topic is not None:
        parsed = parse_topic(topic)
        limit = _limit_for(parsed[3])
    data = _payload_bytes(payload)
    obj = _parse(data, limit)
    if len(data) > MAX_DEVICE_PAYLOAD and not (
        isinstance(obj, dict) and obj.get("kind") == "batch"
    ):
        raise _fail(
            "too_large",
            None,
            "payload is " + str(len(data)) + " bytes; the limit is " + str(MAX_DEVICE_PAYLOAD),
        )
    msg = validate(obj)
    if parsed is not None:
        _check_topic(msg, parsed)
    return msg


def decode_batch(payload, topic=None):
    # type: (Any, Any) -> tuple[dict[str, Any], list[dict[str, Any]], list[tuple[int, ProtocolError]]]
    """Decode a gateway batch, validating each inner message on its own.

    Returns ``(envelope, good, bad)``:

    - ``envelope``: the batch's validated envelope (v, kind, gw, boot, seq, ts)
      with ``"msgs"`` the inner entries exactly as decoded (for dead-letter);
    - ``good``: the validated inner device messages, in batch order;
    - ``bad``: ``(index, ProtocolError)`` for each rejected entry. The error's
      field is relative to the inner device message (``"readings[0].ts"``),
      so it can go straight into ``error_reply``; problems with the entry
      wrapper itself name its key (``"topic"``, ``"payload"``, an unknown key)
      or are None (entry not an object).

    A bad envelope (JSON, size, version, gw, boot, seq, ts, msgs shape, topic)
    raises ProtocolError for the whole batch.
    """
    parsed = None
    if topic is not None:
        parsed = parse_topic(topic)
        if parsed[3] != "batch":
            raise _fail("topic_mismatch", "kind", "topic " + _show(topic) + " is not a batch topic")
    obj = _parse(_payload_bytes(payload), MAX_BATCH_PAYLOAD)
    env = _check_message(obj, False)
    if env["kind"] != "batch":
        raise _fail("bad_value", "kind", _show(env["kind"]) + " is not a batch")
    if parsed is not None:
        _check_topic(env, parsed)
    good = []
    bad = []
    for i, entry in enumerate(env["msgs"]):
        try:
            good.append(_check_entry(entry))
        except _InnerError as e:
            bad.append((i, e.err))
    return env, good, bad


def error_reply(err, device_id, ts_ms, ref=None):
    # type: (ProtocolError, str, int, Any) -> dict[str, Any]
    """The downlink ``error`` message telling a device what was wrong.

    ``ref`` may be {"boot", "seq"} or the offending message itself; it is
    included only when both its boot and seq are valid.
    """
    reason = _clean(err.reason)
    if len(reason) > MAX_TEXT_LEN:
        reason = reason[: MAX_TEXT_LEN - 3] + "..."
    code = err.code if _is_name(err.code, MAX_NAME_LEN) else "bad_value"
    msg = {
        "v": VERSION,
        "kind": "error",
        "dev": device_id,
        "ts": ts_ms,
        "code": code,
        "reason": reason,
    }  # type: dict[str, Any]
    if err.field:
        field = _clean(err.field)
        if len(field) > MAX_TEXT_LEN:
            field = field[:MAX_TEXT_LEN]
        msg["field"] = field
    if isinstance(ref, dict) and _valid_ref(ref.get("boot"), ref.get("seq")):
        msg["ref"] = {"boot": ref["boot"], "seq": ref["seq"]}
    return validate(msg)


def _clean(s):
    # type: (str) -> str
    """s with lone surrogates (possible in echoed keys) replaced by U+FFFD."""
    for c in s:
        if c >= "\ud800" and c <= "\udfff":
            break
    else:
        return s
    out = []
    for c in s:
        out.append("\ufffd" if c >= "\ud800" and c <= "\udfff" else c)
    return "".join(out)


def _valid_ref(boot, seq):
    # type: (Any, Any) -> bool
    if not isinstance(boot, str) or not BOOT_MIN_LEN <= len(boot) <= BOOT_MAX_LEN:
        return False
    if not all(c in _HEX for c in boot):
        return False
    return _is_int(seq) and 0 <= seq <= SEQ_MAX


def new_boot_id(random_bytes):
    # type: (bytes) -> str
    """A boot id from 8 random bytes (e.g. ``os.urandom(8)``): 16 hex chars."""
    if len(random_bytes) < BOOT_MIN_LEN // 2:
        raise ValueError("need at least " + str(BOOT_MIN_LEN // 2) + " random bytes")
    out = []
    for b in random_bytes[: BOOT_MAX_LEN // 2]:
        out.append(_HEX[b >> 4] + _HEX[b & 15])
    return "".join(out)
