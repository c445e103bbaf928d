-- Raw acoustic recordings (protocol kind "recording"): leak location by
-- cross-correlation needs the raw samples of two sensors on the same pipe and
-- their exact start times. A recording arrives in chunks ("parts"), one per
-- message; docs/recordings.md explains the design.
--
-- Plain tables, not hypertables. The unit of life is a recording: its parts
-- arrive over minutes or days (resends), are counted, hashed and reassembled
-- together, and are deleted together (ON DELETE CASCADE) once analysed or
-- aged out. The natural keys, (device_id, rec) and (device_id, rec, part),
-- carry no time, and a unique index on a hypertable must contain its
-- partitioning column; the rows are few (one per 5.6 KB of samples: ~170 for
-- a minute at 8 kHz) and their bytes live out of line in TOAST, where
-- TimescaleDB's columnar compression would not shrink raw audio anyway.

-- uplink_message records every message's identity, recordings' chunks too.
ALTER TABLE uplink_message DROP CONSTRAINT uplink_message_kind_check;
ALTER TABLE uplink_message ADD CONSTRAINT uplink_message_kind_check
    CHECK (kind IN ('telemetry', 'event', 'status', 'ack', 'recording', 'batch'));

-- One row per recording, from its first chunk on. t0 and t0_us are the same
-- instant, both exact (timestamptz has microsecond resolution): t0 for time
-- queries, t0_us for the correlation arithmetic.
--
-- sha256 is what the device sent (on the last part); received_sha256 is that
-- of the stored parts concatenated, computed once when all parts are there.
-- sha256_ok: NULL while not computed or when the device sent none, else
-- whether they match. A mismatch is kept (complete stays false), never
-- silently accepted. conflict: two chunks disagreed on what describes the
-- recording (t0, rate, format, number of parts, clock, sha256): the first
-- description is kept and the recording is not complete.
CREATE TABLE recording (
    device_id         text        NOT NULL,
    rec               text        NOT NULL,
    t0                timestamptz NOT NULL,
    t0_us             bigint      NOT NULL,
    fs                integer     NOT NULL CHECK (fs > 0),
    fmt               text        NOT NULL,
    parts             integer     NOT NULL CHECK (parts > 0),
    clock_src         text        NOT NULL CHECK (clock_src IN ('ntp', 'gps', 'rtc')),
    clock_unc_us      bigint      NOT NULL CHECK (clock_unc_us >= 0),
    clock_age_s       bigint      NOT NULL CHECK (clock_age_s >= 0),
    sha256            bytea       CHECK (octet_length(sha256) = 32),
    parts_received    integer     NOT NULL DEFAULT 0,
    samples           bigint,
    received_sha256   bytea,
    sha256_ok         boolean,
    conflict          boolean     NOT NULL DEFAULT false,
    complete          boolean     NOT NULL DEFAULT false,
    first_received_at timestamptz NOT NULL,
    last_received_at  timestamptz NOT NULL,
    completed_at      timestamptz,
    PRIMARY KEY (device_id, rec),
    CHECK (t0 = to_timestamp(0) + t0_us * INTERVAL '1 microsecond')
);
CREATE INDEX recording_t0 ON recording (t0);
CREATE INDEX recording_not_complete ON recording (t0) WHERE NOT complete;

-- One row per part, stored once whatever the number of messages that brought
-- it: the message identity (uplink_message) stops exact resends, the primary
-- key stops the same part sent again in a new message (a get_recording).
-- boot_id, seq and time name the message whose copy was kept.
CREATE TABLE recording_chunk (
    device_id   text        NOT NULL,
    rec         text        NOT NULL,
    part        integer     NOT NULL CHECK (part >= 0),
    n           integer     NOT NULL CHECK (n > 0),
    data        bytea       NOT NULL,
    boot_id     text        NOT NULL,
    seq         integer     NOT NULL,
    time        timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (device_id, rec, part),
    FOREIGN KEY (device_id, rec) REFERENCES recording (device_id, rec) ON DELETE CASCADE
);
-- Raw audio does not compress: keep it out of line without trying pglz.
ALTER TABLE recording_chunk ALTER COLUMN data SET STORAGE EXTERNAL;

-- The parts still missing from recordings that are not complete, as ranges
-- of consecutive parts: exactly the get_recording commands to send
-- ({"rec", "first", "last"}). The window applies to the recordings' start.
CREATE FUNCTION recording_missing_parts(
    since timestamptz DEFAULT '-infinity',
    until timestamptz DEFAULT 'infinity'
)
RETURNS TABLE (
    missing_device_id text,
    missing_rec       text,
    rec_t0            timestamptz,
    rec_parts         integer,
    first_missing     integer,
    last_missing      integer,
    missing           integer
)
LANGUAGE sql STABLE
AS $$
    SELECT g.device_id, g.rec, g.t0, g.parts, min(g.part), max(g.part), count(*)::integer
    FROM (
        SELECT r.device_id, r.rec, r.t0, r.parts, s.part,
               s.part - row_number() OVER (PARTITION BY r.device_id, r.rec ORDER BY s.part)
                   AS island
        FROM recording r
        CROSS JOIN LATERAL generate_series(0, r.parts - 1) AS s(part)
        WHERE NOT r.complete AND r.parts_received < r.parts
          AND r.t0 >= since AND r.t0 < until
          AND NOT EXISTS (
              SELECT 1 FROM recording_chunk c
              WHERE c.device_id = r.device_id AND c.rec = r.rec AND c.part = s.part
          )
    ) g
    GROUP BY g.device_id, g.rec, g.t0, g.parts, g.island
    ORDER BY g.device_id, g.rec, min(g.part)
$$;

-- Every recording that is not complete, and why: parts missing, a SHA-256
-- that does not match, or chunks that disagree.
CREATE VIEW recording_incomplete AS
SELECT device_id, rec, t0, parts, parts_received, parts - parts_received AS missing,
       CASE WHEN conflict THEN 'conflict'
            WHEN sha256_ok IS FALSE THEN 'sha256_mismatch'
            ELSE 'missing_parts' END AS reason,
       first_received_at, last_received_at
FROM recording
WHERE NOT complete;
