"""Protocol v1 field checks: integers, timestamps, ids, names, text, metric
values and the free JSON of ``detail``/``args``/``result``.

Part of ``edge.protocol`` (import from there). Each check returns the value
(normalised) when it is valid and raises ``ProtocolError`` naming ``field``,
a dotted path (``join``, ``index``), when it is not.
"""

import sys

from ._protocol_spec import (
    BOOT_MAX_LEN,
    BOOT_MIN_LEN,
    MAX_DEPTH,
    MAX_FREE_INT,
    MAX_FW_LEN,
    MAX_ID_LEN,
    MAX_KEY_LEN,
    MAX_MAGNITUDE,
    MAX_METRIC_LEN,
    MAX_NAME_LEN,
    MAX_TEXT_LEN,
    METRICS,
    TS_MAX,
    TS_MIN,
    UNITS,
    ProtocolError,
)
from .canonjson import is_finite, normalize_float, show, type_name

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from typing import Any  # noqa: F401  (used in type comments)

LOWER = "abcdefghijklmnopqrstuvwxyz"
HEX = "0123456789abcdef"
_NAME_REST = LOWER + "0123456789_"
_ID_CHARS = LOWER + "0123456789-_."
_FW_MIN = 0x21
_FW_MAX = 0x7E

_CPYTHON = sys.implementation.name == "cpython"

# ---------------------------------------------------------------- errors


def fail(code, field, what):
    # type: (str, str | None, str) -> ProtocolError
    """The error to raise: its reason starts with the field's path, if any."""
    if field:
        return ProtocolError(code, field + ": " + what, field)
    return ProtocolError(code, what, None)


def join(base, key):
    # type: (str, str) -> str
    """Field path of ``key`` inside the object at ``base``."""
    if base:
        return base + "." + key
    return key


def index(base, i):
    # type: (str, int) -> str
    """Field path of item ``i`` of the array at ``base``."""
    return base + "[" + str(i) + "]"


# ---------------------------------------------------------------- scalars


def is_int(v):
    # type: (Any) -> bool
    return isinstance(v, int) and not isinstance(v, bool)


def bad_type(field, v, want):
    # type: (str, Any, str) -> ProtocolError
    return fail("bad_type", field, "expected " + want + ", got " + type_name(v) + " " + show(v))


def check_int(v, field, lo, hi):
    # type: (Any, str, int, int) -> int
    if not is_int(v):
        raise bad_type(field, v, "an integer")
    if v < lo or v > hi:
        raise fail(
            "out_of_range",
            field,
            show(v) + " is outside [" + str(lo) + ", " + str(hi) + "]",
        )
    return v  # type: ignore[no-any-return]


def check_ts(v, field):
    # type: (Any, str) -> int
    if not is_int(v):
        raise bad_type(field, v, "an integer (UTC milliseconds)")
    if v < TS_MIN or v >= TS_MAX:
        raise fail(
            "out_of_range",
            field,
            show(v)
            + " ms is outside [2020-01-01, 2100-01-01) = ["
            + str(TS_MIN)
            + ", "
            + str(TS_MAX)
            + ")",
        )
    return v  # type: ignore[no-any-return]


def check_bool(v, field):
    # type: (Any, str) -> bool
    if v is True or v is False:
        return v
    raise bad_type(field, v, "a boolean")


def no_surrogates(s, field):
    # type: (str, str) -> None
    for c in s:
        if c >= "\ud800" and c <= "\udfff":
            raise fail(
                "bad_value",
                field,
                "string contains a lone UTF-16 surrogate; send UTF-8 text",
            )


# Small caches of strings already checked (ids, metric names): a gateway sees
# the same few thousand over and over. Bounded; tiny on MicroPython.
_CACHE_MAX = 4096 if _CPYTHON else 32
_ids_ok = {}  # type: dict[str, bool]
_metric_units = {}  # type: dict[str, str]  # metric name -> unit suffix


def _remember(cache, key, value):
    # type: (dict[str, Any], str, Any) -> None
    """cache[key] = value, emptying the cache first when it is full."""
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value


def is_id(s):
    # type: (str) -> bool
    if s in _ids_ok:
        return True
    if not s or len(s) > MAX_ID_LEN:
        return False
    if all(c in _ID_CHARS for c in s):
        _remember(_ids_ok, s, True)
        return True
    return False


def check_id(v, field):
    # type: (Any, str) -> str
    if not isinstance(v, str):
        raise bad_type(field, v, "a string id")
    if not is_id(v):
        raise fail(
            "bad_value",
            field,
            show(v) + " is not an id (1.." + str(MAX_ID_LEN) + " characters of [a-z0-9-_.])",
        )
    return v


def is_name(s, max_len):
    # type: (str, int) -> bool
    if not s or len(s) > max_len or s[0] not in LOWER:
        return False
    return all(c in _NAME_REST for c in s)


def check_name(v, field):
    # type: (Any, str) -> str
    if not isinstance(v, str):
        raise bad_type(field, v, "a string name")
    if not is_name(v, MAX_NAME_LEN):
        raise fail(
            "bad_value",
            field,
            show(v) + " is not a name (1.." + str(MAX_NAME_LEN) + " characters, [a-z][a-z0-9_]*)",
        )
    return v


def check_text(v, field, max_len):
    # type: (Any, str, int) -> str
    if not isinstance(v, str):
        raise bad_type(field, v, "a string")
    if len(v) > max_len:
        raise fail(
            "too_large",
            field,
            "string of " + str(len(v)) + " characters exceeds " + str(max_len),
        )
    no_surrogates(v, field)
    return v


def check_choice(v, field, allowed):
    # type: (Any, str, tuple[str, ...]) -> str
    if not isinstance(v, str):
        raise bad_type(field, v, "a string")
    if v not in allowed:
        raise fail("bad_value", field, show(v) + " is not one of " + "|".join(allowed))
    return v


def check_boot(v, field):
    # type: (Any, str) -> str
    if not isinstance(v, str):
        raise bad_type(field, v, "a string boot id")
    ok = BOOT_MIN_LEN <= len(v) <= BOOT_MAX_LEN
    if ok:
        for c in v:
            if c not in HEX:
                ok = False
                break
    if not ok:
        raise fail(
            "bad_value",
            field,
            show(v)
            + " is not a boot id ("
            + str(BOOT_MIN_LEN)
            + ".."
            + str(BOOT_MAX_LEN)
            + " lowercase hex characters)",
        )
    return v


def check_fw(v, field):
    # type: (Any, str) -> str
    if not isinstance(v, str):
        raise bad_type(field, v, "a string")
    ok = 1 <= len(v) <= MAX_FW_LEN
    if ok:
        for c in v:
            o = ord(c)
            if o < _FW_MIN or o > _FW_MAX:
                ok = False
                break
    if not ok:
        raise fail(
            "bad_value",
            field,
            show(v) + " is not a version (1.." + str(MAX_FW_LEN) + " printable ASCII, no spaces)",
        )
    return v


# METRICS.get, bound once: a method call on an imported name is slower in
# CPython (its compiler does not use LOAD_METHOD for those).
_metric_range = METRICS.get


# ---------------------------------------------------------------- metrics


def _num_text(x):
    # type: (int | float) -> str
    if isinstance(x, float) and x == int(x) and abs(x) < 1e16:
        return str(int(x))
    return show(x)


def metric_unit(name, field):
    # type: (Any, str) -> str
    """The unit suffix of a valid metric name."""
    unit = _metric_units.get(name)
    if unit is not None:
        return unit
    if not isinstance(name, str):
        raise bad_type(field, name, "a string metric name")
    if not is_name(name, MAX_METRIC_LEN):
        raise fail(
            "bad_value",
            field,
            "metric name "
            + show(name)
            + " is not [a-z][a-z0-9_]* of 1.."
            + str(MAX_METRIC_LEN)
            + " characters",
        )
    i = name.rfind("_")
    if i < 1 or name[i + 1 :] not in UNITS:
        raise fail(
            "bad_value",
            field,
            "metric name " + show(name) + " does not end in a unit suffix (_w, _wh, _v, ...)",
        )
    unit = name[i + 1 :]
    _remember(_metric_units, name, unit)
    return unit


def metric_value(name, unit, v, field):
    # type: (str, str, Any, str) -> int | float
    if not (is_int(v) or isinstance(v, float)):
        raise bad_type(field, v, "a number")
    if isinstance(v, float):
        if not is_finite(v):
            raise fail("bad_value", field, show(v) + " is not a finite number")
        v = normalize_float(v)
    if unit == "bool":
        if not is_int(v):
            raise bad_type(field, v, "the integer 0 or 1")
        if v != 0 and v != 1:
            raise fail("bad_value", field, show(v) + " is not 0 or 1")
    elif unit == "count":
        if not is_int(v):
            raise bad_type(field, v, "an integer count")
        if v < 0:
            raise fail("out_of_range", field, show(v) + " is negative")
    if v > MAX_MAGNITUDE or v < -MAX_MAGNITUDE:
        raise fail("out_of_range", field, show(v) + " exceeds the magnitude limit 1e15")
    rng = _metric_range(name)
    if rng is not None and (v < rng[0] or v > rng[1]):
        raise fail(
            "out_of_range",
            field,
            show(v)
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
        raise fail("too_large", field, "more than " + str(budget[1]) + " values")
    if v is None or v is True or v is False:
        return v
    if isinstance(v, str):
        return check_text(v, field, MAX_TEXT_LEN)
    if isinstance(v, int):
        if v > MAX_FREE_INT or v < -MAX_FREE_INT:
            raise fail("out_of_range", field, show(v) + " exceeds the integer limit 2**53")
        return v
    if isinstance(v, float):
        if not is_finite(v):
            raise fail("bad_value", field, show(v) + " is not a finite number")
        return normalize_float(v)
    if isinstance(v, (list, tuple)):
        if depth >= MAX_DEPTH:
            raise fail("too_large", field, "nested deeper than " + str(MAX_DEPTH) + " levels")
        return [_free(x, index(field, i), depth + 1, budget) for i, x in enumerate(v)]
    if isinstance(v, dict):
        if depth >= MAX_DEPTH:
            raise fail("too_large", field, "nested deeper than " + str(MAX_DEPTH) + " levels")
        return _free_obj(v, field, depth, budget)
    raise bad_type(field, v, "a JSON value")


def _free_obj(v, field, depth, budget):
    # type: (dict[Any, Any], str, int, list[int]) -> dict[str, Any]
    keys = list(v)
    for k in keys:
        if not isinstance(k, str):
            raise bad_type(field, k, "string object keys")
    keys.sort()
    out = {}
    for k in keys:
        sub = join(field, k)
        if not k or len(k) > MAX_KEY_LEN:
            raise fail("bad_value", sub, "key length must be 1.." + str(MAX_KEY_LEN))
        no_surrogates(k, sub)
        out[k] = _free(v[k], sub, depth + 1, budget)
    return out


def free_root(v, field, max_items):
    # type: (Any, str, int) -> dict[str, Any]
    if not isinstance(v, dict):
        raise bad_type(field, v, "an object")
    return _free_obj(v, field, 0, [max_items, max_items])
