"""What ``lumeau maintenance run`` does and how often: a TOML file, checked.

Every field has a default that suits a city deployment; the comment beside
each says why. A file only needs the values it changes::

    interval_s = 300

    [rollup]
    close_delay_min = 15

    [retention]
    reading_days = 400
    dead_letter_days = 90
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """The configuration file is unreadable or holds values that are refused."""


class RollupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Messages of an hour still arrive just after it ends (batching, clocks):
    # rolling it up 15 min later avoids re-rolling nearly every hour.
    close_delay_min: int = Field(default=15, ge=0, le=24 * 60)
    # An ingest worker stamps received_at before its commit; re-reading this
    # much of the past at each scan covers that delay and clock differences.
    settle_min: int = Field(default=10, ge=1, le=7 * 24 * 60)
    # Readings carry their own ts; the firmware uses the message's ts, but
    # allow a message to hold readings this far from its own time.
    reading_lead_min: int = Field(default=10, ge=0, le=24 * 60)
    # A reading stamped later than now + this comes from a device clock that is
    # ahead (an RTC set to 2099 is a valid timestamp): it never becomes the
    # series' latest value, which it would otherwise stay until that date.
    latest_lead_min: int = Field(default=10, ge=0, le=7 * 24 * 60)
    # One transaction per this many new hours: bounded locks and WAL.
    batch_hours: int = Field(default=6, ge=1, le=24 * 31)
    # One transaction per this many (device, hour) pairs to roll up again.
    batch_pairs: int = Field(default=5000, ge=1, le=1_000_000)

    @property
    def close_delay(self) -> timedelta:
        return timedelta(minutes=self.close_delay_min)

    @property
    def settle(self) -> timedelta:
        return timedelta(minutes=self.settle_min)

    @property
    def reading_lead(self) -> timedelta:
        return timedelta(minutes=self.reading_lead_min)

    @property
    def latest_lead(self) -> timedelta:
        return timedelta(minutes=self.latest_lead_min)


class RetentionConfig(BaseModel):
    """Days to keep per table; None keeps forever."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Raw readings: a year of detail plus a month to compare with last year.
    reading_days: int | None = Field(default=400, ge=1)
    # The idempotency record: as long as readings, or a very late resend of a
    # forgotten message would be stored twice.
    uplink_message_days: int | None = Field(default=400, ge=1)
    # Hourly curves for five years of reports and audits.
    reading_hourly_rollup_days: int | None = Field(default=1826, ge=1)
    # Daily figures are small (one row per series a day): keep them forever.
    reading_daily_rollup_days: int | None = Field(default=None, ge=1)
    # Energy per device and day, and the per-site daily rollups: what yearly
    # and year-on-year reports read, a few rows per device (or site) a day.
    device_energy_daily_days: int | None = Field(default=None, ge=1)
    site_daily_rollup_days: int | None = Field(default=None, ge=1)
    # Events, presence and command history: the maintenance record of assets.
    event_days: int | None = Field(default=1826, ge=1)
    device_status_days: int | None = Field(default=1826, ge=1)
    command_ack_days: int | None = Field(default=1826, ge=1)
    # Rejected input matters while someone investigates it.
    dead_letter_days: int | None = Field(default=90, ge=1)
    # Rows per DELETE on plain tables: short transactions, no long locks.
    delete_batch: int = Field(default=10_000, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        def longer(a: int | None, b: int | None) -> bool:
            """a keeps at least as long as b."""
            return a is None or (b is not None and a >= b)

        if not longer(self.uplink_message_days, self.reading_days):
            raise ValueError(
                "uplink_message_days must be >= reading_days: a resend of a message whose"
                " identity was dropped would store its readings twice"
            )
        if not longer(self.reading_hourly_rollup_days, self.reading_days):
            raise ValueError(
                "reading_hourly_rollup_days must be >= reading_days: late data re-rolls a"
                " day from its hours, which must still be there"
            )
        if not longer(self.reading_daily_rollup_days, self.reading_hourly_rollup_days):
            raise ValueError("reading_daily_rollup_days must be >= reading_hourly_rollup_days")
        # Late data rebuilds a day of these from raw readings and from the
        # device's previous energy row and daily rows: they must outlive raw.
        for name in ("device_energy_daily_days", "site_daily_rollup_days"):
            if not longer(getattr(self, name), self.reading_days):
                raise ValueError(
                    f"{name} must be >= reading_days: late data rebuilds its days"
                    " from raw readings and needs the rows before them"
                )
        return self

    def hypertable_days(self) -> dict[str, int | None]:
        """Hypertable -> days to keep, in the order retention applies them."""
        return {
            "reading": self.reading_days,
            "uplink_message": self.uplink_message_days,
            "reading_hourly_rollup": self.reading_hourly_rollup_days,
            "reading_daily_rollup": self.reading_daily_rollup_days,
            "device_energy_daily": self.device_energy_daily_days,
            "site_daily_rollup": self.site_daily_rollup_days,
            "event": self.event_days,
            "device_status": self.device_status_days,
            "command_ack": self.command_ack_days,
        }


class MaintenanceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Dashboards lag the data by at most this plus close_delay_min.
    interval_s: float = Field(default=300.0, ge=1.0, le=24 * 3600.0)
    # Dropping chunks is cheap but needs a lock on the table: once an hour.
    retention_interval_s: float = Field(default=3600.0, ge=1.0, le=7 * 24 * 3600.0)
    rollup: RollupConfig = Field(default_factory=RollupConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)


def load_config(path: Path | None) -> MaintenanceConfig:
    """The configuration in ``path``, or the defaults when ``path`` is None."""
    if path is None:
        return MaintenanceConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    try:
        return MaintenanceConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
