-- Assets with geometry: sites, lighting cabinets, their circuits and
-- luminaires, the drinking-water network (nodes and pipes) and the acoustic
-- leak sensors mounted on it. Checked and converted by backend/assets.
--
-- No PostGIS: coordinates are WGS84 longitude/latitude in double precision,
-- the geometry is kept as GeoJSON (jsonb, RFC 7946) exactly as served, and
-- each row carries its bounding box. Bounding-box queries use core
-- PostgreSQL's geometric `box` type and a GiST index on it (`&&` is
-- "overlaps, boundaries included"), so a map view of a large city does not
-- scan every pipe. Distances are great circles computed in Python (haversine).
--
-- Ids are text, 1..64 of [A-Za-z0-9._-] starting with a letter or digit:
-- ':' is left out so that `<kind>:<id>` names any asset, a circuit's id
-- being `<cabinet_id>:<channel>`.
--
-- Every table has updated_at / updated_by (the API user who wrote it); the
-- writes themselves are in api_audit.

CREATE TABLE site (
    site_id     text        PRIMARY KEY CHECK (site_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name        text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    -- IANA name (Europe/Paris): the astronomical clock of the cabinets needs it
    timezone    text        NOT NULL CHECK (char_length(timezone) BETWEEN 1 AND 64),
    centre_lon  double precision NOT NULL CHECK (centre_lon BETWEEN -180 AND 180),
    centre_lat  double precision NOT NULL CHECK (centre_lat BETWEEN -90 AND 90),
    -- Polygon or MultiPolygon of the served area, or a Point for a small site
    geometry    jsonb       NOT NULL
                CHECK (geometry->>'type' IN ('Polygon', 'MultiPolygon', 'Point')),
    min_lon     double precision NOT NULL,
    min_lat     double precision NOT NULL,
    max_lon     double precision NOT NULL,
    max_lat     double precision NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL,
    CHECK (-180 <= min_lon AND min_lon <= max_lon AND max_lon <= 180),
    CHECK (-90 <= min_lat AND min_lat <= max_lat AND max_lat <= 90)
);
CREATE INDEX site_bbox ON site USING gist (box(point(min_lon, min_lat), point(max_lon, max_lat)));

-- A lighting cabinet. device_id is its controller once one is installed; no
-- foreign key to device: the plan of a street comes before the hardware, and
-- device rows appear when a device is provisioned or first heard from.
-- The unique constraint is deferred so that one request may swap two
-- controllers between cabinets.
CREATE TABLE cabinet (
    cabinet_id  text        PRIMARY KEY CHECK (cabinet_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    site_id     text        NOT NULL REFERENCES site (site_id),
    device_id   text        CHECK (device_id ~ '^[a-z0-9._-]{1,64}$'),
    name        text        CHECK (char_length(name) BETWEEN 1 AND 200),
    lon         double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    lat         double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    geometry    jsonb       NOT NULL CHECK (geometry->>'type' = 'Point'),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL,
    CONSTRAINT cabinet_device_unique UNIQUE (device_id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX cabinet_site ON cabinet (site_id);
CREATE INDEX cabinet_bbox ON cabinet USING gist (box(point(lon, lat), point(lon, lat)));

-- One switched/dimmed output of a cabinet (the protocol's channel). No own
-- geometry: it is wherever its luminaires are.
CREATE TABLE circuit (
    cabinet_id  text        NOT NULL REFERENCES cabinet (cabinet_id),
    channel     integer     NOT NULL CHECK (channel BETWEEN 1 AND 255),
    name        text        CHECK (char_length(name) BETWEEN 1 AND 200),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL,
    PRIMARY KEY (cabinet_id, channel)
);

-- rated_power_w is the nameplate power: the energy baseline and the
-- circuit-failure rule compare the cabinet's measured power with the sum.
CREATE TABLE luminaire (
    luminaire_id  text      PRIMARY KEY
                  CHECK (luminaire_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    cabinet_id    text      NOT NULL,
    channel       integer   NOT NULL,
    rated_power_w double precision NOT NULL CHECK (rated_power_w > 0 AND rated_power_w <= 5000),
    technology    text      NOT NULL CHECK (technology IN
                  ('led', 'hps', 'lps', 'mh', 'cmh', 'fluorescent', 'cfl', 'mercury', 'other')),
    lon           double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    lat           double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    geometry      jsonb     NOT NULL CHECK (geometry->>'type' = 'Point'),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    updated_by    text      NOT NULL,
    FOREIGN KEY (cabinet_id, channel) REFERENCES circuit (cabinet_id, channel)
);
CREATE INDEX luminaire_circuit ON luminaire (cabinet_id, channel);
CREATE INDEX luminaire_bbox ON luminaire USING gist (box(point(lon, lat), point(lon, lat)));

-- A node of the water network (EPANET's junctions, reservoirs and tanks, plus
-- the valves and hydrants the sensors are mounted on).
CREATE TABLE pipe_node (
    node_id     text        PRIMARY KEY CHECK (node_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    site_id     text        NOT NULL REFERENCES site (site_id),
    node_type   text        NOT NULL
                CHECK (node_type IN ('junction', 'reservoir', 'tank', 'valve', 'hydrant')),
    elevation_m double precision CHECK (elevation_m BETWEEN -500 AND 9000),
    lon         double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    lat         double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    geometry    jsonb       NOT NULL CHECK (geometry->>'type' = 'Point'),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL
);
CREATE INDEX pipe_node_site ON pipe_node (site_id);
CREATE INDEX pipe_node_bbox ON pipe_node USING gist (box(point(lon, lat), point(lon, lat)));

-- A pipe between two nodes. Material, inner diameter and wall thickness set
-- the acoustic wave speed leak correlation needs; length_m is the network
-- length between the nodes (checked against the geometry on input).
CREATE TABLE pipe (
    pipe_id           text  PRIMARY KEY CHECK (pipe_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    site_id           text  NOT NULL REFERENCES site (site_id),
    from_node         text  NOT NULL REFERENCES pipe_node (node_id),
    to_node           text  NOT NULL REFERENCES pipe_node (node_id),
    material          text  NOT NULL CHECK (material IN
                      ('pe', 'hdpe', 'pvc', 'ductile_iron', 'cast_iron', 'steel',
                       'asbestos_cement', 'concrete', 'copper', 'lead', 'other')),
    diameter_mm       double precision NOT NULL CHECK (diameter_mm > 0 AND diameter_mm <= 5000),
    wall_thickness_mm double precision NOT NULL
                      CHECK (wall_thickness_mm > 0 AND wall_thickness_mm < diameter_mm / 2),
    length_m          double precision NOT NULL CHECK (length_m > 0 AND length_m <= 100000),
    install_year      integer CHECK (install_year BETWEEN 1800 AND 2100),
    geometry          jsonb NOT NULL CHECK (geometry->>'type' = 'LineString'),
    min_lon           double precision NOT NULL,
    min_lat           double precision NOT NULL,
    max_lon           double precision NOT NULL,
    max_lat           double precision NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    updated_by        text  NOT NULL,
    CHECK (from_node <> to_node),
    CHECK (-180 <= min_lon AND min_lon <= max_lon AND max_lon <= 180),
    CHECK (-90 <= min_lat AND min_lat <= max_lat AND max_lat <= 90)
);
CREATE INDEX pipe_site ON pipe (site_id);
CREATE INDEX pipe_from_node ON pipe (from_node);
CREATE INDEX pipe_to_node ON pipe (to_node);
CREATE INDEX pipe_bbox ON pipe USING gist (box(point(min_lon, min_lat), point(max_lon, max_lat)));

-- A leak sensor where it is mounted: on a node (valve, hydrant) or on a pipe.
CREATE TABLE acoustic_sensor (
    sensor_id   text        PRIMARY KEY CHECK (sensor_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    site_id     text        NOT NULL REFERENCES site (site_id),
    device_id   text        CHECK (device_id ~ '^[a-z0-9._-]{1,64}$'),
    node_id     text        REFERENCES pipe_node (node_id),
    pipe_id     text        REFERENCES pipe (pipe_id),
    lon         double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    lat         double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    geometry    jsonb       NOT NULL CHECK (geometry->>'type' = 'Point'),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL,
    CHECK ((node_id IS NULL) <> (pipe_id IS NULL)),
    CONSTRAINT acoustic_sensor_device_unique UNIQUE (device_id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX acoustic_sensor_site ON acoustic_sensor (site_id);
CREATE INDEX acoustic_sensor_node ON acoustic_sensor (node_id) WHERE node_id IS NOT NULL;
CREATE INDEX acoustic_sensor_pipe ON acoustic_sensor (pipe_id) WHERE pipe_id IS NOT NULL;
CREATE INDEX acoustic_sensor_bbox
    ON acoustic_sensor USING gist (box(point(lon, lat), point(lon, lat)));

-- Every asset as one relation for the API's listing: kind, id, site, bounding
-- box and the row itself (to_jsonb), which backend/assets turns into a
-- GeoJSON Feature. A filter on kind prunes the other branches; a filter on
-- the box reaches each table's GiST index. A circuit has its cabinet's site
-- and position for filtering, but no geometry of its own.
CREATE VIEW asset_feature AS
    SELECT 'site'::text AS kind, site_id AS asset_id, site_id,
           box(point(min_lon, min_lat), point(max_lon, max_lat)) AS bbox, to_jsonb(s) AS row
      FROM site s
    UNION ALL
    SELECT 'cabinet', cabinet_id, site_id, box(point(lon, lat), point(lon, lat)), to_jsonb(c)
      FROM cabinet c
    UNION ALL
    SELECT 'circuit', ci.cabinet_id || ':' || ci.channel, c.site_id,
           box(point(c.lon, c.lat), point(c.lon, c.lat)), to_jsonb(ci)
      FROM circuit ci JOIN cabinet c USING (cabinet_id)
    UNION ALL
    SELECT 'luminaire', l.luminaire_id, c.site_id, box(point(l.lon, l.lat), point(l.lon, l.lat)),
           to_jsonb(l)
      FROM luminaire l JOIN cabinet c USING (cabinet_id)
    UNION ALL
    SELECT 'node', node_id, site_id, box(point(lon, lat), point(lon, lat)), to_jsonb(n)
      FROM pipe_node n
    UNION ALL
    SELECT 'pipe', pipe_id, site_id, box(point(min_lon, min_lat), point(max_lon, max_lat)),
           to_jsonb(p)
      FROM pipe p
    UNION ALL
    SELECT 'sensor', sensor_id, site_id, box(point(lon, lat), point(lon, lat)), to_jsonb(a)
      FROM acoustic_sensor a;
