"""The transactional outbox: jobs written in the writer's own transaction, enqueued once it commits.

A job enqueued after a transaction commits is lost if the process dies in between; one enqueued
before the commit runs for a change that may still roll back. So writers (the web app in any
language, see the README; our own jobs through `put()`) insert a `job_outbox` row in the
transaction that makes the change (app/db/migrations/0007_job_outbox.sql), and this relay moves
committed rows to the queues.

One relay per process. It LISTENs on `workhorse_outbox` on a dedicated connection (the insert
trigger notifies at commit). While that connection is down, when a notification would be missed,
it polls every OUTBOX_POLL_INTERVAL_MS; while it is up, every few seconds, as a safety net only,
so an idle process does not query PostgreSQL ten times a second. Each pass claims up to
OUTBOX_BATCH_SIZE PENDING rows with FOR UPDATE SKIP LOCKED (processes share the work without
waiting on each other), enqueues them in one round trip and marks them DISPATCHED in the same
transaction. The job id is the row's own `job_id` or `outbox:<row id>`, and the Enqueuer refuses
an id that is queued, running or holds a result: a relay killed between the Redis write and the
commit leaves the row PENDING, and the next claim finds the job already there and only marks the
row. That holds while Redis keeps the job or its result (KEEP_RESULT_S; `outbox:` results are
exempt from the per-queue count trim), far longer than any relay takes to come back. A row that
names its own job id gets no such exemption: on a busy queue its result may be trimmed sooner.

A row that can never be enqueued (unknown job or queue, invalid or oversized payload) is marked
FAILED with the reason and dead-lettered, without holding up the rest of its batch. Redis or
PostgreSQL trouble rolls the batch back (its rows stay PENDING, `attempts` and `last_error` say
why) and the relay backs off. DISPATCHED rows older than OUTBOX_ARCHIVE_AFTER_S (7 days) move to
`job_outbox_archive`.
"""

from app.queue.outbox.relay import BatchResult, OutboxRelay
from app.queue.outbox.writer import Db, put

__all__ = ["BatchResult", "Db", "OutboxRelay", "put"]
