-- Alerts: what the rule engine raised from the data, what people did about it.
--
-- One row per alert in `alert`; everything that ever happened to it (raised,
-- came back after a flap, escalated, acknowledged, assigned, commented,
-- condition cleared, resolved, reopened) is one row of `alert_history`, in
-- order. The history is also the notification outbox: the notifier fans each
-- new history row out to the channels that want it, keeping its own cursor,
-- so a transition and its notification can never disagree.

-- When the backend received an event (the device's own `time` can be late
-- after an outage): the engine reads new events by this, not by device time.
ALTER TABLE event ADD COLUMN received_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX event_received_at ON event (received_at);

CREATE TABLE alert (
    alert_id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- the rule that raised it: cabinet_offline, circuit_failure, energy_anomaly,
    -- door_open, day_burning, mains_loss, sensor_silent, battery_low, leak, ...
    rule            text        NOT NULL CHECK (rule ~ '^[a-z][a-z0-9_]{0,47}$'),
    -- deduplication: at most one live (not resolved) alert per key; the key is
    -- rule:device[:channel] (or rule:site:... for alerts about a place).
    dedup_key       text        NOT NULL CHECK (char_length(dedup_key) <= 200),
    device_id       text,
    site            text,
    channel         smallint,
    severity        text        NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    state           text        NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    title           text        NOT NULL CHECK (char_length(title) <= 300),
    detail          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- data times: when the condition began and when it was last seen true
    started_at      timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    -- set while the condition is gone but the alert waits out the clear hold
    -- (flap suppression); back to NULL if the condition returns in time
    cleared_at      timestamptz,
    -- how many times the condition came back while this alert was live
    occurrences     integer     NOT NULL DEFAULT 1 CHECK (occurrences >= 1),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    acknowledged_by text,
    assignee        text        CHECK (char_length(assignee) <= 64),
    resolved_at     timestamptz,
    -- a user name, or 'engine' when the condition cleared for good
    resolved_by     text,
    CHECK ((state = 'resolved') = (resolved_at IS NOT NULL)),
    CHECK ((acknowledged_at IS NULL) = (acknowledged_by IS NULL))
);
CREATE UNIQUE INDEX alert_live_dedup_key ON alert (dedup_key) WHERE state <> 'resolved';
CREATE INDEX alert_state_started ON alert (state, started_at DESC);
CREATE INDEX alert_device ON alert (device_id, started_at DESC) WHERE device_id IS NOT NULL;
CREATE INDEX alert_site ON alert (site, started_at DESC) WHERE site IS NOT NULL;
CREATE INDEX alert_key_resolved ON alert (dedup_key, resolved_at DESC) WHERE state = 'resolved';

CREATE TABLE alert_history (
    history_id  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id    bigint      NOT NULL REFERENCES alert (alert_id),
    at          timestamptz NOT NULL DEFAULT now(),
    action      text        NOT NULL CHECK (action IN (
                    'opened', 'reoccurred', 'escalated', 'acknowledged', 'assigned',
                    'commented', 'cleared', 'resolved', 'reopened')),
    -- 'engine' or the API user
    actor       text        NOT NULL CHECK (char_length(actor) <= 64),
    from_state  text        CHECK (from_state IN ('open', 'acknowledged', 'resolved')),
    to_state    text        NOT NULL CHECK (to_state IN ('open', 'acknowledged', 'resolved')),
    severity    text        NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    note        text        CHECK (char_length(note) <= 4000),
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX alert_history_alert ON alert_history (alert_id, history_id);

-- History is evidence: rows are added, never changed.
CREATE FUNCTION alert_history_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alert_history is append-only (% refused)', TG_OP;
END
$$;
CREATE TRIGGER alert_history_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON alert_history
    FOR EACH STATEMENT EXECUTE FUNCTION alert_history_append_only();

-- Live updates: every history row is announced on channel 'lumeau_alert'
-- (delivered at commit), with a small JSON payload; the API's event stream
-- LISTENs and reads the rest from the tables.
CREATE FUNCTION alert_history_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    a alert%ROWTYPE;
BEGIN
    SELECT * INTO a FROM alert WHERE alert_id = NEW.alert_id;
    PERFORM pg_notify('lumeau_alert', json_build_object(
        'history_id', NEW.history_id, 'alert_id', NEW.alert_id, 'action', NEW.action,
        'state', NEW.to_state, 'severity', NEW.severity, 'rule', a.rule,
        'device_id', a.device_id, 'site', a.site)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER alert_history_notify
    AFTER INSERT ON alert_history
    FOR EACH ROW EXECUTE FUNCTION alert_history_notify();

-- The engine's own bookmarks (e.g. the last event received_at it has read).
CREATE TABLE alert_engine_cursor (
    name       text        PRIMARY KEY,
    position   timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
