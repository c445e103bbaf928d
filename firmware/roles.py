"""Which code goes on which board: the device roles and their bundle's entry points.

Read by ``firmware.tools.build`` on CPython (never copied to a board). A
role's bundle is the closure of imports, parsed with ``ast``, starting from
every module of its folder ``firmware/<folder>/`` and from ``edge_entries``;
imports resolve against the role folder, then ``firmware/lib``, then the
source root (for packages such as ``edge``). Modules the closure would reach
only on CPython (``if TYPE_CHECKING``/``if _CPYTHON`` branches) are pruned;
``exclude`` names modules that must never ship whatever imports them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    name: str  # as the technician types it: cabinet, leak-sensor
    folder: str  # firmware/<folder>/
    edge_entries: tuple[str, ...]  # edge modules the role needs, whatever its code imports
    exclude: tuple[str, ...] = ()


ROLES: dict[str, Role] = {
    role.name: role
    for role in (
        Role(
            name="cabinet",
            folder="cabinet",
            edge_entries=("edge.protocol", "edge.spool", "edge.schedule", "edge.ota"),
            exclude=("edge.acoustic_synth", "edge._json_cpython"),
        ),
        Role(
            name="leak-sensor",
            folder="leak_sensor",
            edge_entries=("edge.protocol", "edge.spool", "edge.acoustic", "edge.ota"),
            exclude=("edge.acoustic_synth", "edge._json_cpython"),
        ),
    )
}


def get_role(name: str) -> Role:
    """The role called ``name`` (``leak_sensor`` is accepted for ``leak-sensor``)."""
    role = ROLES.get(name) or ROLES.get(name.replace("_", "-"))
    if role is None:
        raise ValueError(f"unknown role {name!r}: choose one of {', '.join(sorted(ROLES))}")
    return role
