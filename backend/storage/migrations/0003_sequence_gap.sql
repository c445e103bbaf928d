-- Gap detection over the idempotency record. Within one boot a device numbers
-- its messages without holes, so a jump from n to m > n + 1 in uplink_message
-- means messages n+1 .. m-1 never arrived (yet: a late resend fills the gap
-- and the gap disappears from the answer, nothing needs clearing).

-- The function takes a time window so that the scan stays inside a few
-- chunks; lag() over a partition cannot push a time filter written outside
-- it down to the table. A gap that straddles the window's start is not seen.
CREATE FUNCTION sequence_gaps(
    since timestamptz DEFAULT '-infinity',
    until timestamptz DEFAULT 'infinity'
)
RETURNS TABLE (
    gap_device_id  text,
    gap_boot_id    text,
    first_missing  integer,
    last_missing   integer,
    missing        integer,
    after_time     timestamptz,
    before_time    timestamptz
)
LANGUAGE sql STABLE
AS $$
    SELECT s.device_id, s.boot_id, s.prev_seq + 1, s.seq - 1, s.seq - s.prev_seq - 1,
           s.prev_time, s.time
    FROM (
        SELECT m.device_id, m.boot_id, m.seq, m.time,
               lag(m.seq) OVER w AS prev_seq,
               lag(m.time) OVER w AS prev_time
        FROM uplink_message m
        WHERE m.time >= since AND m.time < until
        WINDOW w AS (PARTITION BY m.device_id, m.boot_id ORDER BY m.seq)
    ) s
    WHERE s.seq > s.prev_seq + 1
$$;

-- All gaps ever: convenient for operators and tests, a full scan in production.
CREATE VIEW sequence_gap AS
SELECT gap_device_id AS device_id, gap_boot_id AS boot_id, first_missing, last_missing,
       missing, after_time, before_time
FROM sequence_gaps();
