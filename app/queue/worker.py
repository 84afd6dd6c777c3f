"""QueueWorker: an arq Worker for one queue, with the parts arq leaves out.

Overrides of arq's private hooks (stable across 0.26-0.28, pinned in pyproject):
- `main`: loops on `_poll_iteration` alone (arq's adds start-up log lines, an INFO command and a
  `sleep(0)` lap between iterations that only delays the look after a wake-up);
- `_poll_iteration`: waits for a wake-up (or the next deferred job's time, or a fallback
  poll) instead of sleeping `poll_delay`; honours pause; survives Redis errors. A fallback
  poll of a queue last seen empty is skipped when the process's sweep (app/queue/wake.py) has
  looked since: an idle process sends one command per fallback, not one per queue.
- `start_jobs` and `run_job` are bypassed: one Lua round trip reads the queue, claims what is
  due and starts it (app/queue/claims.py), taking over the jobs of processes that died; an
  enqueue may hand a job to an idle worker directly (app/queue/handoff.py); our runner
  (app/queue/running.py) runs each job and batches its finish with the others. Slots are
  counted by `job_counter` alone: arq's semaphore is not used.
- `heart_beat`: extends running jobs' short in-progress locks and publishes running jobs
  (app/queue/bookkeeping.py).
- `record_health`: writes arq's health key (`arq --check`) without arq's extra ZCARD.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from datetime import datetime

import structlog
from arq.connections import ArqRedis
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.exceptions import RedisError

from app.backoff import REDIS_OUTAGE_BACKOFF
from app.queue import codec, handoff
from app.queue.bookkeeping import Bookkeeping
from app.queue.claims import Claimed, Claimer
from app.queue.execution import Runtime, arq_functions, job_functions
from app.queue.finishing import FinishBatcher
from app.queue.registry import Registry
from app.queue.running import Ended, Runner
from app.queue.wake import WakeHub
from app.queue_table import QueueConfig

log = structlog.get_logger(__name__)

# At shutdown, how long the requeue writes of cancelled jobs may take before the pool closes.
_FINISH_GRACE_S = 5.0
# A Worker is considered polling (for /health/ready) if it polled this recently.
_POLL_STALE_S = 10.0


class QueueWorker(Worker):
    def __init__(self, queue: QueueConfig, registry: Registry, runtime: Runtime, hub: WakeHub,
                 pool: ArqRedis) -> None:
        settings = runtime.res.settings
        functions = job_functions(registry, queue.name, runtime)
        super().__init__(
            functions=arq_functions(functions),
            queue_name=queue.name,
            redis_pool=pool,
            handle_signals=False,  # the process handles signals once, for every Worker
            max_jobs=queue.concurrency,
            job_timeout=queue.timeout_s,
            # Per-function TTLs are not applied to failures by arq (#417): the worker's is the failed one.
            keep_result=settings.keep_failed_s,
            poll_delay=0,  # we wait for wake-ups in _poll_iteration instead
            health_check_interval=settings.health_check_interval_s,
            job_serializer=codec.dumps,
            job_deserializer=codec.loads_job,
            log_results=False,
        )
        # The lock outlives any job of this queue (arq's own choice: the largest timeout + 10 s; at
        # least JOB_LOCK_TTL_S), so a live process whose loop stalls never loses a running job.
        # A killed process's jobs do not wait for it: the claim takes over locks whose owner's
        # liveness key has lapsed (app/queue/claims.py). heart_beat extends the locks as well.
        self.in_progress_timeout_s = max(self.in_progress_timeout_s, settings.job_lock_ttl_s)
        self.runtime = runtime
        self.hub = hub
        self.accepting = True
        self.redis_ok = True
        self.last_poll = time.monotonic()
        self._wake = hub.events[queue.name]
        self._fallback_s = settings.poll_fallback_ms / 1000
        hub.register(queue.name, self._fallback_s)
        hub.on_handoff[queue.name] = self.take_handoff
        self._runs = handoff.RunsHere()
        self._held_handoffs: list[Claimed] | None = None
        """While a look is on its way: the handoffs that arrived meanwhile."""
        self._looked_at = float("-inf")
        self._seen_jobs: int | None = None
        """Jobs (waiting, deferred, running anywhere) the last read of the queue found."""
        self.queue_reads = 0
        """How often this worker has read its queue (the idle sweep makes most reads needless)."""
        self.books = Bookkeeping(pool, queue.name, lock_ttl_s=self.in_progress_timeout_s,
                                 heartbeat_s=settings.job_heartbeat_s, keep_results=settings.keep_results_per_queue)
        self._claimer = Claimer(pool, queue.name, hub.instance, lock_ttl_s=self.in_progress_timeout_s,
                                read_limit=self.queue_read_limit)
        self._finisher = FinishBatcher(pool, queue.name, hub.instance)
        self._holding_slot: set[str] = set()
        """Jobs that hold a slot: claimed, function not yet ended (their finish may still be on its way)."""
        self._runner = Runner(runtime.res, queue.name, functions, self._finisher, slot_freed=self._free_slot,
                              keep_completed_s=settings.keep_result_s, keep_failed_s=settings.keep_failed_s,
                              lock_ttl_s=self.in_progress_timeout_s, heartbeat_s=settings.job_heartbeat_s)
        self._redis_failures = 0
        # Read when /metrics is scraped: nothing to update per job.
        runtime.res.metrics.in_flight.labels(queue.name).set_function(lambda: self.job_counter)
        self._gauge_up = runtime.res.metrics.up.labels(queue.name)

    @property
    def polling(self) -> bool:
        return self.redis_ok and time.monotonic() - self.last_poll < max(_POLL_STALE_S, 3 * self._fallback_s)

    def stop_taking_jobs(self) -> None:
        self.accepting = False
        self._wake.set()
        self.hub.on_handoff.pop(self.queue_name, None)

    async def shutdown(self) -> None:
        """Cancel the job functions still running (the runner requeues them), let finishes being
        written complete, then stop polling and close the pool.

        Replaces arq's close(), whose gather() raises when a job task was cancelled outright.
        """
        # Left at stop_taking_jobs already (app/runtime/process.py); again, as a look that was on
        # its way then may have entered it since. A stale entry only costs a give-back.
        with contextlib.suppress(RedisError, OSError):
            await handoff.leave_idle_sets(self.pool, [self.queue_name], self.hub.instance)
        running = {job_id: t for job_id, t in self.tasks.items() if not t.done()}
        for task in list(self._runner.in_function.values()):
            task.cancel()
        if running:
            await asyncio.wait(running.values(), timeout=_FINISH_GRACE_S)
        self._reap_finished()
        if self.main_task is not None and not self.main_task.done():
            self.main_task.cancel()
            await asyncio.wait([self.main_task])
        with contextlib.suppress(RedisError, OSError):
            await self.pool.delete(self.health_check_key)
        await self.pool.aclose(close_connection_pool=True)
        self._gauge_up.set(0)

    async def main(self) -> None:
        while True:
            await self._poll_iteration()

    async def _poll_iteration(self) -> None:
        next_due_ms: float | None = None
        try:
            woken = self._wake.is_set()
            self._wake.clear()
            # Reaped first: a job finished since the last look is no longer "running here" to the
            # claim (a retry due at once is taken in this look).
            self._reap_finished()
            self.allow_pick_jobs = self.accepting and not self.hub.is_paused(self.queue_name)
            if self.allow_pick_jobs and self.job_counter < self.max_jobs and self._must_look(woken):
                next_due_ms = await self._start_due_jobs()
            await self.heart_beat()
        except (RedisError, OSError) as exc:
            await self._redis_trouble(exc)
            return
        if not self.redis_ok:
            log.info("redis_recovered", queue=self.queue_name)
        self.redis_ok, self._redis_failures = True, 0
        self.last_poll = time.monotonic()
        self._gauge_up.set(1)
        await self._wait_for_work(next_due_ms)

    def _must_look(self, woken: bool) -> bool:
        """Whether to read the queue now: always, unless this is a fallback poll of a queue last
        seen empty and the sweep has looked since (it wakes us when a queue fills unannounced)."""
        return woken or self._seen_jobs != 0 or not self.hub.swept_since(self._looked_at)

    async def _start_due_jobs(self) -> float | None:
        """Start due jobs; return the score (ms) of the next deferred job, if any."""
        self._looked_at = time.monotonic()
        self.queue_reads += 1
        now = timestamp_ms()
        # Handoffs that arrive while the look is on its way wait for its answer (so its limit
        # holds), and jobs being given back are not ours to take again meanwhile.
        self._held_handoffs = []
        try:
            look = await self._claimer.claim_due(now_ms=now, limit=self.max_jobs - self.job_counter,
                                                 running_here=[*self.tasks, *self.hub.giving_back],
                                                 reachable=self.hub.connected.is_set())
        except BaseException:
            self._take_held_handoffs()
            raise
        self._seen_jobs = look.due + (look.next_deferred_ms is not None)
        self.hub.saw(self.queue_name, has_jobs=bool(self._seen_jobs))
        for claim in look.claimed:
            if claim.was_ours and self._runs.has(claim):
                continue  # handed to us: its message arrived first (app/queue/handoff.py)
            if claim.taken_over:
                log.warning("job_reclaimed_from_dead_process", queue=self.queue_name, job_id=claim.job_id)
            self._start(claim, now)
        self._take_held_handoffs()  # after the look's own jobs, whose slots it counted
        return look.next_deferred_ms

    def _take_held_handoffs(self) -> None:
        held, self._held_handoffs = self._held_handoffs or [], None
        for claim in held:
            self.take_handoff(claim)

    def take_handoff(self, claim: Claimed) -> None:
        """A job an enqueue handed to this process, already claimed for it (app/queue/handoff.py)."""
        if self._held_handoffs is not None:
            self._held_handoffs.append(claim)
            return
        if self._runs.has(claim):
            return  # a look took it already: the message came late
        if self.accepting and not self.hub.is_paused(self.queue_name) and self.job_counter < self.max_jobs:
            self._start(claim, timestamp_ms())
        else:
            self.hub.give_back(self.queue_name, claim.job_id)

    def _start(self, claim: Claimed, now_ms: int) -> None:
        # Slots are counted by job_counter alone (arq's semaphore is not used): a start never waits.
        self.job_counter += 1
        self._holding_slot.add(claim.job_id)
        self._runs.started(claim)
        task = self.loop.create_task(self._runner.run(claim))
        task.add_done_callback(functools.partial(self._job_done, claim.job_id))
        self.tasks[claim.job_id] = task
        self.books.started(claim.job_id, now_ms)

    def _free_slot(self, job_id: str) -> None:
        if job_id in self._holding_slot:
            self._holding_slot.discard(job_id)
            self.job_counter -= 1
            # A freed slot takes the next waiting job at once.
            self._wake.set()

    def _job_done(self, job_id: str, task: asyncio.Task[Ended]) -> None:
        self._free_slot(job_id)  # a task cancelled before it started never freed its slot
        self._runs.finished(job_id)
        ended = None if task.cancelled() or task.exception() is not None else task.result()
        if ended is Ended.COMPLETED:
            self.jobs_complete += 1
        elif ended is Ended.FAILED:
            self.jobs_failed += 1
        else:  # retried, requeued by shutdown, or its finish never written (it runs again)
            self.jobs_retried += 1
            # The slot was freed before the new score was written, so the look that took the next
            # job may have missed it: look again to learn when it is due.
            self._wake.set()
        self.books.finished(job_id, completed=ended is Ended.COMPLETED)

    def _reap_finished(self) -> None:
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                # Told here too: its done callback (which also tells) may not have run yet.
                self._runs.finished(job_id)
                if not task.cancelled() and task.exception() is not None:
                    # arq re-raises here and its loop dies (#231); the job's lock expires and
                    # the job runs again, so logging is enough.
                    exc = task.exception()
                    log.error("job_bookkeeping_failed", queue=self.queue_name, job_id=job_id,
                              error=f"{type(exc).__name__}: {exc}")

    async def record_health(self) -> None:
        """arq's health record; `queued` is what the last read saw (at most queue_read_limit)."""
        now_s = time.time()
        if now_s - self._last_health_check < self.health_check_interval:
            return
        self._last_health_check = now_s
        ongoing = sum(not t.done() for t in self.tasks.values())
        info = (f"{datetime.now():%b-%d %H:%M:%S} j_complete={self.jobs_complete} j_failed={self.jobs_failed} "
                f"j_retried={self.jobs_retried} j_ongoing={ongoing} queued={self._seen_jobs or 0}")
        await self.pool.psetex(self.health_check_key, int((self.health_check_interval + 1) * 1000), info.encode())

    async def heart_beat(self) -> None:
        await super().heart_beat()
        await self.books.beat()

    async def _wait_for_work(self, next_due_ms: float | None) -> None:
        timeout = self._fallback_s
        refresh_in = self.books.next_lock_refresh_in_s()
        if refresh_in is not None:
            # Running jobs' locks must be extended on time, whatever the fallback poll is.
            timeout = min(timeout, refresh_in)
        if next_due_ms is not None:
            timeout = min(timeout, max(0.0, (next_due_ms - timestamp_ms()) / 1000))
        # asyncio.timeout, not wait_for: in 3.11 wait_for swallows a cancellation that arrives as
        # the event is set, and shutdown does exactly that (stop_taking_jobs, then cancel).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout)):
                await self._wake.wait()

    async def _redis_trouble(self, exc: BaseException) -> None:
        if self.redis_ok:
            log.warning("redis_unavailable", queue=self.queue_name, error=str(exc))
        self.redis_ok = False
        self._gauge_up.set(0)
        self._redis_failures += 1
        self._reap_finished()
        await asyncio.sleep(REDIS_OUTAGE_BACKOFF.delay_s(self._redis_failures))
