"""The commands routes' request bodies: exactly what the caller meant, or a ValidationError."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from backend.api.schemas_commands import CommandPublic, CommandState, LightingOverride
from backend.api.schemas_commands import RecordingRequest as Recording


def test_the_channel_must_be_stated_even_for_every_circuit() -> None:
    assert (
        LightingOverride.model_validate_json(
            '{"channel": null, "level_pct": 0, "duration_s": 60}'
        ).channel
        is None
    )
    with pytest.raises(ValidationError, match="channel"):
        LightingOverride.model_validate_json('{"level_pct": 0, "duration_s": 60}')


@pytest.mark.parametrize(
    "text",
    [
        '{"channel": 1, "level_pct": "50", "duration_s": 60}',
        '{"channel": 1, "level_pct": 50.0, "duration_s": 60}',
        '{"channel": true, "level_pct": 50, "duration_s": 60}',
        '{"channel": 1, "level_pct": 50, "duration_s": 60, "ch": 1}',
    ],
)
def test_no_coercion_and_no_unknown_keys(text: str) -> None:
    with pytest.raises(ValidationError):
        LightingOverride.model_validate_json(text)


def test_a_release_takes_no_parts_and_parts_are_ordered() -> None:
    assert Recording.model_validate_json('{"action": "release", "rec": "r-1"}').first is None
    with pytest.raises(ValidationError, match="first/last apply to action 'get' only"):
        Recording.model_validate_json('{"action": "release", "rec": "r-1", "last": 2}')
    with pytest.raises(ValidationError, match=r"first \(3\) must not be after last \(2\)"):
        Recording.model_validate_json('{"action": "get", "rec": "r-1", "first": 3, "last": 2}')
    ok = Recording.model_validate_json('{"action": "get", "rec": "r-1", "first": 2, "last": 2}')
    assert (ok.first, ok.last, ok.expires_in_s) == (2, 2, 3600)


def test_an_ack_is_shown_only_when_there_is_one() -> None:
    row = {
        "command_id": "c-1",
        "device_id": "cab-1",
        "name": "set_level",
        "args": {"ch": 0, "level_pct": 5, "dur_s": 60},
        "state": "sent",
        "issued_by": "alice",
        "issued_at": "2026-01-10T21:40:00Z",
        "expires_at": "2026-01-10T21:41:00Z",
        "topic": "lumeau/v1/dev/cab-1/down/cmd",
        "via_gateway": None,
        "published_at": "2026-01-10T21:40:00Z",
        "publish_error": None,
        "ack_at": None,
        "ack_ok": None,
        "ack_err_code": None,
        "ack_err_reason": None,
        "ack_result": None,
        "acks": 0,
    }
    assert CommandPublic.from_row(row).ack is None
    failed = CommandPublic.from_row(
        {
            **row,
            "state": "failed",
            "ack_at": "2026-01-10T21:41:00Z",
            "ack_ok": False,
            "ack_err_code": "timeout",
            "ack_err_reason": "no ack",
            "acks": 2,
        }
    )
    assert failed.state is CommandState.FAILED
    assert failed.ack is not None and (failed.ack.err_code, failed.ack.count) == ("timeout", 2)
