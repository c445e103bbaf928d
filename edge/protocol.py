"""Lumeau protocol v1: topics, validation and the canonical JSON codec.

The specification is ``docs/protocol.md``; this module is its executable form.
It runs unchanged on CPython 3.11 and MicroPython 1.27, so it uses only the
subset both share: no typing at run time (types live in ``# type:`` comments),
no dataclasses or enums, ``json.loads`` only, and a hand-written encoder whose
bytes are identical on both interpreters.

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
    new_boot_id(random_bytes) -> str

Every failure is a ``ProtocolError``; ``decode`` and ``decode_batch`` raise
nothing else, whatever the input bytes.
"""

import json
import math
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from typing import Any  # noqa: F401  (used in type comments)

VERSION = 1
TOPIC_ROOT = "lumeau/v1"

# Size limits (see docs/protocol.md, "Limits").
MAX_DEVICE_PAYLOAD = 8192  # bytes, any message that is not a batch
MAX_BATCH_PAYLOAD = 1048576  # bytes, a gateway batch (1 MiB)
MAX_BATCH_MSGS = 1000  # inner messages per batch
MAX_READINGS = 128  # readings per telemetry message
MAX_VALUES = 64  # metrics per reading
MAX_ID_LEN = 64  # device, gateway, command ids
MAX_NAME_LEN = 32  # event codes, command names, error codes
MAX_METRIC_LEN = 48  # metric names
MAX_TEXT_LEN = 256  # reasons, strings inside detail/args/result
MAX_FW_LEN = 32  # firmware version string
MAX_KEY_LEN = 64  # keys inside detail/args/result
MAX_DETAIL_ITEMS = 32  # values inside an event's detail (all levels)
MAX_ARGS_ITEMS = 512  # values inside a command's args
MAX_RESULT_ITEMS = 256  # values inside an ack's result
MAX_DEPTH = 4  # nesting of objects/arrays inside detail/args/result
FLOAT_DIGITS = 12  # significant digits kept for every float
MAX_MAGNITUDE = 1e15  # generic bound on any metric value
MAX_FREE_INT = 9007199254740992  # 2**53: bound on integers in detail/args/result
TS_MIN = 1577836800000  # 2020-01-01T00:00:00Z, ms
TS_MAX = 4102444800000  # 2100-01-01T00:00:00Z, ms
SEQ_MAX = 2147483647  # 2**31 - 1
CH_MAX = 255
BOOT_MIN_LEN = 8
BOOT_MAX_LEN = 16

# Topic tree: scope -> direction -> kinds.
UPLINK_KINDS = ("telemetry", "event", "status", "ack", "recording")
DOWNLINK_KINDS = ("cmd", "error")
GATEWAY_UPLINK_KINDS = ("batch", "status")
GATEWAY_DOWNLINK_KINDS = ("cmd",)
RESERVED_KINDS = ("recording",)  # on the topic tree, payload not defined yet

SEVERITIES = ("info", "warning", "critical")
STATES = ("online", "offline")
DEVICE_ROLES = ("cabinet", "leak_sensor")
GATEWAY_ROLES = ("gateway",)

# Unit suffix (the text after a metric name's last "_") -> unit.
UNITS = {
    "w": "watt",
    "wh": "watt-hour",
    "var": "volt-ampere reactive",
    "va": "volt-ampere",
    "v": "volt",
    "a": "ampere",
    "hz": "hertz",
    "pct": "percent",
    "ratio": "dimensionless ratio",
    "db": "decibel",
    "dbm": "decibel-milliwatt",
    "c": "degree Celsius",
    "s": "second",
    "lx": "lux",
    "pa": "pascal",
    "m": "metre",
    "m3": "cubic metre",
    "mps2": "metre per second squared",
    "j": "joule",
    "b": "byte",
    "count": "count (integer >= 0)",
    "bool": "boolean (integer 0 or 1)",
}

# Known metrics and their physical range [low, high], inclusive.
METRICS = {
    "power_w": (0, 100000),
    "reactive_power_var": (-100000, 100000),
    "apparent_power_va": (0, 100000),
    "energy_wh": (0, 1e12),
    "voltage_v": (0, 1000),
    "current_a": (0, 1000),
    "frequency_hz": (0, 1000),
    "power_factor_ratio": (-1, 1),
    "level_pct": (0, 100),
    "mains_bool": (0, 1),
    "door_bool": (0, 1),
    "lamp_on_bool": (0, 1),
    "temperature_c": (-60, 150),
    "illuminance_lx": (0, 200000),
    "battery_v": (0, 10),
    "battery_pct": (0, 100),
    "pressure_pa": (0, 10000000),
    "noise_rms_db": (-200, 200),
    "noise_min_db": (-200, 200),
    "noise_spread_db": (0, 200),
    "noise_peak_hz": (0, 100000),
    "rssi_dbm": (-150, 30),
    "snr_db": (-50, 100),
    "uptime_s": (0, 1e10),
    "queue_count": (0, 1e9),
    "dropped_count": (0, 1e9),
}

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"
_HEX = "0123456789abcdef"
_NAME_REST = _LOWER + _DIGITS + "_"
_ID_CHARS = _LOWER + _DIGITS + "-_."
_FW_MIN = 0x21
_FW_MAX = 0x7E

_CPYTHON = sys.implementation.name == "cpython"


class ProtocolError(ValueError):
    """A message that breaks protocol v1.

    Attributes
    ----------
    code : str
        Short machine code, e.g. ``"out_of_range"`` (see ``ERROR_CODES``).
    reason : str
        Human text naming the field and the bad value or the limit.
    field : str or None
        Dotted path of the offending field, e.g.
        ``"readings[3].values.power_w"``; None for the whole payload.
    """

    def __init__(self, code, reason, field=None):
        # type: (str, str, str | None) -> None
        super().__init__(code + ": " + reason)
        self.code = code
        self.reason = reason
        self.field = field


ERROR_CODES = (
    "bad_json",
    "not_object",
    "too_large",
    "missing_field",
    "bad_type",
    "bad_value",
    "out_of_range",
    "unknown_kind",
    "bad_version",
    "bad_topic",
    "topic_mismatch",
    "unknown_field",
)


def _fail(code, field, what):
    # type: (str, str | None, str) -> ProtocolError
    if field:
        return ProtocolError(code, field + ": " + what, field)
    return ProtocolError(code, what, None)


def _join(base, key):
    # type: (str, str) -> str
    if base:
        return base + "." + key
    return key


def _index(base, i):
    # type: (str, int) -> str
    return base + "[" + str(i) + "]"


# ---------------------------------------------------------------- floats


def _round_div(num, den, k):
    # type: (int, int, int) -> int
    """round(num / den * 10**k), ties to even, in exact integer arithmetic."""
    if k >= 0:
        num = num * 10**k
    else:
        den = den * 10 ** (-k)
    q, r = divmod(num, den)
    r2 = r * 2
    if r2 > den or (r2 == den and q & 1):
        q += 1
    return q


def _exact_parts(x):
    # type: (float) -> tuple[str, int]
    """Digits and exponent of x > 0 rounded to FLOAT_DIGITS, from its exact value.

    Returns (digits, e) with ``len(digits) == FLOAT_DIGITS`` and
    x ~= d1.d2d3... * 10**e. Uses only integer arithmetic, so every
    interpreter with IEEE doubles gets the same answer.
    """
    m, e = math.frexp(x)  # x = m * 2**e, 0.5 <= m < 1
    n = int(m * 9007199254740992.0)  # m * 2**53: exact
    e -= 53
    if e >= 0:
        num = n << e
        den = 1
    else:
        num = n
        den = 1 << (-e)
    d = len(str(num)) - len(str(den))  # floor(log10(x)) is d - 1 or d
    top = 10**FLOAT_DIGITS
    k = FLOAT_DIGITS - d
    q = _round_div(num, den, k)
    if q >= top:
        k -= 1
        q = _round_div(num, den, k)
        if q >= top:  # rounding carried into a new digit: q == top
            q //= 10
            k -= 1
    return str(q), FLOAT_DIGITS - 1 - k


def _float_parts(x):
    # type: (float) -> tuple[str, int]
    """(digits without trailing zeros, decimal exponent) of finite x > 0."""
    if _CPYTHON:
        # CPython's "%e" is correctly rounded (ties to even), hence equal to
        # _exact_parts; it is only faster. The unit tests check they agree.
        s = "%.*e" % (FLOAT_DIGITS - 1, x)
        i = s.find("e")
        digits = s[0] + s[2:i]
        exp = int(s[i + 1 :])
    else:
        digits, exp = _exact_parts(x)
    digits = digits.rstrip("0")
    if not digits:
        digits = "0"
    return digits, exp


def _is_finite(x):
    # type: (float) -> bool
    return x == x and x - x == 0.0


def format_float(x):
    # type: (float) -> str
    """The canonical text of a finite float (docs/protocol.md, "Numbers").

    Rounded to FLOAT_DIGITS significant digits (ties to even), positional
    with at least one decimal when 1e-4 <= |x| < 1e16 (``230.0``,
    ``0.0125``), otherwise ``d.ddde<exp>`` (``1.5e-7``, ``2e16``). Zero
    (either sign) is ``0.0``. Always parses back as a float.
    """
    if not _is_finite(x):
        raise ProtocolError("bad_value", "non-finite number " + str(x) + " has no JSON form")
    if x == 0.0:
        return "0.0"
    sign = ""
    if x < 0.0:
        sign = "-"
        x = -x
    digits, exp = _float_parts(x)
    n = len(digits)
    if exp < -4 or exp >= 16:
        if n > 1:
            return sign + digits[0] + "." + digits[1:] + "e" + str(exp)
        return sign + digits + "e" + str(exp)
    if exp >= 0:
        if n <= exp + 1:
            return sign + digits + "0" * (exp + 1 - n) + ".0"
        return sign + digits[: exp + 1] + "." + digits[exp + 1 :]
    return sign + "0." + "0" * (-exp - 1) + digits


def normalize_float(x):
    # type: (float) -> float
    """The float that the canonical text of x parses back to."""
    if _CPYTHON and _is_finite(x):
        # Same decimal value as format_float (correctly rounded), other spelling.
        y = float("%.*g" % (FLOAT_DIGITS, x))
        return y if y != 0.0 else 0.0
    return float(format_float(x))


# ---------------------------------------------------------------- encoder


def _enc_str(s, out):
    # type: (str, list[str]) -> None
    plain = True
    for c in s:
        if c < " " or c == '"' or c == "\\":
            plain = False
            break
    if plain:
        out.append('"' + s + '"')
        return
    parts = ['"']
    for c in s:
        if c == '"':
            parts.append('\\"')
        elif c == "\\":
            parts.append("\\\\")
        elif c < " ":
            o = ord(c)
            if c == "\n":
                parts.append("\\n")
            elif c == "\r":
                parts.append("\\r")
            elif c == "\t":
                parts.append("\\t")
            elif c == "\b":
                parts.append("\\b")
            elif c == "\f":
                parts.append("\\f")
            else:
                parts.append("\\u00" + _HEX[o >> 4] + _HEX[o & 15])
        else:
            parts.append(c)
    parts.append('"')
    out.append("".join(parts))


def _enc(obj, out, depth):
    # type: (Any, list[str], int) -> None
    if depth > 32:
        raise ProtocolError("bad_value", "value nested deeper than 32 levels")
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        _enc_str(obj, out)
    elif isinstance(obj, int):
        out.append(str(obj))
    elif isinstance(obj, float):
        out.append(format_float(obj))
    elif isinstance(obj, dict):
        keys = list(obj)
        for k in keys:
            if not isinstance(k, str):
                raise ProtocolError("bad_type", "object key " + repr(k) + " is not a string")
        keys.sort()
        out.append("{")
        first = True
        for k in keys:
            if not first:
                out.append(",")
            first = False
            _enc_str(k, out)
            out.append(":")
            _enc(obj[k], out, depth + 1)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        first = True
        for v in obj:
            if not first:
                out.append(",")
            first = False
            _enc(v, out, depth + 1)
        out.append("]")
    else:
        raise ProtocolError("bad_type", "cannot encode a value of type " + _tname(obj))


def canonical_json(obj):
    # type: (Any) -> bytes
    """Canonical JSON of any JSON-like value: compact, keys sorted, UTF-8.

    No protocol validation and no size limit; used by ``encode`` and by
    dead-letter stores that must keep an invalid message byte-stable.
    """
    out = []  # type: list[str]
    _enc(obj, out, 0)
    return "".join(out).encode("utf-8")


# ---------------------------------------------------------------- scalars


def _tname(v):
    # type: (Any) -> str
    if v is None:
        return "null"
    if v is True or v is False:
        return "boolean"
    if isinstance(v, str):
        return "string"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, (list, tuple)):
        return "array"
    return "non-JSON value"


def _show(v):
    # type: (Any) -> str
    """Short, interpreter-independent text of a value for error reasons."""
    if isinstance(v, str):
        if len(v) > 40:
            v = v[:40] + "..."
        out = []  # type: list[str]
        _enc_str(v, out)
        return out[0]
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        s = str(v)
        if len(s) > 24:
            return s[:20] + "...(" + str(len(s)) + " digits)"
        return s
    if isinstance(v, float):
        if _is_finite(v):
            return format_float(v)
        if v != v:
            return "NaN"
        if v > 0:
            return "Infinity"
        return "-Infinity"
    return "a value of type " + _tname(v)


def _num_text(x):
    # type: (int | float) -> str
    if isinstance(x, float) and x == int(x) and abs(x) < 1e16:
        return str(int(x))
    return _show(x)


def _is_int(v):
    # type: (Any) -> bool
    return isinstance(v, int) and not isinstance(v, bool)


def _bad_type(field, v, want):
    # type: (str, Any, str) -> ProtocolError
    return _fail("bad_type", field, "expected " + want + ", got " + _tname(v) + " " + _show(v))


def _int_in(v, field, lo, hi):
    # type: (Any, str, int, int) -> int
    if not _is_int(v):
        raise _bad_type(field, v, "an integer")
    if v < lo or v > hi:
        raise _fail(
            "out_of_range",
            field,
            _show(v) + " is outside [" + str(lo) + ", " + str(hi) + "]",
        )
    return v  # type: ignore[no-any-return]


def _ts(v, field):
    # type: (Any, str) -> int
    if not _is_int(v):
        raise _bad_type(field, v, "an integer (UTC milliseconds)")
    if v < TS_MIN or v >= TS_MAX:
        raise _fail(
            "out_of_range",
            field,
            _show(v)
            + " ms is outside [2020-01-01, 2100-01-01) = ["
            + str(TS_MIN)
            + ", "
            + str(TS_MAX)
            + ")",
        )
    return v  # type: ignore[no-any-return]


def _bool(v, field):
    # type: (Any, str) -> bool
    if v is True or v is False:
        return v
    raise _bad_type(field, v, "a boolean")


def _no_surrogates(s, field):
    # type: (str, str) -> None
    for c in s:
        if c >= "\ud800" and c <= "\udfff":
            raise _fail(
                "bad_value",
                field,
                "string contains a lone UTF-16 surrogate; send UTF-8 text",
            )


# Small caches of strings already checked (ids, metric names): a gateway sees
# the same few thousand over and over. Bounded; tiny on MicroPython.
_CACHE_MAX = 4096 if _CPYTHON else 32
_ids_ok = {}  # type: dict[str, bool]
_metric_units = {}  # type: dict[str, str]


def _remember(cache, key, value):
    # type: (dict[str, Any], str, Any) -> None
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value


def _is_id(s):
    # type: (str) -> bool
    if s in _ids_ok:
        return True
    if not s or len(s) > MAX_ID_LEN:
        return False
    if all(c in _ID_CHARS for c in s):
        _remember(_ids_ok, s, True)
        return True
    return False


def _id(v, field):
    # type: (Any, str) -> str
    if not isinstance(v, str):
        raise _bad_type(field, v, "a string id")
    if not _is_id(v):
        raise _fail(
            "bad_value",
            field,
            _show(v) + " is not an id (1.." + str(MAX_ID_LEN) + " characters of [a-z0-9-_.])",
        )
    return v


def _is_name(s, max_len):
    # type: (str, int) -> bool
    if not s or len(s) > max_len or s[0] not in _LOWER:
        return False
    return all(c in _NAME_REST for c in s)


def _name(v, field):
    # type: (Any, str) -> str
    if not isinstance(v, str):
        raise _bad_type(field, v, "a string name")
    if not _is_name(v, MAX_NAME_LEN):
        raise _fail(
            "bad_value",
            field,
            _show(v) + " is not a name (1.." + str(MAX_NAME_LEN) + " characters, [a-z][a-z0-9_]*)",
        )
    return v


def _text(v, field, max_len):
    # type: (Any, str, int) -> str
    if not isinstance(v, str):
        raise _bad_type(field, v, "a string")
    if len(v) > max_len:
        raise _fail(
            "too_large",
            field,
            "string of " + str(len(v)) + " characters exceeds " + str(max_len),
        )
    _no_surrogates(v, field)
    return v


def _choice(v, field, allowed):
    # type: (Any, str, tuple[str, ...]) -> str
    if not isinstance(v, str):
        raise _bad_type(field, v, "a string")
    if v not in allowed:
        raise _fail("bad_value", field, _show(v) + " is not one of " + "|".join(allowed))
    return v


def _boot(v, field):
    # type: (Any, str) -> str
    if not isinstance(v, str):
        raise _bad_type(field, v, "a string boot id")
    ok = BOOT_MIN_LEN <= len(v) <= BOOT_MAX_LEN
    if ok:
        for c in v:
            if c not in _HEX:
                ok = False
                break
    if not ok:
        raise _fail(
            "bad_value",
            field,
            _show(v)
            + " is not a boot id ("
            + str(BOOT_MIN_LEN)
            + ".."
            + str(BOOT_MAX_LEN)
            + " lowercase hex characters)",
        )
    return v


def _fw(v, field):
    # type: (Any, str) -> str
    if not isinstance(v, str):
        raise _bad_type(field, v, "a string")
    ok = 1 <= len(v) <= MAX_FW_LEN
    if ok:
        for c in v:
            o = ord(c)
            if o < _FW_MIN or o > _FW_MAX:
                ok = False
                break
    if not ok:
        raise _fail(
            "bad_value",
            field,
            _show(v) + " is not a version (1.." + str(MAX_FW_LEN) + " printable ASCII, no spaces)",
        )
    return v


# ---------------------------------------------------------------- metrics


def _metric_name(name, field):
    # type: (Any, str) -> str
    """The unit suffix of a valid metric name."""
    unit = _metric_units.get(name)
    if unit is not None:
        return unit
    if not isinstance(name, str):
        raise _bad_type(field, name, "a string metric name")
    if not _is_name(name, MAX_METRIC_LEN):
        raise _fail(
            "bad_value",
            field,
            "metric name "
            + _show(name)
            + " is not [a-z][a-z0-9_]* of 1.."
            + str(MAX_METRIC_LEN)
            + " characters",
        )
    i = name.rfind("_")
    if i < 1 or name[i + 1 :] not in UNITS:
        raise _fail(
            "bad_value",
            field,
            "metric name " + _show(name) + " does not end in a unit suffix (_w, _wh, _v, ...)",
        )
    unit = name[i + 1 :]
    _remember(_metric_units, name, unit)
    return unit


def _metric_value(name, unit, v, field):
    # type: (str, str, Any, str) -> int | float
    if not (_is_int(v) or isinstance(v, float)):
        raise _bad_type(field, v, "a number")
    if isinstance(v, float):
        if not _is_finite(v):
            raise _fail("bad_value", field, _show(v) + " is not a finite number")
        v = normalize_float(v)
    if unit == "bool":
        if not _is_int(v):
            raise _bad_type(field, v, "the integer 0 or 1")
        if v != 0 and v != 1:
            raise _fail("bad_value", field, _show(v) + " is not 0 or 1")
    elif unit == "count":
        if not _is_int(v):
            raise _bad_type(field, v, "an integer count")
        if v < 0:
            raise _fail("out_of_range", field, _show(v) + " is negative")
    if v > MAX_MAGNITUDE or v < -MAX_MAGNITUDE:
        raise _fail("out_of_range", field, _show(v) + " exceeds the magnitude limit 1e15")
    rng = METRICS.get(name)
    if rng is not None and (v < rng[0] or v > rng[1]):
        raise _fail(
            "out_of_range",
            field,
            _show(v)
            + " is outside ["
            + _num_text(rng[0])
            + ", "
            + _num_text(rng[1])
            + "] "
            + UNITS[unit],
        )
    return v  # type: ignore[no-any-return]


# ---------------------------------------------------------------- free JSON


def _free(v, field, depth, budget):
    # type: (Any, str, int, list[int]) -> Any
    """Check a value inside detail/args/result; returns a normalised copy."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _fail("too_large", field, "more than " + str(budget[1]) + " values")
    if v is None or v is True or v is False:
        return v
    if isinstance(v, str):
        return _text(v, field, MAX_TEXT_LEN)
    if isinstance(v, int):
        if v > MAX_FREE_INT or v < -MAX_FREE_INT:
            raise _fail("out_of_range", field, _show(v) + " exceeds the integer limit 2**53")
        return v
    if isinstance(v, float):
        if not _is_finite(v):
            raise _fail("bad_value", field, _show(v) + " is not a finite number")
        return normalize_float(v)
    if isinstance(v, (list, tuple)):
        if depth >= MAX_DEPTH:
            raise _fail("too_large", field, "nested deeper than " + str(MAX_DEPTH) + " levels")
        return [_free(x, _index(field, i), depth + 1, budget) for i, x in enumerate(v)]
    if isinstance(v, dict):
        if depth >= MAX_DEPTH:
            raise _fail("too_large", field, "nested deeper than " + str(MAX_DEPTH) + " levels")
        return _free_obj(v, field, depth, budget)
    raise _bad_type(field, v, "a JSON value")


def _free_obj(v, field, depth, budget):
    # type: (dict[Any, Any], str, int, list[int]) -> dict[str, Any]
    keys = list(v)
    for k in keys:
        if not isinstance(k, str):
            raise _bad_type(field, k, "string object keys")
    keys.sort()
    out = {}
    for k in keys:
        sub = _join(field, k)
        if not k or len(k) > MAX_KEY_LEN:
            raise _fail("bad_value", sub, "key length must be 1.." + str(MAX_KEY_LEN))
        _no_surrogates(k, sub)
        out[k] = _free(v[k], sub, depth + 1, budget)
    return out


def _free_root(v, field, max_items):
    # type: (Any, str, int) -> dict[str, Any]
    if not isinstance(v, dict):
        raise _bad_type(field, v, "an object")
    return _free_obj(v, field, 0, [max_items, max_items])


# ---------------------------------------------------------------- messages


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
        raise _fail(
            "unknown_field",
            _join(field, ks),
            "field " + _show(k) + " is not defined here in protocol v1",
        )
    for k in required:
        if k not in obj:
            raise _fail("missing_field", _join(field, k), "required field is missing")


def _up_envelope(msg, out):
    # type: (dict[str, Any], dict[str, Any]) -> None
    out["boot"] = _boot(msg["boot"], "boot")
    out["seq"] = _int_in(msg["seq"], "seq", 0, SEQ_MAX)
    out["ts"] = _ts(msg["ts"], "ts")


def _check_telemetry(msg, out):
    # type: (dict[str, Any], dict[str, Any]) -> None
    _up_envelope(msg, out)
    readings = msg["readings"]
    if not isinstance(readings, list):
        raise _bad_type("readings", readings, "an array")
    if not readings:
        raise _fail("bad_value", "readings", "at least one reading is required")
    if len(readings) > MAX_READINGS:
        raise _fail(
            "too_large",
            "readings",
            str(len(readings)) + " readings exceed the limit of " + str(MAX_READINGS),
        )
    good = []
    for i, r in enumerate(readings):
        rf = _index("readings", i)
        if not isinstance(r, dict):
            raise _bad_type(rf, r, "an object")
        _fields(r, rf, ("ts", "ch", "values"), ())
        ts = _ts(r["ts"], rf + ".ts")
        ch = _int_in(r["ch"], rf + ".ch", 0, CH_MAX)
        values = r["values"]
        vf = rf + ".values"
        if not isinstance(values, dict):
            raise _bad_type(vf, values, "an object")
        if not values:
            raise _fail("bad_value", vf, "at least one metric is required")
        if len(values) > MAX_VALUES:
            raise _fail(
                "too_large",
                vf,
                str(len(values)) + " metrics exceed the limit of " + str(MAX_VALUES),
            )
        names = list(values)
        for name in names:
            if not isinstance(name, str):
                raise _bad_type(vf, name, "string metric names")
        names.sort()
        vals = {}
        for name in names:
            mf = vf + "." + name
            unit = _metric_name(name, mf)
            vals[name] = _metric_value(name, unit, values[name], mf)
        good.append({"ts": ts, "ch": ch, "values": vals})
    out["readings"] = good


def _check_event(msg, out):
    # type: (dict[str, Any], dict[str, Any]) -> None
    _up_envelope(msg, out)
    out["code"] = _name(msg["code"], "code")
    out["sev"] = _choice(msg["sev"], "sev", SEVERITIES)
    out["active"] = _bool(msg["active"], "active")
    if "ch" in msg:
        out["ch"] = _int_in(msg["ch"], "ch", 0, CH_MAX)
    if "detail" in msg:
        out["detail"] = _free_root(msg["detail"], "detail", MAX_DETAIL_ITEMS)


def _check_status(msg, out):
    # type: (dict[str, Any], dict[str, Any]) -> None
    _up_envelope(msg, out)
    out["state"] = _choice(msg["state"], "state", STATES)
    roles = GATEWAY_ROLES if "gw" in out else DEVICE_ROLES
    out["role"] = _choice(msg["role"], "role", roles)
    if "fw" in msg:
        out["fw"] = _fw(msg["fw"], "fw")


def _check_ack(msg, out):
    # type: (dict[str, Any], dict[str, Any]) -> None
    _up_envelope(msg, out)
    out["cmd"] = _id(msg["cmd"], "cmd")
    ok = _bool(msg["ok"], "ok")
    out["ok"] = ok
    if "err" in msg:
        if ok:
            raise _fail("bad_value", "err", "must be absent when ok is true")
        err = msg["err"]
        if not isinstance(err, dict):
            raise _bad_type("err", err, "an object")
        _fields(err, "err", ("code", "reason"), ())
        out["err"] = {
            "code": _name(err["code"], "err.code"),
            "reason": _text(err["reason"], "err.reason", MAX_TEXT_LEN),
        }
    elif not ok:
        raise _fail("missing_field", "err", "required when ok is false")
    if "result" in msg:
        out["result"] = _free_root(msg["result"], "result", MAX_RESULT_ITEMS)


def _check_cmd(msg, out):
    # type: (dict[str, Any], dict[str, Any]) -> None
    out["id"] = _id(msg["id"], "id")
    out["name"] = _name(msg["name"], "name")
    out["args"] = _free_root(msg["args"], "args", MAX_ARGS_ITEMS)
    ts = _ts(msg["ts"], "ts")
    exp = _ts(msg["exp"], "exp")
    if exp < ts:
        raise _fail("bad_value", "exp", str(exp) + " is before ts " + str(ts))
    out["ts"] = ts
    out["exp"] = exp
    if "src" in msg:
        out["src"] = _id(msg["src"], "src")


def _check_error(msg, out):
    # type: (dict[str, Any], dict[str, Any]) -> None
    out["code"] = _name(msg["code"], "code")
    out["reason"] = _text(msg["reason"], "reason", MAX_TEXT_LEN)
    out["ts"] = _ts(msg["ts"], "ts")
    if "field" in msg:
        out["field"] = _text(msg["field"], "field", MAX_TEXT_LEN)
    if "ref" in msg:
        ref = msg["ref"]
        if not isinstance(ref, dict):
            raise _bad_type("ref", ref, "an object")
        _fields(ref, "ref", ("boot", "seq"), ())
        out["ref"] = {
            "boot": _boot(ref["boot"], "ref.boot"),
            "seq": _int_in(ref["seq"], "ref.seq", 0, SEQ_MAX),
        }


def _check_batch(msg, out):
    # type: (dict[str, Any], dict[str, Any]) -> None
    _up_envelope(msg, out)
    msgs = _batch_list(msg["msgs"])
    good = []
    for i, entry in enumerate(msgs):
        try:
            inner = _inner(entry)
        except _InnerError as e:
            err = e.err
            base = _index("msgs", i)
            if e.in_payload:
                base = base + ".payload"
            field = _join(base, err.field) if err.field else base
            what = err.reason
            if err.field and what.startswith(err.field + ": "):
                what = what[len(err.field) + 2 :]
            raise _fail(err.code, field, what) from None
        good.append({"topic": uplink_topic(inner["dev"], inner["kind"]), "payload": inner})
    out["msgs"] = good


def _batch_list(msgs):
    # type: (Any) -> list[Any]
    if not isinstance(msgs, list):
        raise _bad_type("msgs", msgs, "an array")
    if not msgs:
        raise _fail("bad_value", "msgs", "at least one message is required")
    if len(msgs) > MAX_BATCH_MSGS:
        raise _fail(
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
    return _validate(msg, True)


def _validate(msg, deep):
    # type: (Any, bool) -> dict[str, Any]
    """validate(); with deep=False a batch's entries are not checked (the
    returned "msgs" is the list as given)."""
    if not isinstance(msg, dict):
        raise _fail("not_object", None, "message must be a JSON object, got " + _tname(msg))
    if "v" not in msg:
        raise _fail("missing_field", "v", "required field is missing")
    v = msg["v"]
    if not _is_int(v):
        raise _bad_type("v", v, "the integer " + str(VERSION))
    if v != VERSION:
        raise _fail(
            "bad_version",
            "v",
            "protocol version "
            + _show(v)
            + " is not supported (this codec speaks "
            + str(VERSION)
            + ")",
        )
    if "kind" not in msg:
        raise _fail("missing_field", "kind", "required field is missing")
    kind = msg["kind"]
    if not isinstance(kind, str):
        raise _bad_type("kind", kind, "a string")
    if kind in RESERVED_KINDS:
        raise _fail("unknown_kind", "kind", _show(kind) + " is reserved and not defined in v1 yet")
    if kind not in _ALL_KINDS:
        raise _fail("unknown_kind", "kind", _show(kind) + " is not a v1 message kind")
    if "dev" in msg:
        scope = "dev"
    elif "gw" in msg:
        scope = "gw"
    elif kind == "batch":
        raise _fail("missing_field", "gw", "required field is missing")
    else:
        raise _fail("missing_field", "dev", "required field is missing")
    spec = _SPECS.get((scope, kind))
    if spec is None:
        who = "gateway" if scope == "gw" else "device"
        raise _fail(
            "unknown_kind", "kind", _show(kind) + " is not defined for " + who + " messages"
        )
    required, optional, check = spec
    _fields(msg, "", required, optional)
    out = {"v": VERSION, "kind": kind}  # type: dict[str, Any]
    out[scope] = _id(msg[scope], scope)
    if kind == "batch" and not deep:
        _up_envelope(msg, out)
        out["msgs"] = _batch_list(msg["msgs"])
    else:
        check(msg, out)
    return out


# ---------------------------------------------------------------- topics


def _topic_id(v, what):
    # type: (Any, str) -> str
    if not isinstance(v, str) or not _is_id(v):
        raise _fail(
            "bad_topic",
            None,
            what + " " + _show(v) + " is not an id (1.." + str(MAX_ID_LEN) + " of [a-z0-9-_.])",
        )
    return v


def uplink_topic(device_id, kind):
    # type: (str, str) -> str
    """``lumeau/v1/dev/{device_id}/up/{kind}``."""
    _topic_id(device_id, "device id")
    if kind not in UPLINK_KINDS:
        raise _fail("bad_topic", None, _show(kind) + " is not an uplink kind")
    return TOPIC_ROOT + "/dev/" + device_id + "/up/" + kind


def downlink_topic(device_id, kind):
    # type: (str, str) -> str
    """``lumeau/v1/dev/{device_id}/down/{kind}``."""
    _topic_id(device_id, "device id")
    if kind not in DOWNLINK_KINDS:
        raise _fail("bad_topic", None, _show(kind) + " is not a downlink kind")
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
        raise _fail("bad_topic", None, "direction " + _show(direction) + " is not up|down")
    if kind not in kinds:
        raise _fail("bad_topic", None, _show(kind) + " is not a gateway " + direction + " kind")
    return TOPIC_ROOT + "/gw/" + gateway_id + "/" + direction + "/" + kind


def _kinds_for(scope, direction):
    # type: (str, str) -> tuple[str, ...]
    if scope == "dev":
        return UPLINK_KINDS if direction == "up" else DOWNLINK_KINDS
    return GATEWAY_UPLINK_KINDS if direction == "up" else GATEWAY_DOWNLINK_KINDS


def parse_topic(topic):
    # type: (Any) -> tuple[str, str, str, str]
    """Split a v1 topic into (scope "dev"|"gw", id, direction "up"|"down", kind).

    Reserved kinds (``recording``) parse; their payloads do not validate yet.
    """
    if isinstance(topic, (bytes, bytearray)):
        try:
            topic = bytes(topic).decode("utf-8")
        except (UnicodeError, ValueError):
            raise _fail("bad_topic", None, "topic is not UTF-8") from None
    if not isinstance(topic, str):
        raise _fail("bad_topic", None, "topic must be a string, got " + _tname(topic))
    parts = topic.split("/")
    if len(parts) != 6 or parts[0] + "/" + parts[1] != TOPIC_ROOT:
        raise _fail(
            "bad_topic",
            None,
            _show(topic) + " is not " + TOPIC_ROOT + "/{dev|gw}/{id}/{up|down}/{kind}",
        )
    scope = parts[2]
    ident = parts[3]
    direction = parts[4]
    kind = parts[5]
    if scope != "dev" and scope != "gw":
        raise _fail("bad_topic", None, _show(topic) + ": scope " + _show(scope) + " is not dev|gw")
    if not _is_id(ident):
        raise _fail("bad_topic", None, _show(topic) + ": " + _show(ident) + " is not an id")
    if direction != "up" and direction != "down":
        raise _fail(
            "bad_topic", None, _show(topic) + ": direction " + _show(direction) + " is not up|down"
        )
    if kind not in _kinds_for(scope, direction):
        raise _fail(
            "bad_topic",
            None,
            _show(topic) + ": " + _show(kind) + " is not a " + scope + " " + direction + " kind",
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


def _check_topic(msg, parsed):
    # type: (dict[str, Any], tuple[str, str, str, str]) -> None
    scope, ident, _direction, kind = parsed
    if msg["kind"] != kind:
        raise _fail(
            "topic_mismatch",
            "kind",
            "payload kind " + _show(msg["kind"]) + " does not match topic kind " + _show(kind),
        )
    if scope not in msg:
        other = "gw" if scope == "dev" else "dev"
        raise _fail(
            "topic_mismatch",
            other,
            "payload is a " + other + " message but the topic is under " + scope + "/",
        )
    if msg[scope] != ident:
        raise _fail(
            "topic_mismatch",
            scope,
            _show(msg[scope]) + " does not match the topic's id " + _show(ident),
        )


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
    raise _fail("bad_type", None, "payload must be bytes, got " + _tname(payload))


def _parse(data, limit):
    # type: (bytes, int) -> Any
    if len(data) > limit:
        raise _fail(
            "too_large",
            None,
            "payload is " + str(len(data)) + " bytes; the limit is " + str(limit),
        )
    try:
        text = data.decode("utf-8")
    except (UnicodeError, ValueError):
        raise _fail("bad_json", None, "payload is not valid UTF-8") from None
    try:
        return json.loads(text)
    except (ValueError, RuntimeError) as e:  # RecursionError is a RuntimeError
        detail = str(e)
        if len(detail) > 80:
            detail = detail[:80]
        raise _fail("bad_json", None, "payload is not valid JSON (" + detail + ")") from None


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


class _InnerError(Exception):
    """Carries a ProtocolError about one batch entry and where it applies."""

    def __init__(self, err, in_payload):
        # type: (ProtocolError, bool) -> None
        super().__init__(err.reason)
        self.err = err
        self.in_payload = in_payload


def _inner(entry):
    # type: (Any) -> dict[str, Any]
    """Validate one batch entry {"topic", "payload"}; returns the payload."""
    try:
        if not isinstance(entry, dict):
            raise _fail("not_object", None, "batch entry must be an object, got " + _tname(entry))
        _fields(entry, "", ("topic", "payload"), ())
        parsed = parse_topic(entry["topic"])
        if parsed[0] != "dev" or parsed[2] != "up":
            raise _fail(
                "bad_topic",
                "topic",
                _show(entry["topic"]) + " is not a device uplink topic",
            )
        payload = entry["payload"]
        if not isinstance(payload, dict):
            raise _fail("not_object", "payload", "must be an object, got " + _tname(payload))
    except ProtocolError as e:
        if e.code == "bad_topic" and e.field is None:
            e = ProtocolError(e.code, "topic: " + e.reason, "topic")
        raise _InnerError(e, False) from None
    try:
        msg = validate(payload)
        _check_topic(msg, parsed)
    except ProtocolError as e:
        raise _InnerError(e, True) from None
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
    env = _validate(obj, False)
    if env["kind"] != "batch":
        raise _fail("bad_value", "kind", _show(env["kind"]) + " is not a batch")
    if parsed is not None:
        _check_topic(env, parsed)
    good = []
    bad = []
    for i, entry in enumerate(env["msgs"]):
        try:
            good.append(_inner(entry))
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
