"""The alert policy: which rules run, their thresholds, severities and holds.

Defaults are what a city would start with; each one says why. A deployment
overrides any of them in a TOML file (``lumeau alerts run --policy FILE``)::

    [defaults]
    clear_hold_s = 600

    [presence]
    sensor_silent_s = 172800

    [rules.door_open]
    clear_hold_s = 120

    [rules.day_burning]
    enabled = false

Unknown keys are errors (a typo must not silently keep a default).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from backend.core.energy import EnergyParams
from backend.core.leak import LeakParams

Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


class PolicyError(ValueError):
    """The policy file cannot be read or holds a bad value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RulePolicy(_Strict):
    """Per-rule settings; any field left out falls back to ``[defaults]``."""

    enabled: bool | None = None
    # None: keep the severity the source gives (a device event's own sev)
    severity: Severity | None = None
    clear_hold_s: float | None = Field(default=None, ge=0)
    reopen_window_s: float | None = Field(default=None, ge=0)


class ResolvedRule(_Strict):
    """A rule's effective settings (defaults applied)."""

    enabled: bool
    severity: Severity | None
    clear_hold_s: float
    reopen_window_s: float


class Defaults(_Strict):
    enabled: bool = True
    # a condition must stay clear this long before the alert resolves: a door
    # opened and closed three times in ten minutes is one visit, one alert
    clear_hold_s: float = Field(default=600.0, ge=0)
    # an engine-resolved alert whose condition returns within this reopens,
    # so a flapping fault keeps its history and its assignee
    reopen_window_s: float = Field(default=3600.0, ge=0)


class PresencePolicy(_Strict):
    # a cabinet's clean disconnect or last-will: allow a reconnect first
    cabinet_offline_hold_s: float = Field(default=300.0, ge=0)
    # cabinets send telemetry every 600 s (firmware default)...
    telemetry_interval_s: float = Field(default=600.0, gt=0)
    # ...so three missed messages (30 min) mean it is not just one lost packet
    silence_factor: float = Field(default=3.0, gt=0)
    # leak sensors report once a night and sleep: 36 h is one missed night + margin
    sensor_silent_s: float = Field(default=36 * 3600.0, gt=0)
    gateway_offline_hold_s: float = Field(default=300.0, ge=0)
    # a gateway sends batches and status all the time: 30 min of nothing is an outage
    gateway_silent_s: float = Field(default=1800.0, gt=0)

    @property
    def cabinet_silent_s(self) -> float:
        return self.telemetry_interval_s * self.silence_factor


class BatteryPolicy(_Strict):
    # Li-SOCl2 cells hold ~3.6 V until nearly empty, then fall fast: 3.3 V
    # leaves weeks, not months
    low_v: float = 3.3
    # raise below low_v, clear only at clear_v: voltage rises with temperature
    # and would otherwise flap every night
    clear_v: float = 3.4
    low_pct: float = Field(default=15.0, ge=0, le=100)
    clear_pct: float = Field(default=20.0, ge=0, le=100)
    # readings older than this are not a battery's current state
    max_age_s: float = Field(default=3 * 86400.0, gt=0)

    @model_validator(mode="after")
    def _hysteresis_goes_up(self) -> BatteryPolicy:
        if self.clear_v < self.low_v or self.clear_pct < self.low_pct:
            raise ValueError("clear_v/clear_pct must be >= low_v/low_pct (hysteresis)")
        return self


class LeakPolicy(_Strict):
    rise_db: float = Field(default=6.0, gt=0)
    clear_db: float = Field(default=3.0, gt=0)
    max_spread_db: float = Field(default=6.0, gt=0)
    persist_nights: int = Field(default=3, ge=1)
    baseline_nights: int = Field(default=60, ge=1)
    min_baseline_nights: int = Field(default=7, ge=1)
    max_stale_nights: int = Field(default=2, ge=0)
    # above this confidence the leak alert is critical (a crew should go)
    critical_confidence: float = Field(default=0.8, ge=0, le=1)
    # nights run noon to noon UTC: a sensor's 02:00-04:00 local report stays
    # in one night for UTC-10 .. UTC+10
    night_offset_s: float = Field(default=12 * 3600.0, ge=0, lt=86400)

    def params(self) -> LeakParams:
        try:
            return LeakParams(
                rise_db=self.rise_db,
                clear_db=self.clear_db,
                max_spread_db=self.max_spread_db,
                persist_nights=self.persist_nights,
                baseline_nights=self.baseline_nights,
                min_baseline_nights=self.min_baseline_nights,
                max_stale_nights=self.max_stale_nights,
            )
        except ValueError as exc:
            raise PolicyError(f"[leak]: {exc}") from exc


class EnergyPolicy(_Strict):
    min_nights: int = Field(default=7, ge=2)
    history_nights: int = Field(default=14, ge=2)
    threshold: float = Field(default=4.0, gt=0)
    min_rel_change: float = Field(default=0.2, ge=0)
    max_gap_s: float = Field(default=3600.0, gt=0)
    min_coverage: float = Field(default=0.9, gt=0, le=1)
    night_offset_s: float = Field(default=12 * 3600.0, ge=0, lt=86400)

    def params(self) -> EnergyParams:
        try:
            return EnergyParams(
                min_nights=self.min_nights,
                history_nights=self.history_nights,
                threshold=self.threshold,
                min_rel_change=self.min_rel_change,
                max_gap_s=self.max_gap_s,
                min_coverage=self.min_coverage,
            )
        except ValueError as exc:
            raise PolicyError(f"[energy]: {exc}") from exc


class EventPolicy(_Strict):
    # an event is read this long after it was received, so an ingest
    # transaction that began earlier but committed later is not skipped
    settle_s: float = Field(default=30.0, ge=0)
    # first run (no cursor yet): how far back to read events
    initial_lookback_s: float = Field(default=86400.0, ge=0)
    batch: int = Field(default=5000, ge=1)
    # a device clock this far ahead of reception is wrong (an RTC set to
    # 2099): its event is taken as observed when received
    max_clock_lead_s: float = Field(default=600.0, ge=0)
    # a key whose write failed has its events read again for this long
    retry_max_s: float = Field(default=86400.0, ge=0)
    # codes that are no alert at all (a reboot is reported, not alarming)
    ignore: tuple[str, ...] = ("reboot",)
    # one-shot codes (sent with active=true only): raised and cleared at once,
    # so they resolve after the clear hold unless they keep coming
    one_shot: tuple[str, ...] = ("queue_overflow",)


class Schedule(_Strict):
    """How often each source runs (events and presence: every evaluation)."""

    battery_s: float = Field(default=900.0, ge=0)
    leak_s: float = Field(default=3600.0, ge=0)  # nightly data: hourly is plenty
    energy_s: float = Field(default=3600.0, ge=0)


def _default_rules() -> dict[str, RulePolicy]:
    return {
        # a cabinet out of reach still runs its schedule, but nobody sees its faults
        "cabinet_offline": RulePolicy(severity="warning"),
        # a whole site's devices become invisible at once
        "gateway_offline": RulePolicy(severity="critical"),
        "sensor_silent": RulePolicy(severity="warning"),
        # a street goes dark: always critical, whatever the device says
        "mains_loss": RulePolicy(severity="critical"),
        # battery voltage recovers when it warms up: wait a day before resolving
        "battery_low": RulePolicy(severity="warning", clear_hold_s=86400.0),
        # nightly data: two nights clear before a leak alert resolves
        "leak": RulePolicy(clear_hold_s=2 * 86400.0),
        "energy_anomaly": RulePolicy(severity="warning"),
    }


class Policy(_Strict):
    """Everything the engine reads from the policy file."""

    defaults: Defaults = Defaults()
    rules: dict[str, RulePolicy] = Field(default_factory=_default_rules)
    presence: PresencePolicy = PresencePolicy()
    battery: BatteryPolicy = BatteryPolicy()
    leak: LeakPolicy = LeakPolicy()
    energy: EnergyPolicy = EnergyPolicy()
    events: EventPolicy = EventPolicy()
    schedule: Schedule = Schedule()

    @model_validator(mode="before")
    @classmethod
    def _merge_rule_defaults(cls, data: object) -> object:
        # a file's [rules.x] adds to the built-in per-rule settings field by field
        if isinstance(data, dict) and isinstance(data.get("rules"), dict):
            merged = {k: v.model_dump(exclude_none=True) for k, v in _default_rules().items()}
            for name, given in data["rules"].items():
                if isinstance(given, dict):
                    merged[name] = {**merged.get(name, {}), **given}
                else:
                    merged[name] = given
            data = {**data, "rules": merged}
        return data

    def rule(self, name: str) -> ResolvedRule:
        given = self.rules.get(name, RulePolicy())
        return ResolvedRule(
            enabled=self.defaults.enabled if given.enabled is None else given.enabled,
            severity=given.severity,
            clear_hold_s=(
                self.defaults.clear_hold_s if given.clear_hold_s is None else given.clear_hold_s
            ),
            reopen_window_s=(
                self.defaults.reopen_window_s
                if given.reopen_window_s is None
                else given.reopen_window_s
            ),
        )

    def check(self) -> Policy:
        """Raise ``PolicyError`` if the numerical cores refuse their settings."""
        self.leak.params()
        self.energy.params()
        return self


def parse_policy(text: str, *, origin: str = "<policy>") -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{origin}: not valid TOML: {exc}") from exc
    try:
        return Policy.model_validate(data).check()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise PolicyError(f"{origin}: {problems}") from exc


def load_policy(path: Path | None) -> Policy:
    """The policy in ``path``, or the defaults when ``path`` is None."""
    if path is None:
        return Policy()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror}") from exc
    return parse_policy(text, origin=str(path))
