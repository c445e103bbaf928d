-- Commands people send to devices through the API (backend/commands/,
-- docs/api.md "Commands"), and what became of them.
--
-- A command row is written BEFORE it is published, so a command is never lost
-- silently: either the broker confirmed it (published_at) or the row says why
-- not (publish_error). Its outcome comes from the device's ack, which ingest
-- stores in command_ack (cmd = command_id); the view command_status joins the
-- two and names the state, so the API and any other reader agree on it.
--
-- A plain table: commands are few (people issue them), looked up by id and by
-- device, and their life is the command's expiry, not a time range.
CREATE TABLE command (
    command_id      text        PRIMARY KEY CHECK (command_id ~ '^[a-z0-9._-]{1,64}$'),
    device_id       text        NOT NULL REFERENCES device (device_id),
    name            text        NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{0,31}$'),
    args            jsonb       NOT NULL CHECK (jsonb_typeof(args) = 'object'),
    issued_by       text        NOT NULL,
    issued_token_id bigint,
    issued_at       timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    -- Where it was published on the backend broker: the device's own down/cmd
    -- topic, or its gateway's down/cmd as a 'relay' (via_gateway set).
    topic           text        NOT NULL,
    via_gateway     text,
    published_at    timestamptz,
    publish_error   text,
    CHECK (expires_at >= issued_at),
    CHECK (published_at IS NULL OR publish_error IS NULL)
);
CREATE INDEX command_device_issued ON command (device_id, issued_at DESC, command_id DESC);

-- One row per command with its newest ack (device clock) and its state:
--   acked           the device acked it with ok = true
--   failed          the newest ack has ok = false (err_code says why: the
--                   device's bad_args, busy, expired..., or the gateway's
--                   timeout when the device never answered before expiry)
--   publish_failed  the broker did not confirm it; publish_error says why
--   expired         no ack and expires_at has passed
--   sent            the broker confirmed it (PUBACK), no ack yet
--   pending         written, not yet confirmed by the broker
-- An ack wins over everything else: if a command whose publish timed out
-- still reached the device (the connection came back), its ack is the truth.
-- Acks are matched on the device too: a device cannot answer for another's
-- command even if it learnt its id.
CREATE VIEW command_status AS
SELECT c.command_id, c.device_id, c.name, c.args, c.issued_by, c.issued_token_id,
       c.issued_at, c.expires_at, c.topic, c.via_gateway, c.published_at,
       c.publish_error,
       a.time AS ack_at, a.ok AS ack_ok, a.err_code AS ack_err_code,
       a.err_reason AS ack_err_reason, a.result AS ack_result,
       coalesce(a.acks, 0) AS acks,
       CASE
           WHEN a.ok THEN 'acked'
           WHEN a.ok IS NOT NULL THEN 'failed'
           WHEN c.publish_error IS NOT NULL THEN 'publish_failed'
           WHEN now() >= c.expires_at THEN 'expired'
           WHEN c.published_at IS NOT NULL THEN 'sent'
           ELSE 'pending'
       END AS state
FROM command c
LEFT JOIN LATERAL (
    SELECT k.time, k.ok, k.err_code, k.err_reason, k.result, count(*) OVER () AS acks
    FROM command_ack k
    WHERE k.cmd = c.command_id AND k.device_id = c.device_id
    ORDER BY k.time DESC
    LIMIT 1
) a ON true;
