"""Strict JSON syntax and UTF-8 checks, for interpreters whose own are lenient.

MicroPython's ``json.loads`` accepts text that is not JSON (missing ``,`` or
``:``, trailing commas, ``01``, ``5.``, bad escapes, raw control characters;
``{"a":}`` even drops the key), its ``bytes.decode`` accepts invalid UTF-8
(overlong forms, encoded surrogates, code points past U+10FFFF), and it keeps
an escaped surrogate pair (``"\\ud83d\\ude00"``) as two lone surrogates. Run
on the raw bytes first, ``check`` accepts exactly the JSON that CPython's
strict ``json.loads`` accepts (RFC 8259, minus ``NaN``/``Infinity``), within a
nesting bound; ``join_pairs`` then rewrites escaped surrogate pairs so that
``json.loads`` gives the same string as CPython.

One pass over the bytes, no recursion; memory is a ``max_depth``-byte stack
(plus the offsets of escaped surrogate pairs, if any). Runs on CPython too (the
unit tests), where ``edge.protocol`` does not need it.
"""

# Integers with more digits fail in CPython's json.loads (its default
# int-from-text limit, sys.get_int_max_str_digits()); MicroPython's would parse them.
MAX_INT_DIGITS = 4300

_ESCAPES = b'"\\/bfnrt'  # after a backslash, besides "u"


def _fail(what, i):
    # type: (str, int) -> ValueError
    return ValueError(what + " at byte " + str(i))


def _utf8_length(data, i, n):
    # type: (bytes, int, int) -> int
    """Length of the valid UTF-8 sequence at data[i] (a byte >= 0x80), or 0.

    Rejects what CPython's strict decoder rejects: stray continuation bytes,
    overlong forms (C0, C1, E0 80..9F, F0 80..8F), surrogates (ED A0..BF),
    code points past U+10FFFF (F4 90.., F5..FF) and truncated sequences.
    """
    c = data[i]
    if c < 0xC2:
        return 0
    lo = 0x80
    hi = 0xBF
    if c < 0xE0:
        k = 2
    elif c < 0xF0:
        k = 3
        if c == 0xE0:
            lo = 0xA0
        elif c == 0xED:
            hi = 0x9F
    elif c < 0xF5:
        k = 4
        if c == 0xF0:
            lo = 0x90
        elif c == 0xF4:
            hi = 0x8F
    else:
        return 0
    if i + k > n:
        return 0
    c = data[i + 1]
    if c < lo or c > hi:
        return 0
    for j in range(i + 2, i + k):
        c = data[j]
        if c < 0x80 or c > 0xBF:
            return 0
    return k


def utf8_ok(data):
    # type: (bytes) -> bool
    """Whether data is valid UTF-8 (as strict as CPython's decoder)."""
    n = len(data)
    if not n or max(data) < 0x80:
        return True
    i = 0
    while i < n:
        if data[i] < 0x80:
            i += 1
        else:
            k = _utf8_length(data, i, n)
            if not k:
                return False
            i += k
    return True


def _hex4(data, i, n):
    # type: (bytes, int, int) -> int
    """The value of the 4 hex digits at data[i:i + 4]."""
    if i + 4 > n:
        raise _fail("truncated \\u escape", i)
    v = 0
    for j in range(i, i + 4):
        c = data[j]
        if 0x30 <= c <= 0x39:
            c -= 0x30
        elif 0x61 <= c <= 0x66:
            c -= 0x57
        elif 0x41 <= c <= 0x46:
            c -= 0x37
        else:
            raise _fail("invalid \\u escape", j)
        v = v * 16 + c
    return v


def _string(data, i, n, pairs):
    # type: (bytes, int, int, list[int]) -> int
    """Check the string whose body starts at data[i]; returns the index after it."""
    j = data.find(b'"', i)
    if j >= 0 and data.find(b"\\", i, j) < 0:
        # no escape: the body is data[i:j], checked with C-speed min/max
        if j > i:
            body = data[i:j]
            if min(body) < 0x20:
                raise _fail("control character in string", i)
            if max(body) >= 0x80 and not utf8_ok(body):
                raise _fail("invalid UTF-8 in string", i)
        return j + 1
    while i < n:
        c = data[i]
        if c == 0x22:  # "
            return i + 1
        if c == 0x5C:  # \
            if i + 1 >= n:
                break
            c = data[i + 1]
            if c == 0x75:  # u
                v = _hex4(data, i + 2, n)
                if 0xD800 <= v <= 0xDBFF and data[i + 6 : i + 8] == b"\\u":
                    # like CPython: a low surrogate escape right after joins it
                    v = _hex4(data, i + 8, n)
                    if 0xDC00 <= v <= 0xDFFF:
                        pairs.append(i)
                        i += 12
                        continue
                i += 6
            elif c in _ESCAPES:
                i += 2
            else:
                raise _fail("invalid escape", i)
        elif c < 0x20:
            raise _fail("control character in string", i)
        elif c < 0x80:
            i += 1
        else:
            k = _utf8_length(data, i, n)
            if not k:
                raise _fail("invalid UTF-8", i)
            i += k
    raise _fail("unterminated string", n)


def _number(data, i, n):
    # type: (bytes, int, int) -> int
    """Check the number at data[i]; returns the index after it."""
    if data[i] == 0x2D:  # -
        i += 1
    start = i
    c = data[i] if i < n else 0
    if c == 0x30:  # 0
        i += 1
    elif 0x31 <= c <= 0x39:
        i += 1
        while i < n and 0x30 <= data[i] <= 0x39:
            i += 1
    else:
        raise _fail("invalid number", i)
    if i < n:
        c = data[i]
        if c == 0x2E or c == 0x65 or c == 0x45:  # . e E
            return _fraction(data, i, n)
    if i - start > MAX_INT_DIGITS:
        raise _fail("integer of more than " + str(MAX_INT_DIGITS) + " digits", start)
    return i


def _fraction(data, i, n):
    # type: (bytes, int, int) -> int
    """Check the fraction and exponent of a number at data[i]; returns the
    index after them."""
    if data[i] == 0x2E:  # .
        i += 1
        j = i
        while i < n and 0x30 <= data[i] <= 0x39:
            i += 1
        if i == j:
            raise _fail("invalid number", i)
    if i < n and (data[i] == 0x65 or data[i] == 0x45):  # e E
        i += 1
        if i < n and (data[i] == 0x2B or data[i] == 0x2D):  # + -
            i += 1
        j = i
        while i < n and 0x30 <= data[i] <= 0x39:
            i += 1
        if i == j:
            raise _fail("invalid number", i)
    return i


def _space(data, i, n):
    # type: (bytes, int, int) -> int
    """The index of the first byte at or after i that is not JSON whitespace."""
    while i < n:
        c = data[i]
        if c != 0x20 and c != 0x0A and c != 0x0D and c != 0x09:
            return i
        i += 1
    return n


def _key(data, i, n, plain, pairs):
    # type: (bytes, int, int, bool, list[int]) -> int
    """Check the key and colon at data[i]; returns the index of the value."""
    if i >= n or data[i] != 0x22:
        raise _fail("expected a string key", i)
    if plain:
        i = data.find(b'"', i + 1) + 1
        if not i:
            raise _fail("unterminated string", n)
    else:
        i = _string(data, i + 1, n, pairs)
    if i < n and data[i] <= 0x20:
        i = _space(data, i, n)
    if i >= n or data[i] != 0x3A:  # :
        raise _fail("expected ':'", i)
    i += 1
    if i < n and data[i] <= 0x20:
        i = _space(data, i, n)
    return i


def check(data, max_depth):
    # type: (bytes, int) -> list[int] | None
    """Check that data is one JSON value in UTF-8, nested at most max_depth deep.

    Raises ValueError (with the byte offset) when it is not. Returns the
    offsets of the escaped surrogate pairs to give to ``join_pairs``, or None
    when there are none (the usual case).
    """
    n = len(data)
    if not n:
        raise _fail("no JSON value", 0)
    # Payloads of printable ASCII without backslashes (canonical ones, mostly):
    # a string ends at the next quote, nothing inside needs a look.
    plain = min(data) >= 0x20 and max(data) < 0x80 and data.find(b"\\") < 0
    closers = bytearray(max_depth)  # the closing bracket of each open container
    depth = 0
    pairs = []  # type: list[int]
    i = _space(data, 0, n)
    while True:
        # a value starts at data[i]
        c = data[i] if i < n else 0
        if c == 0x22:  # "
            if plain:
                i = data.find(b'"', i + 1) + 1
                if not i:
                    raise _fail("unterminated string", n)
            else:
                i = _string(data, i + 1, n, pairs)
        elif c == 0x2D or 0x30 <= c <= 0x39:  # - 0..9
            i = _number(data, i, n)
        elif c == 0x7B or c == 0x5B:  # { [
            if depth >= max_depth:
                raise _fail("nested deeper than " + str(max_depth) + " levels", i)
            c += 2  # the closing bracket
            closers[depth] = c
            depth += 1
            i += 1
            if i < n and data[i] <= 0x20:
                i = _space(data, i, n)
            if i >= n or data[i] != c:
                if c == 0x7D:
                    i = _key(data, i, n, plain, pairs)
                continue  # the first value
            i += 1  # empty
            depth -= 1
        elif c == 0x74 and data.startswith(b"true", i):
            i += 4
        elif c == 0x66 and data.startswith(b"false", i):
            i += 5
        elif c == 0x6E and data.startswith(b"null", i):
            i += 4
        else:
            raise _fail("expected a value", i)
        # after a value: "," and the next value, or closing brackets, or the end
        while True:
            if i < n and data[i] <= 0x20:
                i = _space(data, i, n)
            if not depth:
                if i < n:
                    raise _fail("extra data after the JSON value", i)
                return pairs or None
            c = data[i] if i < n else 0
            if c == 0x2C:  # ,
                i += 1
                if i < n and data[i] <= 0x20:
                    i = _space(data, i, n)
                if closers[depth - 1] == 0x7D:
                    i = _key(data, i, n, plain, pairs)
                break
            if c != closers[depth - 1]:
                raise _fail("expected ',' or a closing bracket", i)
            depth -= 1
            i += 1


def join_pairs(data, pairs):
    # type: (bytes, list[int]) -> bytes
    """data with each escaped surrogate pair at the given offsets (from
    ``check``) replaced by the UTF-8 of the character it stands for, so that
    every ``json.loads`` gives the one character, as CPython's does."""
    out = []
    last = 0
    for i in pairs:
        hi = _hex4(data, i + 2, i + 6)
        lo = _hex4(data, i + 8, i + 12)
        out.append(data[last:i])
        out.append(chr(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)).encode("utf-8"))
        last = i + 12
    out.append(data[last:])
    return b"".join(out)
