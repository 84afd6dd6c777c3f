"""The outbox's SQL: claiming, reading, marking and archiving rows of `job_outbox`
(app/db/migrations/0007_job_outbox.sql), and the insert `put()` uses."""

CLAIM = """
SELECT id, job_name, queue, job_id, run_at, priority, octet_length(payload::text) AS payload_bytes
FROM job_outbox WHERE status = 'PENDING' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
"""
PAYLOADS = "SELECT id, payload::text AS payload FROM job_outbox WHERE id = ANY($1::bigint[])"
MARK_DISPATCHED = """
UPDATE job_outbox o
SET status = 'DISPATCHED', attempts = o.attempts + 1, last_error = NULL,
    dispatched_at = clock_timestamp(), dispatched_job_id = d.job_id
FROM unnest($1::bigint[], $2::text[]) AS d(id, job_id) WHERE o.id = d.id
RETURNING extract(epoch FROM o.dispatched_at - o.created_at)::float8 AS lag_s
"""
MARK_FAILED = """
UPDATE job_outbox o SET status = 'FAILED', attempts = o.attempts + 1, last_error = d.error
FROM unnest($1::bigint[], $2::text[]) AS d(id, error) WHERE o.id = d.id
"""
# After a rolled-back batch; rows another relay holds meanwhile are left alone, not waited for.
NOTE_ATTEMPT = """
UPDATE job_outbox SET attempts = attempts + 1, last_error = $2
WHERE id IN (SELECT id FROM job_outbox WHERE id = ANY($1::bigint[]) AND status = 'PENDING'
             FOR UPDATE SKIP LOCKED)
"""
WAITING = """
SELECT count(*) AS waiting,
       coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8 AS oldest_s
FROM job_outbox WHERE status = 'PENDING'
"""
COLUMNS = ("id, job_name, payload, queue, job_id, run_at, status, attempts, last_error, created_at, "
            "dispatched_at, dispatched_job_id, priority")
ARCHIVE = f"""
WITH moved AS (
    DELETE FROM job_outbox WHERE id IN (
        SELECT id FROM job_outbox
        WHERE status = 'DISPATCHED' AND dispatched_at < clock_timestamp() - make_interval(secs => $1)
        ORDER BY dispatched_at LIMIT $2 FOR UPDATE SKIP LOCKED)
    RETURNING {COLUMNS}
)
INSERT INTO job_outbox_archive ({COLUMNS}) SELECT {COLUMNS} FROM moved
"""
INSERT = """
INSERT INTO job_outbox (job_name, payload, queue, job_id, run_at, priority)
SELECT n, p::json, q, j, r, pr
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::integer[]) AS t(n, p, q, j, r, pr)
RETURNING id
"""
