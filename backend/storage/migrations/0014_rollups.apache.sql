-- Dashboard rollups and retention bookkeeping, Apache-only edition.
--
-- This edition has no continuous aggregates, so the backend keeps real tables
-- up to date itself (`lumeau maintenance run`, backend/maintenance/rollup.py):
-- closed hours are rolled up once, hours that later receive late data are
-- rolled up again, and the daily table is built from the hourly one.
-- The .timescale.sql variant of this step gives the same relations as
-- continuous aggregates; queries read the same names on both editions.
--
-- Rollups keep sum (not mean) so that coarser buckets are exact weighted
-- means: mean of a day = sum of its hours' sums / sum of their samples.
-- Both are hypertables so that range queries skip whole chunks and retention
-- drops whole chunks. Primary key leads with the device: a dashboard asks for
-- one device's (or a site's devices') series over a time range.

CREATE TABLE reading_hourly_rollup (
    bucket     timestamptz      NOT NULL,
    device_id  text             NOT NULL,
    channel    smallint         NOT NULL,
    metric     text             NOT NULL,
    samples    bigint           NOT NULL CHECK (samples > 0),
    sum        double precision NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    PRIMARY KEY (device_id, metric, channel, bucket)
);
-- 30-day chunks: 10,000 devices x ~20 series x 720 hours is ~150 M rows, a
-- size one chunk can index comfortably; retention drops a month at a time.
SELECT create_hypertable('reading_hourly_rollup', by_range('bucket', INTERVAL '30 days'),
                         create_default_indexes => false);

CREATE TABLE reading_daily_rollup (
    bucket     timestamptz      NOT NULL,
    device_id  text             NOT NULL,
    channel    smallint         NOT NULL,
    metric     text             NOT NULL,
    samples    bigint           NOT NULL CHECK (samples > 0),
    sum        double precision NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    PRIMARY KEY (device_id, metric, channel, bucket)
);
SELECT create_hypertable('reading_daily_rollup', by_range('bucket', INTERVAL '180 days'),
                         create_default_indexes => false);
-- City-wide and top-N questions read one metric of every device over a range.
CREATE INDEX reading_daily_rollup_metric ON reading_daily_rollup (metric, channel, bucket);

-- The newest value of every series, for map pages: one row per series,
-- updated by each refresh from the readings received since the previous one.
CREATE TABLE reading_latest (
    device_id  text             NOT NULL,
    channel    smallint         NOT NULL,
    metric     text             NOT NULL,
    time       timestamptz      NOT NULL,
    value      double precision NOT NULL,
    PRIMARY KEY (device_id, channel, metric)
);

-- Where the refresh stands. rolled_until: every hour before it is in
-- reading_hourly_rollup (and its day in reading_daily_rollup, so far).
-- scanned_until: the late-data scan has seen every uplink_message received
-- before it (minus the settle margin it re-reads each time).
CREATE TABLE rollup_state (
    name          text        PRIMARY KEY CHECK (name = 'reading'),
    rolled_until  timestamptz NOT NULL,
    scanned_until timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Up to where the rollups hold every reading: raw data at or after this is
-- read from `reading`. '-infinity' before the first refresh.
CREATE FUNCTION reading_rollup_complete_until() RETURNS timestamptz
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(
        (SELECT rolled_until FROM rollup_state WHERE name = 'reading'),
        '-infinity'::timestamptz)
$$;

-- Late data: the refresh asks "which messages arrived since I last looked".
-- BRIN, not B-tree: rows are appended in arrival order, so block ranges
-- follow received_at closely, and a BRIN index costs next to nothing on the
-- ingest path (a B-tree on the busiest table after reading would not).
CREATE INDEX uplink_message_received_at ON uplink_message
    USING brin (received_at) WITH (pages_per_range = 32, autosummarize = on);

-- reading_hourly keeps its name and columns: rolled-up hours from the table,
-- the rest computed from raw readings at query time, as before.
CREATE OR REPLACE VIEW reading_hourly AS
SELECT bucket, device_id, channel, metric, samples, sum / samples AS mean, min, max
FROM reading_hourly_rollup
WHERE bucket < reading_rollup_complete_until()
UNION ALL
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       device_id,
       channel,
       metric,
       count(*)   AS samples,
       avg(value) AS mean,
       min(value) AS min,
       max(value) AS max
FROM reading
WHERE time >= reading_rollup_complete_until()
GROUP BY 1, device_id, channel, metric;
