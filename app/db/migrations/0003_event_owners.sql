-- Who an event belongs to and where it came from, for conflict detection (the scheduling agent)
-- and for calendar sync (events imported from a provider are upserted by external id).
ALTER TABLE scheduling_events ADD COLUMN user_id text;
ALTER TABLE scheduling_events ADD COLUMN source text NOT NULL DEFAULT 'app'
    CHECK (source IN ('app', 'google'));
ALTER TABLE scheduling_events ADD COLUMN all_day boolean NOT NULL DEFAULT false;
ALTER TABLE scheduling_events ADD COLUMN external_etag text;
ALTER TABLE scheduling_events ADD COLUMN external_updated_at timestamptz;
CREATE INDEX scheduling_events_user_time ON scheduling_events (user_id, start_at)
    WHERE status = 'SCHEDULED';
