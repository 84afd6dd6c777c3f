"""The engine: the only package that imports arq.

Everything else speaks the project's own names: `Enqueuer` and `JobHandle` (enqueue, status,
result), `JobSpec` and `Registry` (what runs where), `JobContext` (what a job receives),
`QueueWorker` (one queue's consumer), `DeadLetters`, `control` (pause/resume/drain), `stats`,
`retries.decide()` and the cron ticker.

What arq still does for us: the job record format (`arq:job:<id>`, its JSON fields t/f/a/k/et),
the queue ZSET scored by run-at time, the in-progress lock key, the retry counter and result
keys, `Retry(defer=...)`, `asyncio` task bookkeeping of a Worker and its `run_job` (payload
decoding, try counting, result writing). tests/test_engine_contract.py pins each of these.

What we replace (overriding private hooks of `arq.worker.Worker`, identical in 0.26-0.28):
- polling: `_poll_iteration` waits for a pub/sub wake-up (app/queue/wake.py) instead of sleeping;
- claiming: one Lua call reads the queue and claims the due ids (arq: a read, then WATCH/MULTI
  per id in `start_jobs`, which we no longer call);
- failures before the job runs: `finish_failed_job` writes a dead letter;
- locks: `heart_beat` extends short in-progress locks, so crash recovery does not wait for
  the largest timeout;
- shutdown: the process stops every Worker itself (signals off, `close()` not used);
- retries: `app/queue/execution.py` decides with `retries.decide()` and raises arq's `Retry`;
- cron: our ticker (app/queue/ticker.py), not arq's `cron()`;
- enqueue: one Lua round trip for any number of jobs, publishing wake-ups (arq's
  `enqueue_job` is not used).

What is off: arq's `burst` mode (workers run until the process stops), its signal handlers,
its `cron_jobs`, `Job.abort()` (`allow_abort_jobs` stays False: arq's abort set never ages
out, arq #485; `JobHandle.abort()` refuses with a message instead), pickle (JSON only).
"""

from arq.connections import ArqRedis as RedisPool

__all__ = ["RedisPool"]
