-- Devices and the dead-letter store: plain tables, no time partitioning.
--
-- The extension is normally created by whoever creates the database (it needs
-- a superuser, or a trusted-extension setup); IF NOT EXISTS keeps this step a
-- no-op there and makes a superuser-run migration self-sufficient.
CREATE EXTENSION IF NOT EXISTS timescaledb;

-- One row per device or gateway ever heard from. Ingest upserts it on every
-- batch, so a device that was provisioned on the broker but never registered
-- here still shows up; role and fw arrive with the first status message.
-- first_seen and last_seen are reception times; last_message_at is the device
-- clock's time of its newest message, which decides last_boot_id (resends of
-- an older boot arriving late must not overwrite it).
-- last_gateway_id is the gateway that relayed its latest batch (NULL when the
-- device talks to the backend broker itself): where its commands must go.
CREATE TABLE device (
    device_id       text        PRIMARY KEY CHECK (device_id ~ '^[a-z0-9._-]{1,64}$'),
    role            text        CHECK (role IN ('cabinet', 'leak_sensor', 'gateway')),
    site            text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    first_seen      timestamptz,
    last_seen       timestamptz,
    last_message_at timestamptz,
    last_boot_id    text,
    last_gateway_id text,
    last_status     text        CHECK (last_status IN ('online', 'offline')),
    last_status_at  timestamptz,
    fw              text
);

-- Input that could not be decoded or validated, kept byte for byte with the
-- codec's verdict so it can be replayed once the cause is fixed. A plain table:
-- it is small, and its rows are looked at by id, not by time range.
CREATE TABLE dead_letter (
    id           bigserial   PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text        NOT NULL,
    payload      bytea       NOT NULL,
    code         text        NOT NULL,
    reason       text        NOT NULL,
    field        text,
    device_id    text,
    source       text        NOT NULL
);
CREATE INDEX dead_letter_received_at ON dead_letter (received_at DESC);
CREATE INDEX dead_letter_device ON dead_letter (device_id, received_at DESC)
    WHERE device_id IS NOT NULL;
