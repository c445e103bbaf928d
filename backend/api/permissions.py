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
    COMMANDS_READ = "commands:read"
    LIGHTING_OVERRIDE = "commands:lighting"
    RECORDINGS_REQUEST = "commands:recordings"
    ALERTS_READ = "alerts:read"
    ALERTS_ACT = "alerts:act"
    ALERTS_COMMENT = "alerts:comment"
    STREAM_READ = "stream:read"
    ASSETS_READ = "assets:read"
    ASSETS_WRITE = "assets:write"
    NOTIFICATION_CHANNELS_READ = "notification_channels:read"
    NOTIFICATION_CHANNELS_WRITE = "notification_channels:write"
    NOTIFICATION_DELIVERIES_READ = "notification_deliveries:read"
    SCHEDULES_READ = "schedules:read"
    SCHEDULES_WRITE = "schedules:write"
    SCHEDULES_DEPLOY = "schedules:deploy"


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
    Permission.COMMANDS_READ: _EVERYONE,
    # Changes what a street's lights do now: the night shift, the municipal
    # services who set the dimming, and the technicians on site.
    Permission.LIGHTING_OVERRIDE: frozenset(
        {Role.OPERATOR, Role.PLANNER, Role.TECHNICIAN, Role.ADMIN}
    ),
    # Asks sensors to resend or delete raw recordings (battery, flash, the
    # leak-location data itself): the technicians who run the analysis.
    Permission.RECORDINGS_REQUEST: frozenset({Role.TECHNICIAN, Role.ADMIN}),
    Permission.ALERTS_READ: _EVERYONE,
    # Acknowledge, assign, resolve: who answers alerts (municipal planners watch).
    Permission.ALERTS_ACT: frozenset({Role.OPERATOR, Role.TECHNICIAN, Role.ADMIN}),
    Permission.ALERTS_COMMENT: _EVERYONE,
    Permission.STREAM_READ: _EVERYONE,
    Permission.ASSETS_READ: _EVERYONE,
    # The asset register (sites, luminaires, pipes): planners draw it, technicians survey it.
    Permission.ASSETS_WRITE: frozenset({Role.PLANNER, Role.TECHNICIAN, Role.ADMIN}),
    # Where alerts are sent: a webhook URL can itself be a receiver's secret.
    Permission.NOTIFICATION_CHANNELS_READ: frozenset({Role.ADMIN}),
    Permission.NOTIFICATION_CHANNELS_WRITE: frozenset({Role.ADMIN}),
    # Whether notifications went out: what support checks when someone was not paged.
    Permission.NOTIFICATION_DELIVERIES_READ: frozenset({Role.TECHNICIAN, Role.ADMIN}),
    Permission.SCHEDULES_READ: _EVERYONE,
    # The city's dimming policy: the municipal services write it.
    Permission.SCHEDULES_WRITE: frozenset({Role.PLANNER, Role.ADMIN}),
    # Sending a stored (planner-checked) schedule to cabinets: planners, and the
    # technicians who replace a controller (a new one runs full power all night
    # until it gets its program); they cannot change the schedule itself.
    Permission.SCHEDULES_DEPLOY: frozenset({Role.PLANNER, Role.TECHNICIAN, Role.ADMIN}),
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
    ("POST", f"{API_PREFIX}/devices/{{device_id}}/commands/lighting-override"): (
        Permission.LIGHTING_OVERRIDE
    ),
    ("POST", f"{API_PREFIX}/devices/{{device_id}}/commands/recording"): (
        Permission.RECORDINGS_REQUEST
    ),
    ("GET", f"{API_PREFIX}/devices/{{device_id}}/commands"): Permission.COMMANDS_READ,
    ("GET", f"{API_PREFIX}/commands/{{command_id}}"): Permission.COMMANDS_READ,
    ("GET", f"{API_PREFIX}/alerts"): Permission.ALERTS_READ,
    ("GET", f"{API_PREFIX}/alerts/{{alert_id}}"): Permission.ALERTS_READ,
    ("POST", f"{API_PREFIX}/alerts/{{alert_id}}/acknowledge"): Permission.ALERTS_ACT,
    ("POST", f"{API_PREFIX}/alerts/{{alert_id}}/assign"): Permission.ALERTS_ACT,
    ("POST", f"{API_PREFIX}/alerts/{{alert_id}}/resolve"): Permission.ALERTS_ACT,
    ("POST", f"{API_PREFIX}/alerts/{{alert_id}}/comments"): Permission.ALERTS_COMMENT,
    ("GET", f"{API_PREFIX}/stream"): Permission.STREAM_READ,
    ("GET", f"{API_PREFIX}/assets"): Permission.ASSETS_READ,
    ("PUT", f"{API_PREFIX}/assets"): Permission.ASSETS_WRITE,
    ("GET", f"{API_PREFIX}/assets/{{kind}}/{{asset_id}}"): Permission.ASSETS_READ,
    ("DELETE", f"{API_PREFIX}/assets/{{kind}}/{{asset_id}}"): Permission.ASSETS_WRITE,
    ("GET", f"{API_PREFIX}/notification-channels"): Permission.NOTIFICATION_CHANNELS_READ,
    ("POST", f"{API_PREFIX}/notification-channels"): Permission.NOTIFICATION_CHANNELS_WRITE,
    ("GET", f"{API_PREFIX}/notification-channels/{{channel_id}}"): (
        Permission.NOTIFICATION_CHANNELS_READ
    ),
    ("PATCH", f"{API_PREFIX}/notification-channels/{{channel_id}}"): (
        Permission.NOTIFICATION_CHANNELS_WRITE
    ),
    ("DELETE", f"{API_PREFIX}/notification-channels/{{channel_id}}"): (
        Permission.NOTIFICATION_CHANNELS_WRITE
    ),
    ("GET", f"{API_PREFIX}/notification-deliveries"): Permission.NOTIFICATION_DELIVERIES_READ,
    ("GET", f"{API_PREFIX}/schedules"): Permission.SCHEDULES_READ,
    ("POST", f"{API_PREFIX}/schedules"): Permission.SCHEDULES_WRITE,
    ("GET", f"{API_PREFIX}/schedules/{{schedule_id}}"): Permission.SCHEDULES_READ,
    ("PUT", f"{API_PREFIX}/schedules/{{schedule_id}}"): Permission.SCHEDULES_WRITE,
    ("DELETE", f"{API_PREFIX}/schedules/{{schedule_id}}"): Permission.SCHEDULES_WRITE,
    ("GET", f"{API_PREFIX}/schedules/{{schedule_id}}/preview"): Permission.SCHEDULES_READ,
    ("POST", f"{API_PREFIX}/schedules/{{schedule_id}}/deployments"): Permission.SCHEDULES_DEPLOY,
    ("GET", f"{API_PREFIX}/schedules/{{schedule_id}}/deployments"): Permission.SCHEDULES_READ,
    ("GET", f"{API_PREFIX}/deployments/{{deployment_id}}"): Permission.SCHEDULES_READ,
}


def permissions_of(role: Role) -> list[Permission]:
    """The permissions ``role`` holds, in declaration order."""
    return [permission for permission, roles in MATRIX.items() if role in roles]


def allowed(role: Role, permission: Permission) -> bool:
    return role in MATRIX.get(permission, frozenset())
