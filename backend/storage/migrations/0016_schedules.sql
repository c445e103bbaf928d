-- Dimming schedules of the municipal services (docs/schedules.md): the
-- program a cabinet runs (edge/schedule.py's format, the args of the
-- set_schedule command), its versions, and its deployments to cabinets.
--
-- A schedule keeps every version of its program: a deployment names the
-- exact version it sent, so "what does cabinet X run" has one answer even
-- after the planner edits the schedule. A deployment is one set_schedule
-- command per cabinet (table command, migration 0012); the state of a
-- cabinet's deployment IS its command's state (view command_status).
--
-- A deleted schedule is only marked (deleted_at): the deployments that sent
-- it stay readable. Its name is free again for a new schedule.

CREATE TABLE dimming_schedule (
    schedule_id bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    description text        CHECK (char_length(description) <= 2000),
    version     integer     NOT NULL DEFAULT 1 CHECK (version >= 1),  -- the current one
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_by  text,
    deleted_at  timestamptz,
    CHECK ((deleted_at IS NULL) = (deleted_by IS NULL))
);
CREATE UNIQUE INDEX dimming_schedule_live_name ON dimming_schedule (name)
    WHERE deleted_at IS NULL;

-- Append-only: version n of a schedule's program, as checked when stored.
CREATE TABLE dimming_schedule_version (
    schedule_id bigint      NOT NULL REFERENCES dimming_schedule (schedule_id),
    version     integer     NOT NULL CHECK (version >= 1),
    program     jsonb       NOT NULL CHECK (jsonb_typeof(program) = 'object'),
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, version)
);

-- target 'site': every cabinet of site_id with a controller when it was
-- deployed (the list is in deployment_target); 'cabinets': the device ids
-- the planner listed. site_id is kept as text, not a foreign key: the
-- record of what was sent outlives the asset register's edits.
CREATE TABLE schedule_deployment (
    deployment_id    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule_id      bigint      NOT NULL,
    version          integer     NOT NULL,
    target           text        NOT NULL CHECK (target IN ('cabinets', 'site')),
    site_id          text,
    created_by       text        NOT NULL,
    created_token_id bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    FOREIGN KEY (schedule_id, version) REFERENCES dimming_schedule_version (schedule_id, version),
    CHECK ((target = 'site') = (site_id IS NOT NULL))
);
CREATE INDEX schedule_deployment_schedule
    ON schedule_deployment (schedule_id, created_at DESC, deployment_id DESC);

CREATE TABLE deployment_target (
    deployment_id bigint NOT NULL REFERENCES schedule_deployment (deployment_id),
    device_id     text   NOT NULL REFERENCES device (device_id),
    command_id    text   NOT NULL UNIQUE REFERENCES command (command_id),
    PRIMARY KEY (deployment_id, device_id)
);
CREATE INDEX deployment_target_device ON deployment_target (device_id);

-- Per cabinet and deployment: the command's state (sent, acked, failed,
-- expired, publish_failed, pending) and the cabinet's answer.
CREATE VIEW deployment_target_status AS
SELECT t.deployment_id, d.schedule_id, d.version, t.device_id, t.command_id,
       s.state, s.issued_at, s.expires_at, s.published_at, s.publish_error, s.via_gateway,
       s.ack_at, s.ack_ok, s.ack_err_code, s.ack_err_reason
FROM deployment_target t
JOIN schedule_deployment d USING (deployment_id)
JOIN command_status s ON s.command_id = t.command_id;

-- What each cabinet runs: the schedule version of its most recently acked
-- set_schedule (ack time, the device's clock: the cabinet applies commands
-- as they arrive, so the last one it acked is the one it runs).
CREATE VIEW cabinet_schedule AS
SELECT DISTINCT ON (device_id)
       device_id, schedule_id, version, deployment_id, command_id, ack_at
FROM deployment_target_status
WHERE state = 'acked'
ORDER BY device_id, ack_at DESC, deployment_id DESC;
