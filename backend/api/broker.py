"""The API's handle on the MQTT broker's accounts: ``BrokerAdmin``.

``POST /api/v1/devices`` gives a device a broker user (its device id) and a
fresh password. The application does not edit broker files itself: it calls a
``BrokerAdmin`` passed to ``create_app`` (``broker_admin=``), so tests and
deployments choose how the broker learns the password.

- ``DevStackBrokerAdmin`` (the default): the development stack of the run
  folder (``settings.run_dir``, as ``lumeau services up`` made it). It calls
  ``backend.devstack.add_broker_user``, which records the password in the run
  folder's ``credentials.json``, rewrites Mosquitto's password file and
  reloads the broker (SIGHUP) before returning.
- In production the broker mounts a password file (``mosquitto_passwd``
  format) and an ACL file from the orchestrator. An implementation there
  would write the user's salted hash into that file (``mosquitto_passwd -b``
  on a copy, then an atomic rename) and signal the broker to reload (SIGHUP,
  or ``docker kill -s HUP``); nothing else of the API changes. It must not
  return before the broker accepts the new password.

The ACL the broker applies is the stack's (``backend.devstack.broker.LUMEAU_ACL``):
user ``X`` may publish under ``lumeau/v1/dev/X/up/`` and read
``lumeau/v1/dev/X/down/``, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from backend.devstack import Stack
    from backend.settings import Settings


class BrokerAdminError(RuntimeError):
    """The broker could not be given the password (the API answers 503)."""


class BrokerAdmin(Protocol):
    """Sets broker passwords; ``set_password`` blocks until the broker accepts it."""

    def set_password(self, username: str, password: str) -> None:
        """Create ``username`` or replace its password; raise ``BrokerAdminError``."""
        ...


@dataclass(frozen=True)
class Provisioning:
    """What ``POST /devices`` needs, set up by ``create_app`` (``app.state.provisioning``)."""

    admin: BrokerAdmin
    broker_host: str  # as devices should reach the broker (the settings' MQTT host)
    broker_port: int
    tls: bool
    # Broker users a device id must never take over: the backend services' own.
    reserved_users: frozenset[str]


class DevStackBrokerAdmin:
    """The broker of the development stack in ``settings.run_dir``.

    The stack is loaded from the run folder at each call (its ports file, as
    ``lumeau services up`` wrote it), so building one touches nothing. It
    refuses (``BrokerAdminError``) unless that broker is the one the settings
    name (same port), so an application made with other settings never edits
    the users of a run folder it merely shares a working directory with.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._run_dir = Path(settings.run_dir).resolve()

    def __repr__(self) -> str:
        return f"DevStackBrokerAdmin(run_dir={str(self._run_dir)!r})"

    def _stack(self) -> Stack:
        from backend.devstack import Stack
        from backend.devstack._util import read_json
        from backend.devstack.stack import PORTS

        ports = read_json(self._run_dir / PORTS)
        port = ports.get("mqtt_port")
        if not isinstance(port, int):
            raise BrokerAdminError(
                f"no development stack in {self._run_dir} (no {PORTS}):"
                " run 'lumeau services up' or configure the broker"
            )
        if port != self._settings.mqtt_port:
            # Only ever the broker these settings name: an application built
            # with other settings (a test's) must not edit this folder's users.
            raise BrokerAdminError(
                f"the broker of {self._run_dir} listens on port {port}, the settings name"
                f" port {self._settings.mqtt_port}: not provisioning on another broker"
            )
        # add_broker_user uses the run folder and the broker's port; the other
        # fields describe this API's own view of the services.
        return Stack(
            run_dir=self._run_dir,
            database_url=self._settings.database_url.get_secret_value(),
            admin_database_url="",
            mqtt_host=self._settings.mqtt_host,
            mqtt_port=port,
            mqtt_username=self._settings.mqtt_username,
            mqtt_password=self._settings.mqtt_password.get_secret_value(),
            timescaledb_version="",
        )

    def set_password(self, username: str, password: str) -> None:
        from backend.devstack import ServiceError, add_broker_user

        stack = self._stack()
        try:
            add_broker_user(stack, username, password)
        except (ServiceError, OSError, ValueError) as exc:
            raise BrokerAdminError(f"the broker of {self._run_dir} failed: {exc}") from exc
