"""docker-compose.yml must configure the services with exactly what the code reads."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from backend.cli import build_parser
from backend.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
# Services that run the Lumeau image (built from the repository's Dockerfile).
LUMEAU_SERVICES = {name: svc for name, svc in SERVICES.items() if svc.get("build") == "."}

SETTINGS_VARS = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
REQUIRED_VARS = {
    ENV_PREFIX + name.upper()
    for name, field in Settings.model_fields.items()
    if field.is_required()
}


def test_there_are_lumeau_services() -> None:
    assert {"migrate", "ingest"} <= set(LUMEAU_SERVICES)


@pytest.mark.parametrize("name", sorted(LUMEAU_SERVICES))
def test_no_unknown_lumeau_variables(name: str) -> None:
    env = LUMEAU_SERVICES[name]["environment"]
    unknown = {key for key in env if key.startswith(ENV_PREFIX)} - SETTINGS_VARS
    assert not unknown, f"{name} sets variables no code reads: {sorted(unknown)}"


@pytest.mark.parametrize("name", sorted(LUMEAU_SERVICES))
def test_no_missing_required_variables(name: str) -> None:
    env = LUMEAU_SERVICES[name]["environment"]
    missing = REQUIRED_VARS - set(env)
    assert not missing, f"{name} lacks required settings: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(LUMEAU_SERVICES))
def test_service_command_is_a_real_cli_command(name: str) -> None:
    command = LUMEAU_SERVICES[name]["command"]
    args = command if isinstance(command, list) else shlex.split(command)
    parsed = build_parser().parse_args(args)
    assert callable(parsed.func)


def _secret_values() -> list[tuple[str, str, str]]:
    found = []
    for name, svc in SERVICES.items():
        env = svc.get("environment") or {}
        for key, value in env.items():
            if re.search(r"PASSWORD|SECRET|TOKEN", key) or key == ENV_PREFIX + "DATABASE_URL":
                found.append((name, key, str(value)))
    return found


@pytest.mark.parametrize(("service", "key", "value"), _secret_values())
def test_secrets_are_required_variables_never_defaults(service: str, key: str, value: str) -> None:
    # `${VAR:?message}` makes compose refuse to start without the secret.
    assert re.search(r"\$\{[A-Z_]+:\?[^}]*\}", value), f"{service}.{key} must use ${{VAR:?}}"
    assert ":-" not in value, f"{service}.{key} has a default secret"


def test_mounted_files_exist() -> None:
    for svc in SERVICES.values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and "certs" not in source:
                assert (ROOT / source).exists(), f"compose mounts missing {source}"


def _rules(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_deployed_acl_is_the_one_the_dev_stack_enforces() -> None:
    # The ACL is tested for real on the dev stack's broker; the deployed copy must not drift.
    from backend.devstack.broker import LUMEAU_ACL

    assert _rules((ROOT / "deploy/mosquitto/acl").read_text()) == _rules(LUMEAU_ACL)
