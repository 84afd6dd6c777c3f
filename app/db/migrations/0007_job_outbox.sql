-- Transactional outbox (issue 14): the web app (or a job) inserts a row in the same transaction
-- as its own change; the relay in every worker (app/queue/outbox.py) moves committed rows to the
-- queues. A rolled-back transaction leaves no row, so no job runs for a change that never happened.
--
-- payload is json, not jsonb: jsonb refuses the \u0000 escape, and a web app's business
-- transaction must not fail because a job payload holds one. The relay refuses such a payload
-- itself (FAILED + dead letter, naming the field). Nothing queries inside payloads.
CREATE TABLE job_outbox (
    id                bigserial PRIMARY KEY,
    job_name          text NOT NULL,
    payload           json NOT NULL DEFAULT '{}',
    queue             text,            -- NULL: the job's own queue
    job_id            text,            -- NULL: outbox:<id>; a caller-chosen id dedups like any enqueue
    run_at            timestamptz,     -- NULL: at once
    status            text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'DISPATCHED', 'FAILED')),
    attempts          integer NOT NULL DEFAULT 0,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    dispatched_at     timestamptz,
    dispatched_job_id text
);
-- The relay's claim (oldest first) and the archive step read only these small partial indexes.
CREATE INDEX job_outbox_pending ON job_outbox (id) WHERE status = 'PENDING';
CREATE INDEX job_outbox_dispatched ON job_outbox (dispatched_at) WHERE status = 'DISPATCHED';

-- Rows DISPATCHED more than OUTBOX_ARCHIVE_AFTER_S ago (7 days) are moved here by the relay. A
-- later migration that adds a column to job_outbox adds it here too.
CREATE TABLE job_outbox_archive (
    id                bigint PRIMARY KEY,
    job_name          text NOT NULL,
    payload           json NOT NULL,
    queue             text,
    job_id            text,
    run_at            timestamptz,
    status            text NOT NULL,
    attempts          integer NOT NULL,
    last_error        text,
    created_at        timestamptz NOT NULL,
    dispatched_at     timestamptz,
    dispatched_job_id text,
    archived_at       timestamptz NOT NULL DEFAULT now()
);

-- Wake the relays at once. NOTIFY is delivered at commit (never for a rolled-back transaction)
-- and once per statement, so a bulk insert of 10,000 rows sends one notification, not 10,000.
CREATE FUNCTION job_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('workhorse_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER job_outbox_notify AFTER INSERT ON job_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION job_outbox_notify();

-- The documented convenience for any language: SELECT workhorse_enqueue('send_email', '{...}');
-- returns the row id. Call it inside the transaction that makes the change the job is about.
CREATE FUNCTION workhorse_enqueue(
    job_name text, payload json DEFAULT '{}', queue text DEFAULT NULL, job_id text DEFAULT NULL,
    run_at timestamptz DEFAULT NULL
) RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO job_outbox (job_name, payload, queue, job_id, run_at)
    VALUES (job_name, coalesce(payload, '{}'), queue, job_id, run_at)
    RETURNING id
$$;
