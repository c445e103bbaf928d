"""CPython side of the protocol's strict JSON parsing (``edge.protocol`` only
imports it on CPython; MicroPython uses ``edge.strictjson``).

CPython's UTF-8 decoder and ``json`` parser are strict already; two things
remain: ``NaN``/``Infinity`` are refused (``loads``), and nesting is bounded
(``too_deep``) with C-speed byte operations, no Python loop per byte.
"""

import json


def _refuse_constant(name):
    # type: (str) -> object
    raise ValueError(name + " is not JSON")


# JSONDecoder.decode, bound once (what json.loads calls, minus its argument checks).
loads = json.JSONDecoder(parse_constant=_refuse_constant).decode

# For bytes.translate: keep brackets and quotes only, every bracket as [ or ].
_SQUARE = bytes(range(256)).replace(b"{", b"[").replace(b"}", b"]")
_NOT_BRACKET = bytes(c for c in range(256) if c not in b'[]{}"')


def too_deep(data, max_depth):
    # type: (bytes, int) -> bool
    """Whether the JSON text data nests arrays/objects deeper than max_depth.

    Exact for valid JSON; for invalid JSON either answer is fine, as the parser
    rejects it anyway. A payload with at most max_depth brackets costs one
    translate() and one count().
    """
    s = data.translate(_SQUARE, _NOT_BRACKET)  # brackets (as [ ]) and quotes
    if s.count(b"[") <= max_depth:
        return False
    if b"\\" in data:
        # Drop escaped backslashes, then escaped quotes: every quote left
        # delimits a string.
        s = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(_SQUARE, _NOT_BRACKET)
    # "" is an empty string, or the end of one string and the start of the
    # next: dropping it keeps what is inside strings inside.
    s = s.replace(b'""', b"")
    if b'"' in s:  # some string holds brackets: keep what is outside strings
        s = b"".join(s.split(b'"')[::2])
    for _ in range(max_depth):
        s = s.replace(b"[]", b"")  # peels the innermost level
        if not s:
            return False
    return True
