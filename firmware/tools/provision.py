"""Provision one device: its configuration file, its secrets, its broker account.

    result = provision(DeviceSpec("cab-0042", "cabinet", "10.0.0.2", 8883, "lyon-3",
                                  45.75, 4.85, ca=Path("ca.pem")), run_dir=Path(".run"))

writes ``<run>/devices/<device>/config.json`` (and ``ca.pem`` when given): the
folder is mode 0700 and its files 0600, under the git-ignored run folder. The
config holds the device id (also its MQTT user name: the broker's ACL
patterns use ``%u``), a generated MQTT password, the broker, the CA, the site,
the coordinates and a generated 32-byte OTA key (HMAC-SHA256, ``edge.ota``).
``register`` adds the credentials to the local dev stack's broker.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge._protocol_fields import check_id
from edge.protocol import ProtocolError
from firmware.roles import get_role

CONFIG = "config.json"
CA_FILE = "ca.pem"
CONFIG_FORMAT = "lumeau-device/1"
OTA_KEY_BYTES = 32


class ProvisionError(Exception):
    """Bad input or an existing device: the message says which."""


@dataclass(frozen=True)
class DeviceSpec:
    device: str
    role: str
    host: str
    port: int
    site: str
    lat: float
    lon: float
    ca: Path | None = None
    max_boot_attempts: int = 2


@dataclass(frozen=True)
class Provisioned:
    folder: Path
    config: Path
    password: str
    registered: bool

    def __repr__(self) -> str:  # no password in logs or tracebacks
        return f"Provisioned(folder={str(self.folder)!r}, registered={self.registered})"


def default_run_dir() -> Path:
    return Path(os.environ.get("LUMEAU_RUN_DIR") or ".run")


def check_device_id(device: str, what: str = "device id") -> str:
    """The protocol's id rule: 1..64 characters of ``[a-z0-9-_.]``."""
    try:
        return str(check_id(device, what))
    except ProtocolError as exc:
        raise ProvisionError(f"invalid {what}: {exc.reason}") from None


def parse_broker(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port)."""
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if sep:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ProvisionError(f"broker {text!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
    if not sep or not host or (":" in host and not text.startswith("[")):
        raise ProvisionError(f"broker {text!r}: expected HOST:PORT (or [IPv6]:PORT)")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ProvisionError(f"broker {text!r}: the port must be 1..65535")
    if any(c.isspace() or c in "/@" for c in host):
        raise ProvisionError(f"broker {text!r}: {host!r} is not a host name or address")
    return host, int(port_text)


def _check_coordinates(lat: float, lon: float) -> None:
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise ProvisionError(f"latitude {lat} is outside -90..90 degrees")
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise ProvisionError(f"longitude {lon} is outside -180..180 degrees")


def _read_ca(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProvisionError(f"cannot read the CA certificate {path}: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ProvisionError(f"{path} is not a PEM certificate (no BEGIN CERTIFICATE line)")
    return data


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def config_dict(spec: DeviceSpec, password: str, ota_key: bytes) -> dict[str, Any]:
    return {
        "format": CONFIG_FORMAT,
        "device": spec.device,
        "role": get_role(spec.role).name,
        "site": spec.site,
        "location": {"lat": spec.lat, "lon": spec.lon},
        "mqtt": {
            "host": spec.host,
            "port": spec.port,
            "username": spec.device,
            "password": password,
            "tls": spec.ca is not None,
            "ca": CA_FILE if spec.ca is not None else None,
        },
        "ota": {"key": ota_key.hex(), "max_attempts": spec.max_boot_attempts},
    }


def provision(
    spec: DeviceSpec,
    run_dir: Path | None = None,
    *,
    out_dir: Path | None = None,
    force: bool = False,
    register: bool = False,
) -> Provisioned:
    """Write the device's folder; with ``register``, add its broker user to the dev stack."""
    check_device_id(spec.device)
    check_device_id(spec.site, "site id")
    try:
        get_role(spec.role)
    except ValueError as exc:
        raise ProvisionError(str(exc)) from None
    _check_coordinates(spec.lat, spec.lon)
    if not 1 <= spec.port <= 65535:
        raise ProvisionError(f"broker port {spec.port} is outside 1..65535")
    ca = _read_ca(spec.ca) if spec.ca is not None else None

    run_dir = run_dir or default_run_dir()
    folder = (out_dir or run_dir / "devices") / spec.device
    if (folder / CONFIG).exists() and not force:
        raise ProvisionError(
            f"{spec.device} is already provisioned ({folder / CONFIG}); "
            "--force makes a new password and OTA key (the board must be re-flashed)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)

    password = secrets.token_urlsafe(24)
    ota_key = secrets.token_bytes(OTA_KEY_BYTES)
    config = json.dumps(config_dict(spec, password, ota_key), indent=1, sort_keys=True) + "\n"
    if ca is not None:
        _write_private(folder / CA_FILE, ca)
    _write_private(folder / CONFIG, config.encode())

    registered = False
    if register:
        from backend.devstack import add_broker_user, up

        stack = up(run_dir, install=False)
        add_broker_user(stack, spec.device, password)
        registered = True
    return Provisioned(folder, folder / CONFIG, password, registered)


def load_config(folder: Path) -> dict[str, Any]:
    """A provisioned device's configuration (for flash and signing)."""
    try:
        obj = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProvisionError(f"no readable {CONFIG} in {folder}: {exc}") from None
    if not isinstance(obj, dict) or obj.get("format") != CONFIG_FORMAT:
        raise ProvisionError(f"{folder / CONFIG} is not a {CONFIG_FORMAT} configuration")
    return obj


def ota_key_of(config: dict[str, Any]) -> bytes:
    try:
        return bytes.fromhex(str(config["ota"]["key"]))
    except (KeyError, TypeError, ValueError):
        raise ProvisionError("the configuration has no valid ota.key") from None
