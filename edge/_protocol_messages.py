"""Protocol v1 messages: the checks of each kind, ``validate`` and batch entries.

Part of ``edge.protocol`` (import from there). Checks run in the fixed order
of docs/protocol.md, section 8, so the same input gives the same error on
every interpreter.
"""

from ._protocol_fields import (
    bad_type,
    check_bool,
    check_boot,
    check_choice,
    check_fw,
    check_id,
    check_int,
    check_name,
    check_text,
    check_ts,
    fail,
    free_root,
    index,
    is_int,
    join,
    metric_unit,
    metric_value,
)
from ._protocol_spec import (
    CH_MAX,
    DEVICE_ROLES,
    GATEWAY_ROLES,
    MAX_ARGS_ITEMS,
    MAX_BATCH_MSGS,
    MAX_DETAIL_ITEMS,
    MAX_READINGS,
    MAX_RESULT_ITEMS,
    MAX_TEXT_LEN,
    MAX_VALUES,
    RESERVED_KINDS,
    SEQ_MAX,
    SEVERITIES,
    STATES,
    VERSION,
    ProtocolError,
)
from ._protocol_topics import check_topic, parse_topic, uplink_topic
from .canonjson import show, type_name

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from typing import Any  # noqa: F401  (used in type comments)


def _fields(obj, field, required, optional):
    # type: (dict[str, Any], str, tuple[str, ...], tuple[str, ...]) -> None
    """Reject unknown keys (sorted, so the first reported is deterministic),
    then missing required keys in spec order."""
    extra = []
    for k in obj:
        if k not in required and k not in optional:
            extra.append(k)
    if extra:
        extra.sort(key=str)
        k = extra[0]
        ks = k if isinstance(k, str) else str(k)
        raise fail(
            "unknown_field",
            join(field, ks),
            "field " + show(k) + " is not defined here in protocol v1",
        )
    for k in required:
        if k not in obj:
            raise fail("missing_field", join(field, k), "required field is missing")


def _up_envelope(msg, out):
    # type: (dict[str, Any], dict[str, Any]) -> None
    out["boot"] = check_boot(msg["boot"], "boot")
    out["seq"] = check_int(msg["seq"], "seq", 0, SEQ_MAX)
    out["ts"] = check_ts(msg["ts"], "ts")


def _check_telemetry(msg, out):
    # type: (dict[str, Any], dict[str, Any]) -> None
    _up_envelope(msg, out)
    readings = msg["readings"]
    if not isinstance(readings, list):
        raise bad_type("readings", readings, "an array")
    if not readings:
        raise fail("bad_value", "readings", "at least one reading is required")
    if len(readings) > MAX_READINGS:
        raise fail(
            "too_large",
            "readings",
            str(len(readings)) + " readings exceed the limit of " + str(MAX_READINGS),
        )
    good = []
    for i, r in enumerate(readings):
        rf = index("readings", i)
        if not isinstance(r, dict):
            raise bad_type(rf, r, "an object")
        _fields(r, rf, ("ts", "ch", "values"), ())
        ts = check_ts(r["ts"], rf + ".ts")
        ch = check_int(r["ch"], rf + ".ch", 0, CH_MAX)
        values = r["values"]
        vf = rf + ".values"
        if not isinstance(values, dict):
            raise bad_type(vf, values, "an object")
        if not values:
            raise fail("bad_value", vf, "at least one metric is required")
        if len(values) > MAX_VALUES:
            raise fail(
                "too_large",
                vf,
                str(len(values)) + " metrics exceed the limit of " + str(MAX_VALUES),
            )
        names = list(values)
        for name in names:
            if not isinstance(name, str):
                raise bad_type(vf, name, "string metric names")
        names.sort()
        vals = {}
        for name in names:
            mf = vf + "." + name
            unit = metric_unit(name, mf)
            vals[name] = metric_value(name, unit, values[name], mf)
        good.append({"ts": ts, "ch": ch, "values": vals})
    out["readings"] = good


def _check_event(msg, out):
    # type: (dict[str, Any], dict[str, Any]) -> None
    _up_envelope(msg, out)
    out["code"] = check_name(msg["code"], "code")
    out["sev"] = check_choice(msg["sev"], "sev", SEVERITIES)
    out["active"] = check_bool(msg["active"], "active")
    if "ch" in msg:
        out["ch"] = check_int(msg["ch"], "ch", 0, CH_MAX)
    if "detail" in msg:
        out["detail"] = free_root(msg["detail"], "detail", MAX_DETAIL_ITEMS)


def _check_status(msg, out):
    # type: (dict[str, Any], dict[str, Any]) -> None
    _up_envelope(msg, out)
    out["state"] = check_choice(msg["state"], "state", STATES)
    roles = GATEWAY_ROLES if "gw" in out else DEVICE_ROLES
    out["role"] = check_choice(msg["role"], "role", roles)
    if "fw" in msg:
        out["fw"] = check_fw(msg["fw"], "fw")


def _check_ack(msg, out):
    # type: (dict[str, Any], dict[str, Any]) -> None
    _up_envelope(msg, out)
    out["cmd"] = check_id(msg["cmd"], "cmd")
    ok = check_bool(msg["ok"], "ok")
    out["ok"] = ok
    if "err" in msg:
        if ok:
            raise fail("bad_value", "err", "must be absent when ok is true")
        err = msg["err"]
        if not isinstance(err, dict):
            raise bad_type("err", err, "an object")
        _fields(err, "err", ("code", "reason"), ())
        out["err"] = {
            "code": check_name(err["code"], "err.code"),
            "reason": check_text(err["reason"], "err.reason", MAX_TEXT_LEN),
        }
    elif not ok:
        raise fail("missing_field", "err", "required when ok is false")
    if "result" in msg:
        out["result"] = free_root(msg["result"], "result", MAX_RESULT_ITEMS)


def _check_cmd(msg, out):
    # type: (dict[str, Any], dict[str, Any]) -> None
    out["id"] = check_id(msg["id"], "id")
    out["name"] = check_name(msg["name"], "name")
    out["args"] = free_root(msg["args"], "args", MAX_ARGS_ITEMS)
    ts = check_ts(msg["ts"], "ts")
    exp = check_ts(msg["exp"], "exp")
    if exp < ts:
        raise fail("bad_value", "exp", str(exp) + " is before ts " + str(ts))
    out["ts"] = ts
    out["exp"] = exp
    if "src" in msg:
        out["src"] = check_id(msg["src"], "src")


def _check_error(msg, out):
    # type: (dict[str, Any], dict[str, Any]) -> None
    out["code"] = check_name(msg["code"], "code")
    out["reason"] = check_text(msg["reason"], "reason", MAX_TEXT_LEN)
    out["ts"] = check_ts(msg["ts"], "ts")
    if "field" in msg:
        out["field"] = check_text(msg["field"], "field", MAX_TEXT_LEN)
    if "ref" in msg:
        ref = msg["ref"]
        if not isinstance(ref, dict):
            raise bad_type("ref", ref, "an object")
        _fields(ref, "ref", ("boot", "seq"), ())
        out["ref"] = {
            "boot": check_boot(ref["boot"], "ref.boot"),
            "seq": check_int(ref["seq"], "ref.seq", 0, SEQ_MAX),
        }


def _check_batch(msg, out):
    # type: (dict[str, Any], dict[str, Any]) -> None
    _up_envelope(msg, out)
    msgs = _batch_list(msg["msgs"])
    good = []
    for i, entry in enumerate(msgs):
        try:
            inner = check_entry(entry)
        except InnerError as e:
            err = e.err
            base = index("msgs", i)
            if e.in_payload:
                base = base + ".payload"
            field = join(base, err.field) if err.field else base
            what = err.reason
            if err.field and what.startswith(err.field + ": "):
                what = what[len(err.field) + 2 :]
            raise fail(err.code, field, what) from None
        good.append({"topic": uplink_topic(inner["dev"], inner["kind"]), "payload": inner})
    out["msgs"] = good


def _batch_list(msgs):
    # type: (Any) -> list[Any]
    if not isinstance(msgs, list):
        raise bad_type("msgs", msgs, "an array")
    if not msgs:
        raise fail("bad_value", "msgs", "at least one message is required")
    if len(msgs) > MAX_BATCH_MSGS:
        raise fail(
            "too_large",
            "msgs",
            str(len(msgs)) + " messages exceed the limit of " + str(MAX_BATCH_MSGS),
        )
    return msgs


_UP = ("v", "kind", "dev", "boot", "seq", "ts")
_GW_UP = ("v", "kind", "gw", "boot", "seq", "ts")

# (scope, kind) -> (required fields in check order, optional fields, checker)
_SPECS = {
    ("dev", "telemetry"): (_UP + ("readings",), (), _check_telemetry),
    ("dev", "event"): (_UP + ("code", "sev", "active"), ("ch", "detail"), _check_event),
    ("dev", "status"): (_UP + ("state", "role"), ("fw",), _check_status),
    ("dev", "ack"): (_UP + ("cmd", "ok"), ("err", "result"), _check_ack),
    ("dev", "cmd"): (
        ("v", "kind", "dev", "id", "name", "args", "ts", "exp"),
        ("src",),
        _check_cmd,
    ),
    ("dev", "error"): (
        ("v", "kind", "dev", "code", "reason", "ts"),
        ("field", "ref"),
        _check_error,
    ),
    ("gw", "status"): (_GW_UP + ("state", "role"), ("fw",), _check_status),
    ("gw", "cmd"): (
        ("v", "kind", "gw", "id", "name", "args", "ts", "exp"),
        ("src",),
        _check_cmd,
    ),
    ("gw", "batch"): (_GW_UP + ("msgs",), (), _check_batch),
}

_ALL_KINDS = ("telemetry", "event", "status", "ack", "cmd", "error", "batch")


def validate(msg):
    # type: (Any) -> dict[str, Any]
    """Check a decoded message against protocol v1.

    Returns a new, normalised dict (floats rounded to FLOAT_DIGITS
    significant digits; nothing else changes), so that
    ``decode(encode(m)) == validate(m)``. The input is not modified.
    Raises ProtocolError on the first problem found, in a fixed order.
    """
    return check_message(msg, True)


def check_message(msg, deep):
    # type: (Any, bool) -> dict[str, Any]
    """validate(); with deep=False a batch's entries are not checked (the
    returned "msgs" is the list as given)."""
    if not isinstance(msg, dict):
        raise fail("not_object", None, "message must be a JSON object, got " + type_name(msg))
    if "v" not in msg:
        raise fail("missing_field", "v", "required field is missing")
    v = msg["v"]
    if not is_int(v):
        raise bad_type("v", v, "the integer " + str(VERSION))
    if v != VERSION:
        raise fail(
            "bad_version",
            "v",
            "protocol version "
            + show(v)
            + " is not supported (this codec speaks "
            + str(VERSION)
            + ")",
        )
    if "kind" not in msg:
        raise fail("missing_field", "kind", "required field is missing")
    kind = msg["kind"]
    if not isinstance(kind, str):
        raise bad_type("kind", kind, "a string")
    if kind in RESERVED_KINDS:
        raise fail("unknown_kind", "kind", show(kind) + " is reserved and not defined in v1 yet")
    if kind not in _ALL_KINDS:
        raise fail("unknown_kind", "kind", show(kind) + " is not a v1 message kind")
    if "dev" in msg:
        scope = "dev"
    elif "gw" in msg:
        scope = "gw"
    elif kind == "batch":
        raise fail("missing_field", "gw", "required field is missing")
    else:
        raise fail("missing_field", "dev", "required field is missing")
    spec = _SPECS.get((scope, kind))
    if spec is None:
        who = "gateway" if scope == "gw" else "device"
        raise fail("unknown_kind", "kind", show(kind) + " is not defined for " + who + " messages")
    required, optional, check = spec
    _fields(msg, "", required, optional)
    out = {"v": VERSION, "kind": kind}  # type: dict[str, Any]
    out[scope] = check_id(msg[scope], scope)
    if kind == "batch" and not deep:
        _up_envelope(msg, out)
        out["msgs"] = _batch_list(msg["msgs"])
    else:
        check(msg, out)
    return out


# ---------------------------------------------------------------- batch entries


class InnerError(Exception):
    """Carries a ProtocolError about one batch entry and where it applies."""

    def __init__(self, err, in_payload):
        # type: (ProtocolError, bool) -> None
        super().__init__(err.reason)
        self.err = err
        self.in_payload = in_payload


def check_entry(entry):
    # type: (Any) -> dict[str, Any]
    """Validate one batch entry {"topic", "payload"}; returns the payload."""
    try:
        if not isinstance(entry, dict):
            raise fail("not_object", None, "batch entry must be an object, got " + type_name(entry))
        _fields(entry, "", ("topic", "payload"), ())
        parsed = parse_topic(entry["topic"])
        if parsed[0] != "dev" or parsed[2] != "up":
            raise fail(
                "bad_topic",
                "topic",
                show(entry["topic"]) + " is not a device uplink topic",
            )
        payload = entry["payload"]
        if not isinstance(payload, dict):
            raise fail("not_object", "payload", "must be an object, got " + type_name(payload))
    except ProtocolError as e:
        if e.code == "bad_topic" and e.field is None:
            e = ProtocolError(e.code, "topic: " + e.reason, "topic")
        raise InnerError(e, False) from None
    try:
        msg = validate(payload)
        check_topic(msg, parsed)
    except ProtocolError as e:
        raise InnerError(e, True) from None
    return msg
