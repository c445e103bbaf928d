-- The API's own records: who may call it (users and their role), the bearer
-- tokens they call it with, and an append-only log of every write.
--
-- Tokens are stored as the SHA-256 of the token, never the token itself. The
-- token is 32 random bytes (256 bits): nobody can guess a preimage, so a fast,
-- unsalted hash is enough and, unlike a password hash (salted and slow on
-- purpose, because passwords are guessable), it can be looked up by index.

CREATE TABLE api_role (
    name        text PRIMARY KEY,
    description text NOT NULL
);
INSERT INTO api_role (name, description) VALUES
    ('operator',   'night-shift operator: watches devices, telemetry, events and gaps'),
    ('planner',    'municipal services: reads devices, telemetry and events to plan work'),
    ('technician', 'field and support technician: also reads dead letters'),
    ('admin',      'everything, including issuing and revoking API tokens');

CREATE TABLE api_user (
    user_id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9._@-]{1,64}$'),
    role        text        NOT NULL REFERENCES api_role (name),
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);

CREATE TABLE api_token (
    token_id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint      NOT NULL REFERENCES api_user (user_id),
    token_sha256 bytea       NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32),
    label        text        CHECK (char_length(label) <= 200),
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text        NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    revoked_by   text,
    CHECK (expires_at IS NULL OR expires_at > created_at),
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE INDEX api_token_user ON api_token (user_id);

-- Who did what, when. actor is the user name behind the token used, or
-- 'cli:<os user>' for the lumeau command; detail never holds a token.
CREATE TABLE api_audit (
    audit_id       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    actor          text        NOT NULL,
    actor_token_id bigint,
    action         text        NOT NULL,
    target         text,
    detail         jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX api_audit_at ON api_audit (at DESC);

-- Append-only: the application role owns the table, so a trigger (not a
-- privilege) is what stops an UPDATE or DELETE through the API's role.
CREATE FUNCTION api_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'api_audit is append-only (% refused)', TG_OP;
END
$$;
CREATE TRIGGER api_audit_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON api_audit
    FOR EACH STATEMENT EXECUTE FUNCTION api_audit_append_only();
