"""Checks across features: references, same-site rules, pipe ends, device ids.

A feature may refer to assets of the same request or to stored ones. The
caller asks ``wanted(features)`` for the ids to look up, fetches what the
database holds about them into a ``Stored``, and ``check_references`` merges
the two (the request's version of an asset wins: it is an upsert) and
returns a ``Problem`` per broken rule. Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from backend.assets import kinds as k
from backend.assets.features import ParsedFeature, Problem, endpoint_gap_m
from backend.assets.kinds import AssetKind


@dataclass(frozen=True)
class NodeAt:
    site_id: str
    lon: float
    lat: float


@dataclass
class Stored:
    """What the database holds about the assets a request refers to."""

    sites: set[str] = field(default_factory=set)
    cabinets: dict[str, str] = field(default_factory=dict)  # cabinet_id -> site_id
    circuits: set[tuple[str, int]] = field(default_factory=set)
    nodes: dict[str, NodeAt] = field(default_factory=dict)
    pipes: dict[str, str] = field(default_factory=dict)  # pipe_id -> site_id
    device_owners: dict[str, str] = field(default_factory=dict)  # device_id -> feature id


@dataclass
class Wanted:
    """Ids a request refers to without defining them: to be looked up."""

    sites: set[str] = field(default_factory=set)
    cabinets: set[str] = field(default_factory=set)
    circuits: set[tuple[str, int]] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    pipes: set[str] = field(default_factory=set)
    devices: set[str] = field(default_factory=set)  # claimed: who else holds them?


def wanted(features: Sequence[ParsedFeature]) -> Wanted:
    defined = {(f.kind, f.key) for f in features}
    want = Wanted()

    def need(kind: AssetKind, key: str | None, into: set[str]) -> None:
        if key is not None and (kind, key) not in defined:
            into.add(key)

    for f in features:
        row = f.row
        if "site_id" in row and f.kind is not AssetKind.SITE:
            need(AssetKind.SITE, row["site_id"], want.sites)
        if f.kind in (AssetKind.CIRCUIT, AssetKind.LUMINAIRE):
            need(AssetKind.CABINET, row["cabinet_id"], want.cabinets)
        if f.kind is AssetKind.LUMINAIRE:
            circuit = (row["cabinet_id"], row["channel"])
            if (AssetKind.CIRCUIT, k.circuit_key(*circuit)) not in defined:
                want.circuits.add(circuit)
        if f.kind is AssetKind.PIPE:
            need(AssetKind.NODE, row["from_node"], want.nodes)
            need(AssetKind.NODE, row["to_node"], want.nodes)
        if f.kind is AssetKind.SENSOR:
            need(AssetKind.NODE, row["node_id"], want.nodes)
            need(AssetKind.PIPE, row["pipe_id"], want.pipes)
        if f.kind in (AssetKind.CABINET, AssetKind.SENSOR) and row["device_id"] is not None:
            want.devices.add(row["device_id"])
    return want


def _merged(features: Sequence[ParsedFeature], stored: Stored) -> Stored:
    """The stored assets as they will be once the request is written."""
    merged = Stored(
        sites=set(stored.sites),
        cabinets=dict(stored.cabinets),
        circuits=set(stored.circuits),
        nodes=dict(stored.nodes),
        pipes=dict(stored.pipes),
    )
    for f in features:
        row = f.row
        if f.kind is AssetKind.SITE:
            merged.sites.add(f.key)
        elif f.kind is AssetKind.CABINET:
            merged.cabinets[f.key] = row["site_id"]
        elif f.kind is AssetKind.CIRCUIT:
            merged.circuits.add((row["cabinet_id"], row["channel"]))
        elif f.kind is AssetKind.NODE:
            merged.nodes[f.key] = NodeAt(row["site_id"], row["lon"], row["lat"])
        elif f.kind is AssetKind.PIPE:
            merged.pipes[f.key] = row["site_id"]
    return merged


def check_references(features: Sequence[ParsedFeature], stored: Stored) -> list[Problem]:
    """Every reference that resolves nowhere and every cross-asset rule broken."""
    redefined = {f.feature_id for f in features}
    # A stored owner the request redefines no longer counts: the request says who holds it.
    owners = {d: o for d, o in stored.device_owners.items() if o not in redefined}
    checker = _Checker(_merged(features, stored), owners)
    for f in features:
        checker.check(f)
    return checker.problems


class _Checker:
    def __init__(self, known: Stored, owners: dict[str, str]) -> None:
        self.known = known
        self.owners = owners
        self.problems: list[Problem] = []

    def problem(self, f: ParsedFeature, code: str, name: str, message: str) -> None:
        self.problems.append(Problem(f.index, code, message, f"properties.{name}"))

    def unknown(self, f: ParsedFeature, name: str, kind: AssetKind, key: object) -> None:
        self.problem(
            f,
            "unknown_reference",
            name,
            f"unknown {kind.value} {key!r}: neither in this request nor stored",
        )

    def same_site(self, f: ParsedFeature, name: str, kind: AssetKind, key: str, site: str) -> None:
        if site != f.row["site_id"]:
            self.problem(
                f,
                "site_mismatch",
                name,
                f"{kind.value} {key!r} belongs to site {site!r}, this {f.kind.value} to"
                f" {f.row['site_id']!r}",
            )

    def check(self, f: ParsedFeature) -> None:
        row, known = f.row, self.known
        if f.kind is not AssetKind.SITE and "site_id" in row and row["site_id"] not in known.sites:
            self.unknown(f, "site_id", AssetKind.SITE, row["site_id"])
        if (
            f.kind in (AssetKind.CIRCUIT, AssetKind.LUMINAIRE)
            and row["cabinet_id"] not in known.cabinets
        ):
            self.unknown(f, "cabinet_id", AssetKind.CABINET, row["cabinet_id"])
        elif (
            f.kind is AssetKind.LUMINAIRE
            and (row["cabinet_id"], row["channel"]) not in known.circuits
        ):
            circuit = k.circuit_key(row["cabinet_id"], row["channel"])
            self.unknown(f, "channel", AssetKind.CIRCUIT, circuit)
        if f.kind is AssetKind.PIPE:
            self.pipe_ends(f)
        if f.kind is AssetKind.SENSOR:
            self.mounting(f)
        if f.kind in (AssetKind.CABINET, AssetKind.SENSOR) and row["device_id"] is not None:
            holder = self.owners.setdefault(row["device_id"], f.feature_id)
            if holder != f.feature_id:
                self.problem(
                    f,
                    "duplicate_device",
                    "device_id",
                    f"device {row['device_id']!r} is already the device of {holder}",
                )

    def pipe_ends(self, f: ParsedFeature) -> None:
        """Both nodes exist, on the pipe's site, where its geometry starts and ends."""
        row = f.row
        for name, at_start in (("from_node", True), ("to_node", False)):
            node = self.known.nodes.get(row[name])
            if node is None:
                self.unknown(f, name, AssetKind.NODE, row[name])
                continue
            self.same_site(f, name, AssetKind.NODE, row[name], node.site_id)
            assert f.geometry is not None
            gap = endpoint_gap_m(f.geometry, at_start, (node.lon, node.lat))
            if gap > k.ENDPOINT_TOLERANCE_M:
                end = "first" if at_start else "last"
                self.problem(
                    f,
                    "endpoint_mismatch",
                    name,
                    f"the geometry's {end} position is {gap:.1f} m from node {row[name]!r};"
                    f" at most {k.ENDPOINT_TOLERANCE_M:g} m",
                )

    def mounting(self, f: ParsedFeature) -> None:
        """A sensor's node or pipe exists, on the sensor's site."""
        row = f.row
        if row["node_id"] is not None:
            node = self.known.nodes.get(row["node_id"])
            if node is None:
                self.unknown(f, "node_id", AssetKind.NODE, row["node_id"])
            else:
                self.same_site(f, "node_id", AssetKind.NODE, row["node_id"], node.site_id)
        if row["pipe_id"] is not None:
            pipe_site = self.known.pipes.get(row["pipe_id"])
            if pipe_site is None:
                self.unknown(f, "pipe_id", AssetKind.PIPE, row["pipe_id"])
            else:
                self.same_site(f, "pipe_id", AssetKind.PIPE, row["pipe_id"], pipe_site)
