"""The maintenance configuration: defaults, TOML files, refused values."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.maintenance.config import ConfigError, MaintenanceConfig, load_config


def test_no_file_gives_the_documented_defaults() -> None:
    config = load_config(None)
    assert config == MaintenanceConfig()
    assert config.retention.reading_days == 400
    assert config.retention.dead_letter_days == 90
    assert config.retention.reading_daily_rollup_days is None  # forever
    assert config.retention.device_energy_daily_days is None
    assert config.retention.site_daily_rollup_days is None
    assert config.retention.hypertable_days()["site_daily_rollup"] is None
    assert config.retention.hypertable_days()["reading_hourly_rollup"] == 1826


def test_a_file_changes_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "maintenance.toml"
    path.write_text(
        "interval_s = 60\n[rollup]\nclose_delay_min = 5\n[retention]\ndead_letter_days = 30\n"
    )
    config = load_config(path)
    assert config.interval_s == 60
    assert config.rollup.close_delay_min == 5
    assert config.rollup.settle_min == 10
    assert config.retention.dead_letter_days == 30
    assert config.retention.reading_days == 400


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[retention]\nreading_days = 500\n", "uplink_message_days must be >= reading_days"),
        (
            "[retention]\nreading_hourly_rollup_days = 30\n",
            "reading_hourly_rollup_days must be >= reading_days",
        ),
        ("[retention]\nreading_daily_rollup_days = 10\n", "reading_daily_rollup_days"),
        ("[retention]\nreading_days = 0\n", "retention.reading_days"),
        (
            "[retention]\ndevice_energy_daily_days = 30\n",
            "device_energy_daily_days must be >= reading_days",
        ),
        (
            "[retention]\nsite_daily_rollup_days = 30\n",
            "site_daily_rollup_days must be >= reading_days",
        ),
        ("[rollup]\nbatch_hours = 0\n", "rollup.batch_hours"),
        ("[rollup]\nunknown = 1\n", "rollup.unknown"),
        ("interval_s = 'often'\n", "interval_s"),
        ("[retention\n", "not valid TOML"),
    ],
)
def test_bad_files_are_refused_with_the_field_named(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")
