-- Dashboard rollups and retention, full edition: continuous aggregates with
-- refresh policies, and retention policies. Same relation names and columns
-- as the Apache variant (where the backend maintains real tables), so the
-- API and dashboards read the same SQL on both editions.
--
-- NOT RUN HERE: the development machine has the Apache edition only. Written
-- for the docker-compose image (TimescaleDB community edition >= 2.9, which
-- has hierarchical continuous aggregates).

-- Hourly, with sum (not mean) so coarser buckets are exact weighted means.
-- Real-time (materialized_only = false): the hours the policy has not
-- materialized yet are computed from raw readings at query time.
CREATE MATERIALIZED VIEW reading_hourly_rollup
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       device_id,
       channel,
       metric,
       count(*)   AS samples,
       sum(value) AS sum,
       min(value) AS min,
       max(value) AS max
FROM reading
GROUP BY 1, device_id, channel, metric
WITH NO DATA;

-- Late data of up to 3 days is re-aggregated by the policy; older late data
-- needs an operator's refresh_continuous_aggregate() over its range.
SELECT add_continuous_aggregate_policy('reading_hourly_rollup',
    start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes');

-- Daily, built from the hourly aggregate (hierarchical), not from raw rows.
CREATE MATERIALIZED VIEW reading_daily_rollup
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket,
       device_id,
       channel,
       metric,
       sum(samples)::bigint AS samples,
       sum(sum) AS sum,
       min(min) AS min,
       max(max) AS max
FROM reading_hourly_rollup
GROUP BY 1, device_id, channel, metric
WITH NO DATA;

SELECT add_continuous_aggregate_policy('reading_daily_rollup',
    start_offset => INTERVAL '4 days',
    end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 hour');

-- The old hourly aggregate of 0004 becomes a view over the new one: one
-- materialization instead of two, same name and columns for its readers.
DROP MATERIALIZED VIEW reading_hourly;
CREATE VIEW reading_hourly AS
SELECT bucket, device_id, channel, metric, samples, sum / samples AS mean, min, max
FROM reading_hourly_rollup;

-- Latest value per series (map pages), kept by `lumeau maintenance run` as on
-- the Apache edition; rollup_state only holds its scan position here.
CREATE TABLE reading_latest (
    device_id  text             NOT NULL,
    channel    smallint         NOT NULL,
    metric     text             NOT NULL,
    time       timestamptz      NOT NULL,
    value      double precision NOT NULL,
    PRIMARY KEY (device_id, channel, metric)
);

CREATE TABLE rollup_state (
    name          text        PRIMARY KEY CHECK (name = 'reading'),
    rolled_until  timestamptz NOT NULL,
    scanned_until timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Real-time aggregates answer every range from the aggregate itself.
CREATE FUNCTION reading_rollup_complete_until() RETURNS timestamptz
LANGUAGE sql STABLE
AS $$ SELECT 'infinity'::timestamptz $$;

CREATE INDEX uplink_message_received_at ON uplink_message
    USING brin (received_at) WITH (pages_per_range = 32, autosummarize = on);

-- Retention: the defaults of backend/maintenance/config.py. Raw readings are
-- kept well past the 3-day refresh window, so nothing is dropped before it is
-- aggregated. `lumeau maintenance run` replaces these policies with the
-- values of its configuration file; dead_letter (a plain table) is trimmed
-- by it too. The daily aggregate is kept forever.
SELECT add_retention_policy('reading', INTERVAL '400 days');
SELECT add_retention_policy('uplink_message', INTERVAL '400 days');
SELECT add_retention_policy('reading_hourly_rollup', INTERVAL '1826 days');
SELECT add_retention_policy('event', INTERVAL '1826 days');
SELECT add_retention_policy('device_status', INTERVAL '1826 days');
SELECT add_retention_policy('command_ack', INTERVAL '1826 days');
