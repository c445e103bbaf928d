-- Hourly rollup of readings, full edition: a continuous aggregate with the
-- same columns as the Apache edition's view, so queries do not care which one
-- they read. Real-time (materialized_only = false) so the current hour is
-- there too, as in the view. WITH NO DATA because a refresh cannot run inside
-- the migration's transaction; the policy fills it.
CREATE MATERIALIZED VIEW reading_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
       device_id,
       channel,
       metric,
       count(*)   AS samples,
       avg(value) AS mean,
       min(value) AS min,
       max(value) AS max
FROM reading
GROUP BY bucket, device_id, channel, metric
WITH NO DATA;

-- Resends after an outage of up to a few days land in already-materialized
-- hours; a 3-day start offset re-aggregates them.
SELECT add_continuous_aggregate_policy('reading_hourly',
    start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes');
