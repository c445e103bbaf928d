-- Hourly rollup of readings, Apache-only edition: continuous aggregates are
-- not part of it, so this is a plain view over time_bucket(), computed at
-- query time. Fine for the dashboards of a town and for development; a big
-- deployment runs the full edition, where the .timescale.sql variant of this
-- step makes the same relation a continuous aggregate.
CREATE VIEW reading_hourly AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       device_id,
       channel,
       metric,
       count(*)   AS samples,
       avg(value) AS mean,
       min(value) AS min,
       max(value) AS max
FROM reading
GROUP BY bucket, device_id, channel, metric;
