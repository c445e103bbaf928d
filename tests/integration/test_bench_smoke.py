"""The benchmark command works on a fresh machine: every benchmark runs and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, services_run_dir


@pytest.mark.services
def test_quick_raw_limits_run_and_report_positive_rates(stack: object, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "raw", "--json", str(out),
         "--run-dir", str(services_run_dir()), "--keep-services"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())["results"]
    by_metric = {(r["benchmark"], r["unit"]) for r in results}
    assert {("raw.mosquitto", "msg/s"), ("raw.paho", "msg/s"), ("raw.copy", "rows/s")} <= by_metric
    assert all(r["value"] > 0 for r in results), results
    assert "FAILED" not in done.stdout


@pytest.mark.services
def test_quick_dashboard_queries_run_and_report_percentiles(stack: object, tmp_path: Path) -> None:
    out = tmp_path / "dashboard.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "dashboard", "--json", str(out),
         "--run-dir", str(services_run_dir()), "--keep-services"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results = {r["metric"]: r for r in json.loads(out.read_text())["results"]}
    assert results["generation"]["unit"] == "s" and results["generation"]["value"] > 0
    assert results["disk reading_hourly_rollup"]["value"] > 0
    for name in ("device_hourly_power_year", "city_daily_energy_year", "map_latest_per_device"):
        assert results[f"{name} p99"]["unit"] == "ms"
        assert results[f"{name} p99"]["value"] > 0
    assert "rows returned" in results["device_hourly_power_week p99"]["notes"]
    assert "FAILED" not in done.stdout
