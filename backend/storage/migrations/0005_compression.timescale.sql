-- Columnar compression, full edition only (the Apache edition has none; the
-- runner records this step as skipped there).
--
-- Readings compress well segmented by device (values of one device change
-- slowly) and are rarely rewritten after a week. uplink_message keeps its
-- unique index on compressed chunks, so a very late resend is still refused
-- as a duplicate; it stays uncompressed for a month because that is where
-- resends after outages land and conflict checks are cheapest uncompressed.
ALTER TABLE reading SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 'time DESC, channel, metric'
);
SELECT add_compression_policy('reading', INTERVAL '7 days');

ALTER TABLE uplink_message SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 'time DESC, boot_id, seq'
);
SELECT add_compression_policy('uplink_message', INTERVAL '30 days');
