"""backend.commands.build: the commands the API sends, byte for byte."""

from __future__ import annotations

import json

import pytest

from backend.commands import build
from backend.commands.build import CommandRefused
from edge import protocol
from gateway import commands as gateway_commands

TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def override(**changes: object) -> build.Command:
    kwargs: dict[str, object] = {
        "channel": 2,
        "level_pct": 100,
        "duration_s": 7200,
        "now_ms": TS,
        "command_id": "c-7f2f01",
    }
    kwargs.update(changes)
    return build.lighting_override("cab-0042", **kwargs)  # type: ignore[arg-type]


def recording(**changes: object) -> build.Command:
    kwargs: dict[str, object] = {
        "action": "get",
        "rec": "a1b2c3d4e5f60718-3",
        "first": 1,
        "last": 1,
        "expires_in_s": 3600,
        "now_ms": TS + 120_000,
        "command_id": "c-7f2e10",
    }
    kwargs.update(changes)
    return build.recording_request("leak-0107", **kwargs)  # type: ignore[arg-type]


# --- the documented examples, byte for byte -------------------------------------------


def test_lighting_override_is_the_documented_set_level_command() -> None:
    # docs/schedule.md, "Overrides": the same bytes.
    out = build.outbound(override(), None, TS)
    assert out.payload == (
        b'{"args":{"ch":2,"dur_s":7200,"level_pct":100},"dev":"cab-0042","exp":1767225900000,'
        b'"id":"c-7f2f01","kind":"cmd","name":"set_level","src":"api","ts":1767225600000,"v":1}'
    )
    assert out.topic == "lumeau/v1/dev/cab-0042/down/cmd"
    assert out.via_gateway is None
    assert out.expiry_s == 300


def test_get_recording_is_the_documented_command() -> None:
    # docs/protocol.md, "Recording commands": the same bytes.
    out = build.outbound(recording(), None, TS + 120_000)
    assert out.payload == (
        b'{"args":{"first":1,"last":1,"rec":"a1b2c3d4e5f60718-3"},"dev":"leak-0107",'
        b'"exp":1767229320000,"id":"c-7f2e10","kind":"cmd","name":"get_recording",'
        b'"src":"api","ts":1767225720000,"v":1}'
    )


# --- lighting override -------------------------------------------------------------------


def test_a_null_channel_means_every_circuit() -> None:
    assert override(channel=None).args == {"ch": 0, "level_pct": 100, "dur_s": 7200}


def test_an_override_expires_after_the_delivery_window_or_sooner() -> None:
    assert override(duration_s=86_400).expires_ms == TS + build.LIGHTING_DELIVERY_S * 1000
    assert override(duration_s=60).expires_ms == TS + 60_000


@pytest.mark.parametrize(
    ("changes", "field", "text"),
    [
        ({"level_pct": 101}, "level_pct", "101"),
        ({"level_pct": -1}, "level_pct", "-1"),
        ({"channel": 0}, "channel", "channel 0"),
        ({"channel": 256}, "channel", "256"),
        ({"duration_s": 59}, "duration_s", "59"),
        ({"duration_s": 86_401}, "duration_s", "86401"),
        ({"level_pct": True}, "level_pct", "level_pct"),
    ],
)
def test_an_override_the_cabinet_would_refuse_is_refused(
    changes: dict[str, object], field: str, text: str
) -> None:
    with pytest.raises(CommandRefused) as caught:
        override(**changes)
    assert caught.value.field == field
    assert text in caught.value.detail


# --- recordings ----------------------------------------------------------------------------


def test_get_without_parts_asks_for_the_whole_recording() -> None:
    command = recording(first=None, last=None)
    assert command.name == "get_recording"
    assert command.args == {"rec": "a1b2c3d4e5f60718-3"}


def test_release_names_only_the_recording() -> None:
    command = recording(action="release", first=None, last=None, expires_in_s=60)
    assert command.name == "release_recording"
    assert command.args == {"rec": "a1b2c3d4e5f60718-3"}
    assert command.expires_ms == command.issued_ms + 60_000


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"action": "release"}, "first"),
        ({"action": "release", "first": None}, "last"),
        ({"first": 3, "last": 2}, "first"),
        ({"first": -1}, "first"),
        ({"last": 10_000}, "last"),
        ({"rec": "Bad/Id"}, "rec"),
        ({"rec": ""}, "rec"),
        ({"rec": "x" * 65}, "rec"),
    ],
)
def test_a_bad_recording_request_is_refused(changes: dict[str, object], field: str) -> None:
    with pytest.raises(CommandRefused) as caught:
        recording(**changes)
    assert caught.value.field == field


# --- roles -------------------------------------------------------------------------------


def test_each_command_goes_to_its_kind_of_device_only() -> None:
    build.check_role(build.SET_LEVEL, "cab-1", "cabinet")
    build.check_role(build.GET_RECORDING, "leak-1", "leak_sensor")
    with pytest.raises(CommandRefused, match=r"'leak-1' is a leak_sensor; a lighting override"):
        build.check_role(build.SET_LEVEL, "leak-1", "leak_sensor")
    with pytest.raises(CommandRefused, match=r"'gw-1' is a gateway; a recording release"):
        build.check_role(build.RELEASE_RECORDING, "gw-1", "gateway")
    with pytest.raises(CommandRefused, match="has not reported its role yet"):
        build.check_role(build.SET_LEVEL, "cab-2", None)


# --- routing -------------------------------------------------------------------------------


def test_a_device_behind_a_gateway_gets_a_relay_the_gateway_unwraps_into_the_same_command() -> None:
    command = override()
    direct = build.outbound(command, None, TS)
    relayed = build.outbound(command, "gw-nord-1", TS)
    assert relayed.topic == "lumeau/v1/gw/gw-nord-1/down/cmd"
    assert relayed.via_gateway == "gw-nord-1"
    relay = protocol.decode(relayed.payload, relayed.topic)
    assert relay["name"] == "relay" and relay["id"] == command.command_id
    assert relay["exp"] == command.expires_ms
    # The real gateway's code turns it into exactly the direct command's bytes.
    unwrapped = gateway_commands.from_backend(relayed.topic, relayed.payload, "gw-nord-1")
    assert unwrapped.payload == direct.payload
    assert (unwrapped.id, unwrapped.dev, unwrapped.exp) == (
        command.command_id,
        "cab-0042",
        command.expires_ms,
    )


def test_the_mqtt_expiry_follows_the_commands_exp_rounded_up() -> None:
    command = override(duration_s=60)
    assert build.outbound(command, None, TS).expiry_s == 60
    assert build.outbound(command, None, TS + 59_500).expiry_s == 1
    # Already past exp (a slow request): still at least one second, the device says 'expired'.
    assert build.outbound(command, None, TS + 61_000).expiry_s == 1


def test_command_ids_are_protocol_ids_from_the_random_source() -> None:
    assert build.new_command_id(lambda n: bytes(range(n))) == "c-0001020304050607"
    ids = {build.new_command_id() for _ in range(100)}
    assert len(ids) == 100
    for command_id in ids:
        decoded = protocol.decode(
            json.dumps({**override().message(), "id": command_id}, separators=(",", ":")).encode(),
            "lumeau/v1/dev/cab-0042/down/cmd",
        )
        assert decoded["id"] == command_id
