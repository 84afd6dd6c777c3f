"""The engine: the only package that imports arq.

Everything else speaks the project's own names: `Enqueuer` and `JobHandle` (enqueue, status,
result), `JobSpec` and `Registry` (what runs where), `JobContext` (what a job receives),
`QueueWorker` (one queue's consumer), `DeadLetters`, `control` (pause/resume/drain), `stats`,
`retries.decide()` and the cron ticker.

What arq still gives us: the job record format (`arq:job:<id>`, its JSON fields t/f/a/k/et),
the queue ZSET scored by run-at time, the in-progress lock, retry counter and result keys, the
result record (`serialize_result`, which arq's `Job` reads), and the Worker's shell (`async_run`,
its task dict and counters, the health key `arq --check` reads). tests/test_engine_contract.py
pins each of these.

What we replace (overriding private hooks of `arq.worker.Worker`, identical in 0.26-0.28):
- polling: `_poll_iteration` waits for a pub/sub wake-up (app/queue/wake.py) instead of sleeping;
- claiming and starting: one Lua call reads the queue, claims the due ids and reads their records
  and attempts (arq: a read, then WATCH/MULTI per id in `start_jobs`, then a pipeline per job in
  `run_job`; neither is called); an enqueue may hand a due job straight to an idle worker
  (app/queue/handoff.py);
- running: our runner (app/queue/running.py) replaces `run_job`: no start round trip, finishes
  written together, failures before the job runs dead-lettered with their reason, slots
  counted without arq's semaphore;
- locks: `heart_beat` extends short in-progress locks, so crash recovery does not wait for
  the largest timeout;
- shutdown: the process stops every Worker itself (signals off, `close()` not used);
- retries: `app/queue/execution.py` decides with `retries.decide()` and raises `RetryLater`;
- cron: our ticker (app/queue/ticker.py), not arq's `cron()`;
- enqueue: one Lua round trip for any number of jobs, publishing wake-ups (arq's
  `enqueue_job` is not used).

From redis-py we take the client and its pool, with two costs removed on every command: the
pool's read check of a connection before each command is skipped when the connection plainly has
nothing unread (app/queue/connections.py), and Lua scripts go out as `EVALSHA` without redis-py's
`Script` wrapper (app/queue/lua.py).

What is off: arq's `burst` mode (workers run until the process stops), its signal handlers,
its `cron_jobs`, `Job.abort()` (`allow_abort_jobs` stays False: arq's abort set never ages
out, arq #485; `JobHandle.abort()` refuses with a message instead), pickle (JSON only).
"""

from arq.connections import ArqRedis as RedisPool

__all__ = ["RedisPool"]
