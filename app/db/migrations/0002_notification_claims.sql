-- Who is sending a notification: a SENDING row names the job that claimed it, so a re-run of
-- that same job (after a crash) knows the previous run is gone, while another job with the same
-- key waits for the claim to finish or to go stale.
ALTER TABLE notifications ADD COLUMN job_id text;
ALTER TABLE notifications ADD COLUMN claimed_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE notifications ADD COLUMN in_doubt_resends integer NOT NULL DEFAULT 0;
CREATE INDEX notifications_status ON notifications (status, created_at);
