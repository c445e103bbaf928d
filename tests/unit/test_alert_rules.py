"""Rules as pure functions: events, presence, battery, leak and energy signals, policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from backend.alerts.policy import Policy, PolicyError, load_policy, parse_policy
from backend.alerts.sources import BadRow
from backend.alerts.sources.acoustic import leak_signal
from backend.alerts.sources.battery import Sample, battery_signal
from backend.alerts.sources.energy import circuit_signal
from backend.alerts.sources.events import EventRow, event_signal
from backend.alerts.sources.presence import DeviceRow, presence_signal

NOW = datetime(2026, 3, 15, 10, 0, tzinfo=UTC)
POLICY = Policy()


def event(code: str, **kw: object) -> EventRow:
    values: dict[str, object] = {
        "time": NOW,
        "received_at": NOW,
        "device_id": "cab-1",
        "seq": 5,
        "code": code,
        "severity": "warning",
        "channel": None,
        "active": True,
        "detail": None,
        "site": "nord",
    }
    values.update(kw)
    return EventRow(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "channel", "rule", "key"),
    [
        ("door_open", 0, "door_open", "door_open:cab-1"),
        ("mains_loss", None, "mains_loss", "mains_loss:cab-1"),
        ("lamp_failure", 2, "circuit_failure", "circuit_failure:cab-1:2"),
        ("breaker_trip", 2, "circuit_failure", "circuit_failure:cab-1:2"),
        ("day_burning", 1, "day_burning", "day_burning:cab-1:1"),
        ("leak_suspected", None, "leak", "leak:cab-1"),
        ("battery_low", None, "battery_low", "battery_low:cab-1"),
        ("tamper", None, "tamper", "tamper:cab-1"),
        ("pump_stalled", 3, "pump_stalled", "pump_stalled:cab-1:3"),
    ],
)
def test_event_codes_map_to_rules_and_keys(
    code: str, channel: int | None, rule: str, key: str
) -> None:
    signal = event_signal(event(code, channel=channel), POLICY)
    assert signal is not None
    assert (signal.rule, signal.dedup_key, signal.source) == (rule, key, f"event:{code}")
    assert signal.active is True and signal.observed_at == NOW and signal.site == "nord"


def test_event_keeps_its_severity_and_detail_and_clears_with_active_false() -> None:
    signal = event_signal(
        event("pump_stalled", severity="critical", active=False, detail={"rpm": 0}), POLICY
    )
    assert signal is not None
    assert signal.severity == "critical" and signal.active is False
    assert signal.detail["event"] == {"rpm": 0}


def test_malformed_events_are_refused_with_a_reason_or_kept_safely() -> None:
    with pytest.raises(BadRow, match="not a name"):
        event_signal(event("Bad Code!"), POLICY)
    with pytest.raises(BadRow, match="severity"):
        event_signal(event("door_open", severity="panic"), POLICY)
    with pytest.raises(BadRow, match="channel"):
        event_signal(event("door_open", channel=999), POLICY)
    odd = event_signal(event("door_open", detail=[1, 2]), POLICY)  # not an object
    assert odd is not None and odd.detail["event_raw"] == [1, 2]
    assert event_signal(event("reboot"), POLICY) is None  # ignored by default


def device(role: str, **kw: object) -> DeviceRow:
    values: dict[str, object] = {
        "device_id": "dev-1",
        "role": role,
        "site": "nord",
        "last_seen": NOW - timedelta(minutes=1),
        "last_status": "online",
        "last_status_at": NOW - timedelta(days=1),
    }
    values.update(kw)
    return DeviceRow(**values)  # type: ignore[arg-type]


def test_cabinet_offline_after_the_hold_or_after_three_silent_intervals() -> None:
    online = presence_signal(device("cabinet"), POLICY, NOW)
    assert online is not None and online.rule == "cabinet_offline" and online.active is False
    just_off = device("cabinet", last_status="offline", last_status_at=NOW - timedelta(minutes=2))
    assert presence_signal(just_off, POLICY, NOW).active is None  # type: ignore[union-attr]
    held = device("cabinet", last_status="offline", last_status_at=NOW - timedelta(minutes=5))
    signal = presence_signal(held, POLICY, NOW)
    assert signal is not None and signal.active is True
    assert signal.started_at == NOW - timedelta(minutes=5)
    silent = device("cabinet", last_seen=NOW - timedelta(minutes=30))
    signal = presence_signal(silent, POLICY, NOW)
    assert signal is not None and signal.active is True and signal.detail["reason"] == "silent"
    assert presence_signal(device("cabinet", last_seen=NOW - timedelta(minutes=29)), POLICY, NOW)


def test_leak_sensor_offline_is_normal_but_36_hours_of_silence_is_not() -> None:
    asleep = device("leak_sensor", last_status="offline", last_seen=NOW - timedelta(hours=20))
    signal = presence_signal(asleep, POLICY, NOW)
    assert signal is not None and signal.rule == "sensor_silent" and signal.active is False
    gone = device("leak_sensor", last_seen=NOW - timedelta(hours=36))
    assert presence_signal(gone, POLICY, NOW).active is True  # type: ignore[union-attr]


def test_gateway_and_never_seen_devices() -> None:
    gw = device("gateway", last_status="offline", last_status_at=NOW - timedelta(minutes=6))
    signal = presence_signal(gw, POLICY, NOW)
    assert signal is not None and signal.rule == "gateway_offline" and signal.active is True
    never = device("cabinet", last_seen=None, last_status=None, last_status_at=None)
    assert presence_signal(never, POLICY, NOW) is None
    assert presence_signal(device("unknown_role"), POLICY, NOW) is None


def volts(v: float, age_h: float = 1) -> Sample:
    return Sample(v, NOW - timedelta(hours=age_h))


def test_battery_low_with_hysteresis() -> None:
    def active(v: float | None, pct: float | None = None) -> bool | None:
        s = battery_signal(
            "leak-1",
            "sud",
            volts(v) if v is not None else None,
            Sample(pct, NOW) if pct is not None else None,
            POLICY,
            NOW,
        )
        assert s is not None
        return s.active

    assert active(3.29) is True
    assert active(3.35) is None  # in the band: no change
    assert active(3.40) is False
    assert active(3.6, 14) is True  # either figure low raises
    assert active(3.6, 17) is None
    assert active(None, 25) is False
    stale = battery_signal("leak-1", "sud", volts(3.0, age_h=100), None, POLICY, NOW)
    assert stale is None  # a week-old reading is not the battery's state
    with pytest.raises(BadRow, match="not a voltage"):
        battery_signal("leak-1", "sud", volts(float("nan")), None, POLICY, NOW)


def nightly_samples(backgrounds: list[float]) -> list[tuple[datetime, str, float]]:
    out = []
    for i, bg in enumerate(backgrounds):
        when = NOW.replace(hour=2) - timedelta(days=len(backgrounds) - 1 - i)
        out.append((when, "noise_l90_db", bg))
        out.append((when, "noise_spread_db", 1.0))
    return out


def test_leak_signal_from_nightly_readings() -> None:
    quiet = [-60.0 + 0.3 * ((i * 7) % 5 - 2) for i in range(12)]
    signal = leak_signal("leak-1", "sud", nightly_samples([*quiet, -48, -48, -47]), POLICY, NOW)
    assert signal is not None and signal.rule == "leak" and signal.source == "acoustic"
    assert signal.active is True
    assert signal.detail["background_metric"] == "noise_l90_db"
    assert signal.detail["elevated_nights"] == 3
    assert signal.severity in ("warning", "critical")
    calm = leak_signal("leak-1", "sud", nightly_samples([*quiet, -60, -60, -60]), POLICY, NOW)
    assert calm is not None and calm.active is False
    assert leak_signal("leak-1", "sud", [], POLICY, NOW) is None


def circuit_history(nights: int, watts_last: float) -> dict[str, list[tuple[float, float, str]]]:
    """power_w every 10 min: 1 kW from 18:00 to 06:00, the last night at watts_last.

    At 10:00 the last complete night ended at 12:00 UTC the day before.
    """
    end = (NOW.replace(hour=12) - timedelta(days=1)).timestamp()
    start = end - nights * 86400
    t = np.arange(start, end + 1, 600.0)
    hour = (t % 86400) / 3600
    on = (hour >= 18) | (hour < 6)
    watts = np.where(t >= end - 86400, watts_last, 1000.0)
    samples = zip(t, watts, on, strict=True)
    return {"power_w": [(float(x), float(w) if o else 0.0, "b1") for x, w, o in samples]}


def test_energy_anomaly_needs_a_week_and_compares_with_usual_nights() -> None:
    usual = circuit_signal("cab-1", "nord", 1, circuit_history(15, 1000.0), POLICY, NOW)
    assert usual is not None and usual.active is False
    assert usual.dedup_key == "energy_anomaly:cab-1:1"
    bright = circuit_signal("cab-1", "nord", 1, circuit_history(15, 2000.0), POLICY, NOW)
    assert bright is not None and bright.active is True
    assert bright.detail["expected_wh"] == pytest.approx(12000, rel=0.01)
    assert bright.detail["measured_wh"] == pytest.approx(24000, rel=0.01)
    young = circuit_signal("cab-1", "nord", 1, circuit_history(5, 2000.0), POLICY, NOW)
    assert young is not None and young.active is None  # not enough nights


def test_policy_file_overrides_defaults_and_refuses_typos(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        "[defaults]\nclear_hold_s = 120\n"
        "[presence]\nsensor_silent_s = 172800\n"
        "[rules.day_burning]\nenabled = false\n"
        "[rules.mains_loss]\nclear_hold_s = 30\n"
    )
    policy = load_policy(path)
    assert policy.rule("door_open").clear_hold_s == 120
    assert policy.rule("day_burning").enabled is False
    # a file's [rules.x] adds to the built-in settings of x
    assert policy.rule("mains_loss").severity == "critical"
    assert policy.rule("mains_loss").clear_hold_s == 30
    assert policy.presence.sensor_silent_s == 172800
    with pytest.raises(PolicyError, match="clear_hold"):
        parse_policy("[defaults]\nclear_hold = 5\n")
    with pytest.raises(PolicyError, match="hysteresis"):
        parse_policy("[battery]\nlow_v = 3.5\nclear_v = 3.4\n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        parse_policy("[defaults\n")
    with pytest.raises(PolicyError, match="clear_db"):
        parse_policy("[leak]\nrise_db = 2\nclear_db = 3\n")
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")
