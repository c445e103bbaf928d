-- Aggregates for questions over many devices: per device and day energy, and
-- per site and day rollups. Plain hypertables on both editions, kept by
-- `lumeau maintenance run` (backend/maintenance/site_rollup.py) in the same
-- refresh as the daily rollup: a site-day is built when its day is, and
-- built again when late data changes one of its devices' days.
--
-- Why not continuous aggregates on the full edition: a site is the device's
-- `device.site`, a regular table that changes, and a meter's consumption per
-- day needs the previous day's last value (a window across buckets); neither
-- fits a continuous aggregate's definition. On the full edition the same
-- refresh rebuilds the days the daily aggregate's policy may still change.

-- Energy consumed per device, energy channel and day, from the `energy_wh`
-- counter: the sum of the increases between consecutive readings, a reading
-- below the previous one or of a new boot counting as a reset (its value is
-- the energy since the restart, as backend/core/energy.py reads it). The
-- increase from the previous day's last reading to the day's first one
-- belongs to the day (crossing_wh), so a day's energy does not depend on
-- where readings fall around midnight and a gap in telemetry is not lost.
-- first_*/last_* are kept so a day can be rebuilt alone: energy_wh =
-- increase_wh (within the day) + the crossing from the previous row.
CREATE TABLE device_energy_daily (
    day          timestamptz      NOT NULL,
    device_id    text             NOT NULL,
    channel      smallint         NOT NULL,
    samples      bigint           NOT NULL CHECK (samples > 0),
    first_time   timestamptz      NOT NULL,
    first_value  double precision NOT NULL,
    first_boot   text             NOT NULL,
    last_time    timestamptz      NOT NULL,
    last_value   double precision NOT NULL,
    last_boot    text             NOT NULL,
    increase_wh  double precision NOT NULL,
    resets       integer          NOT NULL,
    energy_wh    double precision NOT NULL,
    PRIMARY KEY (device_id, channel, day)
);
SELECT create_hypertable('device_energy_daily', by_range('day', INTERVAL '180 days'),
                         create_default_indexes => false);
-- Top-N by energy over a range: an index-only scan of one channel's days,
-- carrying what the sum per device needs.
CREATE INDEX device_energy_daily_channel_day ON device_energy_daily (channel, day)
    INCLUDE (device_id, energy_wh);

-- One row per site, day, metric and channel, over the devices whose
-- device.site is the site when the day is rolled up (devices without a site
-- are in no site). samples/sum/min/max aggregate the devices' daily rows (a
-- site's mean is sum / samples); energy_wh is the sum of the devices'
-- consumption (device_energy_daily) for the energy counter, NULL otherwise.
CREATE TABLE site_daily_rollup (
    day        timestamptz      NOT NULL,
    site       text             NOT NULL,
    metric     text             NOT NULL,
    channel    smallint         NOT NULL,
    devices    integer          NOT NULL CHECK (devices > 0),
    samples    bigint           NOT NULL CHECK (samples > 0),
    sum        double precision NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    energy_wh  double precision,
    PRIMARY KEY (site, metric, channel, day)
);
-- A few hundred sites x ~20 series: ~2 M rows a year; one chunk a year.
SELECT create_hypertable('site_daily_rollup', by_range('day', INTERVAL '365 days'),
                         create_default_indexes => false);
-- City-wide series: every site's row of one metric per day.
CREATE INDEX site_daily_rollup_metric ON site_daily_rollup (metric, channel, day)
    INCLUDE (site, energy_wh, samples, sum);
