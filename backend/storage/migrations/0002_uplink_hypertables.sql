-- What devices send, partitioned by the device's own timestamp.
--
-- Sequence numbers are integer: protocol v1 bounds them to 2**31 - 1.
--
-- Chunk intervals. TimescaleDB wants the chunks being written (with their
-- indexes) to fit in about a quarter of memory. A large city (50,000 light
-- points and sensors, one telemetry message with ~5 values every 10 minutes)
-- writes ~7 M uplink_message and ~36 M reading rows a day, ~1 GB and ~5 GB
-- with indexes: one-day chunks keep the hot chunk well inside a 24 GB server
-- and let retention drop whole days. Events, status changes and command
-- acknowledgements are thousands of times rarer; 30-day chunks keep them from
-- becoming thousands of tiny tables that slow planning. Re-tune a deployment
-- with set_chunk_time_interval(); it only affects chunks made afterwards.

-- One row per uplink message (a gateway's batch envelope included: it has its
-- own boot and sequence, so lost batches show up as gaps too). The unique
-- index is the idempotency key of the whole ingest path: a resend carries
-- the same (device_id, boot_id, seq) and the same device timestamp, so
-- INSERT ... ON CONFLICT DO NOTHING turns it into a no-op. A unique index on a
-- hypertable must contain the partitioning column, hence "time" in it.
CREATE TABLE uplink_message (
    time         timestamptz NOT NULL,
    device_id    text        NOT NULL,
    boot_id      text        NOT NULL,
    seq          integer     NOT NULL,
    kind         text        NOT NULL
                 CHECK (kind IN ('telemetry', 'event', 'status', 'ack', 'batch')),
    gateway_id   text,
    received_at  timestamptz NOT NULL DEFAULT now()
);
SELECT create_hypertable('uplink_message', by_range('time', INTERVAL '1 day'));
CREATE UNIQUE INDEX uplink_message_identity ON uplink_message (device_id, boot_id, seq, time);

-- The hot table: one row per value. No unique index (it would double the cost
-- of every insert); ingest only writes the readings of messages that
-- uplink_message has just accepted as new, which gives the same guarantee.
CREATE TABLE reading (
    time       timestamptz      NOT NULL,
    device_id  text             NOT NULL,
    channel    smallint         NOT NULL,
    metric     text             NOT NULL,
    value      double precision NOT NULL,
    boot_id    text             NOT NULL,
    seq        integer          NOT NULL
);
SELECT create_hypertable('reading', by_range('time', INTERVAL '1 day'));
CREATE INDEX reading_device_time ON reading (device_id, time DESC);

CREATE TABLE event (
    time       timestamptz NOT NULL,
    device_id  text        NOT NULL,
    boot_id    text        NOT NULL,
    seq        integer     NOT NULL,
    code       text        NOT NULL,
    severity   text        NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    channel    smallint,
    active     boolean     NOT NULL,
    detail     jsonb
);
SELECT create_hypertable('event', by_range('time', INTERVAL '30 days'));
CREATE INDEX event_device_time ON event (device_id, time DESC);

-- Presence history of devices and gateways (the current state is in device).
CREATE TABLE device_status (
    time         timestamptz NOT NULL,
    device_id    text        NOT NULL,
    boot_id      text        NOT NULL,
    seq          integer     NOT NULL,
    state        text        NOT NULL CHECK (state IN ('online', 'offline')),
    role         text        NOT NULL,
    fw           text
);
SELECT create_hypertable('device_status', by_range('time', INTERVAL '30 days'));
CREATE INDEX device_status_device_time ON device_status (device_id, time DESC);

-- cmd is the command's id, as sent down in the cmd message.
CREATE TABLE command_ack (
    time        timestamptz NOT NULL,
    device_id   text        NOT NULL,
    boot_id     text        NOT NULL,
    seq         integer     NOT NULL,
    cmd         text        NOT NULL,
    ok          boolean     NOT NULL,
    err_code    text,
    err_reason  text,
    result      jsonb
);
SELECT create_hypertable('command_ack', by_range('time', INTERVAL '30 days'));
CREATE INDEX command_ack_cmd ON command_ack (cmd, time DESC);
