"""edge.strictjson (MicroPython's strict JSON/UTF-8 gate) and the payload parser.

``strictjson.check`` must accept exactly what CPython's strict parser accepts
(UTF-8 decoding, ``json.loads`` without NaN/Infinity, the depth bound);
these tests hold it to that on CPython, where both can be compared. The same
module is run inside MicroPython by ``tests/mpy/test_protocol_mpy.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge import _json_cpython, strictjson
from edge import protocol as p
from edge.protocol import ProtocolError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEPTH = p.MAX_JSON_DEPTH


def _refuse(name: str) -> Any:
    raise ValueError(name)


def depth_of(v: Any) -> int:
    """Nesting of arrays/objects: a scalar is 0, [] is 1."""
    if isinstance(v, list):
        return 1 + max((depth_of(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((depth_of(x) for x in v.values()), default=0)
    return 0


def cpython_accepts(data: bytes, max_depth: int = DEPTH) -> bool:
    """The reference: strict UTF-8, strict json.loads, no constants, the depth bound."""
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_refuse)
    except (ValueError, RecursionError):
        return False
    return depth_of(value) <= max_depth


def strict_accepts(data: bytes, max_depth: int = DEPTH) -> bool:
    try:
        strictjson.check(data, max_depth)
    except ValueError:
        return False
    return True


VALID = [
    b"0",
    b"-0",
    b"-0.0",
    b"1e5",
    b"1E+5",
    b"-1.25e-7",
    b"123456789012345678901234567890",
    b"true",
    b"false",
    b"null",
    b'""',
    b' \t\r\n"x" \n',
    b"[]",
    b"{}",
    b"[[],{}]",
    b'{"a":1,"a":2}',
    b'{ "a" : [ 1 , 2 ] , "b" : { } }',
    b'"\\"\\\\\\/\\b\\f\\n\\r\\t"',
    b'"\\u0000\\u00e9\\uFFFF\\uabCD"',
    b'"\\ud800"',  # a lone surrogate is valid JSON (protocol v1 rejects it later)
    b'"\\udc00\\ud800"',
    b'"\\ud83d\\ude00"',
    b'"\\ud83d\\u0041"',
    '"é 水 😀 \x7f"'.encode(),
    b'"]]]}}}"',
    b"7" * strictjson.MAX_INT_DIGITS,
    b"-" + b"7" * strictjson.MAX_INT_DIGITS,
    b"7" * 5000 + b".5",
    b"[" * DEPTH + b"]" * DEPTH,
]

INVALID = [
    b"",
    b" ",
    b"01",
    b"-01",
    b"1.",
    b"1.e5",
    b".5",
    b"-",
    b"+1",
    b"1e",
    b"1e+",
    b"0x1",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"tru",
    b"truex",
    b"True",
    b"nul",
    b"'a'",
    b'"a',
    b'"a\\"',
    b'"\\x"',
    b'"\\u12"',
    b'"\\uZZZZ"',
    b'"\\ud83d\\uZZZZ"',
    b'"a\x01b"',
    b'"a\nb"',
    b'"a\x1fb"',
    b"[1,]",
    b"[,1]",
    b"[1 2]",
    b"[1:2]",
    b"[1,,2]",
    b'{"a" 1}',
    b'{"a":}',
    b'{"a"}',
    b'{"a":1,}',
    b'{"a":1 "b":2}',
    b'{,"a":1}',
    b'{:"a":1}',
    b"{1:2}",
    b"{a:1}",
    b"[}",
    b"{]",
    b"[",
    b"]",
    b"[]]",
    b"[] []",
    b"1 2",
    b"\x0b1",
    b"\x0c1",
    b"\xef\xbb\xbf{}",
    b"[1]x",
    b'"\xc0\xaf"',
    b'"\xc1\xbf"',
    b'"\xe0\x80\xaf"',
    b'"\xe0\x9f\xbf"',
    b'"\xed\xa0\x80"',
    b'"\xed\xbf\xbf"',
    b'"\xf0\x80\x80\xaf"',
    b'"\xf0\x8f\xbf\xbf"',
    b'"\xf4\x90\x80\x80"',
    b'"\xf5\x80\x80\x80"',
    b'"\xff"',
    b'"\x80"',
    b'"\xc3"',
    b'"\xe2\x82"',
    b'"\xf0\x9f\x98"',
    b"7" * (strictjson.MAX_INT_DIGITS + 1),
    b"[" * (DEPTH + 1) + b"]" * (DEPTH + 1),
]


@pytest.mark.parametrize("data", VALID, ids=repr)
def test_valid_json_passes(data: bytes) -> None:
    assert cpython_accepts(data), "the corpus is wrong"
    strictjson.check(data, DEPTH)


@pytest.mark.parametrize("data", INVALID, ids=repr)
def test_invalid_json_fails(data: bytes) -> None:
    assert not cpython_accepts(data), "the corpus is wrong"
    with pytest.raises(ValueError, match=r"at byte \d+$"):
        strictjson.check(data, DEPTH)


def test_depth_bound_is_exact() -> None:
    for depth in range(1, 8):
        data = b"0"
        for level in range(depth):
            data = b'{"k":' + data + b"}" if level % 2 else b"[1," + data + b"]"
        assert strict_accepts(data, depth) and cpython_accepts(data, depth)
        assert not strict_accepts(data, depth - 1) and not cpython_accepts(data, depth - 1)


def test_surrogate_pairs_are_joined_like_cpython() -> None:
    data = b'{"\\ud83d\\ude00k":["a\\uD83D\\uDE00b","\\ud83d\\ud83d\\ude00","\\\\ud83d\\\\ude00"]}'
    pairs = strictjson.check(data, DEPTH)
    assert pairs is not None and len(pairs) == 3
    joined = strictjson.join_pairs(data, pairs)
    assert strictjson.check(joined, DEPTH) is None
    assert json.loads(joined) == json.loads(data)
    assert "😀".encode() in joined
    assert strictjson.check(b'"\\ud83d \\ude00"', DEPTH) is None  # not adjacent: no pair


def test_utf8_ok_corpus() -> None:
    assert strictjson.utf8_ok(b"")
    assert strictjson.utf8_ok("é水😀\U0010ffff\x7f".encode())
    for bad in (b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"a\xe2\x82", b"\x80"):
        assert not strictjson.utf8_ok(bad)


@FUZZ
@given(st.binary(max_size=12))
def test_utf8_ok_matches_cpython_decoder(data: bytes) -> None:
    try:
        data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    assert strictjson.utf8_ok(data) is valid


@FUZZ
@given(st.lists(st.integers(0, 0x10FFFF).filter(lambda c: not 0xD800 <= c <= 0xDFFF), max_size=8))
def test_utf8_ok_accepts_every_code_point(cps: list[int]) -> None:
    assert strictjson.utf8_ok("".join(map(chr, cps)).encode())


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8"), max_size=8),
    # brackets, quotes and backslashes inside strings; an astral character
    # (an escaped surrogate pair with ensure_ascii); surrogates, lone or paired
    st.sampled_from(["[", "]", "{", "}", '"', "\\", '\\"', "]]", "😀", "\ud83d\ude00", "\ud83d"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=4), inner, max_size=4),
    ),
    max_leaves=12,
)


@st.composite
def json_texts(draw: st.DrawFn) -> bytes:
    value = draw(json_values)
    style = draw(st.sampled_from(["compact", "ascii", "indent", "spaced"]))
    if style == "compact":
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    elif style == "ascii":
        text = json.dumps(value)
    elif style == "indent":
        text = json.dumps(value, ensure_ascii=False, indent="\t")
    else:
        text = json.dumps(value, separators=(" , ", " :\r\n"))
    return text.encode("utf-8", "surrogatepass")


MUTATION_BYTES = b'{}[]":,. 0123456789eE+-\\/ubfnrtNIal\x00\x09\x0a\x1f\x7f\x80\xbf\xc0\xc3\xed\xf4'


@st.composite
def mutated_texts(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(json_texts()))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(data)))
        op = draw(st.integers(0, 2))
        if op == 0 and i < len(data):
            data[i] = draw(st.sampled_from(MUTATION_BYTES))
        elif op == 1 and i < len(data):
            del data[i]
        else:
            data.insert(i, draw(st.sampled_from(MUTATION_BYTES)))
    return bytes(data)


@FUZZ
@given(json_texts())
def test_json_texts_pass_and_join_like_cpython(data: bytes) -> None:
    # only raw lone surrogates (invalid UTF-8) make a generated text fail
    assert strict_accepts(data) is cpython_accepts(data), data
    if strict_accepts(data):
        pairs = strictjson.check(data, DEPTH)
        joined = data if pairs is None else strictjson.join_pairs(data, pairs)
        assert json.loads(joined) == json.loads(data)


@FUZZ
@given(mutated_texts())
def test_strict_check_agrees_with_cpython(data: bytes) -> None:
    assert strict_accepts(data) is cpython_accepts(data), data


@FUZZ
@given(st.one_of(json_texts(), mutated_texts()), st.integers(1, 6))
def test_strict_check_depth_agrees_with_cpython(data: bytes, max_depth: int) -> None:
    assert strict_accepts(data, max_depth) is cpython_accepts(data, max_depth), data


# ---------------------------------------------------------------- CPython side


@FUZZ
@given(json_values)
def test_cpython_depth_check_is_exact_on_valid_json(value: Any) -> None:
    data = json.dumps(value).encode()
    nested = b"[" * (DEPTH - 1) + data + b"]" * (DEPTH - 1)
    assert _json_cpython.too_deep(nested, DEPTH) is (depth_of(value) + DEPTH - 1 > DEPTH)
    assert _json_cpython.too_deep(data, DEPTH) is False


def test_decode_rejects_deep_json_and_constants_as_bad_json() -> None:
    deep = b'{"a":' * DEPTH + b"1" + b"}" * DEPTH
    for bad in (
        b"[" + deep + b"]",
        b"[" * 5000 + b"]" * 5000,
        b'{"v":1,"x":NaN}',
        b'{"v":1,"x":-Infinity}',
    ):
        with pytest.raises(ProtocolError) as info:
            p.decode(bad)
        assert (info.value.code, info.value.field) == ("bad_json", None), bad
    with pytest.raises(ProtocolError) as info:
        p.decode(deep)
    assert info.value.code == "missing_field"  # parsed: the depth limit is not reached
    strings = (
        b'["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\\",'
        + b'"\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]'
    )
    with pytest.raises(ProtocolError) as info:
        p.decode(strings)
    assert info.value.code == "not_object"  # brackets inside strings do not count
