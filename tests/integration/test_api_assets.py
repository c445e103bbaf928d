"""/api/v1/assets against the real TimescaleDB: the sample town in and out as GeoJSON.

One scratch database for the module, migrated with ``backend.storage.migrate``;
the application runs in process with a token per role. The sample town
(``backend/assets/sample_town.geojson``) is uploaded once through the API
and the tests read it back, filter it, break it and delete parts of it.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from backend.api.app import create_app
from backend.api.permissions import Role
from backend.api.routes.assets import MAX_BODY_BYTES
from backend.assets.features import MAX_FEATURES, parse_feature
from backend.assets.geo import BBox
from backend.assets.sample import sample_town
from tests.integration.api_kit import InProcessApi, migrated_database, problem, settings_for

if TYPE_CHECKING:
    import httpx


pytestmark = pytest.mark.services

RUN = uuid.uuid4().hex[:6]
GEOJSON = "application/geo+json"
TOWN_COUNTS = {
    "site": 1,
    "cabinet": 3,
    "circuit": 6,
    "luminaire": 18,
    "node": 10,
    "pipe": 9,
    "sensor": 4,
}


class NoBroker:
    def set_password(self, username: str, password: str) -> None:
        raise AssertionError("the asset routes never touch the broker")


class Api(InProcessApi):
    prefix = "/api/v1/assets"

    def get(self, path: str, as_: Role = Role.OPERATOR, **params: Any) -> httpx.Response:
        return self.request("GET", path, as_, params=params)

    def put(self, document: Any, as_: Role = Role.PLANNER, media: str = GEOJSON) -> httpx.Response:
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        return self.request("PUT", "", as_, content=body, headers={"Content-Type": media})

    def delete(self, path: str, as_: Role = Role.TECHNICIAN) -> httpx.Response:
        return self.request("DELETE", path, as_)

    def counts(self) -> dict[str, int]:
        rows = self.sql("SELECT kind, count(*) AS n FROM asset_feature GROUP BY kind")
        return {row["kind"]: row["n"] for row in rows}

    def audits(self) -> int:
        return int(self.sql("SELECT count(*) AS n FROM api_audit")[0]["n"])


@pytest.fixture(scope="module")
def api(stack: object) -> Iterator[Api]:
    with migrated_database(stack, "t_assets") as url:
        app = create_app(settings_for(url), broker_admin=NoBroker())
        with Api.serving(url, app, RUN) as api:
            yield api


@pytest.fixture(scope="module")
def town(api: Api) -> dict[str, Any]:
    """The sample town, uploaded once by a planner; the answer of that upload."""
    response = api.put(sample_town())
    assert response.status_code == 200, response.text
    written: dict[str, Any] = response.json()
    return written


def stripped(feature: dict[str, Any]) -> dict[str, Any]:
    """A served feature without the read-only properties and the nulls."""
    properties = {
        k: v
        for k, v in feature["properties"].items()
        if v is not None and k not in ("updated_at", "updated_by")
    }
    return {**feature, "properties": properties}


def uploaded() -> dict[str, dict[str, Any]]:
    return {f["id"]: stripped(f) for f in sample_town()["features"]}


# --- the town in and out ----------------------------------------------------------------------


def test_the_town_is_written_in_one_request_and_audited(api: Api, town: dict[str, Any]) -> None:
    assert town == {"written": 51, "inserted": TOWN_COUNTS, "updated": {}}
    assert api.counts() == TOWN_COUNTS
    audit = api.sql(
        "SELECT actor, actor_token_id, target, detail FROM api_audit WHERE action = 'asset.upsert'"
        " ORDER BY audit_id LIMIT 1"
    )[0]
    assert audit["actor"] == f"planner-{RUN}"
    assert audit["actor_token_id"] == api.tokens[Role.PLANNER].token_id
    assert audit["detail"]["inserted"] == TOWN_COUNTS
    assert "pipe:p-03" in audit["detail"]["ids"] and len(audit["detail"]["ids"]) == 51
    who = api.sql("SELECT DISTINCT updated_by FROM pipe")
    assert who == [{"updated_by": f"planner-{RUN}"}]


def test_the_register_places_devices_on_their_site(api: Api, town: dict[str, Any]) -> None:
    # alerts, notifications per site and the site rollups read device.site
    placed = api.sql(
        "SELECT device_id, site FROM device WHERE device_id IN"
        " ('cab-0001', 'cab-0003', 'leak-0002', 'leak-0004') ORDER BY device_id"
    )
    assert placed == [
        {"device_id": "cab-0001", "site": "bourg"},
        {"device_id": "cab-0003", "site": "bourg"},
        {"device_id": "leak-0002", "site": "bourg"},
        {"device_id": "leak-0004", "site": "bourg"},
    ]


def test_everything_reads_back_as_it_was_sent(api: Api, town: dict[str, Any]) -> None:
    response = api.get("")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == GEOJSON
    body = response.json()
    assert body["type"] == "FeatureCollection" and body["total"] == 51
    served = {f["id"]: f for f in body["features"]}
    assert {i: stripped(f) for i, f in served.items()} == uploaded()
    kinds = [f["properties"]["kind"] for f in body["features"]]
    assert kinds == sorted(kinds, key=list(TOWN_COUNTS).index)  # site first, sensors last
    assert served["circuit:cab-01:2"]["geometry"] is None
    assert served["pipe:p-03"]["properties"]["updated_by"] == f"planner-{RUN}"


def test_one_asset_by_kind_and_id(api: Api, town: dict[str, Any]) -> None:
    response = api.get("/pipe/p-03")
    assert response.status_code == 200 and response.headers["content-type"] == GEOJSON
    assert stripped(response.json()) == uploaded()["pipe:p-03"]
    assert api.get("/circuit/cab-02:1").json()["properties"]["name"] == "Rue des Tilleuls"
    assert "no pipe 'p-99'" in problem(api.get("/pipe/p-99"), 404)["detail"]
    assert "no node 'p-03'" in problem(api.get("/node/p-03"), 404)["detail"]
    assert "<cabinet_id>:<channel" in problem(api.get("/circuit/cab-01"), 422)["detail"]
    problem(api.get("/circuit/cab-01:0"), 422)
    problem(api.get("/site/a:1"), 422)
    problem(api.get("/valve/v-1"), 422)


def ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {f["id"] for f in response.json()["features"]}


def test_filter_by_kind_and_site(api: Api, town: dict[str, Any]) -> None:
    pipes = ids(api.get("", kind="pipe"))
    assert pipes == {f"pipe:p-0{i}" for i in range(1, 10)}
    both = ids(api.get("", kind=["node", "sensor"]))
    assert len(both) == 14 and all(i.startswith(("node:", "sensor:")) for i in both)
    assert len(ids(api.get("", site="bourg"))) == 51
    assert ids(api.get("", site="elsewhere")) == set()
    assert ids(api.get("", site="bourg' OR '1'='1")) == set()
    problem(api.get("", kind="valve"), 422)


def expected_in(box: BBox) -> set[str]:
    """What a bbox query must answer, computed from the file with the pure code."""
    features = sample_town()["features"]
    cabinets = {}
    found = set()
    for index, feature in enumerate(features):
        parsed = parse_feature(index, feature)
        assert not isinstance(parsed, list)
        if parsed.geometry is not None:
            if parsed.kind.value == "cabinet":
                cabinets[parsed.key] = parsed.geometry.bbox
            if parsed.geometry.bbox.intersects(box):
                found.add(parsed.feature_id)
    for feature in features:  # a circuit is where its cabinet is
        props = feature["properties"]
        if props["kind"] == "circuit" and cabinets[props["cabinet_id"]].intersects(box):
            found.add(feature["id"])
    return found


@pytest.mark.parametrize(
    "box",
    [
        BBox(4.8290, 45.7610, 4.8310, 45.7650),  # the north street
        BBox(4.8325, 45.7555, 4.8340, 45.7592),  # the south lane
        BBox(4.8297, 45.7600, 4.8297, 45.7600),  # exactly the valve: edges count
        BBox(5.0, 46.0, 5.1, 46.1),  # nothing there
    ],
    ids=["north", "south", "point", "empty"],
)
def test_filter_by_bounding_box(api: Api, town: dict[str, Any], box: BBox) -> None:
    text = f"{box.min_lon},{box.min_lat},{box.max_lon},{box.max_lat}"
    served = ids(api.get("", bbox=text, limit=10_000))
    assert served == expected_in(box)
    if box.min_lon == 4.8290:
        assert {"node:n-08", "pipe:p-07", "sensor:s-03", "circuit:cab-02:1"} <= served


def test_bounding_box_and_kind_and_site_combine(api: Api, town: dict[str, Any]) -> None:
    served = ids(api.get("", bbox="4.8290,45.7610,4.8310,45.7650", kind="pipe", site="bourg"))
    assert served == {i for i in expected_in(BBox(4.829, 45.761, 4.831, 45.765)) if "pipe:" in i}


def test_pages_follow_kind_then_id(api: Api, town: dict[str, Any]) -> None:
    whole = [f["id"] for f in api.get("").json()["features"]]
    pages = [api.get("", limit=20, offset=o).json() for o in (0, 20, 40)]
    assert [f["id"] for page in pages for f in page["features"]] == whole
    assert [len(p["features"]) for p in pages] == [20, 20, 11]
    assert all(p["total"] == 51 for p in pages)


@pytest.mark.parametrize(
    "params",
    [
        {"bbox": "4.8,45.7,4.9"},
        {"bbox": "4.9,45.7,4.8,45.8"},  # across the antimeridian, or reversed
        {"bbox": "4.8,95,4.9,96"},
        {"bbox": "a,b,c,d"},
        {"bbox": "1e3,1,2,3"},
        {"limit": 0},
        {"limit": 10_001},
        {"offset": -1},
        {"site": "x\x00y"},
        {"colour": "red"},
    ],
)
def test_bad_query_parameters_are_422(api: Api, params: dict[str, Any]) -> None:
    problem(api.get("", **params), 422)


# --- updates and all-or-nothing -----------------------------------------------------------------


def test_uploading_again_updates_in_place(api: Api, town: dict[str, Any]) -> None:
    document = sample_town()
    for feature in document["features"]:
        if feature["id"] == "pipe:p-04":
            feature["properties"]["material"] = "ductile_iron"  # relined in 2024
            feature["properties"]["install_year"] = 2024
    response = api.put(document, as_=Role.TECHNICIAN)
    assert response.status_code == 200, response.text
    assert response.json() == {"written": 51, "inserted": {}, "updated": TOWN_COUNTS}
    assert api.counts() == TOWN_COUNTS
    pipe = api.get("/pipe/p-04").json()["properties"]
    assert (pipe["material"], pipe["install_year"]) == ("ductile_iron", 2024)
    assert pipe["updated_by"] == f"technician-{RUN}"


def hamlet() -> list[dict[str, Any]]:
    """A second site: a reservoir, a hydrant and the pipe between (valid)."""
    ring = [[4.80, 45.74], [4.81, 45.74], [4.81, 45.75], [4.80, 45.74]]
    a, b = [4.801, 45.741], [4.803, 45.741]
    return [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {
                "kind": "site",
                "site_id": "hameau",
                "name": "Le Hameau",
                "timezone": "Europe/Paris",
            },
        },
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": a},
            "properties": {
                "kind": "node",
                "node_id": "h-1",
                "site_id": "hameau",
                "node_type": "reservoir",
            },
        },
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": b},
            "properties": {
                "kind": "node",
                "node_id": "h-2",
                "site_id": "hameau",
                "node_type": "hydrant",
            },
        },
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [a, b]},
            "properties": {
                "kind": "pipe",
                "pipe_id": "h-p1",
                "site_id": "hameau",
                "from_node": "h-1",
                "to_node": "h-2",
                "material": "pe",
                "diameter_mm": 63,
                "wall_thickness_mm": 5.8,
            },
        },
    ]


def collection(features: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features}


def test_one_bad_reference_writes_nothing(api: Api, town: dict[str, Any]) -> None:
    before, audits = api.counts(), api.audits()
    features = hamlet()
    features[3]["properties"]["to_node"] = "n-nowhere"
    body = problem(api.put(collection(features)), 422)
    assert body["errors"] == [
        {
            "location": "body.features[3].properties.to_node",
            "message": "unknown node 'n-nowhere': neither in this request nor stored",
        }
    ]
    assert "1 of 4 features refused, nothing was written" in body["detail"]
    assert api.counts() == before and api.audits() == audits
    assert ids(api.get("", site="hameau")) == set()


def test_a_pipe_to_another_sites_node_is_refused(api: Api, town: dict[str, Any]) -> None:
    features = hamlet()
    features[3]["properties"]["to_node"] = "n-01"  # stored, in bourg, 1.7 km away
    body = problem(api.put(collection(features)), 422)
    messages = {e["message"] for e in body["errors"]}
    assert "node 'n-01' belongs to site 'bourg', this pipe to 'hameau'" in messages
    assert any("last position is" in m and "from node 'n-01'" in m for m in messages)
    assert ids(api.get("", site="hameau")) == set()


def test_every_reason_is_listed_by_index(api: Api, town: dict[str, Any]) -> None:
    base = hamlet()
    bad: list[dict[str, Any]] = copy.deepcopy([base[0], base[1], base[2], base[3]])
    unknown_kind = copy.deepcopy(base[1])
    unknown_kind["properties"]["kind"] = "manhole"
    wrong_type = copy.deepcopy(base[1])
    wrong_type["properties"]["node_id"] = "h-3"
    wrong_type["geometry"] = base[3]["geometry"]
    out_of_range = copy.deepcopy(base[1])
    out_of_range["properties"]["node_id"] = "h-4"
    out_of_range["geometry"]["coordinates"] = [652_000, 6_862_000]  # Lambert-93
    negative = copy.deepcopy(base[3])
    negative["properties"].update(pipe_id="h-p2", diameter_mm=-63)
    thick = copy.deepcopy(base[3])
    thick["properties"].update(pipe_id="h-p3", wall_thickness_mm=40)
    too_long = copy.deepcopy(base[3])
    too_long["properties"].update(pipe_id="h-p4", length_m=500)
    unknown_site = copy.deepcopy(base[1])
    unknown_site["properties"].update(node_id="h-5", site_id="atlantis")
    duplicate = copy.deepcopy(base[2])
    bad += [unknown_kind, wrong_type, out_of_range, negative, thick, too_long, duplicate]
    bad.append(unknown_site)
    body = problem(api.put(collection(bad)), 422)
    where = {e["location"]: e["message"] for e in body["errors"]}
    assert "unknown kind 'manhole'" in where["body.features[4].properties.kind"]
    assert "type 'LineString'; expected Point" in where["body.features[5].geometry"]
    assert "not WGS84" in where["body.features[6].geometry"]
    assert "-63 is out of range" in where["body.features[7].properties.diameter_mm"]
    assert "less than the radius" in where["body.features[8].properties.wall_thickness_mm"]
    assert "tolerance" in where["body.features[9].properties.length_m"]
    assert "already feature 2" in where["body.features[10].id"]
    # references are checked once every feature is well formed on its own
    assert "body.features[11].properties.site_id" not in where
    assert "7 of 12 features refused" in body["detail"]
    assert ids(api.get("", site="hameau")) == set()

    # alone, the unknown site is reported with the database's view
    only_site = collection([unknown_site])
    body = problem(api.put(only_site), 422)
    assert body["errors"][0]["message"] == (
        "unknown site 'atlantis': neither in this request nor stored"
    )


def test_a_valid_hamlet_is_written_with_its_computed_length(api: Api, town: dict[str, Any]) -> None:
    response = api.put(collection(hamlet()))
    assert response.status_code == 200, response.text
    pipe = api.get("/pipe/h-p1").json()["properties"]
    assert pipe["length_m"] == pytest.approx(155.6, abs=0.5)  # 0.002° of longitude at 45.74°
    assert ids(api.get("", site="hameau")) == {"site:hameau", "node:h-1", "node:h-2", "pipe:h-p1"}


def test_controllers_can_swap_cabinets_but_not_be_shared(api: Api, town: dict[str, Any]) -> None:
    features = [
        f for f in sample_town()["features"] if f["id"] in ("cabinet:cab-01", "cabinet:cab-02")
    ]
    features[0]["properties"]["device_id"], features[1]["properties"]["device_id"] = (
        features[1]["properties"]["device_id"],
        features[0]["properties"]["device_id"],
    )
    assert api.put(collection(features)).status_code == 200
    devices = api.sql("SELECT cabinet_id, device_id FROM cabinet ORDER BY cabinet_id")
    assert [d["device_id"] for d in devices] == ["cab-0002", "cab-0001", "cab-0003"]
    # cab-03's controller given to cab-01 while cab-03 keeps it: refused
    features[0]["properties"]["device_id"] = "cab-0003"
    body = problem(api.put(collection(features[:1])), 422)
    assert "device 'cab-0003' is already the device of cabinet:cab-03" in body["detail"]


# --- hostile bodies ---------------------------------------------------------------------------


def test_bodies_that_are_not_a_feature_collection(api: Api, town: dict[str, Any]) -> None:
    before = api.counts()
    assert "not valid JSON" in problem(api.put(b"{not json"), 422)["detail"]
    nan = b'{"type": "FeatureCollection", "features": [{"x": NaN}]}'
    assert "NaN is not a JSON number" in problem(api.put(nan), 422)["detail"]
    deep = b"[" * 100_000 + b"]" * 100_000
    problem(api.put(deep), 422)
    assert "FeatureCollection" in problem(api.put({"type": "Feature"}), 422)["detail"]
    problem(api.put([1, 2, 3]), 422)
    problem(api.put(b"\xff\xfe\x00"), 422)
    assert "application/geo+json" in problem(api.put(b"{}", media="text/csv"), 415)["detail"]
    assert api.put(collection([]), media="application/json").json()["written"] == 0
    assert api.counts() == before


def test_too_many_features_or_bytes(api: Api, town: dict[str, Any]) -> None:
    node = hamlet()[1]
    many = collection([node] * (MAX_FEATURES + 1))
    assert "at most 10000 per request" in problem(api.put(many), 422)["detail"]
    huge = b" " * (MAX_BODY_BYTES + 1)
    assert "larger than 32 MiB" in problem(api.put(huge), 413)["detail"]


def test_hostile_values_are_refused_specifically(api: Api, town: dict[str, Any]) -> None:
    node = hamlet()[1]
    for node_id in ("x\x00y", "'; DROP TABLE pipe; --", "a" * 10_000, "ü"):
        hostile = copy.deepcopy(node)
        hostile["properties"]["node_id"] = node_id
        body = problem(api.put(collection([hostile])), 422)
        assert body["errors"][0]["location"] == "body.features[0].properties.node_id"
        assert len(body["detail"]) < 400
    site = hamlet()[0]
    site["properties"]["name"] = "\ud800"
    body = problem(api.put(collection([site])), 422)
    assert body["errors"][0]["location"] == "body.features[0].properties.name"
    assert api.sql("SELECT count(*) AS n FROM pipe")[0]["n"] >= 9


# --- delete ---------------------------------------------------------------------------------


def test_delete_refuses_what_is_referred_to(api: Api, town: dict[str, Any]) -> None:
    body = problem(api.delete("/node/n-04"), 409)
    assert "pipe:p-03, pipe:p-04, pipe:p-06, sensor:s-01" in body["detail"]
    assert "luminaire:lum-0004" in problem(api.delete("/circuit/cab-01:2"), 409)["detail"]
    assert "circuit:cab-03:1" in problem(api.delete("/cabinet/cab-03"), 409)["detail"]
    assert "cabinet:cab-01" in problem(api.delete("/site/bourg"), 409)["detail"]
    assert "sensor:s-04" in problem(api.delete("/pipe/p-08"), 409)["detail"]
    assert api.counts()["node"] >= 10


def test_delete_removes_one_asset_and_audits_it(api: Api, town: dict[str, Any]) -> None:
    assert api.delete("/sensor/s-04").status_code == 204
    problem(api.get("/sensor/s-04"), 404)
    audit = api.sql(
        "SELECT actor, target, detail FROM api_audit WHERE action = 'asset.delete'"
        " ORDER BY audit_id DESC LIMIT 1"
    )[0]
    assert audit["actor"] == f"technician-{RUN}" and audit["target"] == "sensor:s-04"
    assert audit["detail"]["device_id"] == "leak-0004" and "geometry" not in audit["detail"]
    assert "no sensor 's-04'" in problem(api.delete("/sensor/s-04"), 404)["detail"]
    # the pipe it was on is free now
    assert api.delete("/pipe/p-08").status_code == 204
    problem(api.delete("/circuit/cab-01:999"), 422)


# --- who may ----------------------------------------------------------------------------------


def test_operators_read_but_do_not_write(api: Api, town: dict[str, Any]) -> None:
    assert api.get("/node/n-01", as_=Role.OPERATOR).status_code == 200
    denied = problem(api.put(collection([]), as_=Role.OPERATOR), 403)
    assert "'assets:write'" in denied["detail"]
    problem(api.delete("/luminaire/lum-0001", as_=Role.OPERATOR), 403)
    assert api.get("/luminaire/lum-0001").status_code == 200
    anonymous = api.client.get("/api/v1/assets")
    problem(anonymous, 401)
