"""The JSON wire convention between the test process and MicroPython.

This one file runs on both interpreters: the harness imports it under CPython,
and the Node runner copies it into MicroPython's file system as
``/lib/_lumeau_wire.py``. Both sides therefore encode values with the same
code, so a result that went through MicroPython and one that stayed in CPython
can be compared after the same round trip.

JSON carries ``None``, booleans, ints (any size), ``str``, lists and
dicts with string keys as themselves. Everything else is a one-key object::

    {"__float__": "<16 hex digits>"}      IEEE 754 double, big-endian: exact,
                                          including -0.0, NaN and infinities
    {"__str__": "<hex>"}                  a str that UTF-8 cannot carry: lone
                                          surrogates, or on MicroPython the
                                          malformed bytes its decode() keeps;
                                          its bytes, surrogates passed through
    {"__bytes__": "<hex>"}                bytes (also memoryview)
    {"__bytearray__": "<hex>"}            bytearray
    {"__tuple__": [...]}                  tuple
    {"__set__": [...]}                    set or frozenset
    {"__dict__": [[key, value], ...]}     dict with a non-string key, or a dict
                                          that would look like one of these tags
    {"__exception__": {"type": name, "args": [...], "attrs": {...}}}

Floats never travel as decimal text, so neither interpreter's float printing
or parsing can blur a comparison. Written in the subset MicroPython runs: no
typing, no f-string tricks, no ``float.hex``.
"""

import binascii
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # never true at run time: MicroPython has no typing module
    from collections.abc import Callable  # noqa: F401  (used in type comments)
    from typing import Any  # noqa: F401  (used in type comments)

_MICROPYTHON = sys.implementation.name == "micropython"

TAGS = (
    "__float__",
    "__str__",
    "__bytes__",
    "__bytearray__",
    "__tuple__",
    "__set__",
    "__dict__",
    "__exception__",
)

_MAX_DEPTH = 200


def _hex(data):
    # type: (bytes) -> str
    return binascii.hexlify(data).decode()


def _unhex(text):
    # type: (str) -> bytes
    return binascii.unhexlify(text.encode())


def float_to_hex(x):
    # type: (float) -> str
    """The 16 hex digits of a float's IEEE 754 double, big-endian."""
    return _hex(struct.pack(">d", x))


def float_from_hex(text):
    # type: (str) -> float
    x = struct.unpack(">d", _unhex(text))[0]  # type: float
    return x


def _str_to_wire(s):
    # type: (str) -> Any
    """s itself, unless JSON text could not carry it exactly."""
    try:
        data = s.encode("utf-8")
    except UnicodeError:  # CPython: a lone surrogate
        return {"__str__": _hex(s.encode("utf-8", "surrogatepass"))}
    if _MICROPYTHON and data and max(data) >= 0x80:
        # MicroPython keeps whatever bytes.decode() let through (surrogates,
        # code points past U+10FFFF, overlong forms) as raw bytes, which the
        # JavaScript side would turn into U+FFFD: send those bytes instead.
        for c in s:
            o = ord(c)
            if (0xD800 <= o <= 0xDFFF) or o > 0x10FFFF:
                return {"__str__": _hex(data)}
        if "".join([chr(ord(c)) for c in s]).encode("utf-8") != data:
            return {"__str__": _hex(data)}
    return s


def _str_from_wire(text):
    # type: (str) -> str
    data = _unhex(text)
    if _MICROPYTHON:
        return data.decode("utf-8")
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeError:  # a code point past U+10FFFF from MicroPython
        return data.decode("utf-8", "surrogateescape")


def to_wire(obj, _depth=0):
    # type: (Any, int) -> Any
    """A JSON-ready form of obj (see the module docstring); TypeError if none."""
    if _depth > _MAX_DEPTH:
        raise ValueError("value nested deeper than " + str(_MAX_DEPTH) + " levels")
    d = _depth + 1
    if obj is None or obj is True or obj is False:
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return {"__float__": float_to_hex(obj)}
    if isinstance(obj, str):
        return _str_to_wire(obj)
    if isinstance(obj, bytearray):
        return {"__bytearray__": _hex(bytes(obj))}
    if isinstance(obj, (bytes, memoryview)):
        return {"__bytes__": _hex(bytes(obj))}
    if isinstance(obj, list):
        return [to_wire(x, d) for x in obj]
    if isinstance(obj, tuple):
        return {"__tuple__": [to_wire(x, d) for x in obj]}
    if isinstance(obj, dict):
        plain = True
        for k in obj:
            if not isinstance(k, str):
                plain = False
                break
        if plain and len(obj) == 1 and next(iter(obj)) in TAGS:
            plain = False
        if plain:
            out = {}
            for k in obj:
                out[k] = to_wire(obj[k], d)
            return out
        return {"__dict__": [[to_wire(k, d), to_wire(obj[k], d)] for k in obj]}
    if isinstance(obj, (set, frozenset)):
        return {"__set__": [to_wire(x, d) for x in obj]}
    if isinstance(obj, BaseException):
        return {"__exception__": describe_exception(obj)}
    raise TypeError("no wire form for a value of type " + type(obj).__name__)


def describe_exception(e):
    # type: (BaseException) -> dict[str, Any]
    """Type name, args and public instance attributes of an exception, wired.

    Attributes whose value has no wire form are left out rather than failing.
    """
    attrs = {}  # type: dict[str, Any]
    try:
        items = list(e.__dict__.items())
    except AttributeError:
        items = []
    for k, v in items:
        if k.startswith("_"):
            continue
        try:
            wired = to_wire(v)
        except (TypeError, ValueError):
            continue  # no wire form: leave it out
        attrs[k] = wired
    try:
        args = to_wire(list(e.args))
    except (TypeError, ValueError):
        args = [repr(a) for a in e.args]
    return {"type": type(e).__name__, "args": args, "attrs": attrs}


def from_wire(obj, make_exception=None):
    # type: (Any, Callable[[str, tuple[Any, ...], dict[str, Any]], Any] | None) -> Any
    """The value a wire form stands for.

    ``make_exception(type_name, args, attrs)`` builds the value of an
    ``__exception__`` tag; without it the decoded description dict is returned.
    """
    if isinstance(obj, list):
        return [from_wire(x, make_exception) for x in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        tag = next(iter(obj))
        if tag in TAGS:
            return _from_tag(tag, obj[tag], make_exception)
    out = {}
    for k in obj:
        out[k] = from_wire(obj[k], make_exception)
    return out


def _from_tag(tag, body, make_exception):
    # type: (str, Any, Callable[[str, tuple[Any, ...], dict[str, Any]], Any] | None) -> Any
    if tag == "__float__":
        return float_from_hex(body)
    if tag == "__str__":
        return _str_from_wire(body)
    if tag == "__bytes__":
        return _unhex(body)
    if tag == "__bytearray__":
        return bytearray(_unhex(body))
    if tag == "__tuple__":
        return tuple([from_wire(x, make_exception) for x in body])
    if tag == "__set__":
        return set([from_wire(x, make_exception) for x in body])
    if tag == "__dict__":
        out = {}
        for pair in body:
            out[from_wire(pair[0], make_exception)] = from_wire(pair[1], make_exception)
        return out
    # __exception__
    name = body["type"]
    args = tuple(from_wire(body["args"], make_exception))
    attrs = from_wire(body["attrs"], make_exception)
    if make_exception is None:
        return {"type": name, "args": args, "attrs": attrs}
    return make_exception(name, args, attrs)
