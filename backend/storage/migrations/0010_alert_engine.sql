-- The alert engine's memory of each condition, per source.
--
-- An alert says what people see; this table says what the engine last knew
-- about the condition behind it, which the alert alone cannot:
--   * several sources may feed one dedup key (a leak sensor's own
--     leak_suspected event and the backend's acoustic analysis both raise
--     leak:<device>; lamp_failure and breaker_trip both raise
--     circuit_failure:<device>:<ch>): the condition is true while any source
--     says so, and one source clearing must not clear the other's;
--   * after a user resolves an alert whose condition is still true, the
--     engine must not raise it again until the condition has cleared and
--     come back: that needs the condition's state after the alert is closed;
--   * an event delivered late (after an outage) that is older than the last
--     change the engine applied for its source must not undo that change.
-- One row per (dedup_key, source), written only when `active` changes, so a
-- state the engine re-observes every interval costs no write.
CREATE TABLE alert_condition (
    dedup_key  text        NOT NULL CHECK (char_length(dedup_key) <= 200),
    -- e.g. 'event:door_open', 'presence', 'battery', 'leak', 'energy'
    source     text        NOT NULL CHECK (char_length(source) <= 64),
    active     boolean     NOT NULL,
    -- data time of the observation that set `active`
    changed_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dedup_key, source)
);
