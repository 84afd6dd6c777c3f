"""The engine: queues on Redis, spoken in arq's wire protocol.

Its front door is `Engine` (engine.py): the workers of the queues a process serves, the wake hub,
liveness, the cron ticker, the outbox relay, shutdown, and a read-only snapshot. Everything else
enqueues with `Enqueuer` and looks at jobs with `JobHandle` (enqueue.py, handles.py).

The protocol (arq 0.28's; tests/queue/test_arq_protocol.py drives the running engine with the real arq
client, so a stock `arq.create_pool(..., job_serializer=json.dumps, job_deserializer=json.loads)`
enqueues and reads jobs as our own code does):
- a queue is a ZSET named after it, of job ids scored by their run-at time in ms; a job stays in
  it until it finishes;
- `arq:job:<id>` holds the job's JSON record `{t, f, a: [payload], k, et}` (codec.py);
- `arq:in-progress:<id>` is the lock of the process running it, `arq:retry:<id>` counts attempts;
- `arq:result:<id>` holds the result record `{t, f, a, k, et, s, r, st, ft, q, id}`; a failure's
  `r` is `{"error": class, "message": text}`;
- `arq:abort` is the ZSET `Job.abort()` writes: a job aborted after it was enqueued ends with a
  CancelledError result, whether it was waiting or running;
- `<queue>:health-check` is the health record `arq --check` reads.
Beyond it: no pickle (a pickled record is dead-lettered, never loaded), wake-ups published on
enqueue (stock clients are heard through keyspace notifications, notifications.py), retries and
dead letters of our own, and every other key in keys.py.

A job's life, and the module of each step:

    enqueue ──► queue ZSET + record ─────────────── enqueue.py (handed straight to an idle
       │                                             process when one waits: handoff.py)
       ▼
    claim ───── lock, attempt counted, record read ─ claims.py (a worker's poll: worker.py)
       ▼
    start ───── record decoded; unknown, expired,
                aborted or past its attempts? ───── running.py ──► dead letter / aborted
       ▼
    run ─────── payload parsed, timeout enforced ── execution.py (the job's own function)
       ▼
    decide ──── retry later, or give up? ────────── retries.py (pure: decide())
       ▼
    finish ──── result stored, lock released, or
                the job rescheduled ─────────────── finishing.py (batched per queue)
       ▼
    dead letter ── PostgreSQL row with the reason ─ dead_letters.py (list, retry, purge)
"""
