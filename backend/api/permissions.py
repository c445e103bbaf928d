"""Who may call what: the permission matrix of the API, as data.

Two tables, both read by ``deps.authorize`` and by the tests:

- ``MATRIX``: permission -> the roles that hold it;
- ``ROUTES``: (method, path template) -> the permission it needs, or
  ``PUBLIC`` for the few routes anyone may call.

A route of the application that is missing from ``ROUTES`` is refused
(``create_app`` raises at start-up, and ``authorize`` answers 403 if one
slips through), so adding a route means deciding who may call it here.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

API_PREFIX: Final = "/api/v1"


class Role(StrEnum):
    """The roles of ``api_role`` (migration 0006)."""

    OPERATOR = "operator"  # night-shift operator
    PLANNER = "planner"  # municipal services
    TECHNICIAN = "technician"  # field and support technician
    ADMIN = "admin"


class Permission(StrEnum):
    ME_READ = "me:read"
    DEVICES_READ = "devices:read"
    DEVICES_PROVISION = "devices:provision"
    TELEMETRY_READ = "telemetry:read"
    EVENTS_READ = "events:read"
    DEAD_LETTERS_READ = "dead_letters:read"
    SEQUENCE_GAPS_READ = "sequence_gaps:read"
    TOKENS_READ = "tokens:read"
    TOKENS_WRITE = "tokens:write"


PUBLIC: Final = None

_EVERYONE: Final = frozenset(Role)

MATRIX: Final[Mapping[Permission, frozenset[Role]]] = {
    Permission.ME_READ: _EVERYONE,
    Permission.DEVICES_READ: _EVERYONE,
    # Issues broker credentials: who installs and replaces devices in the field.
    Permission.DEVICES_PROVISION: frozenset({Role.TECHNICIAN, Role.ADMIN}),
    Permission.TELEMETRY_READ: _EVERYONE,
    Permission.EVENTS_READ: _EVERYONE,
    # Raw rejected payloads: diagnosis material, may hold anything a device sent.
    Permission.DEAD_LETTERS_READ: frozenset({Role.TECHNICIAN, Role.ADMIN}),
    # Data-path health: what the night shift and the technicians watch.
    Permission.SEQUENCE_GAPS_READ: frozenset({Role.OPERATOR, Role.TECHNICIAN, Role.ADMIN}),
    Permission.TOKENS_READ: frozenset({Role.ADMIN}),
    Permission.TOKENS_WRITE: frozenset({Role.ADMIN}),
}

ROUTES: Final[Mapping[tuple[str, str], Permission | None]] = {
    ("GET", f"{API_PREFIX}/health"): PUBLIC,
    ("GET", f"{API_PREFIX}/me"): Permission.ME_READ,
    ("GET", f"{API_PREFIX}/devices"): Permission.DEVICES_READ,
    ("POST", f"{API_PREFIX}/devices"): Permission.DEVICES_PROVISION,
    ("GET", f"{API_PREFIX}/devices/{{device_id}}"): Permission.DEVICES_READ,
    ("GET", f"{API_PREFIX}/devices/{{device_id}}/telemetry"): Permission.TELEMETRY_READ,
    ("GET", f"{API_PREFIX}/events"): Permission.EVENTS_READ,
    ("GET", f"{API_PREFIX}/dead-letters"): Permission.DEAD_LETTERS_READ,
    ("GET", f"{API_PREFIX}/sequence-gaps"): Permission.SEQUENCE_GAPS_READ,
    ("GET", f"{API_PREFIX}/tokens"): Permission.TOKENS_READ,
    ("POST", f"{API_PREFIX}/tokens"): Permission.TOKENS_WRITE,
    ("DELETE", f"{API_PREFIX}/tokens/{{token_id}}"): Permission.TOKENS_WRITE,
}


def permissions_of(role: Role) -> list[Permission]:
    """The permissions ``role`` holds, in declaration order."""
    return [permission for permission, roles in MATRIX.items() if role in roles]


def allowed(role: Role, permission: Permission) -> bool:
    return role in MATRIX.get(permission, frozenset())
