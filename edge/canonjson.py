"""Canonical JSON: the protocol's byte-exact encoder and float formatting.

Part of ``edge.protocol`` (docs/protocol.md, "Canonical encoding"); runs
unchanged on CPython and MicroPython and gives the same bytes on both: compact,
keys sorted, UTF-8, floats rounded to ``FLOAT_DIGITS`` significant digits from
their exact binary value. ``show`` is the short text of a value that error
reasons quote, the same on both interpreters.
"""

import math
import sys

from ._protocol_spec import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from typing import Any  # noqa: F401  (used in type comments)

FLOAT_DIGITS = 12  # significant digits kept for every float

_HEX = "0123456789abcdef"
_CPYTHON = sys.implementation.name == "cpython"

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


def exact_parts(x):
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
        # exact_parts; it is only faster. The unit tests check they agree.
        s = "%.*e" % (FLOAT_DIGITS - 1, x)
        i = s.find("e")
        digits = s[0] + s[2:i]
        exp = int(s[i + 1 :])
    else:
        digits, exp = exact_parts(x)
    digits = digits.rstrip("0")
    if not digits:
        digits = "0"
    return digits, exp


def is_finite(x):
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
    if not is_finite(x):
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
    if _CPYTHON and is_finite(x):
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
        raise ProtocolError("bad_type", "cannot encode a value of type " + type_name(obj))


def canonical_json(obj):
    # type: (Any) -> bytes
    """Canonical JSON of any JSON-like value: compact, keys sorted, UTF-8.

    No protocol validation and no size limit; used by ``encode`` and by
    dead-letter stores that must keep an invalid message byte-stable.
    """
    out = []  # type: list[str]
    _enc(obj, out, 0)
    return "".join(out).encode("utf-8")


# ---------------------------------------------------------------- text of values


def type_name(v):
    # type: (Any) -> str
    """The JSON type of v, for error reasons ("string", "integer", ...)."""
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


def show(v):
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
        if is_finite(v):
            return format_float(v)
        if v != v:
            return "NaN"
        if v > 0:
            return "Infinity"
        return "-Infinity"
    return "a value of type " + type_name(v)
