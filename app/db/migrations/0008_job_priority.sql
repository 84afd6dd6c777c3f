-- Job priorities (app/queue/priorities.py): an outbox row may carry one, as every other way in
-- does. Expand-only: a relay of the previous release ignores the column (its rows run without a
-- priority); this release reads NULL as none. The archive takes the column too (0007's promise).
ALTER TABLE job_outbox ADD COLUMN priority integer CHECK (priority IS NULL OR priority BETWEEN 0 AND 2097152);
ALTER TABLE job_outbox_archive ADD COLUMN priority integer;
