-- Every table the seven job families need. Ids of rows the web app creates are text (its ids);
-- rows the worker creates use bigserial. Times are timestamptz.

CREATE EXTENSION IF NOT EXISTS vector;

-- Documents and their embeddings (document-processing, document-embedding) ------------------
CREATE TABLE documents (
    id               text PRIMARY KEY,
    org_id           text NOT NULL,
    storage_key      text NOT NULL,
    filename         text,
    mime_type        text,
    document_type    text NOT NULL DEFAULT 'generic',
    status           text NOT NULL DEFAULT 'PENDING'
                     CHECK (status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED')),
    progress         smallint NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    ocr_text         text,
    ocr_confidence   real,
    page_count       integer,
    structured_data  jsonb,
    processing_error text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    processed_at     timestamptz
);
CREATE INDEX documents_org_status ON documents (org_id, status);

CREATE TABLE document_embeddings (
    id           bigserial PRIMARY KEY,
    document_id  text NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    org_id       text NOT NULL,
    chunk_index  integer NOT NULL,
    content      text NOT NULL,
    start_char   integer NOT NULL,
    end_char     integer NOT NULL,
    token_count  integer NOT NULL,
    model        text NOT NULL,
    dimensions   integer NOT NULL,
    -- No fixed dimension: it follows the model. Each model's dimension gets its own index.
    embedding    vector NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (document_id, chunk_index)
);
CREATE INDEX document_embeddings_org ON document_embeddings (org_id);
-- HNSW cosine indexes per dimension: 1536 (text-embedding-3-small), 384 (all-MiniLM-L6-v2).
CREATE INDEX document_embeddings_hnsw_1536 ON document_embeddings
    USING hnsw ((embedding::vector(1536)) vector_cosine_ops) WHERE dimensions = 1536;
CREATE INDEX document_embeddings_hnsw_384 ON document_embeddings
    USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE dimensions = 384;

-- Intake routing --------------------------------------------------------------------------
CREATE TABLE pipelines (
    id          text PRIMARY KEY,
    org_id      text NOT NULL,
    name        text NOT NULL,
    description text,
    is_default  boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, name)
);

CREATE TABLE pipeline_stages (
    id          text PRIMARY KEY,
    pipeline_id text NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    name        text NOT NULL,
    position    integer NOT NULL,
    UNIQUE (pipeline_id, position)
);

CREATE TABLE intake_requests (
    id          text PRIMARY KEY,
    org_id      text NOT NULL,
    source      text,
    subject     text,
    body        text,
    submitter   jsonb,
    status      text NOT NULL DEFAULT 'NEW' CHECK (status IN ('NEW', 'ROUTED', 'FAILED')),
    pipeline_id text REFERENCES pipelines (id),
    routing     jsonb,
    routed_at   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pipeline_items (
    id                text PRIMARY KEY,
    org_id            text NOT NULL,
    pipeline_id       text NOT NULL REFERENCES pipelines (id),
    stage_id          text REFERENCES pipeline_stages (id),
    intake_request_id text UNIQUE REFERENCES intake_requests (id),
    title             text NOT NULL,
    data              jsonb,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- Calendar sync and scheduling ------------------------------------------------------------
CREATE TABLE calendar_connections (
    id                text PRIMARY KEY,
    org_id            text NOT NULL,
    user_id           text NOT NULL,
    provider          text NOT NULL DEFAULT 'google',
    calendar_id       text NOT NULL DEFAULT 'primary',
    -- OAuth tokens, encrypted at rest by the application (never stored in clear).
    access_token_enc  bytea,
    refresh_token_enc bytea,
    token_expires_at  timestamptz,
    sync_token        text,
    status            text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'REVOKED', 'ERROR')),
    last_synced_at    timestamptz,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, provider, calendar_id)
);

CREATE TABLE scheduling_events (
    id                     text PRIMARY KEY,
    org_id                 text NOT NULL,
    calendar_connection_id text REFERENCES calendar_connections (id) ON DELETE SET NULL,
    external_id            text,
    title                  text NOT NULL,
    description            text,
    location               text,
    meeting_url            text,
    start_at               timestamptz NOT NULL,
    end_at                 timestamptz NOT NULL,
    time_zone              text NOT NULL DEFAULT 'UTC',
    status                 text NOT NULL DEFAULT 'SCHEDULED'
                           CHECK (status IN ('SCHEDULED', 'CANCELLED', 'COMPLETED')),
    organizer_email        text,
    organizer_name         text,
    -- [{email, name, phone, timeZone}]
    participants           jsonb NOT NULL DEFAULT '[]',
    sequence               integer NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CHECK (end_at >= start_at),
    UNIQUE (calendar_connection_id, external_id)
);
CREATE INDEX scheduling_events_org_time ON scheduling_events (org_id, start_at);

CREATE TABLE event_reminders (
    id            bigserial PRIMARY KEY,
    event_id      text NOT NULL REFERENCES scheduling_events (id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('24h', '2h', 'follow_up')),
    reminder_time timestamptz NOT NULL,
    status        text NOT NULL DEFAULT 'PENDING'
                  CHECK (status IN ('PENDING', 'QUEUED', 'SENT', 'SKIPPED', 'FAILED')),
    retry_count   integer NOT NULL DEFAULT 0,
    error         text,
    skip_reason   text,
    queued_at     timestamptz,
    sent_at       timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, kind)
);
-- The scan reads only due PENDING rows: a partial index keeps it small.
CREATE INDEX event_reminders_due ON event_reminders (reminder_time) WHERE status = 'PENDING';

-- Tasks and the SLA monitor ---------------------------------------------------------------
CREATE TABLE tasks (
    id                    text PRIMARY KEY,
    org_id                text NOT NULL,
    title                 text NOT NULL,
    status                text NOT NULL DEFAULT 'NOT_STARTED'
                          CHECK (status IN ('NOT_STARTED', 'IN_PROGRESS', 'COMPLETED', 'CANCELLED')),
    assignee_id           text,
    assignee_email        text,
    escalation_email      text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    started_at            timestamptz,
    due_at                timestamptz,
    sla_target_at         timestamptz,
    sla_status            text NOT NULL DEFAULT 'COMPLIANT'
                          CHECK (sla_status IN ('COMPLIANT', 'WARNING', 'BREACHED')),
    sla_percentage        real,
    sla_checked_at        timestamptz,
    sla_status_changed_at timestamptz
);
CREATE INDEX tasks_sla_scan ON tasks (org_id) WHERE status IN ('NOT_STARTED', 'IN_PROGRESS');

CREATE TABLE agent_events (
    id         bigserial PRIMARY KEY,
    org_id     text NOT NULL,
    task_id    text,
    event_type text NOT NULL,
    payload    jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_events_task ON agent_events (task_id, event_type);

-- Scheduling agent ------------------------------------------------------------------------
CREATE TABLE inbox_items (
    id             text PRIMARY KEY,
    org_id         text NOT NULL,
    channel        text NOT NULL CHECK (channel IN ('email', 'sms', 'chat', 'webhook')),
    sender         text NOT NULL,
    subject        text,
    body           text NOT NULL,
    classification jsonb,
    received_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE scheduling_agent_tasks (
    id            text PRIMARY KEY,
    org_id        text NOT NULL,
    inbox_item_id text REFERENCES inbox_items (id),
    kind          text NOT NULL,
    status        text NOT NULL DEFAULT 'PENDING'
                  CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'NEEDS_REVIEW')),
    attempts      integer NOT NULL DEFAULT 0,
    input         jsonb NOT NULL DEFAULT '{}',
    result        jsonb,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Notifications: one row per side effect; the unique key makes a second send impossible ----
CREATE TABLE notifications (
    id              bigserial PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    channel         text NOT NULL CHECK (channel IN ('email', 'sms', 'webhook', 'chat')),
    recipient       text NOT NULL,
    subject         text,
    status          text NOT NULL DEFAULT 'SENDING'
                    CHECK (status IN ('SENDING', 'SENT', 'FAILED', 'SKIPPED')),
    provider_id     text,
    error           text,
    attempts        integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);

CREATE TABLE chat_messages (
    id         bigserial PRIMARY KEY,
    org_id     text,
    user_id    text NOT NULL,
    body       text NOT NULL,
    data       jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_messages_user ON chat_messages (user_id, created_at);

-- Dead letters ------------------------------------------------------------------------------
CREATE TABLE dead_letters (
    id              bigserial PRIMARY KEY,
    job_id          text NOT NULL,
    job_name        text NOT NULL,
    queue           text NOT NULL,
    payload         jsonb,
    -- What Redis held when it could not be decoded (e.g. a pickle), escaped to text.
    raw_payload     text,
    attempts        integer NOT NULL,
    error_class     text NOT NULL,
    error_message   text NOT NULL,
    traceback       text,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL DEFAULT 'DEAD' CHECK (status IN ('DEAD', 'RETRIED')),
    retried_at      timestamptz,
    retried_job_id  text
);
CREATE INDEX dead_letters_queue ON dead_letters (queue, status, last_failed_at);
-- A job dead-lettered twice (say, a retry that failed again) updates its open row.
CREATE UNIQUE INDEX dead_letters_open_job ON dead_letters (job_id) WHERE status = 'DEAD';
