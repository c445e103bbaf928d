"""Protocol v1 messages: the checks of each kind, ``validate`` and batch entries.

Part of ``edge.protocol`` (import from there). Checks run in the fixed order
of docs/protocol.md, section 8, so the same input gives the same error on
every interpreter.
"""

from ._protocol_fields import (
    HEX,
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
    CLOCK_SOURCES,
    DEVICE_ROLES,
    GATEWAY_ROLES,
    MAX_ARGS_ITEMS,
    MAX_BATCH_MSGS,
    MAX_CLOCK_AGE_S,
    MAX_CLOCK_UNC_US,
    MAX_DETAIL_ITEMS,
    MAX_READINGS,
    MAX_REC_DATA,
    MAX_REC_PARTS,
    MAX_REC_SAMPLES,
    MAX_RESULT_ITEMS,
    MAX_TEXT_LEN,
    MAX_VALUES,
    REC_FORMATS,
    REC_FS_MAX,
    REC_FS_MIN,
    RESERVED_KINDS,
    SEQ_MAX,
    SEVERITIES,
    SHA256_HEX_LEN,
    STATES,
    T0_US_MAX,
    T0_US_MIN,
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


# ---------------------------------------------------------------- recording

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = bytearray(b"\xff" * 256)  # byte -> 6-bit value, 255 if not in the alphabet
for _i, _c in enumerate(_B64_ALPHABET):
    _B64_VALUE[_c] = _i
_REC_FORMAT_NAMES = tuple(sorted(REC_FORMATS))


def _bad_b64(field, what):
    # type: (str, str) -> ProtocolError
    return fail(
        "bad_value",
        field,
        what + " (canonical base64: RFC 4648 alphabet, '=' padding, no line breaks)",
    )


def b64_size(v, field):
    # type: (Any, str) -> int
    """Bytes encoded by the canonical base64 text ``v`` (checked, not decoded).

    Canonical: standard alphabet, length a multiple of 4, one or two '='
    only at the end, zero padding bits: exactly what ``binascii.b2a_base64``
    writes (without its newline), so each byte string has one spelling and
    every interpreter gives the same verdict without its own base64 decoder.
    """
    if not isinstance(v, str):
        raise bad_type(field, v, "a base64 string")
    size = len(v)
    if size > MAX_REC_DATA:
        raise fail(
            "too_large",
            field,
            "base64 text of " + str(size) + " characters exceeds " + str(MAX_REC_DATA),
        )
    if size == 0:
        raise _bad_b64(field, "empty")
    if size % 4:
        raise _bad_b64(field, "length " + str(size) + " is not a multiple of 4")
    try:
        data = v.encode("utf-8")
    except (UnicodeError, ValueError):
        raise _bad_b64(field, "not ASCII") from None
    if len(data) != size:
        raise _bad_b64(field, "not ASCII")
    pad = 0
    if data[size - 1] == 61:  # "="
        pad = 2 if data[size - 2] == 61 else 1
    end = size - pad
    table = _B64_VALUE
    body = data[:end] if pad else data
    for c in body:
        if table[c] > 63:
            i = 0
            while table[data[i]] <= 63:
                i += 1
            raise _bad_b64(field, "character " + show(chr(data[i])) + " at offset " + str(i))
    last = table[data[end - 1]]
    if (pad == 1 and last & 3) or (pad == 2 and last & 15):
        raise _bad_b64(field, "padding bits are not zero")
    return size // 4 * 3 - pad


def _check_recording(msg, out):
    # type: (dict[str, Any], dict[str, Any]) -> None
    _up_envelope(msg, out)
    out["rec"] = check_id(msg["rec"], "rec")
    part = check_int(msg["part"], "part", 0, MAX_REC_PARTS - 1)
    parts = msg["parts"]
    if is_int(parts) and parts > MAX_REC_PARTS:
        raise fail(
            "too_large",
            "parts",
            show(parts) + " parts exceed the limit of " + str(MAX_REC_PARTS),
        )
    parts = check_int(parts, "parts", 1, MAX_REC_PARTS)
    if part >= parts:
        raise fail("out_of_range", "part", str(part) + " is not below parts " + str(parts))
    out["part"] = part
    out["parts"] = parts
    t0 = msg["t0_us"]
    if not is_int(t0):
        raise bad_type("t0_us", t0, "an integer (UTC microseconds)")
    if t0 < T0_US_MIN or t0 >= T0_US_MAX:
        raise fail(
            "out_of_range",
            "t0_us",
            show(t0)
            + " us is outside [2020-01-01, 2100-01-01) = ["
            + str(T0_US_MIN)
            + ", "
            + str(T0_US_MAX)
            + ")",
        )
    out["t0_us"] = t0
    out["fs"] = check_int(msg["fs"], "fs", REC_FS_MIN, REC_FS_MAX)
    fmt = check_choice(msg["fmt"], "fmt", _REC_FORMAT_NAMES)
    out["fmt"] = fmt
    n = msg["n"]
    if is_int(n) and n > MAX_REC_SAMPLES:
        raise fail(
            "too_large",
            "n",
            show(n) + " samples exceed the limit of " + str(MAX_REC_SAMPLES) + " per part",
        )
    n = check_int(n, "n", 1, MAX_REC_SAMPLES)
    out["n"] = n
    clock = msg["clock"]
    if not isinstance(clock, dict):
        raise bad_type("clock", clock, "an object")
    _fields(clock, "clock", ("src", "unc_us", "age_s"), ())
    out["clock"] = {
        "src": check_choice(clock["src"], "clock.src", CLOCK_SOURCES),
        "unc_us": check_int(clock["unc_us"], "clock.unc_us", 0, MAX_CLOCK_UNC_US),
        "age_s": check_int(clock["age_s"], "clock.age_s", 0, MAX_CLOCK_AGE_S),
    }
    data = msg["data"]
    size = b64_size(data, "data")
    width = REC_FORMATS[fmt]
    if size % width:
        raise fail(
            "bad_value",
            "data",
            str(size)
            + " bytes are not a whole number of "
            + str(width)
            + "-byte "
            + fmt
            + " samples",
        )
    if size // width != n:
        raise fail(
            "bad_value",
            "n",
            str(n)
            + " does not match data: "
            + str(size)
            + " bytes = "
            + str(size // width)
            + " "
            + fmt
            + " samples",
        )
    out["data"] = data
    if "sha256" in msg:
        if part != parts - 1:
            raise fail(
                "bad_value",
                "sha256",
                "only the last part (" + str(parts - 1) + ") carries the recording's sha256",
            )
        out["sha256"] = _check_sha256(msg["sha256"], "sha256")


def _check_sha256(v, field):
    # type: (Any, str) -> str
    if not isinstance(v, str):
        raise bad_type(field, v, "a string")
    ok = len(v) == SHA256_HEX_LEN
    if ok:
        for c in v:
            if c not in HEX:
                ok = False
                break
    if not ok:
        raise fail(
            "bad_value",
            field,
            show(v) + " is not a SHA-256 (" + str(SHA256_HEX_LEN) + " lowercase hex characters)",
        )
    return v


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
    ("dev", "recording"): (
        _UP + ("rec", "part", "parts", "t0_us", "fs", "fmt", "n", "clock", "data"),
        ("sha256",),
        _check_recording,
    ),
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

_ALL_KINDS = ("telemetry", "event", "status", "ack", "recording", "cmd", "error", "batch")


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
