-- Intake routing and the scheduling agent (issue 12): the statuses and columns the web app's
-- contract needs (runbook sections 4.3 and 4.7), and each user's working hours and time zone.

-- Intake: ROUTING while a job works on it, ASSIGNED once its pipeline item exists.
ALTER TABLE intake_requests DROP CONSTRAINT IF EXISTS intake_requests_status_check;
ALTER TABLE intake_requests ADD CONSTRAINT intake_requests_status_check
    CHECK (status IN ('NEW', 'ROUTING', 'ROUTED', 'ASSIGNED', 'FAILED'));
ALTER TABLE intake_requests ADD COLUMN priority text;
ALTER TABLE pipelines ADD COLUMN is_active boolean NOT NULL DEFAULT true;
ALTER TABLE pipelines ADD COLUMN default_assignee_id text;
ALTER TABLE pipeline_items ADD COLUMN stage_position integer;
ALTER TABLE pipeline_items ADD COLUMN assigned_user_id text;
ALTER TABLE pipeline_items ADD COLUMN priority text;

-- Agent tasks: who asked, on which channel, what the classifier found, what was booked.
ALTER TABLE scheduling_agent_tasks DROP CONSTRAINT IF EXISTS scheduling_agent_tasks_status_check;
ALTER TABLE scheduling_agent_tasks ADD CONSTRAINT scheduling_agent_tasks_status_check
    CHECK (status IN ('PENDING', 'RUNNING', 'PROCESSING', 'CLASSIFIED', 'NEEDS_REVIEW', 'AWAITING_INPUT',
                      'SCHEDULED', 'RESCHEDULED', 'CANCELLED', 'COMPLETED', 'FAILED'));
ALTER TABLE scheduling_agent_tasks ALTER COLUMN kind SET DEFAULT 'inbox';
ALTER TABLE scheduling_agent_tasks ADD COLUMN user_id text;
ALTER TABLE scheduling_agent_tasks ADD COLUMN message text;
ALTER TABLE scheduling_agent_tasks ADD COLUMN subject text;
ALTER TABLE scheduling_agent_tasks ADD COLUMN channel text
    CHECK (channel IN ('email', 'sms', 'chat', 'webhook'));
ALTER TABLE scheduling_agent_tasks ADD COLUMN sender_email text;
ALTER TABLE scheduling_agent_tasks ADD COLUMN sender_phone text;
ALTER TABLE scheduling_agent_tasks ADD COLUMN webhook_url text;
ALTER TABLE scheduling_agent_tasks ADD COLUMN task_type text;
ALTER TABLE scheduling_agent_tasks ADD COLUMN priority smallint CHECK (priority BETWEEN 1 AND 5);
ALTER TABLE scheduling_agent_tasks ADD COLUMN confidence real;
ALTER TABLE scheduling_agent_tasks ADD COLUMN classification_method text;
ALTER TABLE scheduling_agent_tasks ADD COLUMN entities jsonb;
ALTER TABLE scheduling_agent_tasks ADD COLUMN event_id text;
ALTER TABLE scheduling_agent_tasks ADD COLUMN alternatives jsonb;
-- The step that failed (a job name) and its payload, for retry_task.
ALTER TABLE scheduling_agent_tasks ADD COLUMN failed_step text;
ALTER TABLE scheduling_agent_tasks ADD COLUMN failed_payload jsonb;
ALTER TABLE scheduling_agent_tasks ADD COLUMN retry_count integer NOT NULL DEFAULT 0;
CREATE INDEX scheduling_agent_tasks_user ON scheduling_agent_tasks (user_id, status);

-- Events the agent booked name their task.
ALTER TABLE scheduling_events ADD COLUMN agent_task_id text;

-- Each user's scheduling preferences; the email also maps a participant to their user id.
CREATE TABLE user_scheduling_preferences (
    user_id     text PRIMARY KEY,
    email       text,
    phone       text,
    time_zone   text NOT NULL DEFAULT 'UTC',
    work_start  time NOT NULL DEFAULT '09:00',
    work_end    time NOT NULL DEFAULT '17:00',
    -- ISO weekdays, 1 = Monday.
    work_days   smallint[] NOT NULL DEFAULT '{1,2,3,4,5}',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (work_end > work_start)
);
CREATE INDEX user_scheduling_preferences_email ON user_scheduling_preferences (lower(email));

-- A rescheduled event gets new reminders while its old ones stay as history (SKIPPED, or SENT):
-- one active reminder per kind, instead of one per kind ever.
ALTER TABLE event_reminders DROP CONSTRAINT IF EXISTS event_reminders_event_id_kind_key;
CREATE UNIQUE INDEX event_reminders_active_kind ON event_reminders (event_id, kind)
    WHERE status IN ('PENDING', 'QUEUED');
