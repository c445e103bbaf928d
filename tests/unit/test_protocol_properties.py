"""Property tests for the protocol v1 codec (hypothesis)."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge import canonjson
from edge import protocol as p
from edge.protocol import ProtocolError

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_."
NAME_HEAD = "abcdefghijklmnopqrstuvwxyz"
NAME_REST = NAME_HEAD + "0123456789_"

ids = st.text(ID_CHARS, min_size=1, max_size=p.MAX_ID_LEN)
boots = st.text("0123456789abcdef", min_size=p.BOOT_MIN_LEN, max_size=p.BOOT_MAX_LEN)
seqs = st.integers(0, p.SEQ_MAX)
tss = st.integers(p.TS_MIN, p.TS_MAX - 1)
chs = st.integers(0, p.CH_MAX)
names = st.builds(
    lambda h, r: h + r,
    st.sampled_from(NAME_HEAD),
    st.text(NAME_REST, max_size=p.MAX_NAME_LEN - 1),
)
# Text without lone surrogates (JSON can carry them, protocol v1 cannot).
texts = st.text(st.characters(codec="utf-8"), max_size=p.MAX_TEXT_LEN)
finite = st.floats(allow_nan=False, allow_infinity=False)


def norm(x: float) -> float:
    return p.normalize_float(x)


def metric_value(name: str) -> st.SearchStrategy[Any]:
    unit = name.rsplit("_", 1)[1]
    if unit == "bool":
        return st.sampled_from([0, 1])
    lo, hi = p.METRICS.get(name, (-p.MAX_MAGNITUDE, p.MAX_MAGNITUDE))
    if unit == "count":
        return st.integers(max(0, int(lo)), int(hi))
    return st.one_of(
        st.integers(math.ceil(lo), math.floor(hi)),
        st.floats(lo, hi).map(norm).filter(lambda v: lo <= v <= hi),
    )


unknown_metric_names = st.builds(
    lambda base, unit: base + "_" + unit,
    st.text(NAME_HEAD, min_size=1, max_size=12),
    st.sampled_from(sorted(p.UNITS)),
)
metric_names = st.one_of(st.sampled_from(sorted(p.METRICS)), unknown_metric_names)


@st.composite
def values_maps(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(metric_names, min_size=1, max_size=8, unique=True))
    return {k: draw(metric_value(k)) for k in keys}


readings = st.fixed_dictionaries({"ts": tss, "ch": chs, "values": values_maps()})

free_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-p.MAX_FREE_INT, p.MAX_FREE_INT),
    finite.map(norm),
    st.text(st.characters(codec="utf-8"), max_size=40),
)
free_keys = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)


def free_objects(max_leaves: int) -> st.SearchStrategy[dict[str, Any]]:
    inner = st.recursive(
        free_scalars,
        lambda kids: st.one_of(
            st.lists(kids, max_size=3), st.dictionaries(free_keys, kids, max_size=3)
        ),
        max_leaves=max_leaves,
    )

    def depth(v: Any) -> int:
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        return 0

    return st.dictionaries(free_keys, inner, max_size=4).filter(lambda d: depth(d) <= p.MAX_DEPTH)


def up(kind: str, **fields: Any) -> st.SearchStrategy[dict[str, Any]]:
    base = {"v": st.just(1), "kind": st.just(kind), "dev": ids, "boot": boots, "seq": seqs}
    base["ts"] = tss
    base.update(fields)
    return st.fixed_dictionaries(base)


telemetry = up("telemetry", readings=st.lists(readings, min_size=1, max_size=5))
event = st.builds(
    lambda m, opt: {**m, **opt},
    up("event", code=names, sev=st.sampled_from(p.SEVERITIES), active=st.booleans()),
    st.fixed_dictionaries({}, optional={"ch": chs, "detail": free_objects(8)}),
)
fws = st.text("".join(chr(c) for c in range(0x21, 0x7F)), min_size=1, max_size=p.MAX_FW_LEN)
status = st.builds(
    lambda m, opt: {**m, **opt},
    up("status", state=st.sampled_from(p.STATES), role=st.sampled_from(p.DEVICE_ROLES)),
    st.fixed_dictionaries({}, optional={"fw": fws}),
)
ack_ok = st.builds(
    lambda m, opt: {**m, **opt},
    up("ack", cmd=ids, ok=st.just(True)),
    st.fixed_dictionaries({}, optional={"result": free_objects(12)}),
)
ack_err = up(
    "ack",
    cmd=ids,
    ok=st.just(False),
    err=st.fixed_dictionaries({"code": names, "reason": texts}),
)


@st.composite
def cmds(draw: st.DrawFn, scope: str = "dev") -> dict[str, Any]:
    ts = draw(st.integers(p.TS_MIN, p.TS_MAX - 1))
    msg = {
        "v": 1,
        "kind": "cmd",
        scope: draw(ids),
        "id": draw(ids),
        "name": draw(names),
        "args": draw(free_objects(16)),
        "ts": ts,
        "exp": draw(st.integers(ts, p.TS_MAX - 1)),
    }
    if draw(st.booleans()):
        msg["src"] = draw(ids)
    return msg


error = st.builds(
    lambda m, opt: {**m, **opt},
    st.fixed_dictionaries(
        {"v": st.just(1), "kind": st.just("error"), "dev": ids, "code": names}
        | {"reason": texts, "ts": tss}
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "field": st.text(max_size=40).filter(
                lambda s: not any(0xD800 <= ord(c) < 0xE000 for c in s)
            ),
            "ref": st.fixed_dictionaries({"boot": boots, "seq": seqs}),
        },
    ),
)
gw_status = st.fixed_dictionaries(
    {
        "v": st.just(1),
        "kind": st.just("status"),
        "gw": ids,
        "boot": boots,
        "seq": seqs,
        "ts": tss,
        "state": st.sampled_from(p.STATES),
        "role": st.just("gateway"),
    }
)
device_uplinks = st.one_of(telemetry, event, status, ack_ok, ack_err)


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    inner = draw(st.lists(device_uplinks, min_size=1, max_size=4))
    return {
        "v": 1,
        "kind": "batch",
        "gw": draw(ids),
        "boot": draw(boots),
        "seq": draw(seqs),
        "ts": draw(tss),
        "msgs": [{"topic": p.uplink_topic(m["dev"], m["kind"]), "payload": m} for m in inner],
    }


all_messages = st.one_of(device_uplinks, cmds(), cmds("gw"), error, gw_status, batches())


# ------------------------------------------------------------------ round trips


@FAST
@given(all_messages)
def test_round_trip(msg: dict[str, Any]) -> None:
    assert p.validate(msg) == msg
    data = p.encode(msg)
    assert p.decode(data, p.topic_of(msg)) == msg
    assert p.encode(p.decode(data)) == data


@FAST
@given(all_messages)
def test_encoding_matches_stdlib_json_up_to_float_spelling(msg: dict[str, Any]) -> None:
    data = p.encode(msg)
    assert json.loads(data) == msg
    std = json.dumps(msg, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if "." not in std and "e" not in std.lower().replace('"', ""):
        assert data == std.encode()


@FAST
@given(st.lists(device_uplinks, min_size=1, max_size=5), st.data())
def test_decode_batch_keeps_good_messages_around_bad_ones(
    inner: list[dict[str, Any]], data: st.DataObject
) -> None:
    entries: list[Any] = [
        {"topic": p.uplink_topic(m["dev"], m["kind"]), "payload": m} for m in inner
    ]
    bad_at = data.draw(st.sets(st.integers(0, len(entries) - 1)))
    for i in bad_at:
        entries[i] = {"topic": entries[i]["topic"], "payload": {**inner[i], "v": 99}}
    batch = {"v": 1, "kind": "batch", "gw": "gw-1", "boot": "abcdef01", "seq": 1, "ts": p.TS_MIN}
    batch["msgs"] = entries
    env, good, bad = p.decode_batch(json.dumps(batch).encode(), "lumeau/v1/gw/gw-1/up/batch")
    assert env["msgs"] == entries
    assert good == [m for i, m in enumerate(inner) if i not in bad_at]
    assert [(i, e.code) for i, e in bad] == [(i, "bad_version") for i in sorted(bad_at)]


# ------------------------------------------------------------------ floats


@settings(max_examples=400, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=0.0, exclude_min=True))
def test_exact_float_digits_match_cpython(x: float) -> None:
    s = format(x, ".11e")
    assert canonjson.exact_parts(x) == (s[0] + s[2:13], int(s[14:]))


@settings(max_examples=300, deadline=None)
@given(finite)
def test_float_text_round_trips_and_is_a_float(x: float) -> None:
    text = p.format_float(x)
    back = json.loads(text)
    assert isinstance(back, float)
    assert p.format_float(back) == text
    assert back == float(format(x, ".12g")) or (x == 0 and back == 0)
    assert p.normalize_float(x) == back  # the CPython fast path agrees


# ------------------------------------------------------------------ robustness


def json_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
        lambda kids: st.one_of(
            st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)
        ),
        max_leaves=20,
    )


TOPIC_CHOICES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "lumeau/v1/dev/a/up/telemetry",
            "lumeau/v1/dev/a/down/cmd",
            "lumeau/v1/gw/g/up/batch",
            "lumeau/v1/gw/g/up/status",
        ]
    ),
    st.text(max_size=30),
)


def only_protocol_errors(call: Any) -> None:
    try:
        call()
    except ProtocolError as e:
        assert e.code in p.ERROR_CODES
        assert isinstance(e.reason, str) and e.reason


@FUZZ
@given(st.binary(max_size=200), TOPIC_CHOICES)
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes, topic: Any) -> None:
    only_protocol_errors(lambda: p.decode(data, topic))
    only_protocol_errors(lambda: p.decode_batch(data, topic))


@FUZZ
@given(json_values(), TOPIC_CHOICES)
def test_arbitrary_json_raises_only_protocol_errors(value: Any, topic: Any) -> None:
    data = json.dumps(value).encode()
    only_protocol_errors(lambda: p.decode(data, topic))
    only_protocol_errors(lambda: p.decode_batch(data, topic))


@FUZZ
@given(all_messages, st.data())
def test_mutated_messages_raise_only_protocol_errors(
    msg: dict[str, Any], data: st.DataObject
) -> None:
    """Replace or delete one field anywhere in a valid message."""
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k in node:
                paths.append((node, k))
                walk(node[k])
        elif isinstance(node, list):
            for i in range(len(node)):
                paths.append((node, i))
                walk(node[i])

    walk(msg)
    parent, key = data.draw(st.sampled_from(paths))
    if isinstance(parent, dict) and data.draw(st.booleans()):
        del parent[key]
    else:
        parent[key] = data.draw(json_values())
    payload = json.dumps(msg).encode()
    only_protocol_errors(lambda: p.decode(payload))
    only_protocol_errors(lambda: p.decode_batch(payload))
    only_protocol_errors(lambda: p.encode(msg))
