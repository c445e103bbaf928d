-- Notifications: where alert transitions are sent, and what became of each send.
--
-- alert_history (0009) is the outbox. The notifier reads its new rows in
-- order (notifier_cursor), makes one notification_delivery per channel that
-- wants the row, and moves the cursor in the same transaction; the unique key
-- (channel_id, history_id) makes a second fan-out of the same row harmless.
-- Deliveries are then sent, retried with backoff, and end 'sent' or 'dead'.

CREATE TABLE notification_channel (
    channel_id    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text        NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    kind          text        NOT NULL CHECK (kind IN ('webhook', 'email')),
    -- webhook: where to POST; email: who receives it
    url           text        CHECK (url ~ '^https?://' AND char_length(url) <= 2000),
    recipients    text[]      CHECK (cardinality(recipients) BETWEEN 1 AND 20),
    -- The webhook's HMAC key. It must be stored as is, not hashed: the notifier
    -- signs every request with it, so whoever can read this table can sign
    -- requests that receivers will accept (treat database access accordingly).
    secret        text        CHECK (char_length(secret) <= 200),
    -- whose channel it is: operator, planner, technician or admin
    audience_role text        NOT NULL REFERENCES api_role (name),
    -- NULL: every site / every rule
    sites         text[]      CHECK (cardinality(sites) BETWEEN 1 AND 100),
    min_severity  text        NOT NULL DEFAULT 'warning'
                              CHECK (min_severity IN ('info', 'warning', 'critical')),
    rules         text[]      CHECK (cardinality(rules) BETWEEN 1 AND 100),
    actions       text[]      NOT NULL
                              DEFAULT ARRAY['opened', 'escalated', 'reopened', 'resolved']
                              CHECK (cardinality(actions) >= 1 AND actions <@ ARRAY[
                                  'opened', 'reoccurred', 'escalated', 'acknowledged',
                                  'assigned', 'commented', 'cleared', 'resolved',
                                  'reopened']),
    enabled       boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text        NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    secret_set_at timestamptz,
    CHECK (CASE kind
           WHEN 'webhook' THEN url IS NOT NULL AND recipients IS NULL AND secret IS NOT NULL
           ELSE url IS NULL AND recipients IS NOT NULL AND secret IS NULL END)
);

CREATE TABLE notification_delivery (
    delivery_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- deleting a channel deletes its deliveries (the audit log keeps the deletion)
    channel_id       bigint      NOT NULL REFERENCES notification_channel (channel_id)
                                 ON DELETE CASCADE,
    history_id       bigint      NOT NULL REFERENCES alert_history (history_id),
    state            text        NOT NULL DEFAULT 'pending'
                                 CHECK (state IN ('pending', 'sent', 'dead')),
    -- counted when an attempt starts, so a row that crashes its sender still
    -- runs out of attempts
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- when a pending delivery may be tried (while one is being sent: the end
    -- of its lease, after which another dispatcher may take it over)
    next_attempt_at  timestamptz,
    last_attempt_at  timestamptz,
    last_error       text        CHECK (char_length(last_error) <= 1000),
    last_status_code integer,
    sent_at          timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel_id, history_id),
    CHECK ((state = 'pending') = (next_attempt_at IS NOT NULL)),
    CHECK ((state = 'sent') = (sent_at IS NOT NULL))
);
CREATE INDEX notification_delivery_due ON notification_delivery (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX notification_delivery_recent ON notification_delivery (delivery_id DESC);
CREATE INDEX notification_delivery_history ON notification_delivery (history_id);

-- The last alert_history id fanned out. Starts at the newest row: history
-- from before notifications existed is not sent.
CREATE TABLE notifier_cursor (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO notifier_cursor (name, position)
    SELECT 'fanout', COALESCE(max(history_id), 0) FROM alert_history;

-- Ids below the cursor that were not visible when it moved. Identity values
-- are taken when a row is inserted but become visible when its transaction
-- commits, so a row with a smaller id can commit after a larger one was read.
-- Each such id waits here until its row shows up (and is fanned out) or every
-- transaction that was running when it was noted (xid < noted_xmax) has
-- ended without it (a rollback).
CREATE TABLE notifier_gap (
    history_id bigint      PRIMARY KEY,
    noted_xmax xid8        NOT NULL,
    noted_at   timestamptz NOT NULL DEFAULT now()
);
